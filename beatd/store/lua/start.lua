-- Start jobs from a base instant (new jobs, and jobs whose schedule changed, start from now), fenced by the
-- lease: emit.lua's `base` step alone, with three values a job instead of seventeen, for the thousands of jobs
-- a start, a reload or a put_many of runtime jobs adds at once (beatd.store.beat.Store.apply picks it when
-- every write of a call is a base).
-- KEYS[1] leader lease key      KEYS[2] progress hash      KEYS[3] schedules hash
-- ARGV[1] fencing token
-- then one ITEM per job (beatd.store.beat.StartWrite): job, base_ms, schedule_digest
--   progress[job] = max(progress[job], base_ms); schedules[job] = schedule_digest
-- A job whose progress is not a number is refused (left unchanged), as by emit.lua.
-- Returns {-1} when the caller does not hold the lease (nothing is written), else {1, codes, errors} as emit.lua
-- replies: one character per item ('a' applied, 'r' refused), and the error text of each refused item in order
-- (a million starts parse a million characters, not a million pairs).
local ITEM = {'job', 'base_ms', 'schedule_digest'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1}
end
local codes, errors = {}, {}
for k, item in ipairs(items(2, ITEM)) do
    local raw = redis.call('HGET', KEYS[2], item.job)
    local progress = tonumber(raw or '-1')
    if progress == nil then
        codes[k] = 'r'
        errors[#errors + 1] = 'field ' .. item.job .. ' of ' .. KEYS[2] .. ' holds ' .. string.sub(raw, 1, 40) .. ', not epoch ms'
    else
        if tonumber(item.base_ms) > progress then
            redis.call('HSET', KEYS[2], item.job, item.base_ms)
        end
        redis.call('HSET', KEYS[3], item.job, item.schedule_digest)
        codes[k] = 'a'
    end
end
return {1, table.concat(codes), errors}
