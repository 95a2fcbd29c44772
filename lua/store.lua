-- store: changes the flags of up to 1,000 messages of one mailbox (STORE and UID STORE, RFC 3501
-- §6.4.6; FETCH of a non-PEEK body section sets \Seen with mode `add`). Flags that actually change
-- are one operation: one new modseq given to every changed message, one `flags` log entry listing
-- the changed UIDs, one wake-up. A call that changes nothing writes nothing (no modseq bump).
-- UIDs that do not exist (expunged meanwhile) are skipped.
-- KEYS[1]      /ns/{<nsid>}/meta
-- KEYS[2..10]  the mailbox keys in keys_mbx order: /ns/{<nsid>}/mbx/<mbxid>, then its /uids,
--              /runs, /msg, /flags, /modseq, /unseen, /deleted, /log
-- KEYS[11]     /ns/{<nsid>}/channel
-- KEYS[12..]   the flag caches of the UIDs' chunks, /ns/{<nsid>}/mbx/<mbxid>/cache/f/<uid // 1024>,
--              one per chunk in UID order (keys_cache_chunks); deleted when anything changes
-- ARGV[1]      mbxid
-- ARGV[2]      mode: `set` (replace), `add` or `remove`
-- ARGV[3]      flags, space separated (may be empty): system flags in any case (stored as
--              \Seen \Answered \Flagged \Deleted \Draft), keywords (atoms, compared without case,
--              stored in the mailbox's first spelling); \Recent is ignored (session state)
-- ARGV[4]      unchangedsince: 0 = none; else a message whose modseq is above it is left as it is
--              (RFC 7162 §3.1.3; the caller tells those from the reply's per-message modseq)
-- ARGV[5]      max_keywords: distinct keywords per mailbox (0 = none)
-- ARGV[6..]    UIDs, strictly ascending, 0..1000 of them
-- Reply        {modseq, n, uid1, flags1, modseq1, ..., uidn, flagsn, modseqn}: modseq is the
--              mailbox's highestmodseq after the call; then every given UID that exists with its
--              flags and its per-message modseq after the call (changed or not: RFC 3501 answers
--              FETCH for each)
-- Errors       "NONEXISTENT ..." when the user or the mailbox is gone; "LIMIT ..." when new
--              keywords would exceed max_keywords; "ERR ..." on bad keys or arguments (unknown
--              system flag, keyword that is not an atom). Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}
local SYSTEM = {['\\seen'] = '\\Seen', ['\\answered'] = '\\Answered', ['\\flagged'] = '\\Flagged',
    ['\\deleted'] = '\\Deleted', ['\\draft'] = '\\Draft'}
local SYSTEM_ORDER = {'\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'}
local MAX_UIDS = 1000

local function fail(text)
    return redis.error_reply('ERR store: ' .. text)
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

-- An ascending UID list as a compact UID set ("4:7,9").
local function uidset(list)
    local parts, i = {}, 1
    while i <= #list do
        local j = i
        while j < #list and list[j + 1] == list[j] + 1 do
            j = j + 1
        end
        parts[#parts + 1] = (i == j) and tostring(list[i]) or (list[i] .. ':' .. list[j])
        i = j + 1
    end
    return table.concat(parts, ',')
end

-- A flag set: sys[canonical] = true, kw[lower] = spelling, kworder = spellings in order.
local function parse(s)
    local set = {sys = {}, kw = {}, kworder = {}}
    for word in string.gmatch(s, '%S+') do
        local lower = string.lower(word)
        if string.sub(word, 1, 1) == '\\' then
            if SYSTEM[lower] then
                set.sys[SYSTEM[lower]] = true
            elseif lower ~= '\\recent' then
                return nil
            end
        elseif string.find(word, '[%z%c%(%){%%%*"\\%]\127-\255 ]') or #word > 128 then
            return nil
        elseif not set.kw[lower] then
            set.kw[lower] = word
            set.kworder[#set.kworder + 1] = word
        end
    end
    return set
end

local function format(set)
    local out = {}
    for _, f in ipairs(SYSTEM_ORDER) do
        if set.sys[f] then
            out[#out + 1] = f
        end
    end
    for _, k in ipairs(set.kworder) do
        out[#out + 1] = k
    end
    return table.concat(out, ' ')
end

local function same(a, b)
    for _, f in ipairs(SYSTEM_ORDER) do
        if (a.sys[f] or false) ~= (b.sys[f] or false) then
            return false
        end
    end
    if #a.kworder ~= #b.kworder then
        return false
    end
    for lower in pairs(a.kw) do
        if not b.kw[lower] then
            return false
        end
    end
    return true
end

-- The flags of a message after applying the request (req keywords already in mailbox spelling).
local function apply(mode, cur, req)
    if mode == 'set' then
        return req
    end
    local out = {sys = {}, kw = {}, kworder = {}}
    for _, f in ipairs(SYSTEM_ORDER) do
        if mode == 'add' then
            out.sys[f] = cur.sys[f] or req.sys[f]
        else
            out.sys[f] = cur.sys[f] and not req.sys[f]
        end
    end
    for _, k in ipairs(cur.kworder) do
        local lower = string.lower(k)
        if mode == 'add' or not req.kw[lower] then
            out.kw[lower] = k
            out.kworder[#out.kworder + 1] = k
        end
    end
    if mode == 'add' then
        for _, k in ipairs(req.kworder) do
            local lower = string.lower(k)
            if not out.kw[lower] then
                out.kw[lower] = k
                out.kworder[#out.kworder + 1] = k
            end
        end
    end
    return out
end

local n = #ARGV - 5
if #ARGV < 5 or n > MAX_UIDS or #KEYS < 11 then
    return fail('expects 11 + chunks keys and 5 + n arguments, n <= 1000')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid, mode = ARGV[1], ARGV[2]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local mbx = prefix .. 'mbx/' .. mbxid
for i = 1, 9 do
    if KEYS[1 + i] ~= mbx .. MBX_PARTS[i] then
        return fail('mailbox keys do not match the mbxid')
    end
end
if KEYS[11] ~= prefix .. 'channel' then
    return fail('channel key does not match the namespace')
end
if mode ~= 'set' and mode ~= 'add' and mode ~= 'remove' then
    return fail('mode must be set, add or remove')
end
local req = parse(ARGV[3])
if not req then
    return fail('invalid flag')
end
local since, max_keywords = tonumber(ARGV[4]), tonumber(ARGV[5])
if not string.find(ARGV[4], '^%d+$') or not string.find(ARGV[5], '^%d+$') then
    return fail('invalid unchangedsince or max_keywords')
end
local uids = {}
for i = 1, n do
    local uid = tonumber(ARGV[5 + i])
    if not string.find(ARGV[5 + i], '^[1-9]%d*$') or uid > 4294967295 or
        (i > 1 and uid <= uids[i - 1]) then
        return fail('invalid UID (UIDs must ascend)')
    end
    uids[i] = uid
end
-- The flag caches of the UIDs' chunks, exactly (colcache.h: a chunk must never outlive a change).
local caches, last_chunk = {}, -1
for i = 1, n do
    local c = math.floor(uids[i] / 1024)
    if c ~= last_chunk then
        caches[#caches + 1] = mbx .. '/cache/f/' .. c
        last_chunk = c
    end
end
if #KEYS ~= 11 + #caches then
    return fail('expects the flag cache key of every chunk')
end
for i = 1, #caches do
    if KEYS[11 + i] ~= caches[i] then
        return fail('flag cache keys do not match the UIDs')
    end
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local state = redis.call('HMGET', KEYS[2], 'highestmodseq', 'removed', 'keywords')
if not state[1] or state[2] then
    return redis.error_reply('NONEXISTENT mailbox does not exist')
end
local highest = tonumber(state[1])
if n == 0 then
    return {highest, 0}
end

-- The request's keywords in the mailbox's spelling; new ones are learned (set and add only).
local known, nknown, learned = {}, 0, {}
for word in string.gmatch(state[3] or '', '%S+') do
    local lower = string.lower(word)
    if not known[lower] then
        known[lower] = word
        nknown = nknown + 1
    end
end
local want = {sys = req.sys, kw = {}, kworder = {}}
for _, k in ipairs(req.kworder) do
    local lower = string.lower(k)
    local spelling = known[lower]
    if not spelling and mode ~= 'remove' then
        spelling = k
        learned[#learned + 1] = k
    end
    if spelling then
        want.kw[lower] = spelling
        want.kworder[#want.kworder + 1] = spelling
    end
end

-- Read every message once, work out the new flags, validate, then write.
local mods = redis.call('ZMSCORE', KEYS[7], unpack(uids))
local cur = redis.call('HMGET', KEYS[6], unpack(uids))
local present, newflags, changed, ischanged = {}, {}, {}, {}
for i = 1, n do
    if mods[i] then
        local before = parse(cur[i] or '') or {sys = {}, kw = {}, kworder = {}}
        local after = apply(mode, before, want)
        present[#present + 1] = i
        if (since == 0 or tonumber(mods[i]) <= since) and not same(before, after) then
            newflags[i] = format(after)
            changed[#changed + 1] = i
            ischanged[i] = true
        else
            newflags[i] = cur[i] or ''
        end
    end
end
if #changed == 0 then
    learned = {}
end
if #learned > 0 and max_keywords > 0 and nknown + #learned > max_keywords then
    return redis.error_reply('LIMIT too many keywords in this mailbox')
end
local modseq = highest
if #changed > 0 then
    modseq = highest + 1
    if not log_accepts(KEYS[10], modseq) then
        return fail('change log is ahead of highestmodseq')
    end
    local now = tonumber(redis.call('TIME')[1])
    for i = 1, #caches do
        redis.call('DEL', caches[i])
    end
    local sets, dels, zmod = {}, {}, {}
    local seen_add, seen_del, del_add, del_del = {}, {}, {}, {}
    local list = {}
    for _, i in ipairs(changed) do
        local uid = uids[i]
        list[#list + 1] = uid
        if newflags[i] == '' then
            dels[#dels + 1] = uid
        else
            sets[#sets + 1] = uid
            sets[#sets + 1] = newflags[i]
        end
        zmod[#zmod + 1] = modseq
        zmod[#zmod + 1] = uid
        local was = parse(cur[i] or '') or {sys = {}}
        local is = parse(newflags[i])
        if was.sys['\\Seen'] and not is.sys['\\Seen'] then
            seen_add[#seen_add + 1] = uid
            seen_add[#seen_add + 1] = uid
        elseif is.sys['\\Seen'] and not was.sys['\\Seen'] then
            seen_del[#seen_del + 1] = uid
        end
        if is.sys['\\Deleted'] and not was.sys['\\Deleted'] then
            del_add[#del_add + 1] = uid
            del_add[#del_add + 1] = uid
        elseif was.sys['\\Deleted'] and not is.sys['\\Deleted'] then
            del_del[#del_del + 1] = uid
        end
    end
    if #sets > 0 then
        redis.call('HSET', KEYS[6], unpack(sets))
    end
    if #dels > 0 then
        redis.call('HDEL', KEYS[6], unpack(dels))
    end
    redis.call('ZADD', KEYS[7], unpack(zmod))
    local unseen, deleted = 0, 0
    if #seen_add > 0 then
        unseen = unseen + redis.call('ZADD', KEYS[8], unpack(seen_add))
    end
    if #seen_del > 0 then
        unseen = unseen - redis.call('ZREM', KEYS[8], unpack(seen_del))
    end
    if #del_add > 0 then
        deleted = deleted + redis.call('ZADD', KEYS[9], unpack(del_add))
    end
    if #del_del > 0 then
        deleted = deleted - redis.call('ZREM', KEYS[9], unpack(del_del))
    end
    if unseen ~= 0 then
        redis.call('HINCRBY', KEYS[2], 'unseen', unseen)
    end
    if deleted ~= 0 then
        redis.call('HINCRBY', KEYS[2], 'deleted', deleted)
    end
    local fields = {'highestmodseq', modseq}
    if #learned > 0 then
        local all = {}
        for word in string.gmatch(state[3] or '', '%S+') do
            all[#all + 1] = word
        end
        for _, word in ipairs(learned) do
            all[#all + 1] = word
        end
        fields[3] = 'keywords'
        fields[4] = table.concat(all, ' ')
    end
    redis.call('HSET', KEYS[2], unpack(fields))
    log_add(KEYS[10], modseq, now, 'k', 'flags', 'u', uidset(list), 't', now)
    redis.call('PUBLISH', KEYS[11], string.format('%s %d', mbxid, modseq))
end

local reply = {modseq, #present}
for _, i in ipairs(present) do
    reply[#reply + 1] = uids[i]
    reply[#reply + 1] = newflags[i]
    reply[#reply + 1] = ischanged[i] and modseq or tonumber(mods[i])
end
return reply
