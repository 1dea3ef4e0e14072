-- Forget deleted runtime jobs (the leader's upkeep), fenced by the lease: for each name still absent from the
-- runtime jobs hash, delete its fields of the per-job hashes and the name from the deleted set; a name put again
-- meanwhile only leaves the set (its fields are the new job's).
-- KEYS[1] leader lease key     KEYS[2] runtime jobs hash   KEYS[3] deleted names set
-- KEYS[4] progress             KEYS[5] schedules           KEYS[6] last message       KEYS[7] paused
-- KEYS[8] failing              KEYS[9] alert state (fields open:{job}, success:{job}, mark:deadline:{job},
--                               mark:silence:{job})
-- ARGV[1] fencing token, then the names
-- Returns -1 when the caller does not hold the lease, else how many jobs' fields were deleted.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local forgotten = 0
for index = 2, #ARGV do
    local job = ARGV[index]
    if redis.call('HEXISTS', KEYS[2], job) == 0 then
        for key = 4, 8 do
            redis.call('HDEL', KEYS[key], job)
        end
        redis.call('HDEL', KEYS[9], 'open:' .. job, 'success:' .. job, 'mark:deadline:' .. job, 'mark:silence:' .. job)
        forgotten = forgotten + 1
    end
    redis.call('SREM', KEYS[3], job)
end
return forgotten
