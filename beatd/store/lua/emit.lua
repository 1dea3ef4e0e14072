-- Apply a batch of the leader's decisions atomically, fenced by the lease.
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash      KEYS[4] last hash
-- KEYS[5] the run-count bucket of now (each missed record counted there: prelude's tally_status)
-- KEYS[6..] the queue streams, run-record hashes and indexes and Celery queue lists the items name (*_key fields)
-- ARGV[1] fencing token      ARGV[2] the database the caller's connection uses
-- ARGV[3] the items, packed (beatd.store.codec; ARGV[4] how), one per write (beatd.store.beat.LeaderWrite; a
-- field a kind does not use is empty or 0):
local ITEM = {'kind', 'job', 'scheduled_ms', 'queue_key', 'message', 'signature', 'last_text', 'runs_key', 'runs_index_key', 'run_id', 'record', 'written_ms', 'keep', 'celery_queue_key', 'celery_message', 'celery_db', 'base_ms', 'schedule_digest', 'outbox_key', 'outbox_limit', 'alerts_key', 'celery_queue'}
--   emit:   if scheduled_ms > progress[job]: XADD queue_key message signature; progress[job] = scheduled_ms;
--           last[job] = last_text (what status shows of it: instant, trigger, config digest)
--   miss:   if scheduled_ms > progress[job]: HSET runs_key run_id record; ZADD runs_index_key written_ms run_id;
--           keep at most `keep` records (oldest dropped, in pieces: call_chunked); progress[job] = scheduled_ms;
--           with alerts_key (the job has alert rules), the record is noted as an alert event there (prelude)
--   celery: if scheduled_ms > progress[job]: the `sent` record as for miss; in database celery_db (SELECTed,
--           then ARGV[2] again), LPUSH celery_queue_key celery_message (a Celery worker BRPOPs it; a refused
--           SELECT or LPUSH removes the record and refuses the step); with outbox_key (a broker on another
--           server) XADD outbox_key queue celery_queue envelope celery_message instead (the queue's name a
--           value, no key: on a Redis Cluster it may hash to another slot), refused while the
--           outbox holds outbox_limit entries (the relay publishes it and deletes the entry);
--           progress[job] = scheduled_ms; last[job] = last_text
--   base:   progress[job] = max(progress[job], base_ms); schedules[job] = schedule_digest
-- A step whose first write Redis refuses (out of memory, a key of the wrong type), or whose job's progress is
-- not a number, is skipped and its progress left unchanged.
-- The progress of every job named is read once (HMGET); a run of emit steps writes its progress and last
-- emissions in one HSET each when it ends (before any other kind of step, and at the end): nothing between
-- its first XADD and those HSETs can stop the script (XADD is pcalled, KEYS[2] was read as a hash, and Redis
-- lets a script that has written go on past maxmemory), so a fire is never in a queue with its progress unmoved.
-- Returns {-1} when the caller does not hold the lease (nothing is written), else {1, codes, errors}: codes
-- one character per item, 'a' applied | 'd' duplicate (already at or behind progress) | 'r' refused, and
-- errors the error text of each refused item, in order.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end

local function refused(reply)
    return {'refused', reply.err}
end
local APPLIED, DUPLICATE = {'applied', ''}, {'duplicate', ''}  -- shared: a reply table per item costs

local current = {}  -- job -> its progress now (the stored text, or a number once moved here)
-- The run of emit steps not yet written: job, progress, ... and job, last emission, ... (a job emitted twice in
-- the run is named twice, its later values last: HSET keeps those).
local moved, lasts, run = {}, {}, 0

-- Write the progress and last emissions of the run of emit steps so far (in pieces of UNPACK_LIMIT values, an
-- even number: a field and its value stay in one piece).
local function write_moved()
    if run > 0 then
        call_chunked('HSET', KEYS[2], moved)
        pcall(call_chunked, 'HSET', KEYS[4], lasts)
        moved, lasts, run = {}, {}, 0
    end
end

local function note_moved(job, scheduled, last_text)
    current[job] = scheduled
    moved[run + 1], moved[run + 2] = job, scheduled
    lasts[run + 1], lasts[run + 2] = job, last_text
    run = run + 2
end

local function emit(item, scheduled)
    local reply = redis.pcall('XADD', item.queue_key, '*', 'message', item.message, 'sig', item.signature)
    if type(reply) == 'table' and reply.err then
        return refused(reply)
    end
    note_moved(item.job, scheduled, item.last_text)
    return APPLIED
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
    current[item.job] = scheduled
    return APPLIED
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
    current[item.job] = scheduled
    redis.pcall('HSET', KEYS[4], item.job, item.last_text)
    pcall(record_run, item)
    return APPLIED
end

-- One step of any kind, read into a table by field name (the emits of a burst take the path below instead).
local function step(item, raw, progress)
    if item.kind ~= 'emit' then
        write_moved()
    end
    if progress == nil then
        return {'refused', 'field ' .. item.job .. ' of ' .. KEYS[2] .. ' holds ' .. string.sub(raw, 1, 40) .. ', not epoch ms'}
    elseif item.kind == 'base' then
        if tonumber(item.base_ms) > progress then
            redis.call('HSET', KEYS[2], item.job, item.base_ms)
            current[item.job] = item.base_ms
        end
        redis.call('HSET', KEYS[3], item.job, item.schedule_digest)
        return APPLIED
    elseif tonumber(item.scheduled_ms) <= progress then
        return DUPLICATE
    elseif item.kind == 'emit' then
        return emit(item, item.scheduled_ms)
    elseif item.kind == 'celery' then
        return send(item, item.scheduled_ms)
    end
    return miss(item, item.scheduled_ms)
end

local values, starts, widths, defaults = packed_rows(3)
local at = offsets(ITEM)
local KIND, JOB, SCHEDULED, QUEUE, MESSAGE, SIGNATURE, LAST =
    at.kind, at.job, at.scheduled_ms, at.queue_key, at.message, at.signature, at.last_text
local count = #starts
local names, seen, named = {}, {}, 0
for k = 1, count do
    local job = values[starts[k] + JOB]
    if not seen[job] then
        seen[job] = true
        named = named + 1
        names[named] = job
    end
end
for job, value in pairs(hmget_chunked(KEYS[2], names)) do
    current[job] = value
end

local codes, errors = {}, {}
for k = 1, count do
    local start, width = starts[k], widths[k]
    local job = values[start + JOB]
    local raw = current[job]
    local progress = tonumber(raw or '-1')
    if values[start + KIND] == 'emit' and width >= LAST and progress ~= nil then
        -- an emit step read by position (a burst is thousands of these; the same as emit() above)
        local scheduled = values[start + SCHEDULED]
        if tonumber(scheduled) <= progress then
            codes[k] = 'd'
        else
            local reply = redis.pcall('XADD', KEYS[tonumber(values[start + QUEUE])], '*', 'message',
                values[start + MESSAGE], 'sig', values[start + SIGNATURE])
            if type(reply) == 'table' and reply.err then
                codes[k] = 'r'
                errors[#errors + 1] = reply.err
            else
                note_moved(job, scheduled, values[start + LAST])
                codes[k] = 'a'
            end
        end
    else
        local reply = step(packed_item(ITEM, values, start, width, defaults), raw, progress)
        codes[k] = string.sub(reply[1], 1, 1)
        if reply[1] == 'refused' then
            errors[#errors + 1] = reply[2]
        end
    end
end
write_moved()
return {1, table.concat(codes), errors}
