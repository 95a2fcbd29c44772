-- ns_sweep: deletes one batch of a namespace's keys (user deletion, or the orphan namespace of a
-- refused creation; DESIGN.md rule 8). The caller finds the keys with SCAN MATCH /ns/{<nsid>}/*.
-- KEYS[1..n]  keys of one namespace, 0 <= n <= 1000, each starting with ARGV[1]
-- ARGV[1]     the namespace prefix "/ns/{<nsid>}/"
-- Reply       integer: the number of keys deleted (keys already gone are not counted)
-- Errors      "ERR ..." when the prefix is malformed or a key lies outside it; nothing is deleted.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)

if #ARGV ~= 1 then
    return redis.error_reply('ERR ns_sweep: expects 1 argument')
end
if #KEYS > 1000 then
    return redis.error_reply('ERR ns_sweep: at most 1000 keys per batch')
end
local prefix = ARGV[1]
if not string.find(prefix, '^/ns/{' .. nsid_pat .. '}/$') then
    return redis.error_reply('ERR ns_sweep: invalid namespace prefix')
end
for i = 1, #KEYS do
    if string.sub(KEYS[i], 1, #prefix) ~= prefix then
        return redis.error_reply('ERR ns_sweep: key outside the namespace')
    end
end
if #KEYS == 0 then
    return 0
end
return redis.call('DEL', unpack(KEYS))
