-- Delete the consumers of queue consumer groups that hold nothing and have been idle a while (the leader's
-- upkeep), fenced by the lease. Every worker process joins under a name of its own (host:pid:random), so
-- without this a group would keep one consumer per worker ever started. A consumer with pending entries is
-- never deleted (that would drop them); a live worker deleted while idle joins again with its next read.
-- KEYS[1] leader lease key     KEYS[2..] queue streams
-- ARGV[1] fencing token     ARGV[2] consumer group     ARGV[3] least idle time (ms) of a consumer to delete
-- Returns -1 when the caller does not hold the lease, else how many consumers were deleted.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local group, idle, deleted = ARGV[2], tonumber(ARGV[3]), 0
for i = 2, #KEYS do
    local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[i], group)
    if type(consumers) == 'table' and not consumers.err then  -- a stream or group not created yet has none
        for _, info in ipairs(consumers) do
            local fields = {}
            for j = 1, #info, 2 do
                fields[info[j]] = info[j + 1]
            end
            if tonumber(fields['pending']) == 0 and tonumber(fields['idle']) > idle then
                redis.call('XGROUP', 'DELCONSUMER', KEYS[i], group, fields['name'])
                deleted = deleted + 1
            end
        end
    end
end
return deleted
