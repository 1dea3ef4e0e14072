-- Apply history retention to jobs' run records (the leader's upkeep), fenced by the lease: for records written
-- without a prune (a claim's 'running' record, a dead letter's 'lost' one) and for jobs that stopped running.
-- KEYS[1] leader lease key     KEYS[2..] named by the items' *_key fields
-- ARGV[1] fencing token
-- then one ITEM per job (beatd.store.upkeep.Retention): keep: records to keep, oldest_ms: drop records scored
--   below this, records_key / index_key: run records hash / index of the job
-- Returns -1 when the caller does not hold the lease, else how many records were left after pruning, in all.
local ITEM = {'keep', 'oldest_ms', 'records_key', 'index_key'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local left = 0
for _, item in ipairs(items(2, ITEM)) do
    prune_history(item.records_key, item.index_key, tonumber(item.keep), tonumber(item.oldest_ms))
    left = left + redis.call('ZCARD', item.index_key)
end
return left
