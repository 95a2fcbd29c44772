-- cache_put: stores one chunk of a mailbox's column cache (frontend/colcache.h, keys/README.md
-- "Column caches"), built by a reader (FETCH, SEARCH) from a snapshot it read at modseq ARGV[2].
-- Stored only while the mailbox is still at that modseq: any change since (a flag change, an
-- expunge, a new message) makes the snapshot possibly stale, and a stale chunk must never be
-- written (store.lua and expunge.lua delete the chunks they touch; a put after them must not bring
-- old data back). No modseq change, no log entry, no wake-up: a cache is not mailbox state.
-- KEYS[1]  /ns/{<nsid>}/meta
-- KEYS[2]  /ns/{<nsid>}/mbx/<mbxid>
-- KEYS[3]  /ns/{<nsid>}/mbx/<mbxid>/cache/<f|m>/<chunk>
-- ARGV[1]  mbxid
-- ARGV[2]  modseq of the snapshot (the mailbox's highestmodseq read with the data)
-- ARGV[3]  ttl seconds (1..2592000)
-- ARGV[4]  the value, "c1 <kind> <chunk> <modseq> <upto>\n" + records (its kind, chunk and modseq
--          must match KEYS[3] and ARGV[2]; the records are the reader's, as append's parse is)
-- Reply    {1} stored, {0} not stored (the mailbox changed since the snapshot, or is gone)
-- Errors   "ERR ..." on bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local MAX_VALUE = 8 * 1024 * 1024

local function fail(text)
    return redis.error_reply('ERR cache_put: ' .. text)
end

if #KEYS ~= 3 or #ARGV ~= 4 then
    return fail('expects 3 keys and 4 arguments')
end
local prefix = string.match(KEYS[1], '^(/ns/{' .. nsid_pat .. '}/)meta$')
local mbxid = ARGV[1]
if not prefix or not string.find(mbxid, mbxid_pat) then
    return fail('invalid meta key or mbxid')
end
local mbx = prefix .. 'mbx/' .. mbxid
if KEYS[2] ~= mbx then
    return fail('mailbox key does not match the mbxid')
end
local kind, chunk = string.match(KEYS[3], '^' .. string.gsub(mbx, '%p', '%%%0') .. '/cache/([fm])/(%d+)$')
if not kind or #chunk > 7 or tonumber(chunk) > 4194303 or (#chunk > 1 and string.sub(chunk, 1, 1) == '0') then
    return fail('invalid cache key')
end
if not string.find(ARGV[2], '^%d+$') or #ARGV[2] > 15 then
    return fail('invalid modseq')
end
local ttl = tonumber(ARGV[3])
if not string.find(ARGV[3], '^%d+$') or ttl < 1 or ttl > 2592000 then
    return fail('invalid ttl')
end
local value = ARGV[4]
if #value > MAX_VALUE then
    return fail('value too large')
end
local vkind, vchunk, vmodseq = string.match(string.sub(value, 1, 64), '^c1 ([fm]) (%d+) (%d+) %d+\n')
if vkind ~= kind or vchunk ~= chunk or vmodseq ~= ARGV[2] then
    return fail('value header does not match the key and modseq')
end

if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0}
end
local state = redis.call('HMGET', KEYS[2], 'highestmodseq', 'removed')
if not state[1] or state[2] or state[1] ~= ARGV[2] then
    return {0}
end
redis.call('SET', KEYS[3], value, 'EX', ttl)
return {1}
