-- A queue's backlog: its entries not yet delivered to the consumer group (read only).
-- KEYS[1] queue stream
-- ARGV[1] consumer group     ARGV[2] most waiting entries to return     ARGV[3] return only entries after this
-- id ('' from the oldest waiting one: a caller pages through a long backlog step by step)
-- Returns {waiting, oldest waiting id ('' when none), {REPLY_ITEM values, ...}}: waiting counts every entry
-- after the group's last delivered one (all of them before any worker created the group); then one REPLY_ITEM
-- per entry listed (beatd.store.upkeep.WaitingEntry), flat.
local REPLY_ITEM = {'entry_id', 'message'}
local last = last_delivered(KEYS[1], ARGV[1])
local oldest = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
if #oldest == 0 then
    return {0, '', {}}
end
local from = last
if ARGV[3] ~= '' and entry_after(ARGV[3], last) then
    from = ARGV[3]
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT', tonumber(ARGV[2]))
local listed = {}
for _, entry in ipairs(entries) do
    local message = ''
    for i = 1, #entry[2], 2 do
        if entry[2][i] == 'message' then
            message = entry[2][i + 1]
        end
    end
    listed[#listed + 1] = entry[1]
    listed[#listed + 1] = message
end
local waiting = #entries
if from ~= last or waiting == tonumber(ARGV[2]) then
    -- Entries after `last` are all undelivered. Acknowledged entries are deleted (beatd XDELs them), so the
    -- stream holds the pending ones and the waiting ones: the difference counts the rest without reading them.
    local pending = 0
    if last ~= '0-0' then
        pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
    end
    waiting = math.max(waiting, redis.call('XLEN', KEYS[1]) - pending)
end
return {waiting, oldest[1][1], listed}
