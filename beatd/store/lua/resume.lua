-- Resume a paused job: nothing from the paused period is caught up, so progress moves to now.
-- KEYS[1] paused hash           KEYS[2] progress hash       KEYS[3] audit stream
-- ARGV[1] job                   ARGV[2] now, epoch ms       ARGV[3] audit record JSON     ARGV[4] audit max length
-- Returns 1 when the job was paused and is now resumed, 0 when it was not paused.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
    return 0
end
local progress = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > progress then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', 'resume', 'record', ARGV[3])
return 1
