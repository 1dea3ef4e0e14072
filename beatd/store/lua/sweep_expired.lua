-- Record waiting fires past their start deadline `expired` and delete their entries (the leader's upkeep),
-- fenced by the lease; a fire delivered to a worker meanwhile is left to it (the worker checks the deadline),
-- and so is a fire that has started attempts (a retry, a fire put back by `dead retry`: it started in time, and
-- claim.lua lets it go on), so no attempt count is ever left behind.
-- KEYS[1] leader lease key     KEYS[2] queue stream     KEYS[3] attempts hash
-- KEYS[4] the run-count bucket of now (each expired record counted there: prelude's tally_status)
-- KEYS[5..] named by the items' *_key fields
-- ARGV[1] fencing token        ARGV[2] consumer group
-- ARGV[3] ended stream max length     ARGV[4] ended stream TTL, ms
-- then one ITEM per fire (beatd.store.upkeep.ExpiredFire): job (not used here), fire_id, entry_id, record: the
--   'expired' run record JSON, score_ms: its score, keep / oldest_ms: history retention (as finish.lua),
--   records_key / index_key: run records hash / index of the job, ended_key: ended stream of the job (each
--   expired fire is appended there: fire_id, run_id, status 'expired'), alerts_key: the alert events stream
--   when the job has alert rules (the record is noted there), else empty
-- Returns -1 when the caller does not hold the lease, else the entry ids expired.
local ITEM = {'job', 'fire_id', 'entry_id', 'record', 'score_ms', 'keep', 'oldest_ms', 'records_key', 'index_key', 'ended_key', 'alerts_key'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local last = last_delivered(KEYS[2], ARGV[2])
local done = {}
for _, item in ipairs(items(5, ITEM)) do
    if entry_after(item.entry_id, last) and redis.call('HEXISTS', KEYS[3], item.fire_id) == 0
        and #redis.call('XRANGE', KEYS[2], item.entry_id, item.entry_id) == 1 then
        redis.call('XDEL', KEYS[2], item.entry_id)
        local run = cjson.decode(item.record)['run_id']
        redis.call('HSET', item.records_key, run, item.record)
        redis.call('ZADD', item.index_key, item.score_ms, run)
        prune_history(item.records_key, item.index_key, tonumber(item.keep), tonumber(item.oldest_ms))
        note_alert(item.alerts_key, item.record)
        tally_status(KEYS[4], 'expired')
        note_end(item.ended_key, ARGV[3], ARGV[4], item.fire_id, run, 'expired')
        done[#done + 1] = item.entry_id
    end
end
return done
