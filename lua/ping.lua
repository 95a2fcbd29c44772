-- KEYS: none. ARGV[1]: any string. Reply: ARGV[1] unchanged (a liveness and EVALSHA check).
return ARGV[1]
