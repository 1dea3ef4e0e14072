-- Delete stale heartbeats (the leader's upkeep), fenced by the lease: each only if its value is still the one
-- the leader judged stale (a process that published since keeps its heartbeat).
-- KEYS[1] leader lease key     KEYS[2] heartbeat hash (replicas or workers)
-- ARGV[1] fencing token
-- then one ITEM per heartbeat (beatd.store.upkeep.StaleHeartbeat): member, digest: SHA-1 hex of the value read
-- Returns -1 when the caller does not hold the lease, else how many were deleted.
local ITEM = {'member', 'digest'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local gone = {}
for _, item in ipairs(items(2, ITEM)) do
    local value = redis.call('HGET', KEYS[2], item.member)
    if value and redis.sha1hex(value) == item.digest then
        gone[#gone + 1] = item.member
    end
end
return call_chunked('HDEL', KEYS[2], gone)
