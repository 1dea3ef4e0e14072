-- Move fires whose retry time has come back into their queue stream.
-- KEYS[1] retry sorted set of the queue     KEYS[2] queue stream
-- ARGV[1] now, ms     ARGV[2] most to move
-- Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
    local entry = cjson.decode(item)
    redis.call('XADD', KEYS[2], '*', 'message', entry['message'], 'sig', entry['sig'])
    redis.call('ZREM', KEYS[1], item)
end
return #due
