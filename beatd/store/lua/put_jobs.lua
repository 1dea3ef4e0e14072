-- Put or delete runtime jobs (beatd job put/rm, client.jobs.put/put_many/delete): each change gets the next
-- version, is written to the jobs hash and announced on the change stream, in one atomic call with its audit.
-- KEYS[1] runtime jobs hash     KEYS[2] version key         KEYS[3] change stream      KEYS[4] audit stream
-- KEYS[5] deleted names set (a deleted job's per-job fields wait there for the leader's upkeep)
-- ARGV[1] change stream max length   ARGV[2] audit event ('' for none)   ARGV[3] audit record JSON
-- ARGV[4] audit max length
-- then one ITEM per job (beatd.store.jobs.JobChange): job, body: the entry's JSON after its opening brace
-- (the entry is written as '{"version":N,' .. body), '' to delete
-- Returns one value per item: its version, 0 for a delete of a job that is not there.
local ITEM = {'job', 'body'}
local versions = {}
for _, item in ipairs(items(5, ITEM)) do
    local version = 0
    if item.body == '' then
        if redis.call('HDEL', KEYS[1], item.job) == 1 then
            version = redis.call('INCR', KEYS[2])
            redis.call('SADD', KEYS[5], item.job)
        end
    else
        version = redis.call('INCR', KEYS[2])
        redis.call('SREM', KEYS[5], item.job)
        redis.call('HSET', KEYS[1], item.job, '{"version":' .. version .. ',' .. item.body)
    end
    if version > 0 then
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'job', item.job, 'version', version)
    end
    versions[#versions + 1] = version
end
if ARGV[2] ~= '' then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[2], 'record', ARGV[3])
end
return versions
