-- frontend_lease: renews (or gives up) one front end's heartbeat lease in the index of live front
-- ends, and answers which front ends are alive (frontend/fleet.c, every lease-ttl/3 seconds).
-- KEYS[1]  /frontends (sorted set: front-end id -> lease expiry, unix milliseconds by Redis TIME;
--          an expired entry stays one day, so the others learn that front end is dead)
-- ARGV[1]  front-end id: 1-64 bytes of [A-Za-z0-9._-]
-- ARGV[2]  lease length in milliseconds (1..3600000), or 0 to leave the fleet (the lease ends now)
-- Reply    {now_ms, n, live id 1..n, dead id...}: Redis time, the ids holding a live lease after
--          the call (at most 1,000) and the most recently expired ones (at most 256). Errors:
--          "ERR ..." on bad keys or arguments; nothing is written then.
local function fail(text)
    return redis.error_reply('ERR frontend_lease: ' .. text)
end

if #KEYS ~= 1 or KEYS[1] ~= '/frontends' or #ARGV ~= 2 then
    return fail('expects KEYS /frontends and ARGV id, ttl_ms')
end
local id = ARGV[1]
if #id < 1 or #id > 64 or not string.match(id, '^[A-Za-z0-9._-]+$') then
    return fail('bad front-end id')
end
local ttl = tonumber(ARGV[2])
if ttl == nil or ttl < 0 or ttl > 3600000 or ttl ~= math.floor(ttl) then
    return fail('bad ttl')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - 86400000))
redis.call('ZADD', KEYS[1], now + ttl, id)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, 1000)
local dead = redis.call('ZREVRANGEBYSCORE', KEYS[1], now, '-inf', 'LIMIT', 0, 256)
local out = {now, #live}
for i = 1, #live do
    out[#out + 1] = live[i]
end
for i = 1, #dead do
    out[#out + 1] = dead[i]
end
return out
