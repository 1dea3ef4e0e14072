-- Give back fires claimed but not started (their worker is stopping): undo each claim, so the next worker
-- to take the entry runs the fire as if this one had never claimed it.
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3..] named by the items' *_key fields
-- ARGV[1] worker id
-- then one ITEM per run (beatd.store.runs.RunLease): run_id, entry_id, active_key: active runs hash of the job,
--   leases_key: leases hash of the queue, records_key / index_key: run records hash / index of the job
-- A run that is no longer this worker's (its lease ended and another worker took it) is left alone.
-- Returns how many claims were undone.
local ITEM = {'run_id', 'entry_id', 'active_key', 'leases_key', 'records_key', 'index_key'}
local undone = 0
for _, item in ipairs(items(2, ITEM)) do
    local run = item.run_id
    local fire = string.match(run, '^(.*)#[^#]*$')
    local lease = redis.call('HGET', item.active_key, run)
    if lease and cjson.decode(lease)['worker'] == ARGV[1] then
        redis.call('HDEL', item.active_key, run)
        redis.call('HDEL', item.leases_key, item.entry_id)
        redis.call('HDEL', KEYS[2], run)
        redis.call('HDEL', item.records_key, run)
        redis.call('ZREM', item.index_key, run)
        if redis.call('HINCRBY', KEYS[1], fire, -1) <= 0 then
            redis.call('HDEL', KEYS[1], fire)
        end
        undone = undone + 1
    end
end
return undone
