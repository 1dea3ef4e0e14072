-- Apply one step of alerting (beatd.alerting) atomically, fenced: by the lease (mode 'leader': KEYS[1] holds
-- ARGV[2]), or, while no beat leads, by the standby claim (mode 'standby': KEYS[1] is empty and KEYS[2] holds
-- ARGV[2]), so at most one process groups and delivers at a time.
-- KEYS[1] leader lease   KEYS[2] standby claim   KEYS[3] alert events stream   KEYS[4] groups hash
-- KEYS[5] deliveries hash   KEYS[6] due sorted set   KEYS[7] state hash   KEYS[8] alerts log   KEYS[9] audit
-- ARGV[1] mode   ARGV[2] token   ARGV[3] alerts log MAXLEN (~)   ARGV[4] audit MAXLEN (~)
-- ARGV[5] the changes, JSON (beatd.store.alerts.AlertChanges; each list may be empty):
--   events: ids of alert events grouped (deleted)     groups: {id: JSON} written     groups_gone: ids deleted
--   deliveries: {id: JSON} written     due: {id: ms} (re)scheduled     deliveries_gone: ids deleted (and unscheduled)
--   state: {field: value} written      state_gone: fields deleted
--   log: [JSON] appended to the alerts log (field `entry`)    audit: [JSON] appended to the audit stream
-- Returns -1 when the caller is not fenced in (nothing written), else 1.
if ARGV[1] == 'leader' then
    if redis.call('GET', KEYS[1]) ~= ARGV[2] then
        return -1
    end
elseif redis.call('EXISTS', KEYS[1]) == 1 or redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return -1
end
local changes = cjson.decode(ARGV[5])
call_chunked('XDEL', KEYS[3], changes.events)
for id, text in pairs(changes.groups) do
    redis.call('HSET', KEYS[4], id, text)
end
call_chunked('HDEL', KEYS[4], changes.groups_gone)
for id, text in pairs(changes.deliveries) do
    redis.call('HSET', KEYS[5], id, text)
end
for id, ms in pairs(changes.due) do
    redis.call('ZADD', KEYS[6], ms, id)
end
call_chunked('HDEL', KEYS[5], changes.deliveries_gone)
call_chunked('ZREM', KEYS[6], changes.deliveries_gone)
for name, value in pairs(changes.state) do
    redis.call('HSET', KEYS[7], name, value)
end
call_chunked('HDEL', KEYS[7], changes.state_gone)
for _, entry in ipairs(changes.log) do
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[3], '*', 'entry', entry)
end
for _, record in ipairs(changes.audit) do
    redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[4], '*', 'event', cjson.decode(record)['event'], 'record', record)
end
return 1
