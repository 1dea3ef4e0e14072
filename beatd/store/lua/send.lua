-- Push Celery task messages an operator asked for (beatd trigger, backfill): not fenced and moving no progress,
-- since each is a new fire of its own; each with its `sent` run record, and the audit record after the last.
-- KEYS[1] audit stream          KEYS[2..] the items' keys (*_key fields)
-- ARGV[1] the database the caller's connection uses          ARGV[2] audit record JSON ('' for none)
-- ARGV[3] audit max length
-- then one item per push (beatd.store.beat.LeaderWrite, kind `celery`: emit.lua's layout):
local ITEM = {'kind', 'job', 'scheduled_ms', 'queue_key', 'message', 'signature', 'runs_key', 'runs_index_key', 'run_id', 'record', 'written_ms', 'keep', 'celery_queue_key', 'celery_message', 'celery_db', 'base_ms', 'schedule_digest'}
--   HSET runs_key run_id record; in database celery_db (SELECTed, then ARGV[1] again) LPUSH celery_queue_key
--   celery_message; ZADD runs_index_key written_ms run_id and keep at most `keep` records.
-- Returns the number of messages pushed.
local pushed = 0
for _, item in ipairs(items(4, ITEM)) do
    redis.call('HSET', item.runs_key, item.run_id, item.record)
    if item.celery_db ~= ARGV[1] then
        redis.call('SELECT', tonumber(item.celery_db))
    end
    redis.call('LPUSH', item.celery_queue_key, item.celery_message)
    redis.call('SELECT', tonumber(ARGV[1]))
    redis.call('ZADD', item.runs_index_key, item.written_ms, item.run_id)
    local excess = redis.call('ZCARD', item.runs_index_key) - tonumber(item.keep)
    if excess > 0 then
        call_chunked('HDEL', item.runs_key, redis.call('ZRANGE', item.runs_index_key, 0, excess - 1))
        redis.call('ZREMRANGEBYRANK', item.runs_index_key, 0, excess - 1)
    end
    pushed = pushed + 1
end
if ARGV[2] ~= '' then
    local record = cjson.decode(ARGV[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'event', record['event'], 'record', ARGV[2])
end
return pushed
