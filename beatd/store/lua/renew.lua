-- Extend the lease, only if the caller still holds it.
-- KEYS[1] leader lease key
-- ARGV[1] fencing token         ARGV[2] lease, ms
-- Returns 1 when renewed, 0 when the caller no longer holds the lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
