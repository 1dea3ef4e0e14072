-- Start runs of a batch of fires, each under its job's overlap policy, each in one uninterrupted step.
-- KEYS[1] attempts hash     KEYS[2] cancel hash
-- KEYS[3..] the hashes and sorted sets of the runs' jobs and queues, named by index below
-- ARGV[1] worker id     ARGV[2] now, ms
-- then 14 values per fire:
--   fire id, stream entry id, lease end (ms), overlap (allow | skip | buffer_one | replace),
--   message JSON and signature (kept only when the fire is held back by buffer_one),
--   the 'running' run record JSON without run_id and attempt (put in front here), its score (ms),
--   'scheduled' (fires of the schedule and catch-up) | 'requested' (manual, backfill: never held back; the
--   worker defers one that finds its job running instead of skipping it),
--   key indexes: active runs hash of the job, leases hash of the queue, buffer hash of the job,
--   run records hash of the job, run records index (sorted set) of the job
-- Runs whose lease ended (their worker died) no longer count as running. Later fires of the batch see the
-- runs started by earlier ones. A fire whose write Redis refuses gets {'error', message}; the rest go on
-- (Redis has no rollback: a refusal after the first write of a fire leaves the writes before it).
-- Returns one reply per fire: {'run', attempt, cancelled run ids...} | {'skip'} | {'buffered'} | {'error', text}
local now = tonumber(ARGV[2])

local function running_runs(active)
    local entries = redis.call('HGETALL', active)
    local running = {}
    for i = 1, #entries, 2 do
        local lease = cjson.decode(entries[i + 1])
        if tonumber(lease['lease_until']) < now then
            redis.call('HDEL', active, entries[i])
        else
            table.insert(running, entries[i])
        end
    end
    return running
end

local function claim(i)
    local fire, entry, lease_end, policy = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local active, leases, buffer = KEYS[tonumber(ARGV[i + 9])], KEYS[tonumber(ARGV[i + 10])], KEYS[tonumber(ARGV[i + 11])]
    local records, index = KEYS[tonumber(ARGV[i + 12])], KEYS[tonumber(ARGV[i + 13])]
    local scheduled = ARGV[i + 8] == 'scheduled'
    local running = {}
    if policy ~= 'allow' then
        running = running_runs(active)
    end
    if #running > 0 then
        if policy == 'skip' or policy == 'buffer_one' and not scheduled then
            return {'skip'}
        elseif policy == 'buffer_one' then
            if redis.call('EXISTS', buffer) == 1 then
                return {'skip'}
            end
            redis.call('HSET', buffer, 'message', ARGV[i + 4], 'sig', ARGV[i + 5])
            return {'buffered'}
        end
        for _, id in ipairs(running) do  -- replace
            redis.call('HSET', KEYS[2], id, 'replaced by ' .. fire)
        end
    end
    local attempt = redis.call('HINCRBY', KEYS[1], fire, 1)
    local run = fire .. '#' .. attempt
    redis.call('HSET', active, run, cjson.encode({worker = ARGV[1], entry = entry, lease_until = tonumber(lease_end)}))
    redis.call('HSET', leases, entry, lease_end)
    local record = ARGV[i + 6]
    redis.call('HSET', records, run, '{"run_id":' .. cjson.encode(run) .. ',"attempt":' .. attempt .. ',' .. string.sub(record, 2))
    redis.call('ZADD', index, ARGV[i + 7], run)
    local reply = {'run', attempt}
    for _, id in ipairs(running) do
        table.insert(reply, id)
    end
    return reply
end

local replies = {}
for i = 3, #ARGV, 14 do
    local ok, reply = pcall(claim, i)
    if not ok then
        reply = {'error', type(reply) == 'table' and reply.err or tostring(reply)}
    end
    table.insert(replies, reply)
end
return replies
