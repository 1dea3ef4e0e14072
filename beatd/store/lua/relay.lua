-- One step of the Celery outbox relay, fenced by the lease: delete the entries the broker confirmed, then read
-- the next ones to publish. Only the leader's relay gets entries; a deposed one gets -1 and deletes nothing.
-- KEYS[1] leader lease key      KEYS[2] the Celery outbox stream
-- ARGV[1] fencing token         ARGV[2] most entries to read (0: none)      ARGV[3..] ids the broker confirmed
-- Returns {-1} when the caller does not hold the lease, else {1, depth (entries left, the read ones included),
-- {REPLY_ITEM values, ...}}: the oldest entries, in order.
local REPLY_ITEM = {'entry_id', 'queue', 'envelope'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local confirmed = {}
for i = 3, #ARGV do
    confirmed[#confirmed + 1] = ARGV[i]
end
call_chunked('XDEL', KEYS[2], confirmed)
local flat, read = {}, {}
if tonumber(ARGV[2]) > 0 then
    read = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[2]))
end
for _, entry in ipairs(read) do
    local fields = {}
    for i = 1, #entry[2], 2 do
        fields[entry[2][i]] = entry[2][i + 1]
    end
    flat[#flat + 1] = entry[1]
    flat[#flat + 1] = fields['queue'] or ''
    flat[#flat + 1] = fields['envelope'] or ''
end
return {1, redis.call('XLEN', KEYS[2]), flat}
