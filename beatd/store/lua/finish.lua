-- Record the ends of a batch of runs (or of fires not run) and acknowledge their stream entries; each end is
-- one uninterrupted step: its record is written in the same step that acknowledges its entry.
-- KEYS[1] attempts hash     KEYS[2] cancel hash     KEYS[3] dead-letter stream
-- KEYS[4..] the hashes, sorted sets and streams of the runs' jobs and queues, named by index below
-- ARGV[1] consumer group     ARGV[2] dead-letter max length     ARGV[3] now, ms
-- then 21 values per end:
--   run id, stream entry id ('' when there is none), run record JSON ('' writes none), its score (ms),
--   records to keep, drop records scored below this (ms; 0 keeps all),
--   then: none | retry | dead, message JSON, signature, retry at (ms), dead-letter reason, fire id,
--   '1' when the fire is done (forget its attempts),
--   the fire-level 'dead' record JSON ('' writes none; stored as '{fire id}#dead', scored now),
--   key indexes: active runs hash of the job, leases hash of the queue, queue stream, run records hash of
--   the job, run records index (sorted set) of the job, buffer hash of the job, retry sorted set of the queue
-- A fire held back by overlap: buffer_one goes to the queue once no run of its job is left.
-- An end whose write Redis refuses is reported and the rest go on; Redis keeps the writes made before the
-- refusal (it has no rollback), which is why the entry is acknowledged last.
-- Returns {run id, error, run id, error, ...}: one pair per refused end (empty when all were written).
local function put_record(records, index, run, record, score)
    redis.call('HSET', records, run, record)
    redis.call('ZADD', index, score, run)
end

local function prune(records, index, keep, oldest)
    if oldest > 0 then
        local expired = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. oldest, 'LIMIT', 0, 1000)
        if #expired > 0 then
            redis.call('HDEL', records, unpack(expired))
            redis.call('ZREM', index, unpack(expired))
        end
    end
    local excess = redis.call('ZCARD', index) - keep
    if excess > 0 then
        local old = redis.call('ZRANGE', index, 0, math.min(excess, 1000) - 1)
        redis.call('HDEL', records, unpack(old))
        redis.call('ZREM', index, unpack(old))
    end
end

local function finish(i)
    local run, entry, record, then_ = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 6]
    local message, sig, fire = ARGV[i + 7], ARGV[i + 8], ARGV[i + 11]
    local active, leases, stream = KEYS[tonumber(ARGV[i + 14])], KEYS[tonumber(ARGV[i + 15])], KEYS[tonumber(ARGV[i + 16])]
    local records, index = KEYS[tonumber(ARGV[i + 17])], KEYS[tonumber(ARGV[i + 18])]
    local buffer, retry = KEYS[tonumber(ARGV[i + 19])], KEYS[tonumber(ARGV[i + 20])]
    if record ~= '' then
        put_record(records, index, run, record, ARGV[i + 3])
    end
    if ARGV[i + 13] ~= '' then
        put_record(records, index, fire .. '#dead', ARGV[i + 13], ARGV[3])
    end
    prune(records, index, tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]))
    if then_ == 'retry' then
        redis.call('ZADD', retry, ARGV[i + 9], cjson.encode({message = message, sig = sig}))
    elseif then_ == 'dead' then
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'message', message, 'sig', sig,
            'reason', ARGV[i + 10], 'queue', stream, 'run_id', run)
    end
    if ARGV[i + 12] == '1' then
        redis.call('HDEL', KEYS[1], fire)
    end
    -- Last, so an end whose writes Redis refuses leaves its entry pending, to be reclaimed.
    redis.call('HDEL', active, run)
    redis.call('HDEL', KEYS[2], run)
    if entry ~= '' then
        redis.call('HDEL', leases, entry)
        redis.call('XACK', stream, ARGV[1], entry)
        redis.call('XDEL', stream, entry)
    end
    if redis.call('HLEN', active) == 0 and redis.call('EXISTS', buffer) == 1 then
        local held = redis.call('HMGET', buffer, 'message', 'sig')
        redis.call('DEL', buffer)
        redis.call('XADD', stream, '*', 'message', held[1], 'sig', held[2])
    end
end

local refused = {}
for i = 4, #ARGV, 21 do
    local ok, err = pcall(finish, i)
    if not ok then
        table.insert(refused, ARGV[i])
        table.insert(refused, type(err) == 'table' and err.err or tostring(err))
    end
end
return refused
