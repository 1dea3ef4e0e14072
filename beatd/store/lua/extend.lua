-- Extend the leases of a worker's runs that are still registered to it (a run whose end was written, or that
-- was given back or taken over meanwhile, is left alone: nothing is brought back).
-- KEYS[1..] the active runs hashes of the jobs and leases hashes of the queues, named by index below
-- ARGV[1] worker id     ARGV[2] new lease end, ms
-- then 4 values per run: run id, stream entry id, key indexes: active runs hash of the job, leases hash of the queue
-- Returns how many leases were extended.
local extended = 0
for i = 3, #ARGV, 4 do
    local run, entry = ARGV[i], ARGV[i + 1]
    local active, leases = KEYS[tonumber(ARGV[i + 2])], KEYS[tonumber(ARGV[i + 3])]
    local current = redis.call('HGET', active, run)
    if current then
        local lease = cjson.decode(current)
        if lease['worker'] == ARGV[1] then
            lease['lease_until'] = tonumber(ARGV[2])
            redis.call('HSET', active, run, cjson.encode(lease))
            redis.call('HSET', leases, entry, ARGV[2])
            extended = extended + 1
        end
    end
end
return extended
