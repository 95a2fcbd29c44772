-- recent_claim: a selected session that learns of new messages (IDLE, NOOP) claims them as \Recent
-- (RFC 3501 §2.3.2: exactly one session sees a new message as \Recent). Moves recent_uid up to
-- upto_uid (never down, never past uidnext) and recounts `recent` as the messages still above it
-- (O(log n)). No modseq change, no log entry: \Recent is session state.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mbx/<mbxid>
-- KEYS[3]  /ns/{<nsid>}/mbx/<mbxid>/uids
-- ARGV[1]  mbxid
-- ARGV[2]  upto_uid: one past the highest UID the session has seen
-- Reply    {old recent_uid}: the session's \Recent messages are those with old <= UID < upto_uid
--          (none when old >= upto_uid: another session claimed them first)
-- Errors   "NONEXISTENT ..." when KEYS[1] or the mailbox is missing (or deleted); "ERR ..." on bad
--          keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR recent_claim: ' .. text)
end

if #KEYS ~= 3 or #ARGV ~= 2 then
    return fail('expects 3 keys and 2 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local mbx = prefix .. 'mbx/' .. mbxid
if KEYS[2] ~= mbx or KEYS[3] ~= mbx .. '/uids' then
    return fail('mailbox keys do not match the mbxid')
end
if not string.find(ARGV[2], '^%d+$') then
    return fail('invalid upto_uid')
end
local upto = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local h = redis.call('HMGET', KEYS[2], 'recent_uid', 'uidnext', 'removed')
if not h[1] or h[3] then
    return redis.error_reply('NONEXISTENT no such mailbox')
end
local old, uidnext = tonumber(h[1]), tonumber(h[2])
upto = math.min(upto, uidnext)
if upto > old then
    redis.call('HSET', KEYS[2], 'recent_uid', upto, 'recent', redis.call('ZCOUNT', KEYS[3], upto, '+inf'))
end
return {old}
