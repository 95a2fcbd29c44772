-- ns_create: first step of creating a user (DESIGN.md rule 8): the namespace record.
-- KEYS[1]  /ns/{<nsid>}/meta
-- ARGV[1]  login the namespace is made for (kept for operators)
-- Reply    integer: the creation time in unix seconds (Redis TIME)
-- Errors   "EXISTS namespace exists" when KEYS[1] already exists; "ERR ..." on bad arguments.
--          Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)

if #KEYS ~= 1 or #ARGV ~= 1 then
    return redis.error_reply('ERR ns_create: expects 1 key and 1 argument')
end
local meta = KEYS[1]
if not string.find(meta, '^/ns/{' .. nsid_pat .. '}/meta$') then
    return redis.error_reply('ERR ns_create: KEYS[1] is not a namespace meta key')
end
local login = ARGV[1]
if #login < 1 or #login > 255 or not string.find(login, '^[A-Za-z0-9_@%+][A-Za-z0-9%._@%+%-]*$') then
    return redis.error_reply('ERR ns_create: invalid login')
end
if redis.call('EXISTS', meta) == 1 then
    return redis.error_reply('EXISTS namespace exists')
end

local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', meta, 'login', login, 'created', now)
return now
