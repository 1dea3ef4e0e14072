-- Resume a paused job: nothing from the paused period is caught up, so progress moves to now by Redis's
-- clock (the clock that decides what is due; a CLI host's clock may be wrong).
-- KEYS[1] paused hash           KEYS[2] progress hash       KEYS[3] audit stream
-- ARGV[1] job                   ARGV[2] audit record JSON   ARGV[3] audit max length
-- Returns 1 when the job was paused and is now resumed, 0 when it was not paused.
-- TIME comes before the writes: scripts are replicated by their effects (Redis 5 and later).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
    return 0
end
local progress = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
if progress == nil or now > progress then  -- an unreadable value is replaced: the job starts from now
    redis.call('HSET', KEYS[2], ARGV[1], now)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'event', 'resume', 'record', ARGV[2])
return 1
