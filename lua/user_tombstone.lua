-- user_tombstone: first step of deleting a user (DESIGN.md rule 8): marks the login record
-- state=deleting, so LOGIN refuses from now on, and answers the namespace to sweep. Idempotent:
-- tombstoning a tombstone answers its nsid again (a rerun after a crash).
-- KEYS[1]  /users/<login>
-- ARGV     none
-- Reply    bulk: the user's nsid
-- Errors   "NOUSER no such user"; "CORRUPT ..." when the record has no valid nsid;
--          "ERR ..." on bad arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = '^' .. string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' ..
    string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12) .. '$'

if #KEYS ~= 1 or #ARGV ~= 0 then
    return redis.error_reply('ERR user_tombstone: expects 1 key and no arguments')
end
local rec = KEYS[1]
if string.sub(rec, 1, 7) ~= '/users/' or #rec < 8 then
    return redis.error_reply('ERR user_tombstone: KEYS[1] is not a user record key')
end
local cur = redis.call('HMGET', rec, 'nsid', 'state')
if not cur[1] and not cur[2] then
    return redis.error_reply('NOUSER no such user')
end
if not cur[1] or not string.find(cur[1], nsid_pat) then
    return redis.error_reply('CORRUPT user record has no valid nsid')
end

if cur[2] ~= 'deleting' then
    redis.call('HSET', rec, 'state', 'deleting')
end
return cur[1]
