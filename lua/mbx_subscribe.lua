-- mbx_subscribe: SUBSCRIBE / UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7). A subscribed name need not exist,
-- and unsubscribing a name that is not subscribed succeeds (the front end may answer NO for it).
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/subscriptions
-- ARGV[1]  "1" to subscribe, "0" to unsubscribe
-- ARGV[2]  mailbox name
-- Reply    {1} when the set changed, {0} when it already was that way
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "ERR ..." on bad keys or arguments.
--          Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)

local function fail(text)
    return redis.error_reply('ERR mbx_subscribe: ' .. text)
end

-- A mailbox name as stored: 1..1024 bytes, no control characters, "/"-separated non-empty levels,
-- a first level spelled "INBOX" when it is INBOX in any case (the caller canonicalises).
local function name_ok(name)
    if #name < 1 or #name > 1024 or string.find(name, '[%z%c]') or string.find(name, '^/') or
        string.find(name, '/$') or string.find(name, '//', 1, true) then
        return false
    end
    local top = string.match(name, '^[^/]*')
    return string.upper(top) ~= 'INBOX' or top == 'INBOX'
end

if #KEYS ~= 2 or #ARGV ~= 2 then
    return fail('expects 2 keys and 2 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or KEYS[2] ~= prefix .. 'subscriptions' then
    return fail('KEYS are not meta and subscriptions of one namespace')
end
if ARGV[1] ~= '1' and ARGV[1] ~= '0' then
    return fail('ARGV[1] must be 1 or 0')
end
if not name_ok(ARGV[2]) then
    return fail('invalid mailbox name')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end

if ARGV[1] == '1' then
    return {redis.call('SADD', KEYS[2], ARGV[2])}
end
return {redis.call('SREM', KEYS[2], ARGV[2])}
