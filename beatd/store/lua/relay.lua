-- One step of the Celery outbox relay, fenced by the lease: delete the entries the broker confirmed, then read
-- the next ones to publish. Only the leader's relay gets entries; a deposed one gets -1 and deletes nothing.
-- KEYS[1] leader lease key      KEYS[2] the Celery outbox stream      KEYS[3] the dead stream
-- ARGV[1] fencing token         ARGV[2] most entries to read (0: none)   ARGV[3] the dead stream's MAXLEN (~)
-- ARGV[4] n: how many confirmed ids follow   ARGV[5..4+n] ids the broker confirmed
-- ARGV[5+n..] pairs (id, reason): entries to move to the dead stream (the broker refused them too often)
-- Returns {-1} when the caller does not hold the lease, else {1, depth (entries left, the read ones included),
-- {REPLY_ITEM values, ...}}: the oldest entries, in order.
local REPLY_ITEM = {'entry_id', 'queue', 'envelope'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local n = tonumber(ARGV[4])
local confirmed = {}
for i = 5, 4 + n do
    confirmed[#confirmed + 1] = ARGV[i]
end
call_chunked('XDEL', KEYS[2], confirmed)
for i = 5 + n, #ARGV, 2 do
    local found = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i], 'COUNT', 1)
    if #found == 1 then
        local fields = {}
        for j = 1, #found[1][2], 2 do
            fields[found[1][2][j]] = found[1][2][j + 1]
        end
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'entry_id', ARGV[i], 'reason', ARGV[i + 1],
            'queue', fields['queue'] or '', 'envelope', fields['envelope'] or '')
        redis.call('XDEL', KEYS[2], ARGV[i])
    end
end
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
