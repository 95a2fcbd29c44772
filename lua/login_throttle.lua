-- login_throttle: a failed-login token bucket shared by every front end (frontend/fleet.c), one
-- per user and one per client address. The bucket holds up to `capacity` tokens and refills
-- `capacity` tokens per `window` seconds; each failed login takes one. A login is allowed while
-- at least one token is left, so a password-guessing loop gets `capacity` tries at once and then
-- `capacity` per window, however many front ends and connections it spreads over.
-- KEYS[1]  /throttle/user/<login> or /throttle/addr/<address> (hash: tokens, ts; TTL = window)
-- ARGV[1]  mode: "check" (reads only) or "fail" (takes a token)
-- ARGV[2]  capacity (1..1000000)
-- ARGV[3]  window in seconds (1..86400)
-- Reply    {allowed, tokens}: allowed is 1 when a login may be tried now (after a fail: the next
--          one), tokens the whole tokens left. Time is Redis TIME. Errors: "ERR ..." on bad keys
--          or arguments; nothing is written then.
local function fail(text)
    return redis.error_reply('ERR login_throttle: ' .. text)
end

if #KEYS ~= 1 or not (string.match(KEYS[1], '^/throttle/user/[A-Za-z0-9._@+-]+$') or
                      string.match(KEYS[1], '^/throttle/addr/[0-9a-fA-F.:/]+$')) then
    return fail('expects KEYS /throttle/user/<login> or /throttle/addr/<address>')
end
local mode = ARGV[1]
local capacity, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if (mode ~= 'check' and mode ~= 'fail') or #ARGV ~= 3 then
    return fail('expects ARGV check|fail, capacity, window')
end
if capacity == nil or capacity < 1 or capacity > 1000000 or window == nil or window < 1 or
    window > 86400 then
    return fail('bad capacity or window')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(h[1]), tonumber(h[2])
if tokens == nil or ts == nil then
    tokens, ts = capacity, now
end
if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * capacity / (window * 1000))
end
if mode == 'fail' then
    tokens = math.max(0, tokens - 1)
    redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', now)
    redis.call('PEXPIRE', KEYS[1], window * 1000)
end
local allowed = 0
if tokens >= 1 then
    allowed = 1
end
return {allowed, math.floor(tokens)}
