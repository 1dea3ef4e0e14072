-- Free a lock only if the caller still holds it: the lock's value is a JSON record whose `token` names the
-- holder (so a lock that expired and was taken by someone else is left to them).
-- KEYS[1] lock key (beatd.keys.Keys.backfill_lock)
-- ARGV[1] the holder's token
-- Returns 1 when freed, 0 when the caller did not hold it.
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held)['token'] == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
