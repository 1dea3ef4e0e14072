-- Extend the lease, only if the caller still holds it.
-- KEYS[1] leader lease key
-- ARGV[1] fencing token         ARGV[2] lease, ms
-- Returns {renewed, seconds, microseconds}: renewed 1, or 0 when the caller no longer holds the lease, and
-- Redis's TIME (read after the write), the clock by which the beat decides what is due.
local renewed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    renewed = 1
end
local now = redis.call('TIME')
return {renewed, now[1], now[2]}
