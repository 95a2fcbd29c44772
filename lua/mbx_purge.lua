-- mbx_purge: releases the messages of a mailbox that mbx_delete.lua put in the trash, one
-- bounded batch per call, and deletes the mailbox's keys once it is empty. The caller reads a
-- batch with ZRANGE uids 0 999 and HMGET msg (for the content ids), calls this script, and repeats
-- until remaining = 0. A message's content loses one reference; content whose refs reach 0 joins
-- the gc set (reclaimed by gc_sweep.lua after a grace period). UIDs already released (a concurrent
-- or repeated purge) are skipped, so the script is safe to rerun. A UID still in /uids but without
-- a /msg record (damage) leaves the indexes anyway and counts as released, so every batch makes
-- progress; its content key may then be any key of the namespace (it is not touched), and the
-- user's totals, which never counted it, stay.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/trash
-- KEYS[3..11]  the mailbox keys in keys_mbx order: /ns/{<nsid>}/mbx/<mbxid>, then its /uids,
--          /runs, /msg, /flags, /modseq, /unseen, /deleted, /log
-- KEYS[12] /ns/{<nsid>}/gc
-- KEYS[12+i]  /ns/{<nsid>}/content/<sha256> of the message ARGV[1+i] (as read from /msg)
-- KEYS[13+n..] the column caches of the UIDs' chunks: .../mbx/<mbxid>/cache/f/<c> then
--              .../cache/m/<c> per chunk c = uid // 1024, a chunk repeated by consecutive UIDs
--              written once (keys_cache_chunks); all deleted
-- ARGV[1]  mbxid
-- ARGV[1+i]  UIDs to release, 0..1000 of them
-- Reply    {released, remaining}: messages released by this call, messages left in the mailbox
--          (0: every key of the mailbox is gone and so is its trash entry)
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "ERR ..." on bad keys or arguments, a
--          content key that does not match the message, or a mailbox that is not in the trash.
--          Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}

local function fail(text)
    return redis.error_reply('ERR mbx_purge: ' .. text)
end

-- Runs (keys/README.md): "/runs" holds the mailbox's UIDs as maximal runs of consecutive UIDs,
-- member "first:last", score first. Invariant, kept by every script that adds or removes UIDs:
-- the runs are disjoint, never adjacent (at least one missing UID between two runs) and their
-- union is exactly "/uids". Append extends the last run or adds one; removing a UID splits or
-- shrinks its run. Each step costs O(log runs). Scripts cannot share code, so each script carries
-- the helper it needs.
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

local n = #ARGV - 1
if #ARGV < 1 or n > 1000 or #KEYS < 12 + n then
    return fail('expects 12 + n + caches keys and 1 + n arguments, n <= 1000')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
if KEYS[2] ~= prefix .. 'trash' or KEYS[12] ~= prefix .. 'gc' then
    return fail('trash or gc key does not match the namespace')
end
local mbx = prefix .. 'mbx/' .. mbxid
for i = 1, 9 do
    if KEYS[2 + i] ~= mbx .. MBX_PARTS[i] then
        return fail('mailbox keys do not match the mbxid')
    end
end
local uids = {}
for i = 1, n do
    local uid = tonumber(ARGV[1 + i])
    if not uid or uid < 1 or uid ~= math.floor(uid) or not string.find(ARGV[1 + i], '^%d+$') then
        return fail('invalid UID')
    end
    uids[i] = uid
end
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
if redis.call('SISMEMBER', KEYS[2], mbxid) == 0 then
    if redis.call('EXISTS', KEYS[3]) == 1 then
        return fail('mailbox is not deleted')
    end
    return {0, 0}
end
local recent_uid = tonumber(redis.call('HGET', KEYS[3], 'recent_uid') or '1') or 1
local shas, sizes = {}, {}
for i = 1, n do
    if string.sub(KEYS[12 + i], 1, #prefix) ~= prefix then
        return fail('content key outside the namespace')
    end
    local rec = redis.call('HGET', KEYS[6], uids[i])
    if rec then
        local sha, size = string.match(rec, '^(%x+) %S+ (%d+) ')
        if not sha or KEYS[12 + i] ~= prefix .. 'content/' .. sha then
            return fail('content key does not match the message')
        end
        shas[i], sizes[i] = sha, tonumber(size)
    end
end

-- Counters go down by "0 - n", never "-n": Lua 5.1 formats -0 as "-0", which HINCRBY refuses.
local now = tonumber(redis.call('TIME')[1])
for i = 1, #caches do
    redis.call('DEL', caches[i])
end
local released, freed, bytes, unseen, deleted, recent = 0, 0, 0, 0, 0, 0
for i = 1, n do
    local uid = uids[i]
    local record = shas[i] and redis.call('HDEL', KEYS[6], uid) == 1
    if redis.call('ZREM', KEYS[4], uid) == 1 or record then
        runs_remove(KEYS[5], uid)
        redis.call('HDEL', KEYS[7], uid)
        redis.call('ZREM', KEYS[8], uid)
        unseen = unseen + redis.call('ZREM', KEYS[9], uid)
        deleted = deleted + redis.call('ZREM', KEYS[10], uid)
        if uid >= recent_uid then
            recent = recent + 1
        end
        local content = KEYS[12 + i]
        if record then
            if redis.call('EXISTS', content) == 1 and redis.call('HINCRBY', content, 'refs', -1) <= 0 then
                redis.call('ZADD', KEYS[12], now, shas[i])
            end
            bytes = bytes + sizes[i]
            freed = freed + 1
        end
        released = released + 1
    end
end
local remaining = redis.call('ZCARD', KEYS[4])
if remaining == 0 then
    for i = 3, 11 do
        redis.call('DEL', KEYS[i])
    end
    redis.call('SREM', KEYS[2], mbxid)
elseif released > 0 then
    redis.call('HINCRBY', KEYS[3], 'messages', 0 - released)
    redis.call('HINCRBY', KEYS[3], 'bytes', 0 - bytes)
    redis.call('HINCRBY', KEYS[3], 'unseen', 0 - unseen)
    redis.call('HINCRBY', KEYS[3], 'deleted', 0 - deleted)
    redis.call('HINCRBY', KEYS[3], 'recent', 0 - recent)
end
if freed > 0 then
    redis.call('HINCRBY', KEYS[1], 'messages', 0 - freed)
    redis.call('HINCRBY', KEYS[1], 'bytes', 0 - bytes)
end
return {released, remaining}
