-- Extend the leases of a worker's runs that are still registered to it (a run whose end was written, or that
-- was given back or taken over meanwhile, is left alone: nothing is brought back). An entry whose lease a
-- reclaimer removed keeps no lease: it is the reclaimer's now, or gone (dead-lettered), and a lease written
-- back for it would never be deleted.
-- KEYS[1..] named by the items' *_key fields
-- ARGV[1] worker id     ARGV[2] new lease end, ms
-- then one ITEM per run (beatd.store.runs.RunLease; its records_key and index_key are not used here)
-- Returns how many leases were extended.
local ITEM = {'run_id', 'entry_id', 'active_key', 'leases_key', 'records_key', 'index_key'}
local extended = 0
for _, item in ipairs(items(3, ITEM)) do
    local current = redis.call('HGET', item.active_key, item.run_id)
    if current then
        local lease = cjson.decode(current)
        if lease['worker'] == ARGV[1] then
            lease['lease_until'] = tonumber(ARGV[2])
            redis.call('HSET', item.active_key, item.run_id, cjson.encode(lease))
            if redis.call('HEXISTS', item.leases_key, item.entry_id) == 1 then
                redis.call('HSET', item.leases_key, item.entry_id, ARGV[2])
            end
            extended = extended + 1
        end
    end
end
return extended
