-- Retry or drop dead letters, each only if it is still there, so two operators at once (or a retry racing a
-- drop) settle a dead letter once: one requeue, one audit record. A retried one goes back to its queue stream
-- as it was (message, sig); a fire that ran out of retries gets its attempt count back from the dead letter's
-- run id ({fire id}#{attempt}), so it runs as the next attempt.
-- KEYS[1] dead-letter stream     KEYS[2] audit stream     KEYS[3] attempts hash
-- KEYS[4..] named by the items' *_key fields
-- ARGV[1] audit stream max length (approximate)
-- then one ITEM per dead letter (beatd.store.runs.DeadLetterAction): entry_id, action: retry | drop,
--   event: the audit record's event, audit: the audit record JSON, queue_key: the queue stream the entry
--   names (retry puts it back there; an entry naming another is left alone)
-- Returns one number per item, in order: 1 when settled, 0 when there was no such dead letter.
local ITEM = {'entry_id', 'action', 'event', 'audit', 'queue_key'}
local settled = {}
for _, item in ipairs(items(2, ITEM)) do
    local entries = redis.call('XRANGE', KEYS[1], item.entry_id, item.entry_id)
    local fields = {}
    if #entries == 1 then
        local flat = entries[1][2]
        for i = 1, #flat, 2 do
            fields[flat[i]] = flat[i + 1]
        end
    end
    local ok = #entries == 1 and (item.action == 'drop' or fields['queue'] == item.queue_key)
    if ok then
        if item.action == 'retry' then
            local fire, attempt = string.match(fields['run_id'] or '', '^(.*)#(%d+)$')
            if fire then
                redis.call('HSET', KEYS[3], fire, attempt)
            end
            redis.call('XADD', item.queue_key, '*', 'message', fields['message'] or '', 'sig', fields['sig'] or '')
        end
        redis.call('XDEL', KEYS[1], item.entry_id)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'event', item.event, 'record', item.audit)
    end
    settled[#settled + 1] = ok and 1 or 0
end
return settled
