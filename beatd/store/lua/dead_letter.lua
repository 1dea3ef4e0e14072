-- Move a stream entry that must not run (unknown job, bad JSON, forged, past its deadline...) to the dead
-- letters, and forget what earlier attempts of its fire left behind (a reclaimed or retried fire): its attempt
-- count, and the last attempt's active run and cancel request (that attempt's worker is gone).
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3] dead-letter stream     KEYS[4] queue stream
-- KEYS[5] leases hash of the queue     KEYS[6] / KEYS[7] active runs hash / run records hash of the job (used
-- only when ARGV[6] is set)
-- ARGV[1] consumer group     ARGV[2] dead-letter max length     ARGV[3] entry id     ARGV[4] message
-- ARGV[5] signature     ARGV[6] fire id ('' when the message names none)     ARGV[7] reason
-- ARGV[8..10] a redelivered fire's previous attempt (run id), the record read for it and that record marked
-- 'lost', written only if the stored record is still the one read (as claim.lua; '' when there is none)
-- Returns the attempts the fire had started (0 when none).
local fire, attempts = ARGV[6], 0
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'message', ARGV[4], 'sig', ARGV[5], 'reason', ARGV[7],
    'queue', KEYS[4])
if fire ~= '' then
    if ARGV[8] ~= '' and ARGV[9] ~= '' and redis.call('HGET', KEYS[7], ARGV[8]) == ARGV[9] then
        redis.call('HSET', KEYS[7], ARGV[8], ARGV[10])
    end
    attempts = tonumber(redis.call('HGET', KEYS[1], fire) or '0') or 0
    if attempts > 0 then
        local run = fire .. '#' .. attempts
        redis.call('HDEL', KEYS[6], run)
        redis.call('HDEL', KEYS[2], run)
    end
    redis.call('HDEL', KEYS[1], fire)
end
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('XACK', KEYS[4], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[4], ARGV[3])
return attempts
