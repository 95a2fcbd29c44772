-- append: APPEND and MULTIAPPEND (RFC 3501 §6.3.11, RFC 3502): n messages into one mailbox, all or
-- none. Everything is checked before the first write. Content is shared by SHA-256 and reference
-- counted: known content gains a reference (its inline bytes are ignored, its staging key deleted);
-- new content gets its hash and its raw bytes, set inline or renamed from the staging key that
-- staging_append.lua filled. The messages take consecutive UIDs from uidnext, are \Recent (the next
-- session to SELECT claims them), and the whole call is one modseq and one `append` log entry.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2..10]  the mailbox keys in keys_mbx order: /ns/{<nsid>}/mbx/<mbxid>, then its /uids,
--          /runs, /msg, /flags, /modseq, /unseen, /deleted, /log
-- KEYS[11] /ns/{<nsid>}/threads
-- KEYS[12] /ns/{<nsid>}/channel
-- KEYS[13] /ns/{<nsid>}/gc
-- KEYS[11+3i], KEYS[12+3i], KEYS[13+3i]  for message i: /ns/{<nsid>}/content/<sha256>, its /raw,
--          and /ns/{<nsid>}/staging/<id> when the bytes were staged (else the /raw key again)
-- ARGV[1]  mbxid
-- ARGV[2]  quota_bytes: the user's limit on the sum of message sizes (0 = none)
-- ARGV[3]  quota_messages: the user's limit on messages (0 = none)
-- ARGV[4]  max_keywords: distinct keywords per mailbox (0 = none)
-- ARGV[5]  n >= 1
-- ARGV[6+11(i-1) ..]  11 fields per message i: sha256 (64 lowercase hex), size (bytes), internaldate
--          (unix seconds, "" = now), flags (space separated; system flags in any case, stored as
--          \Seen \Answered \Flagged \Deleted \Draft; \Recent ignored; keywords are atoms kept in the
--          mailbox's first spelling), raw (the bytes inline, "" when staged), parse, env, bs (the
--          stored parse, ENVELOPE and BODYSTRUCTURE), message-id ("" = none), thread refs (Message-IDs
--          of In-Reply-To and References, space separated, most relevant first), emailid ("M" + the
--          first 24 hex digits of sha256)
-- KEYS[14+3n]  optional: /ns/{<nsid>}/delivery/<id> (id: 64 lowercase hex digits), the delivery
--          key of an idempotent delivery (cimap-admin append); given only together with ARGV[6+11n]
-- ARGV[6+11n]  with the delivery key: how long to remember it, seconds (1..2,592,000)
-- Reply    {uidvalidity, first_uid, last_uid, modseq}; with a delivery key a fifth element: 0 when
--          stored now (the key then remembers this reply), 1 when the key already existed: nothing
--          is stored, the staging keys of the call are deleted and the first delivery's reply is
--          answered (even when its mailbox or messages are gone since)
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing or a staging key expired; "TRYCREATE ..." when
--          the mailbox is gone; "OVERQUOTA ..."; "LIMIT ..." (keywords); "ERR ..." on bad keys or
--          arguments (sizes that do not match the bytes, an unknown system flag, ...).
--          Nothing is written on error.
-- THREADID: the thread of the first thread ref found in /threads, else the thread this message's
-- own Message-ID is mapped to, else a new "T" + the first 24 hex digits of sha256; the message's
-- Message-ID is then mapped to it unless it was mapped already.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local sha_pat = '^' .. string.rep(hex, 64) .. '$'
local staging_pat = '^staging/' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}
local FIELDS = 11
local SYSTEM = {['\\seen'] = '\\Seen', ['\\answered'] = '\\Answered', ['\\flagged'] = '\\Flagged',
    ['\\deleted'] = '\\Deleted', ['\\draft'] = '\\Draft'}
local SYSTEM_ORDER = {'\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'}

local function fail(text)
    return redis.error_reply('ERR append: ' .. text)
end

-- The change log (keys/README.md): one entry "<modseq>-1" per operation, trimmed to about
-- LOG_MAX entries (XADD MAXLEN ~) and, when its oldest entry is older than LOG_AGE seconds, by up
-- to LOG_AGE_BATCH old entries per call (bounded work; the age trim catches up call by call).
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

-- True when the log's newest entry is older than modseq (XADD would fail after other writes).
local function log_accepts(log, modseq)
    local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    return #top == 0 or tonumber(string.match(top[1][1], '^(%d+)')) < modseq
end

-- Runs (keys/README.md): "/runs" holds the mailbox's UIDs as maximal runs of consecutive UIDs,
-- member "first:last", score first. Invariant, kept by every script that adds or removes UIDs:
-- the runs are disjoint, never adjacent (at least one missing UID between two runs) and their
-- union is exactly "/uids". Append extends the last run or adds one; removing a UID splits or
-- shrinks its run. Each step costs O(log runs). Scripts cannot share code, so each script carries
-- the helper it needs. runs_append adds first..last, all above every UID present.
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

-- Parses a flag list. Returns the stored string (system flags in canonical case and order, then
-- keywords), whether \Seen and \Deleted are set, and the keywords; nil on a malformed flag.
-- known maps a lower-cased keyword to its spelling in this mailbox and learns new ones.
local function parse_flags(s, known, learned)
    local sys, kws, seen_kw = {}, {}, {}
    for word in string.gmatch(s, '%S+') do
        local lower = string.lower(word)
        if string.sub(word, 1, 1) == '\\' then
            if SYSTEM[lower] then
                sys[SYSTEM[lower]] = true
            elseif lower ~= '\\recent' then
                return nil
            end
        else
            if string.find(word, '[%z%c%(%){%%%*"\\%]\127-\255]') then
                return nil
            end
            if not known[lower] then
                known[lower] = word
                learned[#learned + 1] = word
            end
            if not seen_kw[lower] then
                seen_kw[lower] = true
                kws[#kws + 1] = known[lower]
            end
        end
    end
    local out = {}
    for _, f in ipairs(SYSTEM_ORDER) do
        if sys[f] then
            out[#out + 1] = f
        end
    end
    for _, k in ipairs(kws) do
        out[#out + 1] = k
    end
    return table.concat(out, ' '), sys['\\Seen'] == true, sys['\\Deleted'] == true
end

if #ARGV < 5 then
    return fail('expects 5 + 11n arguments')
end
local n = tonumber(ARGV[5])
if not n or n < 1 or n ~= math.floor(n) then
    return fail('expects 13 + 3n keys and 5 + 11n arguments, n >= 1')
end
local delivery = #KEYS == 14 + 3 * n and #ARGV == 6 + FIELDS * n
if not delivery and (#ARGV ~= 5 + FIELDS * n or #KEYS ~= 13 + 3 * n) then
    return fail('expects 13 + 3n keys and 5 + 11n arguments, n >= 1')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local delivery_key, delivery_ttl
if delivery then
    delivery_key, delivery_ttl = KEYS[14 + 3 * n], tonumber(ARGV[6 + FIELDS * n])
    if string.sub(delivery_key, 1, #prefix) ~= prefix or
        not string.find(string.sub(delivery_key, #prefix + 1), '^delivery/' .. string.rep(hex, 64) .. '$') then
        return fail('invalid delivery key')
    end
    if not delivery_ttl or delivery_ttl < 1 or delivery_ttl > 2592000 or
        delivery_ttl ~= math.floor(delivery_ttl) then
        return fail('invalid delivery ttl')
    end
end
local mbx = prefix .. 'mbx/' .. mbxid
for i = 1, 9 do
    if KEYS[1 + i] ~= mbx .. MBX_PARTS[i] then
        return fail('mailbox keys do not match the mbxid')
    end
end
if KEYS[11] ~= prefix .. 'threads' or KEYS[12] ~= prefix .. 'channel' or KEYS[13] ~= prefix .. 'gc' then
    return fail('threads, channel or gc key does not match the namespace')
end
local limits = {}
for i = 2, 4 do
    limits[i] = tonumber(ARGV[i])
    if not limits[i] or limits[i] < 0 or limits[i] ~= math.floor(limits[i]) then
        return fail('invalid quota or limit')
    end
end
local quota_bytes, quota_messages, max_keywords = limits[2], limits[3], limits[4]

-- Per message: m.sha, m.size, m.date, m.raw, m.parse, m.env, m.bs, m.msgid, m.refs, m.emailid,
-- m.content, m.rawkey, m.staging (nil when inline), and after the reads m.flags, m.seen, m.deleted.
local msgs, staging_used = {}, {}
for i = 1, n do
    local a, k = 5 + FIELDS * (i - 1), 10 + 3 * i
    local m = {sha = ARGV[a + 1], size = ARGV[a + 2], date = ARGV[a + 3], flagtext = ARGV[a + 4],
        raw = ARGV[a + 5], parse = ARGV[a + 6], env = ARGV[a + 7], bs = ARGV[a + 8],
        msgid = ARGV[a + 9], refs = ARGV[a + 10], emailid = ARGV[a + 11],
        content = KEYS[k + 1], rawkey = KEYS[k + 2], staging = KEYS[k + 3]}
    if not string.find(m.sha, sha_pat) then
        return fail('invalid sha256')
    end
    if m.content ~= prefix .. 'content/' .. m.sha or m.rawkey ~= m.content .. '/raw' then
        return fail('content keys do not match the sha256')
    end
    if m.staging == m.rawkey then
        m.staging = nil
    elseif string.sub(m.staging, 1, #prefix) ~= prefix or
        not string.find(string.sub(m.staging, #prefix + 1), staging_pat) then
        return fail('invalid staging key')
    elseif m.raw ~= '' then
        return fail('raw bytes given for a staged message')
    elseif staging_used[m.staging] then
        return fail('staging key used twice')
    else
        staging_used[m.staging] = true
    end
    if not string.find(m.size, '^%d+$') then
        return fail('invalid size')
    end
    m.size = tonumber(m.size)
    if not m.staging and #m.raw ~= m.size then
        return fail('size does not match the inline bytes')
    end
    if m.date ~= '' and not string.find(m.date, '^%-?%d+$') then
        return fail('invalid internaldate')
    end
    if #m.msgid > 998 or string.find(m.msgid, '[%z%c ]') or string.find(m.refs, '[%z\1-\31\127]') then
        return fail('invalid message-id or thread refs')
    end
    if m.emailid ~= 'M' .. string.sub(m.sha, 1, 24) then
        return fail('emailid does not match the sha256')
    end
    msgs[i] = m
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
if delivery then
    local prior = redis.call('GET', delivery_key)
    if prior then
        local v, f, l, s = string.match(prior, '^(%d+) (%d+) (%d+) (%d+)$')
        if not v then
            return fail('delivery key is damaged')
        end
        for i = 1, n do
            if msgs[i].staging then
                redis.call('DEL', msgs[i].staging)
            end
        end
        return {tonumber(v), tonumber(f), tonumber(l), tonumber(s), 1}
    end
end
local cur = redis.call('HMGET', KEYS[2], 'uidvalidity', 'uidnext', 'highestmodseq', 'keywords',
    'removed')
if not cur[1] or cur[5] then
    return redis.error_reply('TRYCREATE no such mailbox')
end
local uidvalidity, uidnext, modseq = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
if not uidvalidity or not uidnext or not modseq then
    return fail('mailbox record is damaged')
end
modseq = modseq + 1
local total = 0
for i = 1, n do
    total = total + msgs[i].size
end
local used = redis.call('HMGET', KEYS[1], 'messages', 'bytes')
if (quota_messages > 0 and (tonumber(used[1]) or 0) + n > quota_messages) or
    (quota_bytes > 0 and (tonumber(used[2]) or 0) + total > quota_bytes) then
    return redis.error_reply('OVERQUOTA quota exceeded')
end
local known, nknown, learned = {}, 0, {}
for word in string.gmatch(cur[4] or '', '%S+') do
    if not known[string.lower(word)] then
        known[string.lower(word)] = word
        nknown = nknown + 1
    end
end
local provided = {}
for i = 1, n do
    local m = msgs[i]
    m.flags, m.seen, m.deleted = parse_flags(m.flagtext, known, learned)
    if not m.flags then
        return fail('invalid flag')
    end
    if provided[m.sha] then
        m.exists = true
    elseif redis.call('EXISTS', m.content) == 1 then
        if tonumber(redis.call('HGET', m.content, 'size')) ~= m.size then
            return fail('size does not match the stored content')
        end
        m.exists = true
    elseif m.staging then
        if redis.call('EXISTS', m.staging) == 0 then
            return redis.error_reply('NONEXISTENT staged message expired')
        end
        if redis.call('STRLEN', m.staging) ~= m.size then
            return fail('size does not match the staged bytes')
        end
    end
    provided[m.sha] = true
end
if max_keywords > 0 and #learned > 0 and nknown + #learned > max_keywords then
    return redis.error_reply('LIMIT too many keywords in this mailbox')
end
if not log_accepts(KEYS[10], modseq) then
    return fail('change log is ahead of highestmodseq')
end

local now = tonumber(redis.call('TIME')[1])
local first = uidnext
local unseen, deleted = 0, 0
for i = 1, n do
    local m, uid = msgs[i], first + i - 1
    if m.exists then
        redis.call('HINCRBY', m.content, 'refs', 1)
        if m.staging then
            redis.call('DEL', m.staging)
        end
    else
        redis.call('HSET', m.content, 'refs', 1, 'size', m.size, 'parse', m.parse, 'env', m.env,
            'bs', m.bs, 'created', now)
        if m.staging then
            redis.call('RENAME', m.staging, m.rawkey)
            redis.call('PERSIST', m.rawkey)
        else
            redis.call('SET', m.rawkey, m.raw)
        end
    end
    redis.call('ZREM', KEYS[13], m.sha)
    local tid
    for ref in string.gmatch(m.refs, '%S+') do
        tid = redis.call('HGET', KEYS[11], ref)
        if tid then
            break
        end
    end
    if not tid and m.msgid ~= '' then
        tid = redis.call('HGET', KEYS[11], m.msgid)
    end
    tid = tid or ('T' .. string.sub(m.sha, 1, 24))
    if m.msgid ~= '' then
        redis.call('HSETNX', KEYS[11], m.msgid, tid)
    end
    local date = m.date ~= '' and tonumber(m.date) or now
    redis.call('ZADD', KEYS[3], uid, uid)
    redis.call('HSET', KEYS[5], uid, string.format('%s %d %d %s %s', m.sha, date, m.size, m.emailid, tid))
    if m.flags ~= '' then
        redis.call('HSET', KEYS[6], uid, m.flags)
    end
    redis.call('ZADD', KEYS[7], modseq, uid)
    if not m.seen then
        redis.call('ZADD', KEYS[8], uid, uid)
        unseen = unseen + 1
    end
    if m.deleted then
        redis.call('ZADD', KEYS[9], uid, uid)
        deleted = deleted + 1
    end
end
local last = first + n - 1
runs_append(KEYS[4], first, last)
local fields = {'uidnext', last + 1, 'highestmodseq', modseq}
if #learned > 0 then
    local all = {}
    for word in string.gmatch(cur[4] or '', '%S+') do
        all[#all + 1] = word
    end
    for _, word in ipairs(learned) do
        all[#all + 1] = word
    end
    fields[#fields + 1] = 'keywords'
    fields[#fields + 1] = table.concat(all, ' ')
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HINCRBY', KEYS[2], 'messages', n)
redis.call('HINCRBY', KEYS[2], 'unseen', unseen)
redis.call('HINCRBY', KEYS[2], 'deleted', deleted)
redis.call('HINCRBY', KEYS[2], 'recent', n)
redis.call('HINCRBY', KEYS[2], 'bytes', total)
redis.call('HINCRBY', KEYS[1], 'messages', n)
redis.call('HINCRBY', KEYS[1], 'bytes', total)
local uidset = first == last and string.format('%d', first) or string.format('%d:%d', first, last)
log_add(KEYS[10], modseq, now, 'k', 'append', 'u', uidset, 't', now)
redis.call('PUBLISH', KEYS[12], string.format('%s %d', mbxid, modseq))
if delivery then
    redis.call('SET', delivery_key, string.format('%d %d %d %d', uidvalidity, first, last, modseq),
        'EX', delivery_ttl)
    return {uidvalidity, first, last, modseq, 0}
end
return {uidvalidity, first, last, modseq}
