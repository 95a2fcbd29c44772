-- cache_drop: deletes column-cache chunks of one mailbox (frontend/colcache.h) — for
-- `cimap-admin fsck --repair`, whose rewrite of a mailbox's columns may contradict a chunk built
-- before it. The caller finds the chunks with SCAN MATCH <mailbox>/cache/*.
-- KEYS[1]     /ns/{<nsid>}/meta
-- KEYS[2]     /ns/{<nsid>}/mbx/<mbxid>
-- KEYS[3..]   /ns/{<nsid>}/mbx/<mbxid>/cache/<f|m>/<chunk>, at most 1,000
-- ARGV[1]     mbxid
-- Reply       {deleted}
-- Errors      "ERR ..." on bad keys or arguments. Nothing is written on error.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'

local function fail(text)
    return redis.error_reply('ERR cache_drop: ' .. text)
end

if #KEYS < 2 or #KEYS > 1002 or #ARGV ~= 1 then
    return fail('expects 2 + up to 1000 keys and 1 argument')
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
local pat = '^' .. string.gsub(mbx, '%p', '%%%0') .. '/cache/[fm]/%d+$'
for i = 3, #KEYS do
    if not string.find(KEYS[i], pat) then
        return fail('not a cache key of the mailbox')
    end
end
local deleted = 0
for i = 3, #KEYS do
    deleted = deleted + redis.call('DEL', KEYS[i])
end
return {deleted}
