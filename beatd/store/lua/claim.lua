-- Start runs of a batch of fires, each under its job's overlap policy, each in one uninterrupted step.
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3..] named by the items' *_key fields
-- ARGV[1] worker id (its consumer name)     ARGV[2] now, ms     ARGV[3] consumer group
-- then one ITEM per fire (beatd.store.runs.ClaimItem):
--   fire_id, entry_id, lease_end_ms, overlap (allow | skip | buffer_one | replace),
--   message and signature (kept only when the fire is held back by buffer_one),
--   record: the 'running' run record JSON without run_id and attempt (put in front here), score_ms: its score,
--   origin: 'scheduled' (fires of the schedule and catch-up) | 'requested' (manual, backfill: never held back;
--   the worker defers one that finds its job running instead of skipping it),
--   scheduled_ms: the fire's scheduled instant,
--   busy_here: '1' when a run of the job that started at or before the fire's instant executes on this worker
--   (this worker's other runs of the job are its own to order: it runs them one after another),
--   lost_run, lost_expect, lost_record: a redelivered fire's previous attempt (run id), the record the worker
--   read for it, and that record marked 'lost'; written only if the stored record is still the one read, so a
--   slow former owner's end is never overwritten ('' when there is none),
--   stream_key: the queue stream, active_key: active runs hash of the job, leases_key: leases hash of the queue,
--   buffer_key: buffer hash of the job, records_key / index_key: run records hash / index of the job,
--   deadline_ms: the latest instant the fire may start (its job's `expires`; 0: none), by Redis's clock (TIME),
--   alerts_key: the alert events stream when the job has a rule about its lost record (noted with it), else ''
-- A fire past its deadline that has no attempt yet is not started ({'expired'}); a retry or a reclaimed
-- attempt goes on (the fire did start in time).
-- A fire whose stream entry is no longer pending for this worker (a reclaimer took it over) is not started,
-- nor a redelivered fire whose previous attempt `overlap: replace` had asked to stop before its worker died
-- ({'replaced', why}: it was replaced, so it does not come back).
-- Runs whose lease ended (their worker died) no longer count as running (see running_elsewhere). A run on another worker that started
-- at or before the fire's instant overlaps it (the policy decides); one that started later (a backlog worked
-- off after a delay) does not: the fire is deferred until it ends ({'defer'}), never skipped for it. A fire whose write Redis refuses gets
-- {'error', message}; the rest go on (no rollback: a refusal after the first write of a fire keeps those before).
-- Returns one reply per fire: {'run', attempt, cancelled run ids...} | {'skip'} | {'buffered'} | {'defer'} |
-- {'taken'} | {'expired'} | {'replaced', why} | {'error', text}
local ITEM = {'fire_id', 'entry_id', 'lease_end_ms', 'overlap', 'message', 'signature', 'record', 'score_ms', 'origin', 'scheduled_ms', 'busy_here', 'lost_run', 'lost_expect', 'lost_record', 'stream_key', 'active_key', 'leases_key', 'buffer_key', 'records_key', 'index_key', 'deadline_ms', 'alerts_key'}
local worker, now, group = ARGV[1], tonumber(ARGV[2]), ARGV[3]
-- Deadlines are judged by Redis's clock, as the leader's upkeep judges them and as the CLI stamps a manual
-- fire's emitted_at: a worker whose host clock is wrong neither runs a fire past its deadline nor expires one
-- in time.
local time = redis.call('TIME')
local redis_now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Live runs of the job on other workers: those that started at or before `scheduled`, and those after.
-- A run whose worker died no longer counts; it is dropped, and so is its cancel request unless its entry is
-- still pending: the claim that reclaims the entry (or its dead letter) reads the request and forgets it, so a
-- run replaced while its worker was dead is recorded cancelled, not run again.
local function running_elsewhere(active, stream, scheduled)
    local entries = redis.call('HGETALL', active)
    local before, after = {}, {}
    for i = 1, #entries, 2 do
        local lease = cjson.decode(entries[i + 1])
        if tonumber(lease['lease_until']) < now then
            redis.call('HDEL', active, entries[i])
            local entry = lease['entry']
            if not entry or #redis.call('XPENDING', stream, group, entry, entry, 1) == 0 then
                redis.call('HDEL', KEYS[2], entries[i])
            end
        elseif lease['worker'] ~= worker then
            table.insert(tonumber(lease['since'] or 0) <= scheduled and before or after, entries[i])
        end
    end
    return before, after
end

local function claim(item)
    if not pending_for(item.stream_key, group, item.entry_id, worker) then
        return {'taken'}
    end
    if item.lost_run ~= '' then
        if redis.call('HGET', item.records_key, item.lost_run) == item.lost_expect then
            redis.call('HSET', item.records_key, item.lost_run, item.lost_record)
            note_alert(item.alerts_key, item.lost_record)
        end
        redis.call('HDEL', item.active_key, item.lost_run)
        local replaced = redis.call('HGET', KEYS[2], item.lost_run)
        redis.call('HDEL', KEYS[2], item.lost_run)
        if replaced and item.overlap == 'replace' then
            return {'replaced', replaced}
        end
    end
    local deadline = tonumber(item.deadline_ms)
    if deadline > 0 and redis_now > deadline and not redis.call('HGET', KEYS[1], item.fire_id) then
        return {'expired'}
    end
    local policy = item.overlap
    local running, later = {}, {}
    if policy ~= 'allow' then
        running, later = running_elsewhere(item.active_key, item.stream_key, tonumber(item.scheduled_ms))
    end
    if #running == 0 and item.busy_here ~= '1' and #later > 0 then
        if policy ~= 'replace' then
            return {'defer'}
        end
        running = later
    end
    if #running > 0 or item.busy_here == '1' then
        if policy == 'skip' or policy == 'buffer_one' and item.origin ~= 'scheduled' then
            return {'skip'}
        elseif policy == 'buffer_one' then
            if redis.call('EXISTS', item.buffer_key) == 1 then
                return {'skip'}
            end
            redis.call('HSET', item.buffer_key, 'message', item.message, 'sig', item.signature)
            return {'buffered'}
        end
        for _, id in ipairs(running) do  -- replace (a run on this worker is stopped by the worker)
            redis.call('HSET', KEYS[2], id, 'replaced by ' .. item.fire_id)
        end
    end
    local attempt = redis.call('HINCRBY', KEYS[1], item.fire_id, 1)
    local run = item.fire_id .. '#' .. attempt
    local lease = cjson.encode({worker = worker, entry = item.entry_id, lease_until = tonumber(item.lease_end_ms),
        since = now})
    redis.call('HSET', item.active_key, run, lease)
    redis.call('HSET', item.leases_key, item.entry_id, item.lease_end_ms)
    local record = '{"run_id":' .. cjson.encode(run) .. ',"attempt":' .. attempt .. ',' .. string.sub(item.record, 2)
    redis.call('HSET', item.records_key, run, record)
    redis.call('ZADD', item.index_key, item.score_ms, run)
    local reply = {'run', attempt}
    for _, id in ipairs(running) do
        table.insert(reply, id)
    end
    return reply
end

local replies = {}
for _, item in ipairs(items(4, ITEM)) do
    local ok, reply = pcall(claim, item)
    if not ok then
        reply = {'error', type(reply) == 'table' and reply.err or tostring(reply)}
    end
    table.insert(replies, reply)
end
return replies
