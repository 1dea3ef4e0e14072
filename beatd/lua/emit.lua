-- Apply a batch of the leader's decisions atomically, fenced by the lease.
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash      KEYS[4] last hash
-- KEYS[5..] streams the operations write to (queues and run-record streams), named by index
-- ARGV[1] fencing token
-- then 6 values per operation: op, job, scheduled ms, stream index (into KEYS), max length, payload
--   emit: if scheduled > progress[job]: XADD stream message=payload; progress[job] = scheduled; last[job] = payload
--   miss: if scheduled > progress[job]: XADD stream (capped) record=payload; progress[job] = scheduled
--   base: progress[job] = max(progress[job], scheduled); schedules[job] = payload (the schedule digest)
-- Returns {-1} when the caller does not hold the lease (nothing is written), else {emitted, missed, duplicates}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local emitted, missed, duplicates = 0, 0, 0
for i = 2, #ARGV, 6 do
    local op, job, scheduled = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local stream, maxlen, payload = KEYS[tonumber(ARGV[i + 3])], ARGV[i + 4], ARGV[i + 5]
    local progress = tonumber(redis.call('HGET', KEYS[2], job) or '-1')
    if op == 'base' then
        if scheduled > progress then
            redis.call('HSET', KEYS[2], job, scheduled)
        end
        redis.call('HSET', KEYS[3], job, payload)
    elseif scheduled <= progress then
        duplicates = duplicates + 1
    elseif op == 'emit' then
        redis.call('XADD', stream, '*', 'message', payload)
        redis.call('HSET', KEYS[2], job, scheduled)
        redis.call('HSET', KEYS[4], job, payload)
        emitted = emitted + 1
    elseif op == 'miss' then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'record', payload)
        redis.call('HSET', KEYS[2], job, scheduled)
        missed = missed + 1
    end
end
return {emitted, missed, duplicates}
