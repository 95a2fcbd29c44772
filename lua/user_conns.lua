-- user_conns: one user's connections across the fleet of front ends (--max-user-connections,
-- frontend/fleet.c). Each front end owns one field of the hash, holding its exact local count of
-- the user's connections (written as a value, never incremented, so a lost update heals at the
-- user's next login or logout on that front end). A field counts only while its front end is
-- alive: the caller passes the ids that held a live lease at its last heartbeat and the ids whose
-- lease ran out (frontend_lease.lua); a field of a dead front end is deleted, and so is one of a
-- front end started before cutoff_ms that is in neither list (dead long ago). A field of a front
-- end in neither list started after cutoff_ms is counted (it may be newer than the caller's
-- lists).
-- KEYS[1]  /ns/{<nsid>}/conns (hash: front-end id -> connections)
-- ARGV[1]  mode: "acquire" (take a slot if under max) or "set" (store own count, e.g. after a
--          logout; 0 deletes the field)
-- ARGV[2]  own front-end id ("fe-<start unix ms>-<hex>")
-- ARGV[3]  own count: acquire: connections of the user on this front end including the one
--          asking; set: connections now
-- ARGV[4]  acquire: max connections of the user across the fleet (0 = no limit)
-- ARGV[5]  acquire: cutoff_ms (see above; 0 deletes nothing)
-- ARGV[6]  acquire: n, the number of live ids that follow
-- ARGV[7..6+n] acquire: ids of the live front ends; then ids of dead front ends
-- Reply    acquire: {1, total} when admitted (own field = ARGV[3]), {0, total} when total would
--          exceed max (own field unchanged); total counts the live fields and ARGV[3].
--          set: {1, count}.
--          Errors: "ERR ..." on bad keys or arguments; nothing is written then.
local function fail(text)
    return redis.error_reply('ERR user_conns: ' .. text)
end

local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
if #KEYS ~= 1 or not string.match(KEYS[1], '^/ns/{' .. nsid_pat .. '}/conns$') then
    return fail('expects KEYS /ns/{<nsid>}/conns')
end
local function count_arg(s)
    local v = tonumber(s)
    if v == nil or v < 0 or v ~= math.floor(v) or v > 1000000000 then
        return nil
    end
    return v
end
local mode, own = ARGV[1], ARGV[2]
if own == nil or #own < 1 or #own > 64 or not string.match(own, '^[A-Za-z0-9._-]+$') then
    return fail('bad front-end id')
end
local mine = count_arg(ARGV[3])
if mine == nil then
    return fail('bad count')
end

if mode == 'set' then
    if #ARGV ~= 3 then
        return fail('set expects id, count')
    end
    if mine == 0 then
        redis.call('HDEL', KEYS[1], own)
    else
        redis.call('HSET', KEYS[1], own, mine)
    end
    return {1, mine}
end
if mode ~= 'acquire' or #ARGV < 6 then
    return fail('mode is acquire (id, count, max, cutoff_ms, n, live ids, dead ids) or set (id, count)')
end
local max, cutoff, nlive = count_arg(ARGV[4]), tonumber(ARGV[5]), count_arg(ARGV[6])
if max == nil or cutoff == nil or cutoff < 0 or nlive == nil or 6 + nlive > #ARGV then
    return fail('bad max, cutoff or number of live ids')
end
local live, known_dead = {}, {}
for i = 7, #ARGV do
    if i <= 6 + nlive then
        live[ARGV[i]] = true
    else
        known_dead[ARGV[i]] = true
    end
end
local fields = redis.call('HGETALL', KEYS[1])
local total = mine
local dead = {}
for i = 1, #fields, 2 do
    local id, n = fields[i], tonumber(fields[i + 1]) or 0
    if id ~= own then
        local started = tonumber(string.match(id, '^fe%-(%d+)%-'))
        if live[id] or (not known_dead[id] and (started == nil or started >= cutoff)) then
            total = total + n
        else
            dead[#dead + 1] = id
        end
    end
end
if #dead > 0 then
    redis.call('HDEL', KEYS[1], unpack(dead))
end
if max > 0 and total > max then
    return {0, total}
end
redis.call('HSET', KEYS[1], own, mine)
return {1, total}
