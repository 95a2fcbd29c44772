-- gc_sweep: reclaims contents that no message refers to any more, once they have been unreferenced
-- for a grace period (a FETCH may still be streaming the bytes it looked up). The caller reads
-- candidates with ZRANGEBYSCORE gc -inf <now - grace> LIMIT 0 <k> and passes them here; each is
-- checked again, so a content that gained a reference meanwhile (append, copy) is kept and leaves
-- the gc set, and a too-young entry (clock skew between caller and Redis) waits.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/gc
-- KEYS[1+2i], KEYS[2+2i]  /ns/{<nsid>}/content/<sha256 i> and its /raw, for i = 1..n (n <= 1000)
-- ARGV[1]  grace period in seconds (>= 0)
-- ARGV[1+i]  sha256 i
-- Reply    {deleted}: the number of contents deleted (hash and raw)
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "ERR ..." on bad keys or arguments.
--          Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local sha_pat = '^' .. string.rep(hex, 64) .. '$'

local function fail(text)
    return redis.error_reply('ERR gc_sweep: ' .. text)
end

local n = #ARGV - 1
if #ARGV < 1 or n > 1000 or #KEYS ~= 2 + 2 * n then
    return fail('expects 2 + 2n keys and 1 + n arguments, n <= 1000')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or KEYS[2] ~= prefix .. 'gc' then
    return fail('KEYS[1..2] are not meta and gc of one namespace')
end
local grace = tonumber(ARGV[1])
if not grace or grace < 0 or grace ~= math.floor(grace) then
    return fail('invalid grace period')
end
for i = 1, n do
    local sha = ARGV[1 + i]
    if not string.find(sha, sha_pat) or KEYS[1 + 2 * i] ~= prefix .. 'content/' .. sha or
        KEYS[2 + 2 * i] ~= prefix .. 'content/' .. sha .. '/raw' then
        return fail('content keys do not match the sha256')
    end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end

local now = tonumber(redis.call('TIME')[1])
local deleted = 0
for i = 1, n do
    local sha = ARGV[1 + i]
    local since = tonumber(redis.call('ZSCORE', KEYS[2], sha))
    if since then
        local refs = tonumber(redis.call('HGET', KEYS[1 + 2 * i], 'refs') or '0') or 0
        if refs > 0 then
            redis.call('ZREM', KEYS[2], sha)
        elseif since <= now - grace then
            redis.call('DEL', KEYS[1 + 2 * i], KEYS[2 + 2 * i])
            redis.call('ZREM', KEYS[2], sha)
            deleted = deleted + 1
        end
    end
end
return {deleted}
