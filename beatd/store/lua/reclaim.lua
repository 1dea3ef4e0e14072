-- Take over stream entries of a queue whose run lease has ended (their worker died or gave them up): the
-- check and the take-over are one step, so a worker that read an entry and is about to claim it either claims
-- first (its lease then keeps the entry) or finds the entry taken (claim.lua refuses it).
-- KEYS[1] queue stream     KEYS[2] leases hash of the queue
-- ARGV[1] consumer group     ARGV[2] consumer taking over     ARGV[3] now, ms
-- ARGV[4] least idle time (ms) of an entry to take     ARGV[5] most entries to look at
-- An entry is taken when it has been pending at least ARGV[4] and has no lease or one that ended. The lease
-- of an ended run is deleted whether or not its entry still exists (XCLAIM drops a deleted entry).
-- Returns {entry id, times delivered before, message, sig, ...} for each entry taken (deleted ones left out).
local stream, leases, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local now, idle = tonumber(ARGV[3]), ARGV[4]
local pending = redis.call('XPENDING', stream, group, 'IDLE', idle, '-', '+', tonumber(ARGV[5]))
local taken = {}
for _, item in ipairs(pending) do
    local id, deliveries = item[1], item[4]
    local lease_end = redis.call('HGET', leases, id)
    if not lease_end or tonumber(lease_end) < now then
        redis.call('HDEL', leases, id)
        local claimed = redis.call('XCLAIM', stream, group, consumer, idle, id)
        local entry = claimed[1]
        if entry and entry[2] then
            local fields, message, sig = entry[2], '', ''
            for i = 1, #fields, 2 do
                if fields[i] == 'message' then
                    message = fields[i + 1]
                elseif fields[i] == 'sig' then
                    sig = fields[i + 1]
                end
            end
            table.insert(taken, id)
            table.insert(taken, deliveries)
            table.insert(taken, message)
            table.insert(taken, sig)
        end
    end
end
return taken
