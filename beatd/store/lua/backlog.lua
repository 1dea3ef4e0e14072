-- A queue's backlog: its entries not yet delivered to the consumer group (read only).
-- KEYS[1] queue stream
-- ARGV[1] consumer group     ARGV[2] most waiting entries to return
-- Returns {waiting, {entry id, message, ...}}: waiting counts every entry after the group's last delivered one
-- (all of them before any worker created the group); the entries are the oldest ARGV[2] of those.
local last = last_delivered(KEYS[1], ARGV[1])
local entries = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', tonumber(ARGV[2]))
local pairs_out = {}
for _, entry in ipairs(entries) do
    local message = ''
    for i = 1, #entry[2], 2 do
        if entry[2][i] == 'message' then
            message = entry[2][i + 1]
        end
    end
    pairs_out[#pairs_out + 1] = entry[1]
    pairs_out[#pairs_out + 1] = message
end
local waiting = #entries
if waiting == tonumber(ARGV[2]) then
    -- Entries after `last` are all undelivered. Acknowledged entries are deleted (beatd XDELs them), so the
    -- stream holds the pending ones and the waiting ones: the difference counts the rest without reading them.
    local pending = 0
    if last ~= '0-0' then
        pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
    end
    waiting = math.max(waiting, redis.call('XLEN', KEYS[1]) - pending)
end
return {waiting, pairs_out}
