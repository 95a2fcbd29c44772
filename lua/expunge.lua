-- expunge: permanently removes messages flagged \Deleted from one mailbox, at most a batch per
-- call (EXPUNGE, CLOSE, UID EXPUNGE; RFC 3501 §6.4.3, RFC 4315 §2.1). The caller repeats while a
-- call removes a full batch. Each call that removes something is one operation: one modseq, one
-- `expunge` log entry, one wake-up.
-- KEYS[1]      /ns/{<nsid>}/meta
-- KEYS[2..10]  the mailbox keys in keys_mbx order: mbx, uids, runs, msg, flags, modseq, unseen,
--              deleted, log
-- KEYS[11]     /ns/{<nsid>}/channel
-- KEYS[12]     /ns/{<nsid>}/gc       content id -> time of its latest release
-- KEYS[13]     /ns/{<nsid>}/gcrefs   content id -> releases not yet applied to its refs
-- ARGV[1]      mbxid
-- ARGV[2]      batch size, 1..1000
-- ARGV[3..]    optional UIDs (UID EXPUNGE): only these, if flagged \Deleted; none = every one
-- Reply        {modseq, n, uid1, ..., uidn}: the UIDs removed, ascending; modseq is the mailbox's
--              highestmodseq after the call (unchanged when n = 0)
-- Errors       NONEXISTENT (user or mailbox gone), ERR (caller bug). Nothing is written on error.
local meta, mbx, uids, runs, msg, flags, modseq, unseen, deleted, log, channel, gc, gcrefs =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
    KEYS[11], KEYS[12], KEYS[13]
if #KEYS ~= 13 or #ARGV < 2 then
    return redis.error_reply('ERR expunge: expects 13 keys and at least 2 arguments')
end
local mbxid = ARGV[1]
if not string.match(mbxid, '^F' .. string.rep('[0-9a-f]', 32) .. '$') then
    return redis.error_reply('ERR expunge: bad mbxid')
end
local prefix = string.match(meta, '^(/ns/{[0-9a-f-]+}/)meta$')
if not prefix or mbx ~= prefix .. 'mbx/' .. mbxid or channel ~= prefix .. 'channel' or
    gc ~= prefix .. 'gc' or gcrefs ~= prefix .. 'gcrefs' then
    return redis.error_reply('ERR expunge: keys do not match')
end
local parts = {uids, runs, msg, flags, modseq, unseen, deleted, log}
local suffix = {'/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}
for i = 1, #parts do
    if parts[i] ~= mbx .. suffix[i] then
        return redis.error_reply('ERR expunge: keys do not match')
    end
end
local batch = tonumber(ARGV[2])
if not batch or batch < 1 or batch > 1000 or batch ~= math.floor(batch) then
    return redis.error_reply('ERR expunge: bad batch size')
end
if redis.call('EXISTS', meta) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local state = redis.call('HMGET', mbx, 'highestmodseq', 'deleted', 'recent_uid')
if not state[1] or state[2] == '1' then
    return redis.error_reply('NONEXISTENT mailbox does not exist')
end
local highest = tonumber(state[1])

-- The victims: \Deleted messages, optionally restricted to the given UIDs.
local victims = {}
if #ARGV > 2 then
    for i = 3, #ARGV do
        local u = tonumber(ARGV[i])
        if not u or u < 1 or u ~= math.floor(u) then
            return redis.error_reply('ERR expunge: bad uid')
        end
        if #victims < batch and redis.call('ZSCORE', deleted, u) then
            victims[#victims + 1] = u
        end
    end
    table.sort(victims)
else
    local got = redis.call('ZRANGE', deleted, 0, batch - 1)
    for i = 1, #got do
        victims[i] = tonumber(got[i])
    end
end
if #victims == 0 then
    return {highest, 0}
end

-- Removes uid from the runs set: the run holding it shrinks or splits in two.
local function runs_remove(uid)
    local r = redis.call('ZREVRANGEBYSCORE', runs, uid, '-inf', 'LIMIT', 0, 1)
    if #r == 0 then
        return
    end
    local first, last = string.match(r[1], '^(%d+):(%d+)$')
    first, last = tonumber(first), tonumber(last)
    if uid > last then
        return
    end
    redis.call('ZREM', runs, r[1])
    if first < uid then
        redis.call('ZADD', runs, first, first .. ':' .. (uid - 1))
    end
    if uid < last then
        redis.call('ZADD', runs, uid + 1, (uid + 1) .. ':' .. last)
    end
end

local now = tonumber(redis.call('TIME')[1])
local recent_uid = tonumber(state[3] or '1')
local bytes, unseen_n, recent_n = 0, 0, 0
for _, uid in ipairs(victims) do
    local rec = redis.call('HGET', msg, uid)
    if rec then
        local sha, _, size = string.match(rec, '^(%x+) (%d+) (%d+)')
        bytes = bytes + tonumber(size)
        -- The content's refs drop when gc_sweep.lua applies this release (it gets the content
        -- keys in KEYS; this script cannot name them).
        redis.call('HINCRBY', gcrefs, sha, 1)
        redis.call('ZADD', gc, now, sha)
    end
    redis.call('ZREM', uids, uid)
    redis.call('HDEL', msg, uid)
    redis.call('HDEL', flags, uid)
    redis.call('ZREM', modseq, uid)
    redis.call('ZREM', deleted, uid)
    unseen_n = unseen_n + redis.call('ZREM', unseen, uid)
    if uid >= recent_uid then
        recent_n = recent_n + 1
    end
    runs_remove(uid)
end

local n = #victims
redis.call('HINCRBY', mbx, 'messages', -n)
redis.call('HINCRBY', mbx, 'deleted', -n)
redis.call('HINCRBY', mbx, 'unseen', -unseen_n)
redis.call('HINCRBY', mbx, 'recent', -recent_n)
redis.call('HINCRBY', mbx, 'bytes', -bytes)
redis.call('HINCRBY', meta, 'messages', -n)
redis.call('HINCRBY', meta, 'bytes', -bytes)
highest = highest + 1
redis.call('HSET', mbx, 'highestmodseq', highest)

-- The UID set of the log entry, as runs.
local out, i = {}, 1
while i <= n do
    local j = i
    while j < n and victims[j + 1] == victims[j] + 1 do
        j = j + 1
    end
    out[#out + 1] = (i == j) and tostring(victims[i]) or (victims[i] .. ':' .. victims[j])
    i = j + 1
end
redis.call('XADD', log, 'MAXLEN', '~', 10000, highest .. '-1', 'k', 'expunge', 'u',
    table.concat(out, ','), 't', now)
redis.call('PUBLISH', channel, mbxid .. ' ' .. highest)

local reply = {highest, n}
for k = 1, n do
    reply[k + 2] = victims[k]
end
return reply
