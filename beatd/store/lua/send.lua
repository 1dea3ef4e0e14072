-- Push Celery task messages an operator asked for (beatd trigger, backfill): not fenced and moving no progress,
-- since each is a new fire of its own; each with its `sent` run record, and the audit record after the last.
-- KEYS[1] audit stream          KEYS[2..] the items' keys (*_key fields)
-- ARGV[1] the database the caller's connection uses          ARGV[2] audit record JSON ('' for none)
-- ARGV[3] audit max length
-- then one item per push (beatd.store.beat.LeaderWrite, kind `celery`: emit.lua's layout):
local ITEM = {'kind', 'job', 'scheduled_ms', 'queue_key', 'message', 'signature', 'last_text', 'runs_key',
    'runs_index_key', 'run_id', 'record', 'written_ms', 'keep', 'celery_queue_key', 'celery_message', 'celery_db', 'base_ms',
    'schedule_digest', 'outbox_key', 'outbox_limit', 'alerts_key', 'celery_queue'}
--   HSET runs_key run_id record; in database celery_db (SELECTed, then ARGV[1] again) LPUSH celery_queue_key
--   celery_message (or, with outbox_key, XADD it to the outbox as emit.lua does); ZADD runs_index_key
--   written_ms run_id and keep at most `keep` records. A refused SELECT or LPUSH removes the record and refuses
--   that item (the others go on).
-- Returns {reply per item...}, each {'applied', ''} | {'refused', error text}.
local replies = {}
for _, item in ipairs(items(4, ITEM)) do
    local reply = redis.pcall('HSET', item.runs_key, item.run_id, item.record)
    if type(reply) == 'table' and reply.err then
        replies[#replies + 1] = {'refused', reply.err}
    else
        local failed = push_celery(item, ARGV[1])
        if failed then
            redis.call('HDEL', item.runs_key, item.run_id)
            replies[#replies + 1] = {'refused', failed.err}
        else
            pcall(record_run, item)
            replies[#replies + 1] = {'applied', ''}
        end
    end
end
if ARGV[2] ~= '' then
    local record = cjson.decode(ARGV[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'event', record['event'], 'record', ARGV[2])
end
return replies
