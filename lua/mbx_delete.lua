-- mbx_delete: DELETE (RFC 3501 §6.3.4) in O(1): the name goes at once, the mailbox id joins the
-- trash set and its messages are released afterwards by mbx_purge.lua (run until remaining = 0).
-- Children keep their names (a parent that no longer exists is listed as \Noselect).
-- A session that has the mailbox selected learns of it from the change log: the hash gets
-- `removed` (unix seconds; every script that writes a mailbox refuses one that has it), the
-- mailbox's modseq rises and a `mailbox` log entry with field `e deleted` is written and published.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mailboxes
-- KEYS[3]  /ns/{<nsid>}/mbx/<mbxid>
-- KEYS[4]  /ns/{<nsid>}/mbx/<mbxid>/log
-- KEYS[5]  /ns/{<nsid>}/channel
-- KEYS[6]  /ns/{<nsid>}/trash
-- ARGV[1]  name
-- ARGV[2]  mbxid the caller read for name
-- Reply    {mbxid}
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing or name does not map to mbxid (any more);
--          "CANNOT ..." for INBOX; "ERR ..." on bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR mbx_delete: ' .. text)
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

if #KEYS ~= 6 or #ARGV ~= 2 then
    return fail('expects 6 keys and 2 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local name, mbxid = ARGV[1], ARGV[2]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local mbx = prefix .. 'mbx/' .. mbxid
if KEYS[2] ~= prefix .. 'mailboxes' or KEYS[3] ~= mbx or KEYS[4] ~= mbx .. '/log' or
    KEYS[5] ~= prefix .. 'channel' or KEYS[6] ~= prefix .. 'trash' then
    return fail('keys do not match the namespace and mbxid')
end
if #name < 1 or #name > 1024 then
    return fail('invalid mailbox name')
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
if name == 'INBOX' then
    return redis.error_reply('CANNOT INBOX cannot be deleted')
end
if redis.call('HGET', KEYS[2], name) ~= mbxid then
    return redis.error_reply('NONEXISTENT no such mailbox')
end
local cur = redis.call('HMGET', KEYS[3], 'highestmodseq', 'removed')
local modseq = tonumber(cur[1])
if not modseq or cur[2] then
    return fail('mailbox record missing or already removed')
end
modseq = modseq + 1
if not log_accepts(KEYS[4], modseq) then
    return fail('change log is ahead of highestmodseq')
end

local now = tonumber(redis.call('TIME')[1])
redis.call('HDEL', KEYS[2], name)
redis.call('SADD', KEYS[6], mbxid)
redis.call('HSET', KEYS[3], 'highestmodseq', modseq, 'removed', now)
log_add(KEYS[4], modseq, now, 'k', 'mailbox', 'u', '', 't', now, 'e', 'deleted')
redis.call('PUBLISH', KEYS[5], string.format('%s %d', mbxid, modseq))
return {mbxid}
