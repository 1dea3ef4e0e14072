-- Record the ends of a batch of runs (or of fires not run) and acknowledge their stream entries; each end is
-- one uninterrupted step: its record is written in the same step that acknowledges its entry.
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3] dead-letter stream     KEYS[4..] named by *_key fields
-- ARGV[1] consumer group     ARGV[2] dead-letter max length     ARGV[3] now, ms
-- ARGV[4] ended stream max length     ARGV[5] ended stream TTL, ms
-- then one ITEM per end (beatd.store.runs.FinishItem):
--   run_id, entry_id ('' when there is none), record: run record JSON ('' writes none), score_ms: its score,
--   keep: records to keep, oldest_ms: drop records scored below this (0 keeps all),
--   then: none | retry | dead, message, signature, retry_at_ms, reason (of a dead letter), fire_id,
--   fire_done: '1' when the fire is done (forget its attempts),
--   end_status: the status that ended the fire ('' when it is not done): appended with the fire id and the run
--   id of its ending record to ended_key, the job's ended stream (prelude's note_end: ARGV[4], ARGV[5]),
--   dead_record: the fire-level 'dead' record JSON ('' writes none; scored now), dead_run_id: its run id
--   ('{fire id}#dead-{attempt}': each time a fire runs out of attempts it gets a record of its own),
--   active_key: active runs hash of the job, leases_key: leases hash of the queue, stream_key: queue stream,
--   records_key / index_key: run records hash / index of the job, buffer_key: buffer hash of the job,
--   retry_key: retry sorted set of the queue, ended_key: ended stream of the job,
--   alerts_key: the alert events stream when the job has alert rules (both records noted there), else empty
--   job, run_status: the status of record ('' when none), tally_key: the run-count bucket hash of now (status ->
--   runs; PEXPIRE tally_ttl_ms), failing_key: job -> fire id of its last fire when that ended dead
-- A fire held back by overlap: buffer_one goes to the queue once no run of its job is left.
-- An end whose write Redis refuses is reported and the rest go on; Redis keeps the writes made before the
-- refusal (it has no rollback), which is why the entry is acknowledged last.
-- Returns {run id, error, run id, error, ...}: one pair per refused end (empty when all were written).
local ITEM = {'run_id', 'entry_id', 'record', 'score_ms', 'keep', 'oldest_ms', 'then_', 'message', 'signature', 'retry_at_ms', 'reason', 'fire_id', 'fire_done', 'end_status', 'dead_record', 'dead_run_id', 'active_key', 'leases_key', 'stream_key', 'records_key', 'index_key', 'buffer_key', 'retry_key', 'ended_key', 'alerts_key', 'job', 'run_status', 'tally_key', 'tally_ttl_ms', 'failing_key'}

local function put_record(records, index, run, record, score)
    redis.call('HSET', records, run, record)
    redis.call('ZADD', index, score, run)
end

-- For the dashboard (beatd.client.dashboard): runs by status per time bucket, and which jobs are failing.
local function tally(item)
    if item.run_status ~= '' then
        redis.call('HINCRBY', item.tally_key, item.run_status, 1)
    end
    if item.dead_record ~= '' then
        redis.call('HINCRBY', item.tally_key, 'dead', 1)
    end
    redis.call('PEXPIRE', item.tally_key, item.tally_ttl_ms)
    if item.end_status == 'dead' then
        redis.call('HSET', item.failing_key, item.job, item.fire_id)
    elseif item.end_status ~= '' then
        redis.call('HDEL', item.failing_key, item.job)
    end
end

local function finish(item)
    local run, entry, stream = item.run_id, item.entry_id, item.stream_key
    if item.record ~= '' then
        put_record(item.records_key, item.index_key, run, item.record, item.score_ms)
    end
    if item.dead_record ~= '' then
        put_record(item.records_key, item.index_key, item.dead_run_id, item.dead_record, ARGV[3])
    end
    note_alert(item.alerts_key, item.record)
    note_alert(item.alerts_key, item.dead_record)
    prune_history(item.records_key, item.index_key, tonumber(item.keep), tonumber(item.oldest_ms))
    if item.then_ == 'retry' then
        redis.call('ZADD', item.retry_key, item.retry_at_ms, cjson.encode({message = item.message, sig = item.signature}))
    elseif item.then_ == 'dead' then
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'message', item.message, 'sig', item.signature,
            'reason', item.reason, 'queue', stream, 'run_id', run)
    end
    if item.fire_done == '1' then
        redis.call('HDEL', KEYS[1], item.fire_id)
    end
    -- Last, so an end whose writes Redis refuses leaves its entry pending, to be reclaimed.
    redis.call('HDEL', item.active_key, run)
    redis.call('HDEL', KEYS[2], run)
    if entry ~= '' then
        redis.call('HDEL', item.leases_key, entry)
        redis.call('XACK', stream, ARGV[1], entry)
        redis.call('XDEL', stream, entry)
    end
    if item.end_status ~= '' then
        local ending = item.dead_record ~= '' and item.dead_run_id or run
        note_end(item.ended_key, ARGV[4], ARGV[5], item.fire_id, ending, item.end_status)
    end
    tally(item)
    if redis.call('HLEN', item.active_key) == 0 and redis.call('EXISTS', item.buffer_key) == 1 then
        local held = redis.call('HMGET', item.buffer_key, 'message', 'sig')
        redis.call('DEL', item.buffer_key)
        redis.call('XADD', stream, '*', 'message', held[1], 'sig', held[2])
    end
end

local refused = {}
for _, item in ipairs(items(6, ITEM)) do
    local ok, err = pcall(finish, item)
    if not ok then
        table.insert(refused, item.run_id)
        table.insert(refused, type(err) == 'table' and err.err or tostring(err))
    end
end
return refused
