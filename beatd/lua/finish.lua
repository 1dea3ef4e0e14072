-- Record the end of a run (or a fire not run) and acknowledge its stream entry, atomically.
-- KEYS[1] active runs hash of the job     KEYS[2] leases hash of the queue     KEYS[3] queue stream
-- KEYS[4] run records hash of the job     KEYS[5] run records index (sorted set) of the job
-- KEYS[6] buffer hash of the job          KEYS[7] retry sorted set of the queue
-- KEYS[8] dead-letter stream              KEYS[9] attempts hash              KEYS[10] cancel hash
-- ARGV[1] run id     ARGV[2] stream entry id ('' when there is none)     ARGV[3] consumer group
-- ARGV[4] run record JSON ('' writes none)     ARGV[5] record score (scheduled, ms)     ARGV[6] records to keep
-- ARGV[7] drop records scored below this (ms; 0 keeps all)
-- ARGV[8] then: none | retry | dead     ARGV[9] message JSON     ARGV[10] signature     ARGV[11] retry at, ms
-- ARGV[12] dead-letter reason     ARGV[13] fire id     ARGV[14] '1' when the fire is done (forget its attempts)
-- ARGV[15] dead-letter max length
-- A fire held back by overlap: buffer_one goes to the queue once no run of the job is left.
-- Returns 1.
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[10], ARGV[1])
if ARGV[2] ~= '' then
    redis.call('HDEL', KEYS[2], ARGV[2])
    redis.call('XACK', KEYS[3], ARGV[3], ARGV[2])
    redis.call('XDEL', KEYS[3], ARGV[2])
end
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
    redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
end
local oldest = tonumber(ARGV[7])
if oldest > 0 then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. oldest, 'LIMIT', 0, 1000)
    if #expired > 0 then
        redis.call('HDEL', KEYS[4], unpack(expired))
        redis.call('ZREM', KEYS[5], unpack(expired))
    end
end
local excess = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[6])
if excess > 0 then
    local old = redis.call('ZRANGE', KEYS[5], 0, math.min(excess, 1000) - 1)
    redis.call('HDEL', KEYS[4], unpack(old))
    redis.call('ZREM', KEYS[5], unpack(old))
end
if ARGV[8] == 'retry' then
    redis.call('ZADD', KEYS[7], ARGV[11], cjson.encode({message = ARGV[9], sig = ARGV[10]}))
elseif ARGV[8] == 'dead' then
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[15], '*', 'message', ARGV[9], 'sig', ARGV[10],
        'reason', ARGV[12], 'queue', KEYS[3], 'run_id', ARGV[1])
end
if ARGV[14] == '1' then
    redis.call('HDEL', KEYS[9], ARGV[13])
end
if redis.call('HLEN', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[6]) == 1 then
    local held = redis.call('HMGET', KEYS[6], 'message', 'sig')
    redis.call('DEL', KEYS[6])
    redis.call('XADD', KEYS[3], '*', 'message', held[1], 'sig', held[2])
end
return 1
