-- Apply a batch of the leader's decisions atomically, fenced by the lease.
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash      KEYS[4] last hash
-- KEYS[5] the run-count bucket of now (each missed record counted there: prelude's tally_status)
-- KEYS[6..] the queue streams, run-record hashes and indexes and Celery queue lists the items name (*_key fields)
-- ARGV[1] fencing token      ARGV[2] the database the caller's connection uses
-- then one item per write (beatd.store.beat.LeaderWrite; a field a kind does not use is empty or 0):
local ITEM = {'kind', 'job', 'scheduled_ms', 'queue_key', 'message', 'signature', 'runs_key', 'runs_index_key', 'run_id', 'record', 'written_ms', 'keep', 'celery_queue_key', 'celery_message', 'celery_db', 'base_ms', 'schedule_digest', 'outbox_key', 'outbox_limit', 'alerts_key'}
--   emit:   if scheduled_ms > progress[job]: XADD queue_key message signature; progress[job] = scheduled_ms;
--           last[job] = message
--   miss:   if scheduled_ms > progress[job]: HSET runs_key run_id record; ZADD runs_index_key written_ms run_id;
--           keep at most `keep` records (oldest dropped, in pieces: call_chunked); progress[job] = scheduled_ms;
--           with alerts_key (the job has alert rules), the record is noted as an alert event there (prelude)
--   celery: if scheduled_ms > progress[job]: the `sent` record as for miss; in database celery_db (SELECTed,
--           then ARGV[2] again), LPUSH celery_queue_key celery_message (a Celery worker BRPOPs it; a refused
--           SELECT or LPUSH removes the record and refuses the step); with outbox_key (a broker on another
--           server) XADD outbox_key queue celery_queue_key envelope celery_message instead, refused while the
--           outbox holds outbox_limit entries (the relay publishes it and deletes the entry);
--           progress[job] = scheduled_ms; last[job] = message
--   base:   progress[job] = max(progress[job], base_ms); schedules[job] = schedule_digest
-- A step whose first write Redis refuses (out of memory, a key of the wrong type), or whose job's progress is
-- not a number, is skipped and its progress left unchanged.
-- Returns {-1} when the caller does not hold the lease (nothing is written), else {1, reply per item...},
-- each {'applied', ''} | {'duplicate', ''} (already at or behind progress) | {'refused', error text}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end

local function refused(reply)
    return {'refused', reply.err}
end

local function emit(item, scheduled)
    local reply = redis.pcall('XADD', item.queue_key, '*', 'message', item.message, 'sig', item.signature)
    if type(reply) == 'table' and reply.err then
        return refused(reply)
    end
    redis.call('HSET', KEYS[2], item.job, scheduled)
    redis.call('HSET', KEYS[4], item.job, item.message)
    return {'applied', ''}
end

local function miss(item, scheduled)
    local reply = redis.pcall('HSET', item.runs_key, item.run_id, item.record)
    if type(reply) == 'table' and reply.err then
        return refused(reply)
    end
    record_run(item)
    note_alert(item.alerts_key, item.record)
    tally_status(KEYS[5], 'missed')
    redis.call('HSET', KEYS[2], item.job, scheduled)
    return {'applied', ''}
end

-- The record is written first and undone if the push (or the SELECT of the broker's database) is refused, so a
-- refused step writes nothing. After the push nothing may stop the script (it is not rolled back: the task
-- would be queued with the job's progress unmoved, and the fire sent again): the progress HSET cannot fail
-- (KEYS[2] was read as a hash above, and Redis lets a script that has written go on past maxmemory), and the
-- bookkeeping after it (last emission, the record's index) is pcalled: a key of the wrong type loses that
-- bookkeeping, never the once.
local function send(item, scheduled)
    local reply = redis.pcall('HSET', item.runs_key, item.run_id, item.record)
    if type(reply) == 'table' and reply.err then
        return refused(reply)
    end
    local failed = push_celery(item, ARGV[2])
    if failed then
        redis.call('HDEL', item.runs_key, item.run_id)
        return refused(failed)
    end
    redis.call('HSET', KEYS[2], item.job, scheduled)
    redis.pcall('HSET', KEYS[4], item.job, item.message)
    pcall(record_run, item)
    return {'applied', ''}
end

local replies = {1}
for _, item in ipairs(items(3, ITEM)) do
    local raw = redis.call('HGET', KEYS[2], item.job)
    local progress = tonumber(raw or '-1')
    local reply
    if progress == nil then
        reply = {'refused', 'field ' .. item.job .. ' of ' .. KEYS[2] .. ' holds ' .. string.sub(raw, 1, 40) .. ', not epoch ms'}
    elseif item.kind == 'base' then
        if tonumber(item.base_ms) > progress then
            redis.call('HSET', KEYS[2], item.job, item.base_ms)
        end
        redis.call('HSET', KEYS[3], item.job, item.schedule_digest)
        reply = {'applied', ''}
    elseif tonumber(item.scheduled_ms) <= progress then
        reply = {'duplicate', ''}
    elseif item.kind == 'emit' then
        reply = emit(item, item.scheduled_ms)
    elseif item.kind == 'celery' then
        reply = send(item, item.scheduled_ms)
    else
        reply = miss(item, item.scheduled_ms)
    end
    replies[#replies + 1] = reply
end
return replies
