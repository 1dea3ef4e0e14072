-- Move stream entries that must not run (unknown job, bad JSON, forged...) to the dead letters, and forget
-- what earlier attempts of their fires left behind (a reclaimed or retried fire): the attempt count, and the
-- last attempt's active run and cancel request (that attempt's worker is gone). Each entry in one step.
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3] dead-letter stream     KEYS[4..] named by *_key fields
-- ARGV[1] consumer group     ARGV[2] dead-letter max length     ARGV[3] the caller's consumer name (worker id)
-- then one ITEM per entry (beatd.store.runs.DeadLetter):
--   entry_id, message, signature, reason, fire_id ('' when the message names none),
--   lost_run, lost_expect, lost_record: a redelivered fire's previous attempt (run id), the record read for it
--   and that record marked 'lost', written only if the stored record is still the one read (as claim.lua;
--   '' when there is none),
--   stream_key: the queue stream, leases_key: leases hash of the queue, active_key / records_key: active runs
--   hash / run records hash of the job (unused without fire_id)
-- An entry no longer pending for the caller (a reclaimer took it over, and may be running it) is left alone.
-- A dead letter of a fire that had started attempts carries run_id '{fire id}#{attempts}', so `dead retry`
-- gives the fire its attempt count back (it runs as the next attempt, never over the records of earlier ones).
-- Returns one reply per entry: 'dead' | 'taken'.
local ITEM = {'entry_id', 'message', 'signature', 'reason', 'fire_id', 'lost_run', 'lost_expect', 'lost_record', 'stream_key', 'leases_key', 'active_key', 'records_key'}
local group, consumer = ARGV[1], ARGV[3]

local function dead_letter(item)
    if not pending_for(item.stream_key, group, item.entry_id, consumer) then
        return 'taken'
    end
    local fire, attempts = item.fire_id, 0
    if fire ~= '' then
        attempts = tonumber(redis.call('HGET', KEYS[1], fire) or '0') or 0
    end
    if attempts > 0 then
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'message', item.message, 'sig', item.signature,
            'reason', item.reason, 'queue', item.stream_key, 'run_id', fire .. '#' .. attempts)
    else
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'message', item.message, 'sig', item.signature,
            'reason', item.reason, 'queue', item.stream_key)
    end
    if fire ~= '' then
        if item.lost_run ~= '' and item.lost_expect ~= '' and
            redis.call('HGET', item.records_key, item.lost_run) == item.lost_expect then
            redis.call('HSET', item.records_key, item.lost_run, item.lost_record)
        end
        if attempts > 0 then
            local run = fire .. '#' .. attempts
            redis.call('HDEL', item.active_key, run)
            redis.call('HDEL', KEYS[2], run)
        end
        redis.call('HDEL', KEYS[1], fire)
    end
    redis.call('HDEL', item.leases_key, item.entry_id)
    redis.call('XACK', item.stream_key, group, item.entry_id)
    redis.call('XDEL', item.stream_key, item.entry_id)
    return 'dead'
end

local replies = {}
for _, item in ipairs(items(4, ITEM)) do
    replies[#replies + 1] = dead_letter(item)
end
return replies
