-- Give the lease up at once (on shutdown), only if the caller still holds it.
-- KEYS[1] leader lease key
-- ARGV[1] fencing token
-- Returns 1 when released, 0 when the caller did not hold the lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
