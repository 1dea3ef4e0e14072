-- Give back fires claimed but not started (their worker is stopping): undo each claim, so the next worker
-- to take the entry runs the fire as if this one had never claimed it.
-- KEYS[1] attempts hash     KEYS[2] cancel hash
-- KEYS[3..] the hashes and sorted sets of the runs' jobs and queues, named by index below
-- ARGV[1] worker id
-- then 7 values per run: fire id, run id, stream entry id, key indexes: active runs hash of the job, leases
--   hash of the queue, run records hash of the job, run records index (sorted set) of the job
-- A run that is no longer this worker's (its lease ended and another worker took it) is left alone.
-- Returns how many claims were undone.
local undone = 0
for i = 2, #ARGV, 7 do
    local fire, run, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local active, leases = KEYS[tonumber(ARGV[i + 3])], KEYS[tonumber(ARGV[i + 4])]
    local records, index = KEYS[tonumber(ARGV[i + 5])], KEYS[tonumber(ARGV[i + 6])]
    local lease = redis.call('HGET', active, run)
    if lease and cjson.decode(lease)['worker'] == ARGV[1] then
        redis.call('HDEL', active, run)
        redis.call('HDEL', leases, entry)
        redis.call('HDEL', KEYS[2], run)
        redis.call('HDEL', records, run)
        redis.call('ZREM', index, run)
        if redis.call('HINCRBY', KEYS[1], fire, -1) <= 0 then
            redis.call('HDEL', KEYS[1], fire)
        end
        undone = undone + 1
    end
end
return undone
