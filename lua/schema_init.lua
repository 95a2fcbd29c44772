-- Records the keyspace version on first start and reports the one in force.
-- KEYS[1]: /schema
-- ARGV[1]: the version this front end writes (decimal)
-- Reply: the version stored after the call (integer). The caller refuses to run when it is newer
-- than it understands (DESIGN.md rule 8, rolling upgrades).
local want = tonumber(ARGV[1])
if want == nil or want < 1 then
  return redis.error_reply('ERR schema_init: bad version')
end
local have = redis.call('GET', KEYS[1])
if have == false then
  redis.call('SET', KEYS[1], tostring(want))
  return want
end
local n = tonumber(have)
if n == nil then
  return redis.error_reply('ERR schema_init: /schema is not a number')
end
return n
