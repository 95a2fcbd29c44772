-- import_mailbox: the mailbox a maildir import (cimap-admin import-maildir) fills, with the
-- UIDVALIDITY and next UID of its source (Dovecot's dovecot-uidlist), so clients and sync tools
-- keep their UIDs across the migration. Creates the mailbox when the name is missing (parents
-- that do not exist stay \Noselect, as after any CREATE of a child); adopts an existing one when it
-- already has that UIDVALIDITY (a re-run) or is still empty (uidnext 1, e.g. the default mailboxes
-- of a new user), else refuses. uidnext only rises; the namespace's last issued UIDVALIDITY rises
-- to the imported one so later mailboxes still get higher ones.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mailboxes
-- KEYS[3]  /ns/{<nsid>}/mbx/<mbxid>: the id the name maps to now, or a fresh one when it is missing
-- ARGV[1]  name (canonical, as mbx_create takes it)
-- ARGV[2]  mbxid (of KEYS[3])
-- ARGV[3]  uidvalidity (1..4294967295), or "" for a fresh one (a source without dovecot-uidlist)
-- ARGV[4]  uidnext: the lowest next UID to keep (1..4294967295)
-- ARGV[5]  specialuse of a mailbox created here ("" for none, else "\Word" separated by spaces)
-- Reply    {uidvalidity, uidnext, created (1 or 0)}
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "CANNOT ..." when the mailbox exists with
--          messages under another UIDVALIDITY, or is being removed; "ALREADYEXISTS ..." when the
--          name maps to another mbxid than ARGV[2] (the caller read it and raced: read again);
--          "ERR ..." on bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR import_mailbox: ' .. text)
end

local function name_ok(name)
    if #name < 1 or #name > 1024 or string.find(name, '[%z%c]') or string.find(name, '^/') or
        string.find(name, '/$') or string.find(name, '//', 1, true) then
        return false
    end
    local top = string.match(name, '^[^/]*')
    return string.upper(top) ~= 'INBOX' or top == 'INBOX'
end

local function u32(s)
    if not string.find(s, '^%d+$') then
        return nil
    end
    local v = tonumber(s)
    if v < 1 or v > 4294967295 then
        return nil
    end
    return v
end

if #KEYS ~= 3 or #ARGV ~= 5 then
    return fail('expects 3 keys and 5 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local name, mbxid = ARGV[1], ARGV[2]
if not prefix or KEYS[2] ~= prefix .. 'mailboxes' or not string.find(mbxid, mbxid_pat) or
    KEYS[3] ~= prefix .. 'mbx/' .. mbxid then
    return fail('keys are not meta, mailboxes and the mailbox of ARGV[2] in one namespace')
end
if not name_ok(name) then
    return fail('invalid mailbox name')
end
local want_validity = ARGV[3] ~= '' and u32(ARGV[3]) or nil
local want_next = u32(ARGV[4])
if (ARGV[3] ~= '' and not want_validity) or not want_next then
    return fail('invalid uidvalidity or uidnext')
end
local specialuse = ARGV[5]
if specialuse ~= '' and string.gsub(specialuse .. ' ', '\\%a+ ', '') ~= '' then
    return fail('invalid special use')
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local last = tonumber(redis.call('HGET', KEYS[1], 'uidvalidity') or '0') or 0
local current = redis.call('HGET', KEYS[2], name)
local now = tonumber(redis.call('TIME')[1])
if not current then
    if redis.call('EXISTS', KEYS[3]) == 1 then
        return fail('mailbox id in use')
    end
    local validity = want_validity or math.max(last + 1, now)
    redis.call('HSET', KEYS[3], 'uidvalidity', validity, 'uidnext', want_next, 'highestmodseq', 1,
        'messages', 0, 'unseen', 0, 'deleted', 0, 'recent', 0, 'recent_uid', want_next, 'bytes', 0,
        'keywords', '', 'created', now)
    if specialuse ~= '' then
        redis.call('HSET', KEYS[3], 'specialuse', specialuse)
    end
    redis.call('HSET', KEYS[2], name, mbxid)
    redis.call('HSET', KEYS[1], 'uidvalidity', math.max(last, validity))
    return {validity, want_next, 1}
end
if current ~= mbxid then
    return redis.error_reply('ALREADYEXISTS the name maps to another mailbox id')
end
local cur = redis.call('HMGET', KEYS[3], 'uidvalidity', 'uidnext', 'removed')
local validity, uidnext = tonumber(cur[1]), tonumber(cur[2])
if not validity or not uidnext or cur[3] then
    return redis.error_reply('CANNOT the mailbox is being removed or damaged')
end
local fields = {}
if want_validity and want_validity ~= validity then
    if uidnext ~= 1 then
        return redis.error_reply('CANNOT the mailbox exists with another UIDVALIDITY')
    end
    validity = want_validity
    fields[#fields + 1] = 'uidvalidity'
    fields[#fields + 1] = validity
end
if want_next > uidnext then
    uidnext = want_next
    fields[#fields + 1] = 'uidnext'
    fields[#fields + 1] = uidnext
    if tonumber(redis.call('HGET', KEYS[3], 'recent') or '0') == 0 then
        fields[#fields + 1] = 'recent_uid'
        fields[#fields + 1] = uidnext
    end
end
if #fields > 0 then
    redis.call('HSET', KEYS[3], unpack(fields))
end
redis.call('HSET', KEYS[1], 'uidvalidity', math.max(last, validity))
return {validity, uidnext, 0}
