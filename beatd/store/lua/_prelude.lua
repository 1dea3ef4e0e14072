-- The prelude of every beatd script (beatd.store.base.script puts it in front): the rules all scripts share.
-- UNPACK_LIMIT: most values handed to one unpack(); Redis's Lua stack takes about 8,000 (LUAI_MAXCSTACK), so
-- a longer list is sent in pieces. beatd.store.codec.UNPACK_LIMIT is the same number (a test checks).
local UNPACK_LIMIT = 1000

-- ALERT_EVENTS_LIMIT: most alert events waiting for the leader (beatd.defaults.ALERT_EVENTS_LIMIT, the same
-- number: a test checks).
local ALERT_EVENTS_LIMIT = 100000

-- TALLY_TTL_MS: how long a run-count bucket is kept after its last write (beatd.defaults.TALLY_TTL, the same
-- span: a test checks).
local TALLY_TTL_MS = 90000000

-- Count one run record of `status` in tally_key, the run-count bucket of now (status -> records; the
-- dashboard's overview sums them): finish.lua counts the runs that end, emit.lua the missed fires,
-- sweep_expired.lua the expired ones. Nothing when tally_key is nil.
local function tally_status(tally_key, status)
    if not tally_key then
        return
    end
    redis.call('HINCRBY', tally_key, status, 1)
    redis.call('PEXPIRE', tally_key, TALLY_TTL_MS)
end

-- redis.call(command, key, values...) in pieces of at most UNPACK_LIMIT values; returns the summed replies.
local function call_chunked(command, key, values)
    local total = 0
    for first = 1, #values, UNPACK_LIMIT do
        local reply = redis.call(command, key, unpack(values, first, math.min(first + UNPACK_LIMIT - 1, #values)))
        if type(reply) == 'number' then
            total = total + reply
        end
    end
    return total
end

-- Whether entry_id of stream_key is pending in group for consumer (not acknowledged, not taken over by another).
local function pending_for(stream_key, group, entry_id, consumer)
    local pending = redis.call('XPENDING', stream_key, group, entry_id, entry_id, 1)
    return #pending == 1 and pending[1][2] == consumer
end

-- The items of a batched call (see beatd.store.codec): ARGV from `first` on, #layout values each, as tables
-- keyed by field name. A field whose name ends in _key travels as an index into KEYS and comes back as the key.
local function items(first, layout)
    local is_key = {}
    for offset, name in ipairs(layout) do
        is_key[offset] = string.sub(name, -4) == '_key'
    end
    local width, list = #layout, {}
    for i = first, #ARGV - width + 1, width do
        local item = {}
        for offset, name in ipairs(layout) do
            local value = ARGV[i + offset - 1]
            if is_key[offset] then
                value = KEYS[tonumber(value)]
            end
            item[name] = value
        end
        list[#list + 1] = item
    end
    return list
end

-- text split at each occurrence of the one-character separator (plain, not a pattern).
local function split(text, separator)
    local parts, count, from = {}, 0, 1
    local find, sub = string.find, string.sub
    while true do
        local at = find(text, separator, from, true)
        count = count + 1
        if not at then
            parts[count] = sub(text, from)
            return parts
        end
        parts[count] = sub(text, from, at - 1)
        from = at + 1
    end
end

-- The rows of a packed batched call (beatd.store.codec, packed): ARGV[at] holds rows of values separated by
-- "\31", each row its width and then the values of one item in layout order; ARGV[at + 1] == 'json': a JSON
-- array of rows (of strings, without the width) instead. The first row holds each field's default; a row ends
-- at its last value that differs from its field's default. Returns values (every value, one flat list), starts
-- and widths (per item after the defaults row: the index in values just before its first value, and how many
-- values it has) and defaults (offset -> the field's default): item k's value at offset o is
-- values[starts[k] + o] when o <= widths[k], else defaults[o]. Read by position, a batch costs no table per item
-- (packed_item() makes one, for the rarer kinds). A field whose name ends in _key is an index into KEYS (0: none).
local function packed_rows(at)
    local values
    if ARGV[at + 1] == 'json' then
        values = {}
        local n = 0
        for _, row in ipairs(cjson.decode(ARGV[at])) do
            n = n + 1
            values[n] = #row
            for offset = 1, #row do
                values[n + offset] = row[offset]
            end
            n = n + #row
        end
    else
        values = split(ARGV[at], '\31')
    end
    local width = tonumber(values[1])
    local defaults = {unpack(values, 2, 1 + width)}
    local starts, widths, count = {}, {}, 0
    local i = 2 + width
    local total = #values
    while i <= total do
        width = tonumber(values[i])
        count = count + 1
        starts[count] = i
        widths[count] = width
        i = i + width + 1
    end
    return values, starts, widths, defaults
end

-- Item k of packed_rows() as a table keyed by field name (a field past the row's end reads as its default; a
-- field whose name ends in _key comes back as the key, nil for none).
local function packed_item(layout, values, start, width, defaults)
    local item = {}
    for offset, name in ipairs(layout) do
        local value = defaults[offset]
        if offset <= width then
            value = values[start + offset]
        end
        if string.sub(name, -4) == '_key' then
            value = KEYS[tonumber(value)]
        end
        item[name] = value
    end
    return item
end

-- layout's field name -> its offset in an item.
local function offsets(layout)
    local found = {}
    for offset, name in ipairs(layout) do
        found[name] = offset
    end
    return found
end

-- The values of `fields` of hash `key` (HMGET in pieces of at most UNPACK_LIMIT), as a table field -> value
-- (a field the hash lacks: false).
local function hmget_chunked(key, fields)
    local found = {}
    for first = 1, #fields, UNPACK_LIMIT do
        local last = math.min(first + UNPACK_LIMIT - 1, #fields)
        local values = redis.call('HMGET', key, unpack(fields, first, last))
        for i = first, last do
            found[fields[i]] = values[i - first + 1]
        end
    end
    return found
end

-- The run record run_id (already HSET in runs_key) indexed at written_ms in runs_index_key, keeping at most
-- `keep` records (the oldest dropped): emit.lua's miss and celery steps, send.lua's pushes.
local function record_run(item)
    redis.call('ZADD', item.runs_index_key, item.written_ms, item.run_id)
    local excess = redis.call('ZCARD', item.runs_index_key) - tonumber(item.keep)
    if excess > 0 then
        call_chunked('HDEL', item.runs_key, redis.call('ZRANGE', item.runs_index_key, 0, excess - 1))
        redis.call('ZREMRANGEBYRANK', item.runs_index_key, 0, excess - 1)
    end
end

-- XADD a Celery task message to the outbox (a broker on another server: the leader's relay publishes it): nil
-- when added, else an error reply; refused while the outbox holds item.outbox_limit entries, so a broker down for
-- long stops the job's progress (said, retried) instead of growing the outbox without bound.
local function outbox_celery(item)
    local depth = redis.pcall('XLEN', item.outbox_key)
    if type(depth) == 'table' and depth.err then
        return depth
    end
    if depth >= tonumber(item.outbox_limit) then
        return {err = 'the Celery outbox ' .. item.outbox_key .. ' holds ' .. depth .. ' task messages, its bound ' ..
            '(celery.outbox_limit): the relay cannot reach the broker'}
    end
    -- The queue's name travels as a value (celery_queue): it is no key of this script, which on a Redis
    -- Cluster may name keys of the shard's slot only; celery_queue_key is read where an older write gives it.
    local queue = item.celery_queue
    if queue == nil or queue == '' then
        queue = item.celery_queue_key
    end
    local reply = redis.pcall('XADD', item.outbox_key, '*', 'queue', queue, 'envelope', item.celery_message)
    if type(reply) == 'table' and reply.err then
        return reply
    end
    return nil
end

-- With item.outbox_key: the outbox (above). Else LPUSH a Celery task message (item.celery_message onto
-- item.celery_queue_key) in database item.celery_db, then
-- back to database `own` (the caller's): nil when pushed, else Redis's error reply. A SELECT Redis refuses (a
-- database number past `databases`, an ACL user without SELECT, a proxy serving database 0 only) is an error
-- reply like a refused LPUSH, not an error of the whole script; if SELECTing back were refused, no later
-- write could land in the right database, so that one stops the script (nothing after it is written).
local function push_celery(item, own)
    if item.outbox_key then
        return outbox_celery(item)
    end
    local other_db = item.celery_db ~= own
    if other_db then
        local selected = redis.pcall('SELECT', tonumber(item.celery_db))
        if type(selected) == 'table' and selected.err then
            return {err = 'SELECT ' .. item.celery_db .. ' (the Celery broker database): ' .. selected.err}
        end
    end
    local reply = redis.pcall('LPUSH', item.celery_queue_key, item.celery_message)
    if other_db then
        redis.call('SELECT', tonumber(own))
    end
    if type(reply) == 'table' and reply.err then
        return reply
    end
    return nil
end

-- Keep at most `keep` records in a job's history (records hash + index sorted set), and none scored below
-- `oldest` (0 keeps all ages); at most 1000 dropped per call of each rule.
local function prune_history(records, index, keep, oldest)
    if oldest > 0 then
        local expired = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. oldest, 'LIMIT', 0, 1000)
        call_chunked('HDEL', records, expired)
        call_chunked('ZREM', index, expired)
    end
    local excess = redis.call('ZCARD', index) - keep
    if excess > 0 then
        local old = redis.call('ZRANGE', index, 0, math.min(excess, 1000) - 1)
        call_chunked('HDEL', records, old)
        call_chunked('ZREM', index, old)
    end
end

-- The id of the last entry of `stream` delivered to consumer group `group` ('0-0' when the stream or the
-- group does not exist yet: then nothing was delivered).
local function last_delivered(stream, group)
    if redis.call('EXISTS', stream) == 0 then
        return '0-0'
    end
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local fields = {}
        for i = 1, #info, 2 do
            fields[info[i]] = info[i + 1]
        end
        if fields['name'] == group then
            return fields['last-delivered-id']
        end
    end
    return '0-0'
end

-- Whether stream entry id `a` comes after `b` ("ms-seq" each).
local function entry_after(a, b)
    local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
    local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
    a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
    return a_ms > b_ms or (a_ms == b_ms and tonumber(a_seq) > tonumber(b_seq))
end

-- Note run record `record` (JSON) as an alert event in events_key, the alert events stream, in the step that
-- writes the record: the leader's alerting (beatd.alerting) reads it, groups it and queues its deliveries.
-- Nothing when events_key is nil (the job has no alert rules) or record is ''; past ALERT_EVENTS_LIMIT waiting
-- events (no leader has read them for long) none is written: the run record itself is kept as ever.
local function note_alert(events_key, record)
    if not events_key or record == '' then
        return
    end
    if redis.call('XLEN', events_key) >= ALERT_EVENTS_LIMIT then
        return
    end
    redis.call('XADD', events_key, '*', 'record', record)
end

-- Append one end (fire id, run id, status) to a job's ended stream, which waiters read: at most about `maxlen`
-- entries, only those of the last `ttl_ms` by Redis's clock (a job ending a fire every 10 s keeps 60, not
-- `maxlen`), and the stream itself expiring `ttl_ms` after its last end.
local function note_end(ended_key, maxlen, ttl_ms, fire_id, run_id, status)
    redis.call('XADD', ended_key, 'MAXLEN', '~', maxlen, '*', 'fire_id', fire_id, 'run_id', run_id, 'status', status)
    local time = redis.call('TIME')
    local oldest = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - tonumber(ttl_ms)
    redis.call('XTRIM', ended_key, 'MINID', '~', oldest)
    redis.call('PEXPIRE', ended_key, ttl_ms)
end
