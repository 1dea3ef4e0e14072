-- Apply a batch of the leader's decisions atomically, fenced by the lease.
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash      KEYS[4] last hash
-- KEYS[5..] the streams, hashes and sorted sets the operations write to, named by index
-- ARGV[1] fencing token
-- then 9 values per operation: op, job, scheduled ms, key index A, key index B, keep, payload, aux, score
--   emit: if scheduled > progress[job]: XADD A message=payload sig=aux (aux: signature or '');
--         progress[job] = scheduled; last[job] = payload
--   miss: if scheduled > progress[job]: HSET A aux(run id) payload(run record); ZADD B score aux
--         (score: when the record was written, ms);
--         keep at most `keep` records in A/B (oldest dropped); progress[job] = scheduled
--   base: progress[job] = max(progress[job], scheduled); schedules[job] = payload (the schedule digest)
--   forget: schedules[job] is removed (the job left the config or was disabled: it restarts from now)
-- A step whose write Redis refuses (out of memory, a key of the wrong type) is skipped, progress unchanged.
-- Returns {-1} when the caller does not hold the lease (nothing is written), else
-- {emitted, missed, duplicates, job, error, job, error, ...} with one job/error pair per refused step.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local emitted, missed, duplicates = 0, 0, 0
local refused = {}
local function refuse(job, reply)
    table.insert(refused, job)
    table.insert(refused, reply.err)
end
for i = 2, #ARGV, 9 do
    local op, job, scheduled = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local a, b = KEYS[tonumber(ARGV[i + 3])], KEYS[tonumber(ARGV[i + 4])]
    local keep, payload, aux, score = tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    local progress = tonumber(redis.call('HGET', KEYS[2], job) or '-1')
    if op == 'base' then
        if scheduled > progress then
            redis.call('HSET', KEYS[2], job, scheduled)
        end
        redis.call('HSET', KEYS[3], job, payload)
    elseif op == 'forget' then
        redis.call('HDEL', KEYS[3], job)
    elseif scheduled <= progress then
        duplicates = duplicates + 1
    elseif op == 'emit' then
        local reply = redis.pcall('XADD', a, '*', 'message', payload, 'sig', aux)
        if type(reply) == 'table' and reply.err then
            refuse(job, reply)
        else
            redis.call('HSET', KEYS[2], job, scheduled)
            redis.call('HSET', KEYS[4], job, payload)
            emitted = emitted + 1
        end
    elseif op == 'miss' then
        local reply = redis.pcall('HSET', a, aux, payload)
        if type(reply) == 'table' and reply.err then
            refuse(job, reply)
        else
            redis.call('ZADD', b, score, aux)
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
end
local result = {emitted, missed, duplicates}
for _, item in ipairs(refused) do
    table.insert(result, item)
end
return result
