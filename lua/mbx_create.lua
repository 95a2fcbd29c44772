-- mbx_create: CREATE (RFC 3501 §6.3.3), with every missing parent level (keys/README.md
-- "Mailboxes and messages"). A new mailbox starts empty at highestmodseq 1, with no log entry:
-- nobody can have it selected yet.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mailboxes
-- KEYS[2+i] /ns/{<nsid>}/mbx/<mbxid i>, one per ARGV pair i (only the created ones are written)
-- ARGV[1]  max_mailboxes (0 = no limit)
-- ARGV[2i], ARGV[2i+1]  name i, mbxid i: every level the caller found missing, from the top
--          down; each name is a "/"-prefix of the last, which is the mailbox asked for
-- ARGV[#ARGV]  special use of the last ("\Sent", "\Drafts \Archive", ... or "" for none)
-- Reply    {uidvalidity, mbxid} of the last
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing (the user is being deleted);
--          "ALREADYEXISTS ..." when the last name exists (levels that exist are skipped);
--          "LIMIT ..." when the user would have more than max_mailboxes mailboxes;
--          "ERR ..." on bad keys or arguments (a caller bug). Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR mbx_create: ' .. text)
end

-- A mailbox name as stored: 1..1024 bytes, no control characters, "/"-separated non-empty levels,
-- a first level spelled "INBOX" when it is INBOX in any case (the caller canonicalises).
local function name_ok(name)
    if #name < 1 or #name > 1024 or string.find(name, '[%z%c]') or string.find(name, '^/') or
        string.find(name, '/$') or string.find(name, '//', 1, true) then
        return false
    end
    local top = string.match(name, '^[^/]*')
    return string.upper(top) ~= 'INBOX' or top == 'INBOX'
end

local npairs = (#ARGV - 2) / 2
if #ARGV < 4 or #ARGV % 2 ~= 0 or #KEYS ~= 2 + npairs then
    return fail('expects 2 + n keys and 2 + 2n arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix or KEYS[2] ~= prefix .. 'mailboxes' then
    return fail('KEYS[1..2] are not meta and mailboxes of one namespace')
end
local max = tonumber(ARGV[1])
if not max or max < 0 or max ~= math.floor(max) then
    return fail('invalid max_mailboxes')
end
local names, ids = {}, {}
for i = 1, npairs do
    names[i], ids[i] = ARGV[2 * i], ARGV[2 * i + 1]
    if not name_ok(names[i]) then
        return fail('invalid mailbox name')
    end
    if not string.find(ids[i], mbxid_pat) or KEYS[2 + i] ~= prefix .. 'mbx/' .. ids[i] then
        return fail('invalid mbxid or mailbox key')
    end
end
local last = names[npairs]
for i = 1, npairs - 1 do
    if string.sub(last, 1, #names[i] + 1) ~= names[i] .. '/' then
        return fail('a parent name is not a prefix of the last name')
    end
    if i > 1 and #names[i] <= #names[i - 1] then
        return fail('parent names are not in top-down order')
    end
end
local specialuse = ARGV[#ARGV]
if specialuse ~= '' and string.gsub(specialuse .. ' ', '\\%a+ ', '') ~= '' then
    return fail('invalid special use')
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
if redis.call('HEXISTS', KEYS[2], last) == 1 then
    return redis.error_reply('ALREADYEXISTS mailbox exists')
end
local create = {}
for i = 1, npairs do
    if i == npairs or redis.call('HEXISTS', KEYS[2], names[i]) == 0 then
        if redis.call('EXISTS', KEYS[2 + i]) == 1 then
            return fail('mailbox id in use')
        end
        create[#create + 1] = i
    end
end
if max > 0 and redis.call('HLEN', KEYS[2]) + #create > max then
    return redis.error_reply('LIMIT too many mailboxes')
end

local now = tonumber(redis.call('TIME')[1])
local uidvalidity = tonumber(redis.call('HGET', KEYS[1], 'uidvalidity') or '0') or 0
for _, i in ipairs(create) do
    uidvalidity = math.max(uidvalidity + 1, now)
    redis.call('HSET', KEYS[2 + i], 'uidvalidity', uidvalidity, 'uidnext', 1, 'highestmodseq', 1,
        'messages', 0, 'unseen', 0, 'deleted', 0, 'recent', 0, 'recent_uid', 1, 'bytes', 0,
        'keywords', '', 'created', now)
    if i == npairs and specialuse ~= '' then
        redis.call('HSET', KEYS[2 + i], 'specialuse', specialuse)
    end
    redis.call('HSET', KEYS[2], names[i], ids[i])
end
redis.call('HSET', KEYS[1], 'uidvalidity', uidvalidity)
return {uidvalidity, ids[npairs]}
