-- Take the leader lease if nobody holds it; record the leader change in the audit log.
-- KEYS[1] leader lease key      KEYS[2] fencing epoch counter      KEYS[3] audit stream
-- ARGV[1] replica id            ARGV[2] lease, ms                  ARGV[3] audit record JSON
-- ARGV[4] audit stream max length
-- Returns {token, seconds, microseconds}: the fencing token "{epoch}:{replica}" when acquired ('' when the
-- lease is held), and Redis's TIME, the clock by which the beat decides what is due. TIME is read after the
-- writes, so the script is safe under verbatim script replication too.
local token = ''
if redis.call('EXISTS', KEYS[1]) == 0 then
    local epoch = redis.call('INCR', KEYS[2])
    token = epoch .. ':' .. ARGV[1]
    redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', 'leader', 'token', token, 'record', ARGV[3])
end
local now = redis.call('TIME')
return {token, now[1], now[2]}
