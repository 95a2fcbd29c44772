-- user_update: changes an existing active user (cimap-admin set-user): password and/or parameters.
-- KEYS[1]  /users/<login>
-- ARGV[1]  new encoded password hash ("$pbkdf2-sha256$..." or a Dovecot "{SCHEME}$..."), or "" to
--          keep the current one
-- ARGV[2], ARGV[3], ...  parameter name/value pairs, stored as field "param:<name>"; an empty
--          value removes the parameter (name: 1..64 of [A-Za-z0-9._-]; value: 0..1024 bytes, no
--          control characters)
-- Reply    bulk: the user's nsid
-- Errors   "NOUSER no such user"; "DELETING user is being deleted"; "ERR ..." on bad arguments.
--          Nothing is written on error.
if #KEYS ~= 1 or #ARGV < 1 or #ARGV % 2 ~= 1 then
    return redis.error_reply('ERR user_update: expects 1 key and 1 + 2n arguments')
end
local rec = KEYS[1]
local login = string.sub(rec, 8)
if string.sub(rec, 1, 7) ~= '/users/' or #login < 1 or #login > 255 or
    not string.find(login, '^[A-Za-z0-9_@%+][A-Za-z0-9%._@%+%-]*$') then
    return redis.error_reply('ERR user_update: KEYS[1] is not a user record key')
end
local hash = ARGV[1]
-- cimapd's own PBKDF2-SHA256 form, or a Dovecot hash kept as is ("{SHA512-CRYPT}$6$...",
-- "{PBKDF2}$1$...": cimap-admin set-user --password-hash checks it fully).
local function hash_ok(h)
    return #h <= 512 and (string.find(h, '^%$pbkdf2%-sha256%$i=[0-9]+%$[A-Za-z0-9%+/]+%$[A-Za-z0-9%+/]+$') or
        string.find(h, '^{[A-Z0-9%-]+}%$[A-Za-z0-9%./%$]+$'))
end
if hash ~= '' and not hash_ok(hash) then
    return redis.error_reply('ERR user_update: invalid password hash')
end
local set, del = {}, {}
for i = 2, #ARGV, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    if #name < 1 or #name > 64 or not string.find(name, '^[A-Za-z0-9%._%-]+$') then
        return redis.error_reply('ERR user_update: invalid parameter name')
    end
    if #value > 1024 or string.find(value, '[%z\1-\31\127]') then
        return redis.error_reply('ERR user_update: invalid parameter value')
    end
    if value == '' then
        del[#del + 1] = 'param:' .. name
    else
        set[#set + 1] = 'param:' .. name
        set[#set + 1] = value
    end
end
local cur = redis.call('HMGET', rec, 'nsid', 'state')
if not cur[1] then
    return redis.error_reply('NOUSER no such user')
end
if cur[2] ~= 'active' then
    return redis.error_reply('DELETING user is being deleted')
end

if hash ~= '' then
    set[#set + 1] = 'password'
    set[#set + 1] = hash
end
if #set > 0 then
    redis.call('HSET', rec, unpack(set))
end
if #del > 0 then
    redis.call('HDEL', rec, unpack(del))
end
return cur[1]
