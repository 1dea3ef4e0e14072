-- Apply a batch of the leader's decisions atomically, fenced by the lease.
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash      KEYS[4] last hash
-- KEYS[5..] the streams, hashes and sorted sets the operations write to, named by index
-- ARGV[1] fencing token
-- then 8 values per operation: op, job, scheduled ms, key index A, key index B, keep, payload, aux
--   emit: if scheduled > progress[job]: XADD A message=payload sig=aux (aux: signature or '');
--         progress[job] = scheduled; last[job] = payload
--   miss: if scheduled > progress[job]: HSET A aux(run id) payload(run record); ZADD B scheduled aux;
--         keep at most `keep` records in A/B (oldest dropped); progress[job] = scheduled
--   base: progress[job] = max(progress[job], scheduled); schedules[job] = payload (the schedule digest)
-- Returns {-1} when the caller does not hold the lease (nothing is written), else {emitted, missed, duplicates}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local emitted, missed, duplicates = 0, 0, 0
for i = 2, #ARGV, 8 do
    local op, job, scheduled = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local a, b = KEYS[tonumber(ARGV[i + 3])], KEYS[tonumber(ARGV[i + 4])]
    local keep, payload, aux = tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7]
    local progress = tonumber(redis.call('HGET', KEYS[2], job) or '-1')
    if op == 'base' then
        if scheduled > progress then
            redis.call('HSET', KEYS[2], job, scheduled)
        end
        redis.call('HSET', KEYS[3], job, payload)
    elseif scheduled <= progress then
        duplicates = duplicates + 1
    elseif op == 'emit' then
        redis.call('XADD', a, '*', 'message', payload, 'sig', aux)
        redis.call('HSET', KEYS[2], job, scheduled)
        redis.call('HSET', KEYS[4], job, payload)
        emitted = emitted + 1
    elseif op == 'miss' then
        redis.call('HSET', a, aux, payload)
        redis.call('ZADD', b, scheduled, aux)
        local excess = redis.call('ZCARD', b) - keep
        if excess > 0 then
            local old = redis.call('ZRANGE', b, 0, excess - 1)
            redis.call('HDEL', a, unpack(old))
            redis.call('ZREMRANGEBYRANK', b, 0, excess - 1)
        end
        redis.call('HSET', KEYS[2], job, scheduled)
        missed = missed + 1
    end
end
return {emitted, missed, duplicates}
