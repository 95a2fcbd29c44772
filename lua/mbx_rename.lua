-- mbx_rename: RENAME (RFC 3501 §6.3.5). Names only: the mailbox keeps its id, UIDVALIDITY, MAILBOXID
-- and messages, so a session that has it selected carries on undisturbed (no log entry, no modseq
-- change). Every child "old/..." is renamed to "new/..." in the same step; any target name that
-- exists already refuses the whole rename.
-- Renaming INBOX moves INBOX's id to the new name and creates a fresh empty INBOX (new id, new
-- UIDVALIDITY); INBOX's children are not renamed (RFC 3501 §6.3.5), so "INBOX/old" is a valid target.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mailboxes
-- KEYS[3]  /ns/{<nsid>}/mbx/<new INBOX mbxid>; only when ARGV[3] is not "" (always needed for INBOX)
-- ARGV[1]  old name
-- ARGV[2]  new name
-- ARGV[3]  a fresh mbxid for the new INBOX, or "" (then KEYS has 2 entries; refused for INBOX)
-- ARGV[4]  max_mailboxes (0 = no limit; only renaming INBOX adds a mailbox)
-- Reply    {mbxid of the renamed mailbox}
-- Errors   "NONEXISTENT ..." when KEYS[1] or the old name is missing; "ALREADYEXISTS ..." when the
--          new name or a child's new name exists; "CANNOT ..." when renaming a mailbox into its own
--          subtree; "LIMIT ..." when a child's new name is too long or a new INBOX would exceed
--          max_mailboxes; "ERR ..." on bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local NAME_MAX = 1024

local function fail(text)
    return redis.error_reply('ERR mbx_rename: ' .. text)
end

-- A mailbox name as stored: 1..NAME_MAX bytes, no control characters, "/"-separated non-empty
-- levels, a first level spelled "INBOX" when it is INBOX in any case (the caller canonicalises).
local function name_ok(name)
    if #name < 1 or #name > NAME_MAX or string.find(name, '[%z%c]') or string.find(name, '^/') or
        string.find(name, '/$') or string.find(name, '//', 1, true) then
        return false
    end
    local top = string.match(name, '^[^/]*')
    return string.upper(top) ~= 'INBOX' or top == 'INBOX'
end

if #ARGV ~= 4 or (ARGV[3] == '' and #KEYS ~= 2) or (ARGV[3] ~= '' and #KEYS ~= 3) then
    return fail('expects 2 keys and 4 arguments, or 3 keys when ARGV[3] is an mbxid')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or KEYS[2] ~= prefix .. 'mailboxes' then
    return fail('KEYS[1..2] are not meta and mailboxes of one namespace')
end
local old, new, inbox_id = ARGV[1], ARGV[2], ARGV[3]
if not name_ok(old) or not name_ok(new) then
    return fail('invalid mailbox name')
end
if inbox_id ~= '' and (not string.find(inbox_id, mbxid_pat) or KEYS[3] ~= prefix .. 'mbx/' .. inbox_id) then
    return fail('invalid new INBOX mbxid or key')
end
local max = tonumber(ARGV[4])
if not max or max < 0 or max ~= math.floor(max) then
    return fail('invalid max_mailboxes')
end
if old == 'INBOX' and inbox_id == '' then
    return fail('renaming INBOX needs a new INBOX mbxid')
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local id = redis.call('HGET', KEYS[2], old)
if not id then
    return redis.error_reply('NONEXISTENT no such mailbox')
end
if old == new or redis.call('HEXISTS', KEYS[2], new) == 1 then
    return redis.error_reply('ALREADYEXISTS mailbox exists')
end

if old == 'INBOX' then
    if redis.call('EXISTS', KEYS[3]) == 1 then
        return fail('mailbox id in use')
    end
    if max > 0 and redis.call('HLEN', KEYS[2]) + 1 > max then
        return redis.error_reply('LIMIT too many mailboxes')
    end
    local now = tonumber(redis.call('TIME')[1])
    local uidvalidity = tonumber(redis.call('HGET', KEYS[1], 'uidvalidity') or '0') or 0
    uidvalidity = math.max(uidvalidity + 1, now)
    redis.call('HSET', KEYS[3], 'uidvalidity', uidvalidity, 'uidnext', 1, 'highestmodseq', 1,
        'messages', 0, 'unseen', 0, 'deleted', 0, 'recent', 0, 'recent_uid', 1, 'bytes', 0,
        'keywords', '', 'created', now)
    redis.call('HSET', KEYS[1], 'uidvalidity', uidvalidity)
    redis.call('HSET', KEYS[2], new, id, 'INBOX', inbox_id)
    return {id}
end

local below = old .. '/'
if string.sub(new, 1, #below) == below then
    return redis.error_reply('CANNOT cannot rename a mailbox into itself')
end
-- The mailbox and its children: sources[i] -> targets[i]. A target may be a name that is itself
-- moving away (e.g. "a/b" -> "a" moves "a/b/b" onto "a/b"); any other existing target refuses.
local sources, targets, moving = {old}, {new}, {[old] = true}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all - 1, 2 do
    local name = all[i]
    if string.sub(name, 1, #below) == below then
        local target = new .. '/' .. string.sub(name, #below + 1)
        if #target > NAME_MAX then
            return redis.error_reply('LIMIT mailbox name too long')
        end
        sources[#sources + 1], targets[#targets + 1] = name, target
        moving[name] = true
    end
end
local ids = {}
for i = 1, #sources do
    if i > 1 and not moving[targets[i]] and redis.call('HEXISTS', KEYS[2], targets[i]) == 1 then
        return redis.error_reply('ALREADYEXISTS a child mailbox exists under the new name')
    end
    ids[i] = redis.call('HGET', KEYS[2], sources[i])
end

for i = 1, #sources do
    redis.call('HDEL', KEYS[2], sources[i])
end
for i = 1, #sources do
    redis.call('HSET', KEYS[2], targets[i], ids[i])
end
return {id}
