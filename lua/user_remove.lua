-- user_remove: last step of deleting a user (DESIGN.md rule 8): deletes the login record, but only
-- while it is still the tombstone of the namespace that was swept.
-- KEYS[1]  /users/<login>
-- ARGV[1]  nsid that user_tombstone.lua answered
-- Reply    integer: 1 when the record was deleted, 0 when there was no record (a rerun)
-- Errors   "CHANGED ..." when the record exists but is not the tombstone of ARGV[1] (it was
--          recreated or never tombstoned); "ERR ..." on bad arguments. Nothing is written on error.
if #KEYS ~= 1 or #ARGV ~= 1 then
    return redis.error_reply('ERR user_remove: expects 1 key and 1 argument')
end
local rec = KEYS[1]
if string.sub(rec, 1, 7) ~= '/users/' or #rec < 8 then
    return redis.error_reply('ERR user_remove: KEYS[1] is not a user record key')
end
local cur = redis.call('HMGET', rec, 'nsid', 'state')
if not cur[1] and not cur[2] then
    return 0
end
if cur[1] ~= ARGV[1] or cur[2] ~= 'deleting' then
    return redis.error_reply('CHANGED user record is not the tombstone of this namespace')
end

redis.call('DEL', rec)
return 1
