-- The prelude of every beatd script (beatd.store.base.script puts it in front): the rules all scripts share.
-- UNPACK_LIMIT: most values handed to one unpack(); Redis's Lua stack takes about 8,000 (LUAI_MAXCSTACK), so
-- a longer list is sent in pieces. beatd.store.codec.UNPACK_LIMIT is the same number (a test checks).
local UNPACK_LIMIT = 1000

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
