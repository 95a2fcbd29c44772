-- import_append: messages of a maildir import (cimap-admin import-maildir) stored under the UIDs
-- their source gave them (Dovecot's dovecot-uidlist), so a migration keeps every UID. Like
-- append.lua (content shared by SHA-256 and reference counted, inline or staged bytes, one modseq,
-- one `append` log entry, one wake-up), except that the caller picks the UIDs: ascending, and each
-- one either at or above uidnext (stored; uidnext moves past it) or skipped — present already (a
-- re-run: status 0 when its content is the same, -1 when not) or below uidnext without a message
-- (expunged since a previous run: -2, never resurrected). The messages are not \Recent.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2..10]  the mailbox keys in keys_mbx order (/ns/{<nsid>}/mbx/<mbxid>, /uids, /runs, /msg,
--          /flags, /modseq, /unseen, /deleted, /log)
-- KEYS[11] /ns/{<nsid>}/threads
-- KEYS[12] /ns/{<nsid>}/channel
-- KEYS[13] /ns/{<nsid>}/gc
-- KEYS[11+3i], KEYS[12+3i], KEYS[13+3i]  for message i: content, its /raw, and the staging key
--          when the bytes were staged (else the /raw key again), as for append.lua
-- ARGV[1]  mbxid
-- ARGV[2]  uidvalidity the caller prepared the mailbox with (import_mailbox.lua); another one is
--          CANNOT (the mailbox was replaced meanwhile)
-- ARGV[3]  n >= 1
-- ARGV[4+12(i-1) ..]  12 fields per message i: uid (1..4294967295, ascending), then append.lua's
--          11: sha256, size, internaldate (unix seconds, required), flags, raw ("" when staged),
--          parse, env, bs, message-id, thread refs, emailid
-- Reply    {modseq (0 when nothing was stored), stored, status_1, ..., status_n}: status 1 stored,
--          0 present with the same content, -1 present with other content, -2 below uidnext and
--          absent (expunged since an earlier import)
-- Errors   "NONEXISTENT ..." (user being deleted, or a staging key expired); "TRYCREATE ..." (the
--          mailbox is gone); "CANNOT ..." (UIDVALIDITY changed); "ERR ..." on bad keys or
--          arguments. Nothing is written on error. Staging keys of skipped messages are deleted.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local sha_pat = '^' .. string.rep(hex, 64) .. '$'
local staging_pat = '^staging/' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}
local FIELDS = 12
local SYSTEM = {['\\seen'] = '\\Seen', ['\\answered'] = '\\Answered', ['\\flagged'] = '\\Flagged',
    ['\\deleted'] = '\\Deleted', ['\\draft'] = '\\Draft'}
local SYSTEM_ORDER = {'\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'}

local function fail(text)
    return redis.error_reply('ERR import_append: ' .. text)
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

if #ARGV < 3 then
    return fail('expects 3 + 12n arguments')
end
local n = tonumber(ARGV[3])
if not n or n < 1 or n ~= math.floor(n) or #ARGV ~= 3 + FIELDS * n or #KEYS ~= 13 + 3 * n then
    return fail('expects 13 + 3n keys and 3 + 12n arguments, n >= 1')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
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
local want_validity = tonumber(ARGV[2])
if not want_validity then
    return fail('invalid uidvalidity')
end

local msgs, staging_used, prev_uid = {}, {}, 0
for i = 1, n do
    local a, k = 3 + FIELDS * (i - 1), 10 + 3 * i
    local m = {uid = ARGV[a + 1], sha = ARGV[a + 2], size = ARGV[a + 3], date = ARGV[a + 4],
        flagtext = ARGV[a + 5], raw = ARGV[a + 6], parse = ARGV[a + 7], env = ARGV[a + 8],
        bs = ARGV[a + 9], msgid = ARGV[a + 10], refs = ARGV[a + 11], emailid = ARGV[a + 12],
        content = KEYS[k + 1], rawkey = KEYS[k + 2], staging = KEYS[k + 3]}
    if not string.find(m.uid, '^%d+$') or tonumber(m.uid) < 1 or tonumber(m.uid) > 4294967295 or
        tonumber(m.uid) <= prev_uid then
        return fail('UIDs must be 1..4294967295 and ascending')
    end
    m.uid = tonumber(m.uid)
    prev_uid = m.uid
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
    if not string.find(m.date, '^%-?%d+$') then
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
local cur = redis.call('HMGET', KEYS[2], 'uidvalidity', 'uidnext', 'highestmodseq', 'keywords',
    'removed')
if not cur[1] or cur[5] then
    return redis.error_reply('TRYCREATE no such mailbox')
end
local uidvalidity, uidnext, modseq = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
if not uidvalidity or not uidnext or not modseq then
    return fail('mailbox record is damaged')
end
if uidvalidity ~= want_validity then
    return redis.error_reply('CANNOT the mailbox has another UIDVALIDITY now')
end
modseq = modseq + 1
local known, learned = {}, {}
for word in string.gmatch(cur[4] or '', '%S+') do
    if not known[string.lower(word)] then
        known[string.lower(word)] = word
    end
end
local status, store, provided = {}, {}, {}
for i = 1, n do
    local m = msgs[i]
    local present = redis.call('HGET', KEYS[5], m.uid)
    if present then
        status[i] = string.sub(present, 1, 64) == m.sha and 0 or -1
    elseif m.uid < uidnext then
        status[i] = -2
    else
        status[i] = 1
    end
    if status[i] == 1 then
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
        store[#store + 1] = m
    end
end
if #store > 0 and not log_accepts(KEYS[10], modseq) then
    return fail('change log is ahead of highestmodseq')
end

local reply = {0, #store}
for i = 1, n do
    reply[2 + i] = status[i]
    if status[i] ~= 1 and msgs[i].staging then
        redis.call('DEL', msgs[i].staging)
    end
end
if #store == 0 then
    return reply
end

local now = tonumber(redis.call('TIME')[1])
local unseen, deleted, total = 0, 0, 0
local ranges, first, last = {}, nil, nil
for _, m in ipairs(store) do
    local uid = m.uid
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
    redis.call('ZADD', KEYS[3], uid, uid)
    redis.call('HSET', KEYS[5], uid, string.format('%s %d %d %s %s', m.sha, tonumber(m.date), m.size,
        m.emailid, tid))
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
    total = total + m.size
    if last and uid == last + 1 then
        last = uid
    else
        if first then
            ranges[#ranges + 1] = {first, last}
        end
        first, last = uid, uid
    end
end
ranges[#ranges + 1] = {first, last}
local parts = {}
for _, r in ipairs(ranges) do
    runs_append(KEYS[4], r[1], r[2])
    parts[#parts + 1] = r[1] == r[2] and string.format('%d', r[1]) or string.format('%d:%d', r[1], r[2])
end
local fields = {'uidnext', last + 1, 'highestmodseq', modseq}
local recent = tonumber(redis.call('HGET', KEYS[2], 'recent') or '0') or 0
if recent == 0 then
    fields[#fields + 1] = 'recent_uid'
    fields[#fields + 1] = last + 1
end
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
redis.call('HINCRBY', KEYS[2], 'messages', #store)
redis.call('HINCRBY', KEYS[2], 'unseen', unseen)
redis.call('HINCRBY', KEYS[2], 'deleted', deleted)
redis.call('HINCRBY', KEYS[2], 'bytes', total)
redis.call('HINCRBY', KEYS[1], 'messages', #store)
redis.call('HINCRBY', KEYS[1], 'bytes', total)
log_add(KEYS[10], modseq, now, 'k', 'append', 'u', table.concat(parts, ','), 't', now)
redis.call('PUBLISH', KEYS[12], string.format('%s %d', mbxid, modseq))
reply[1] = modseq
return reply
