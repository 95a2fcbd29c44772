-- frontend_info: writes (or deletes) one front end's details beside its lease, for operators
-- (cimap-admin health, redis-cli). Renewed with every heartbeat; the TTL is the lease's.
-- KEYS[1]  /frontends/<id> (hash)
-- ARGV[1]  TTL in milliseconds (1..3600000), or 0 to delete the key (the front end leaves)
-- ARGV[2..] field, value pairs (at most 32 pairs; fields [a-z_]+)
-- Reply    1 after a write, 0 after a delete. Errors: "ERR ..." on bad keys or arguments;
--          nothing is written then.
local function fail(text)
    return redis.error_reply('ERR frontend_info: ' .. text)
end

if #KEYS ~= 1 or not string.match(KEYS[1], '^/frontends/[A-Za-z0-9._-]+$') or #KEYS[1] > 75 then
    return fail('expects KEYS /frontends/<id>')
end
local ttl = tonumber(ARGV[1])
if ttl == nil or ttl < 0 or ttl > 3600000 or ttl ~= math.floor(ttl) then
    return fail('bad ttl')
end
if ttl == 0 then
    redis.call('DEL', KEYS[1])
    return 0
end
local n = #ARGV - 1
if n < 2 or n % 2 ~= 0 or n > 64 then
    return fail('expects 1 to 32 field, value pairs')
end
for i = 2, #ARGV, 2 do
    if not string.match(ARGV[i], '^[a-z_]+$') then
        return fail('bad field name')
    end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
