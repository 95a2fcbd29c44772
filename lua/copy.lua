-- copy: COPY and UID COPY (RFC 3501 §6.4.7, COPYUID of RFC 4315) and the copy half of MOVE
-- (RFC 6851), from one mailbox into another of the same user (or the same one). Content is shared:
-- a copy takes a reference on the content key, never its bytes. A COPY either makes every copy
-- visible or none, however many batches it spans:
--   `stage`  (every batch but the last; up to 1,000 source UIDs) appends the batch's records to
--            the operation's staging list /copy/<id> and takes their content references, so the
--            content outlives a concurrent EXPUNGE of the source; nothing in the destination
--            changes (its UIDs, runs, counters, columns and log stay as they were);
--   `commit` (the last batch, or the only one) reads its own batch like `stage`, then checks the
--            destination, quota and keyword limit for everything staged plus this batch, and
--            writes them all with consecutive new UIDs from uidnext: one modseq, one `append`
--            log entry, one wake-up. A commit that fails writes nothing, its staged records stay
--            for `abort`;
--   `abort`  releases up to 1,000 staged records (their content references) per call; run until
--            it replies 0. The front end aborts after any failure; a front end killed mid-COPY
--            leaves its id in /copies (with the time of its last write) for a sweeper.
-- Copies keep the source's internaldate, EMAILID, THREADID and flags (keywords take the
-- destination's first spelling) and are \Recent in the destination (the next session claims them).
-- KEYS[1]      /ns/{<nsid>}/meta
-- KEYS[2..10]  the destination mailbox keys in keys_mbx order: /ns/{<nsid>}/mbx/<dst>, then its
--              /uids, /runs, /msg, /flags, /modseq, /unseen, /deleted, /log
-- KEYS[11]     /ns/{<nsid>}/channel
-- KEYS[12]     /ns/{<nsid>}/gc
-- KEYS[13]     /ns/{<nsid>}/copies: sorted set, staging id -> unix time of its last stage call
-- KEYS[14]     /ns/{<nsid>}/copy/<id>: list, this operation's staged records (id: 32 hex digits)
-- KEYS[15..17] the source mailbox hash, its /msg and its /flags
-- KEYS[17+i]   stage, commit: /ns/{<nsid>}/content/<sha256> of source UID ARGV[6+i] (as read from
--              the source's /msg; any content key of the namespace for a UID without a record);
--              abort: the content key of the i-th staged record (LRANGE 0 999, second word)
-- ARGV[1]      mode: `stage`, `commit` or `abort`
-- ARGV[2]      destination mbxid
-- ARGV[3]      source mbxid
-- ARGV[4]      quota_bytes: the user's limit on the sum of message sizes (0 = none)
-- ARGV[5]      quota_messages: the user's limit on messages (0 = none)
-- ARGV[6]      max_keywords: distinct keywords per destination mailbox (0 = none)
-- ARGV[6+i]    stage, commit: source UIDs, strictly ascending, 0..1000 (none for abort); UIDs
--              without a record in the source (expunged meanwhile) are skipped
-- Reply        stage:  {staged, m, src1, ..., srcm}: records staged so far in total, then the
--                      source UIDs this call staged
--              commit: {uidvalidity, modseq, first_uid, n, m, src1, ..., srcm}: the destination's
--                      UIDVALIDITY and highestmodseq after the call, n copies made with UIDs
--                      first_uid .. first_uid + n - 1 in staging order (earlier batches first),
--                      then the source UIDs this call copied itself (n = 0: nothing written)
--              abort:  {remaining}
-- Errors       "NONEXISTENT ..." when the user or the source mailbox is gone; "TRYCREATE ..." when
--              the destination is gone or removed; "OVERQUOTA ..."; "LIMIT ..." (keywords);
--              "ERR ..." on bad keys or arguments or a content key that does not match its
--              message (re-read and retry). Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local copyid_pat = '^copy/' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}
local MAX_UIDS = 1000
local CHUNK = 500 -- members per bulk HSET/ZADD (unpack stays far below Lua's C stack limit)

local function fail(text)
    return redis.error_reply('ERR copy: ' .. text)
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

-- Runs (keys/README.md): maximal runs of consecutive UIDs, member "first:last", score first.
-- Adds first..last, all above every UID present: extends the last run or adds one.
local function runs_append(runs, first, last)
    local top = redis.call('ZRANGE', runs, -1, -1)
    if #top == 1 then
        local a, b = string.match(top[1], '^(%d+):(%d+)$')
        if tonumber(b) == first - 1 then
            redis.call('ZREM', runs, top[1])
            first = tonumber(a)
        end
    end
    redis.call('ZADD', runs, first, string.format('%d:%d', first, last))
end

-- Sends cmd key with args in chunks of CHUNK items of width w (1 for HDEL/ZREM, 2 for pairs).
local function bulk(cmd, key, args, w)
    local step = CHUNK * w
    for i = 1, #args, step do
        redis.call(cmd, key, unpack(args, i, math.min(i + step - 1, #args)))
    end
end

-- Argument checks.
if #ARGV < 6 or #KEYS < 17 then
    return fail('expects 17 + n keys and 6 + n arguments')
end
local mode, dst, src = ARGV[1], ARGV[2], ARGV[3]
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or not string.find(dst, mbxid_pat) or not string.find(src, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local dmbx = prefix .. 'mbx/' .. dst
for i = 1, 9 do
    if KEYS[1 + i] ~= dmbx .. MBX_PARTS[i] then
        return fail('destination keys do not match the mbxid')
    end
end
local smbx = prefix .. 'mbx/' .. src
if KEYS[11] ~= prefix .. 'channel' or KEYS[12] ~= prefix .. 'gc' or KEYS[13] ~= prefix .. 'copies' or
    string.sub(KEYS[14], 1, #prefix) ~= prefix or
    not string.find(string.sub(KEYS[14], #prefix + 1), copyid_pat) or
    KEYS[15] ~= smbx or KEYS[16] ~= smbx .. '/msg' or KEYS[17] ~= smbx .. '/flags' then
    return fail('channel, gc, copies, staging or source keys do not match')
end
local copyid = string.sub(KEYS[14], #prefix + 6)
local limits = {}
for i = 4, 6 do
    if not string.find(ARGV[i], '^%d+$') then
        return fail('invalid quota or limit')
    end
    limits[i] = tonumber(ARGV[i])
end
local quota_bytes, quota_messages, max_keywords = limits[4], limits[5], limits[6]
local n = #ARGV - 6
if mode ~= 'stage' and mode ~= 'commit' and mode ~= 'abort' then
    return fail('mode must be stage, commit or abort')
end
if mode == 'abort' then
    if n ~= 0 or #KEYS - 17 > MAX_UIDS then
        return fail('abort takes no UIDs and at most 1,000 content keys')
    end
elseif n > MAX_UIDS or #KEYS ~= 17 + n then
    return fail('expects 17 + n keys and 6 + n arguments, n <= 1000')
end
local uids = {}
for i = 1, n do
    local uid = tonumber(ARGV[6 + i])
    if not string.find(ARGV[6 + i], '^[1-9]%d*$') or uid > 4294967295 or
        (i > 1 and uid <= uids[i - 1]) then
        return fail('invalid UID (UIDs must ascend)')
    end
    uids[i] = uid
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end

-- abort: release the first records of the staging list (their content keys follow in KEYS).
if mode == 'abort' then
    local k = #KEYS - 17
    local recs = redis.call('LRANGE', KEYS[14], 0, k - 1)
    if #recs ~= k then
        return fail('fewer staged records than content keys')
    end
    for i = 1, k do
        local sha = string.match(recs[i], '^%d+ (%x+) ')
        if not sha or KEYS[17 + i] ~= prefix .. 'content/' .. sha then
            return fail('content key does not match the staged record')
        end
    end
    local now = tonumber(redis.call('TIME')[1])
    for i = 1, k do
        local content = KEYS[17 + i]
        if redis.call('EXISTS', content) == 1 and redis.call('HINCRBY', content, 'refs', -1) <= 0 then
            redis.call('ZADD', KEYS[12], now, string.match(recs[i], '^%d+ (%x+) '))
        end
    end
    if k > 0 then
        redis.call('LTRIM', KEYS[14], k, -1)
    end
    local remaining = redis.call('LLEN', KEYS[14])
    if remaining == 0 then
        redis.call('ZREM', KEYS[13], copyid)
    end
    return {remaining}
end

-- stage and commit: read this batch from the source.
local sstate = redis.call('HMGET', KEYS[15], 'uidvalidity', 'removed')
if not sstate[1] or sstate[2] then
    return redis.error_reply('NONEXISTENT source mailbox does not exist')
end
local dstate = redis.call('HMGET', KEYS[2], 'uidvalidity', 'uidnext', 'highestmodseq', 'keywords',
    'removed')
if not dstate[1] or dstate[5] then
    return redis.error_reply('TRYCREATE no such mailbox')
end
local batch, batch_uids, batch_idx = {}, {}, {}
if n > 0 then
    local recs = redis.call('HMGET', KEYS[16], unpack(uids))
    local flags = redis.call('HMGET', KEYS[17], unpack(uids))
    for i = 1, n do
        if recs[i] then
            local sha = string.match(recs[i], '^(%x+) %-?%d+ %d+ %S+ %S+$')
            if not sha or KEYS[17 + i] ~= prefix .. 'content/' .. sha then
                return fail('content key does not match the message')
            end
            if redis.call('EXISTS', KEYS[17 + i]) == 0 then
                return fail('message content is missing')
            end
            local rec = uids[i] .. ' ' .. recs[i]
            if flags[i] and flags[i] ~= '' then
                rec = rec .. ' ' .. flags[i]
            end
            batch[#batch + 1] = rec
            batch_uids[#batch_uids + 1] = uids[i]
            batch_idx[#batch_idx + 1] = i
        end
    end
end

if mode == 'stage' then
    local now = tonumber(redis.call('TIME')[1])
    for _, i in ipairs(batch_idx) do
        redis.call('HINCRBY', KEYS[17 + i], 'refs', 1)
    end
    if #batch > 0 then
        bulk('RPUSH', KEYS[14], batch, 1)
    end
    redis.call('ZADD', KEYS[13], now, copyid)
    local reply = {redis.call('LLEN', KEYS[14]), #batch_uids}
    for _, uid in ipairs(batch_uids) do
        reply[#reply + 1] = uid
    end
    return reply
end

-- commit: everything staged plus this batch, checked before the first write.
local uidvalidity, uidnext, highest = tonumber(dstate[1]), tonumber(dstate[2]), tonumber(dstate[3])
local recs = redis.call('LRANGE', KEYS[14], 0, -1)
local staged = #recs
for _, rec in ipairs(batch) do
    recs[#recs + 1] = rec
end
local total = #recs
if total == 0 then
    return {uidvalidity, highest, uidnext, 0, 0}
end
local known, nknown, learned = {}, 0, {}
for word in string.gmatch(dstate[4] or '', '%S+') do
    local lower = string.lower(word)
    if not known[lower] then
        known[lower] = word
        nknown = nknown + 1
    end
end
local bytes, unseen, deleted = 0, 0, 0
local msg, flg, mods, uidz, unseenz, deletedz = {}, {}, {}, {}, {}, {}
local modseq = highest + 1
for j = 1, total do
    local uid = uidnext + j - 1
    local rest, size, fl = string.match(recs[j], '^%d+ (%x+ %-?%d+ (%d+) %S+ %S+) ?(.*)$')
    if not rest then
        return fail('staged record is damaged')
    end
    bytes = bytes + tonumber(size)
    local sys, kws, seen, del = {}, {}, false, false
    for word in string.gmatch(fl, '%S+') do
        if string.sub(word, 1, 1) == '\\' then
            sys[#sys + 1] = word
            seen = seen or word == '\\Seen'
            del = del or word == '\\Deleted'
        else
            local lower = string.lower(word)
            if not known[lower] then
                known[lower] = word
                learned[#learned + 1] = word
            end
            kws[#kws + 1] = known[lower]
        end
    end
    for _, k in ipairs(kws) do
        sys[#sys + 1] = k
    end
    msg[#msg + 1] = uid
    msg[#msg + 1] = rest
    if #sys > 0 then
        flg[#flg + 1] = uid
        flg[#flg + 1] = table.concat(sys, ' ')
    end
    mods[#mods + 1] = modseq
    mods[#mods + 1] = uid
    uidz[#uidz + 1] = uid
    uidz[#uidz + 1] = uid
    if not seen then
        unseenz[#unseenz + 1] = uid
        unseenz[#unseenz + 1] = uid
        unseen = unseen + 1
    end
    if del then
        deletedz[#deletedz + 1] = uid
        deletedz[#deletedz + 1] = uid
        deleted = deleted + 1
    end
end
local used = redis.call('HMGET', KEYS[1], 'messages', 'bytes')
if (quota_messages > 0 and (tonumber(used[1]) or 0) + total > quota_messages) or
    (quota_bytes > 0 and (tonumber(used[2]) or 0) + bytes > quota_bytes) then
    return redis.error_reply('OVERQUOTA quota exceeded')
end
if max_keywords > 0 and #learned > 0 and nknown + #learned > max_keywords then
    return redis.error_reply('LIMIT too many keywords in the destination mailbox')
end
if uidnext + total - 1 > 4294967295 then
    return redis.error_reply('LIMIT the mailbox has run out of UIDs')
end
if not log_accepts(KEYS[10], modseq) then
    return fail('change log is ahead of highestmodseq')
end

-- Writes.
for _, i in ipairs(batch_idx) do
    redis.call('HINCRBY', KEYS[17 + i], 'refs', 1)
end
local now = tonumber(redis.call('TIME')[1])
local first, last = uidnext, uidnext + total - 1
bulk('HSET', KEYS[5], msg, 2)
if #flg > 0 then
    bulk('HSET', KEYS[6], flg, 2)
end
bulk('ZADD', KEYS[7], mods, 2)
bulk('ZADD', KEYS[3], uidz, 2)
if #unseenz > 0 then
    bulk('ZADD', KEYS[8], unseenz, 2)
end
if #deletedz > 0 then
    bulk('ZADD', KEYS[9], deletedz, 2)
end
runs_append(KEYS[4], first, last)
local fields = {'uidnext', last + 1, 'highestmodseq', modseq}
if #learned > 0 then
    local all = {}
    for word in string.gmatch(dstate[4] or '', '%S+') do
        all[#all + 1] = word
    end
    for _, word in ipairs(learned) do
        all[#all + 1] = word
    end
    fields[5] = 'keywords'
    fields[6] = table.concat(all, ' ')
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HINCRBY', KEYS[2], 'messages', total)
redis.call('HINCRBY', KEYS[2], 'unseen', unseen)
redis.call('HINCRBY', KEYS[2], 'deleted', deleted)
redis.call('HINCRBY', KEYS[2], 'recent', total)
redis.call('HINCRBY', KEYS[2], 'bytes', bytes)
redis.call('HINCRBY', KEYS[1], 'messages', total)
redis.call('HINCRBY', KEYS[1], 'bytes', bytes)
if staged > 0 then
    redis.call('DEL', KEYS[14])
end
redis.call('ZREM', KEYS[13], copyid)
local set = first == last and string.format('%d', first) or string.format('%d:%d', first, last)
log_add(KEYS[10], modseq, now, 'k', 'append', 'u', set, 't', now)
redis.call('PUBLISH', KEYS[11], string.format('%s %d', dst, modseq))
local reply = {uidvalidity, modseq, first, total, #batch_uids}
for _, uid in ipairs(batch_uids) do
    reply[#reply + 1] = uid
end
return reply
