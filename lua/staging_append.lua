-- staging_append: appends one chunk of an APPEND literal being uploaded to its staging key and
-- (re)arms the key's TTL, so an abandoned upload disappears by itself. append.lua later renames
-- the staging key to the content's raw key.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/staging/<id>   (id: 32 lowercase hex digits)
-- ARGV[1]  chunk (bytes, may be empty)
-- ARGV[2]  ttl in seconds, 1..86400 (keys/README.md: 1 h)
-- Reply    {length of the staging value so far}
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "ERR ..." on bad keys or arguments.
--          Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)

if #KEYS ~= 2 or #ARGV ~= 2 then
    return redis.error_reply('ERR staging_append: expects 2 keys and 2 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or not string.find(KEYS[2], '^staging/' .. string.rep(hex, 32) .. '$', #prefix + 1) or
    string.sub(KEYS[2], 1, #prefix) ~= prefix then
    return redis.error_reply('ERR staging_append: KEYS are not meta and a staging key of one namespace')
end
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 86400 or ttl ~= math.floor(ttl) then
    return redis.error_reply('ERR staging_append: invalid ttl')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end

local len = redis.call('APPEND', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ttl)
return {len}
