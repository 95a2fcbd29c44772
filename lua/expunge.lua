-- expunge: permanently removes messages from one mailbox, one bounded batch per call. Mode
-- `deleted` removes those of the given UIDs that carry \Deleted (EXPUNGE, UID EXPUNGE, CLOSE;
-- RFC 3501 §6.4.3, RFC 4315 §2.1); mode `all` removes every given UID (the source half of MOVE,
-- RFC 6851, once copy.lua has committed the copies). The caller picks up to 1,000 candidate UIDs
-- (from `deleted`, or the moved ones), reads their content ids with HMGET msg, and passes the
-- content keys in KEYS. UIDs that no longer exist (a concurrent EXPUNGE) or, in mode `deleted`,
-- no longer carry \Deleted (a concurrent STORE) are skipped. A call that removes something is one
-- operation: one modseq, one `expunge` log entry, one wake-up.
-- KEYS[1]      /ns/{<nsid>}/meta
-- KEYS[2..10]  the mailbox keys in keys_mbx order: /ns/{<nsid>}/mbx/<mbxid>, then its /uids,
--              /runs, /msg, /flags, /modseq, /unseen, /deleted, /log
-- KEYS[11]     /ns/{<nsid>}/channel
-- KEYS[12]     /ns/{<nsid>}/gc
-- KEYS[12+i]   /ns/{<nsid>}/content/<sha256> of the message ARGV[2+i] (as read from /msg; any
--              content key of the namespace for a UID without a record)
-- KEYS[13+n..] the column caches of the UIDs' chunks, /ns/{<nsid>}/mbx/<mbxid>/cache/f/<c> then
--              .../cache/m/<c> for each chunk c = uid // 1024 in UID order (keys_cache_chunks);
--              deleted when anything is removed (frontend/colcache.h)
-- ARGV[1]      mbxid
-- ARGV[2]      mode: `deleted` or `all`
-- ARGV[2+i]    candidate UIDs, ascending, 0..1000 of them
-- Reply        {modseq, n, uid1, ..., uidn}: the UIDs removed, ascending; modseq is the mailbox's
--              highestmodseq after the call (unchanged when n = 0)
-- Errors       "NONEXISTENT ..." when the user or the mailbox is gone; "ERR ..." on bad keys or
--              arguments or a content key that does not match its message (re-read and retry).
--              Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}

local function fail(text)
    return redis.error_reply('ERR expunge: ' .. text)
end

-- The change log (keys/README.md): one entry "<modseq>-1" per operation, trimmed to about
-- LOG_MAX entries (XADD MAXLEN ~) and, when its oldest entry is older than LOG_AGE seconds, by up
-- to LOG_AGE_BATCH old entries per call. (Scripts cannot share code: append.lua has the same.)
local LOG_MAX, LOG_AGE, LOG_AGE_BATCH = 10000, 7 * 86400, 100
local function entry_time(entry)
    local f = entry[2]
    for i = 1, #f - 1, 2 do
        if f[i] == 't' then
            return tonumber(f[i + 1]) or 0
        end
    end
    return 0
end
local function log_add(log, modseq, now, ...)
    redis.call('XADD', log, 'MAXLEN', '~', LOG_MAX, string.format('%d-1', modseq), ...)
    local head = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
    if #head == 0 or entry_time(head[1]) >= now - LOG_AGE then
        return
    end
    local batch = redis.call('XRANGE', log, '-', '+', 'COUNT', LOG_AGE_BATCH + 1)
    local cut
    for i = 2, #batch do
        cut = batch[i][1]
        if entry_time(batch[i]) >= now - LOG_AGE then
            break
        end
    end
    if cut then
        redis.call('XTRIM', log, 'MINID', cut)
    end
end
local function log_accepts(log, modseq)
    local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    return #top == 0 or tonumber(string.match(top[1][1], '^(%d+)')) < modseq
end

-- Counters go down with `0 - n`: Lua prints -0 as "-0", which HINCRBY refuses.
-- Runs (keys/README.md): maximal runs of consecutive UIDs, member "first:last", score first;
-- removing a UID shrinks or splits its run, O(log runs). (Scripts cannot share code.)
local function runs_remove(runs, uid)
    local r = redis.call('ZREVRANGEBYSCORE', runs, uid, '-inf', 'LIMIT', 0, 1)
    if #r == 0 then
        return
    end
    local first, last = string.match(r[1], '^(%d+):(%d+)$')
    first, last = tonumber(first), tonumber(last)
    if last < uid then
        return
    end
    redis.call('ZREM', runs, r[1])
    if first < uid then
        redis.call('ZADD', runs, first, string.format('%d:%d', first, uid - 1))
    end
    if uid < last then
        redis.call('ZADD', runs, uid + 1, string.format('%d:%d', uid + 1, last))
    end
end

local n = #ARGV - 2
if #ARGV < 2 or n > 1000 or #KEYS < 12 + n then
    return fail('expects 12 + n + caches keys and 2 + n arguments, n <= 1000')
end
local all = ARGV[2] == 'all'
if not all and ARGV[2] ~= 'deleted' then
    return fail('mode must be deleted or all')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
if KEYS[11] ~= prefix .. 'channel' or KEYS[12] ~= prefix .. 'gc' then
    return fail('channel or gc key does not match the namespace')
end
local mbx = prefix .. 'mbx/' .. mbxid
for i = 1, 9 do
    if KEYS[1 + i] ~= mbx .. MBX_PARTS[i] then
        return fail('mailbox keys do not match the mbxid')
    end
end
local uids = {}
for i = 1, n do
    local uid = tonumber(ARGV[2 + i])
    if not uid or uid < 1 or uid ~= math.floor(uid) or not string.find(ARGV[2 + i], '^%d+$') or
        (i > 1 and uid <= uids[i - 1]) then
        return fail('invalid UID (UIDs must ascend)')
    end
    uids[i] = uid
end
-- The column caches of the UIDs' chunks, exactly (a chunk must never outlive an expunge).
local caches, last_chunk = {}, -1
for i = 1, n do
    local c = math.floor(uids[i] / 1024)
    if c ~= last_chunk then
        caches[#caches + 1] = mbx .. '/cache/f/' .. c
        caches[#caches + 1] = mbx .. '/cache/m/' .. c
        last_chunk = c
    end
end
if #KEYS ~= 12 + n + #caches then
    return fail('expects the cache keys of every chunk')
end
for i = 1, #caches do
    if KEYS[12 + n + i] ~= caches[i] then
        return fail('cache keys do not match the UIDs')
    end
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local state = redis.call('HMGET', KEYS[2], 'highestmodseq', 'removed', 'recent_uid')
if not state[1] or state[2] then
    return redis.error_reply('NONEXISTENT mailbox does not exist')
end
local highest = tonumber(state[1])
local recent_uid = tonumber(state[3] or '1') or 1

-- Validate every candidate before the first write.
local victims, shas, sizes = {}, {}, {}
for i = 1, n do
    local uid = uids[i]
    local rec = redis.call('HGET', KEYS[5], uid)
    if rec and (all or redis.call('ZSCORE', KEYS[9], uid)) then
        local sha, size = string.match(rec, '^(%x+) %S+ (%d+) ')
        if not sha or KEYS[12 + i] ~= prefix .. 'content/' .. sha then
            return fail('content key does not match the message')
        end
        victims[#victims + 1] = i
        shas[i], sizes[i] = sha, tonumber(size)
    end
end
if #victims == 0 then
    return {highest, 0}
end

highest = highest + 1
if not log_accepts(KEYS[10], highest) then
    return fail('change log is ahead of highestmodseq')
end
local now = tonumber(redis.call('TIME')[1])
for i = 1, #caches do
    redis.call('DEL', caches[i])
end
local bytes, unseen, deleted, recent = 0, 0, 0, 0
local removed = {}
for _, i in ipairs(victims) do
    local uid = uids[i]
    redis.call('ZREM', KEYS[3], uid)
    runs_remove(KEYS[4], uid)
    redis.call('HDEL', KEYS[5], uid)
    redis.call('HDEL', KEYS[6], uid)
    redis.call('ZREM', KEYS[7], uid)
    unseen = unseen + redis.call('ZREM', KEYS[8], uid)
    deleted = deleted + redis.call('ZREM', KEYS[9], uid)
    if uid >= recent_uid then
        recent = recent + 1
    end
    local content = KEYS[12 + i]
    if redis.call('EXISTS', content) == 1 and redis.call('HINCRBY', content, 'refs', -1) <= 0 then
        redis.call('ZADD', KEYS[12], now, shas[i])
    end
    bytes = bytes + sizes[i]
    removed[#removed + 1] = uid
end

local count = #removed
redis.call('HINCRBY', KEYS[2], 'messages', 0 - count)
redis.call('HINCRBY', KEYS[2], 'deleted', 0 - deleted)
redis.call('HINCRBY', KEYS[2], 'unseen', 0 - unseen)
redis.call('HINCRBY', KEYS[2], 'recent', 0 - recent)
redis.call('HINCRBY', KEYS[2], 'bytes', 0 - bytes)
redis.call('HINCRBY', KEYS[1], 'messages', 0 - count)
redis.call('HINCRBY', KEYS[1], 'bytes', 0 - bytes)
redis.call('HSET', KEYS[2], 'highestmodseq', highest)

-- The log entry's UID set, as runs.
local parts, i = {}, 1
while i <= count do
    local j = i
    while j < count and removed[j + 1] == removed[j] + 1 do
        j = j + 1
    end
    parts[#parts + 1] = (i == j) and tostring(removed[i]) or (removed[i] .. ':' .. removed[j])
    i = j + 1
end
log_add(KEYS[10], highest, now, 'k', 'expunge', 'u', table.concat(parts, ','), 't', now)
redis.call('PUBLISH', KEYS[11], mbxid .. ' ' .. highest)

local reply = {highest, count}
for k = 1, count do
    reply[k + 2] = removed[k]
end
return reply
