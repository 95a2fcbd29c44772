-- mbx_select: the snapshot SELECT and EXAMINE start from (RFC 3501 §6.3.1, §6.3.2), read in O(runs).
-- \Recent is session state (RFC 3501 §2.3.2): with claim, this session takes every message from
-- recent_uid up as \Recent and moves recent_uid to uidnext (one HSET, no modseq change, no log
-- entry); without claim (EXAMINE, a read-only session) nothing is \Recent and recent_first is uidnext.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mbx/<mbxid>
-- KEYS[3]  /ns/{<nsid>}/mbx/<mbxid>/runs
-- KEYS[4]  /ns/{<nsid>}/mbx/<mbxid>/unseen
-- ARGV[1]  mbxid
-- ARGV[2]  "1" to claim \Recent (SELECT), "0" not to (EXAMINE, STATUS)
-- ARGV[3]  max runs returned (>= 0)
-- Reply    {uidvalidity, uidnext, highestmodseq, messages, recent_first, first_unseen_uid (0 if
--          none), keywords, specialuse ("" if none), runs_total, run1, run2, ...}: messages with
--          UID >= recent_first are \Recent for this session; runs are "first:last" strings in
--          ascending order, at most ARGV[3] of them (read the rest with ZRANGE runs <k> -1; changes
--          after highestmodseq are replayed from the log)
-- Errors   "NONEXISTENT ..." when KEYS[1] or the mailbox is missing (or deleted); "ERR ..." on
--          bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR mbx_select: ' .. text)
end

if #KEYS ~= 4 or #ARGV ~= 3 then
    return fail('expects 4 keys and 3 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local mbx = prefix .. 'mbx/' .. mbxid
if KEYS[2] ~= mbx or KEYS[3] ~= mbx .. '/runs' or KEYS[4] ~= mbx .. '/unseen' then
    return fail('mailbox keys do not match the mbxid')
end
local max = tonumber(ARGV[3])
if (ARGV[2] ~= '1' and ARGV[2] ~= '0') or not max or max < 0 or max ~= math.floor(max) then
    return fail('invalid claim or max runs')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local h = redis.call('HMGET', KEYS[2], 'uidvalidity', 'uidnext', 'highestmodseq', 'messages',
    'recent_uid', 'keywords', 'specialuse', 'removed')
if not h[1] or h[8] then
    return redis.error_reply('NONEXISTENT no such mailbox')
end
local uidnext = tonumber(h[2])
local recent_first = uidnext
if ARGV[2] == '1' then
    recent_first = tonumber(h[5]) or uidnext
    if recent_first < uidnext then
        redis.call('HSET', KEYS[2], 'recent_uid', uidnext, 'recent', 0)
    end
end
local first_unseen = redis.call('ZRANGE', KEYS[4], 0, 0)
local out = {tonumber(h[1]), uidnext, tonumber(h[3]), tonumber(h[4]), recent_first,
    tonumber(first_unseen[1] or '0'), h[6] or '', h[7] or '', redis.call('ZCARD', KEYS[3])}
if max > 0 then
    local runs = redis.call('ZRANGE', KEYS[3], 0, max - 1)
    for i = 1, #runs do
        out[#out + 1] = runs[i]
    end
end
return out
