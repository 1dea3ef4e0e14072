-- Start a run of a fire, applying the job's overlap policy, atomically.
-- KEYS[1] active runs hash of the job     KEYS[2] leases hash of the queue     KEYS[3] attempts hash
-- KEYS[4] buffer hash of the job          KEYS[5] cancel hash
-- KEYS[6] run records hash of the job     KEYS[7] run records index (sorted set) of the job
-- ARGV[1] fire id     ARGV[2] stream entry id     ARGV[3] worker id     ARGV[4] now, ms
-- ARGV[5] lease end, ms     ARGV[6] overlap: allow | skip | buffer_one | replace
-- ARGV[7] message JSON     ARGV[8] signature (kept with a buffered fire)
-- ARGV[9] the 'running' run record JSON, without run_id and attempt (filled in here)     ARGV[10] its score
-- ARGV[11] 'scheduled' for fires of the schedule (and catch-up), else 'requested' (manual, backfill):
--          a requested fire is never held in the buffer; the worker defers it instead of skipping it
-- Runs whose lease ended (their worker died) no longer count as running.
-- Returns {'run', attempt, cancelled run ids...} | {'skip'} | {'buffered'}
local now = tonumber(ARGV[4])
local active = redis.call('HGETALL', KEYS[1])
local running = {}
for i = 1, #active, 2 do
    local lease = cjson.decode(active[i + 1])
    if tonumber(lease['lease_until']) < now then
        redis.call('HDEL', KEYS[1], active[i])
    else
        table.insert(running, active[i])
    end
end
local policy = ARGV[6]
if #running > 0 then
    if policy == 'skip' or policy == 'buffer_one' and ARGV[11] ~= 'scheduled' then
        return {'skip'}
    elseif policy == 'buffer_one' and ARGV[11] == 'scheduled' then
        if redis.call('EXISTS', KEYS[4]) == 1 then
            return {'skip'}
        end
        redis.call('HSET', KEYS[4], 'message', ARGV[7], 'sig', ARGV[8])
        return {'buffered'}
    elseif policy == 'replace' then
        for _, id in ipairs(running) do
            redis.call('HSET', KEYS[5], id, 'replaced by ' .. ARGV[1])
        end
    end
end
local attempt = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local run = ARGV[1] .. '#' .. attempt
redis.call('HSET', KEYS[1], run, cjson.encode({worker = ARGV[3], entry = ARGV[2], lease_until = tonumber(ARGV[5])}))
redis.call('HSET', KEYS[2], ARGV[2], ARGV[5])
local record = cjson.decode(ARGV[9])
record['run_id'] = run
record['attempt'] = attempt
redis.call('HSET', KEYS[6], run, cjson.encode(record))
redis.call('ZADD', KEYS[7], ARGV[10], run)
local reply = {'run', attempt}
if policy == 'replace' then
    for _, id in ipairs(running) do
        table.insert(reply, id)
    end
end
return reply
