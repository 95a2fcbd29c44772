-- user_create: second step of creating a user (DESIGN.md rule 8): the login record, refused when
-- one exists (the caller then sweeps the namespace it made with ns_create.lua).
-- KEYS[1]  /users/<login>
-- ARGV[1]  nsid of a namespace made by ns_create.lua
-- ARGV[2]  encoded password hash, "$pbkdf2-sha256$i=<n>$<salt>$<hash>" or a Dovecot hash
--          "{SCHEME}$..." (frontend/password.h)
-- ARGV[3], ARGV[4], ...  parameter name/value pairs, stored as field "param:<name>"
--          (name: 1..64 of [A-Za-z0-9._-]; value: 1..1024 bytes, no control characters)
-- Reply    integer: the creation time in unix seconds (Redis TIME)
-- Errors   "EXISTS user exists"; "ERR ..." on bad arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = '^' .. string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' ..
    string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12) .. '$'

if #KEYS ~= 1 or #ARGV < 2 or #ARGV % 2 ~= 0 then
    return redis.error_reply('ERR user_create: expects 1 key and 2 + 2n arguments')
end
local rec = KEYS[1]
local login = string.sub(rec, 8)
if string.sub(rec, 1, 7) ~= '/users/' or #login < 1 or #login > 255 or
    not string.find(login, '^[A-Za-z0-9_@%+][A-Za-z0-9%._@%+%-]*$') then
    return redis.error_reply('ERR user_create: KEYS[1] is not a user record key')
end
local nsid = ARGV[1]
if not string.find(nsid, nsid_pat) then
    return redis.error_reply('ERR user_create: invalid nsid')
end
local hash = ARGV[2]
-- cimapd's own PBKDF2-SHA256 form, or a Dovecot hash kept as is ("{SHA512-CRYPT}$6$...",
-- "{PBKDF2}$1$...": cimap-admin set-user --password-hash checks it fully).
local function hash_ok(h)
    return #h <= 512 and (string.find(h, '^%$pbkdf2%-sha256%$i=[0-9]+%$[A-Za-z0-9%+/]+%$[A-Za-z0-9%+/]+$') or
        string.find(h, '^{[A-Z0-9%-]+}%$[A-Za-z0-9%./%$]+$'))
end
if not hash_ok(hash) then
    return redis.error_reply('ERR user_create: invalid password hash')
end
local fields = {'nsid', nsid, 'password', hash, 'state', 'active'}
for i = 3, #ARGV, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    if #name < 1 or #name > 64 or not string.find(name, '^[A-Za-z0-9%._%-]+$') then
        return redis.error_reply('ERR user_create: invalid parameter name')
    end
    if #value < 1 or #value > 1024 or string.find(value, '[%z\1-\31\127]') then
        return redis.error_reply('ERR user_create: invalid parameter value')
    end
    fields[#fields + 1] = 'param:' .. name
    fields[#fields + 1] = value
end
if redis.call('EXISTS', rec) == 1 then
    return redis.error_reply('EXISTS user exists')
end

local now = tonumber(redis.call('TIME')[1])
fields[#fields + 1] = 'created'
fields[#fields + 1] = now
redis.call('HSET', rec, unpack(fields))
return now
