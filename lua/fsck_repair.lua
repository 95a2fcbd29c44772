-- fsck_repair: cimap-admin fsck, one consistency check (and, when asked, its repair) of a user's
-- mail, computed inside one script so a concurrent APPEND or STORE can never make it see a torn
-- state or undo a fresh write. The work is O(messages of what it checks): an operator's tool, not
-- something the front ends run (keys/README.md "fsck_repair").
-- ARGV[1]  mode: "mailbox", "refs" or "totals"
-- ARGV[2]  "check" (report only) or "repair" (report and fix)
-- mode mailbox — KEYS[1] meta, KEYS[2..10] the mailbox keys in keys_mbx order; ARGV[3] mbxid.
--          The /msg hash is the truth (it holds the content references): /uids, /runs, /flags,
--          /modseq, /unseen, /deleted and the counters messages, unseen, deleted, bytes, recent
--          are recomputed from it and /flags; uidnext must exceed every UID; highestmodseq must be
--          at least every message's modseq and the newest log entry.
-- mode refs — KEYS[1] meta, KEYS[2] gc, then ARGV[3] /msg keys (every mailbox of the user, also
--          ones in the trash), then ARGV[4] copy/<id> lists, then content hashes to check. Each
--          content's refs must equal the messages and staged copy records pointing at it; content
--          at 0 refs must be in gc, content with refs must not. References to content that is not
--          among the KEYS are reported (missing content cannot be repaired).
-- mode totals — KEYS[1] meta, then every mailbox hash of the user: meta's messages and bytes must
--          be the sums over the mailboxes.
-- Reply    {problems, text1, text2, ...}: one line per problem found (fixed when repairing; a
--          repaired mailbox's highestmodseq then rises by one past everything, so its sessions
--          resynchronise and no older snapshot becomes a column cache)
-- Errors   "NONEXISTENT ..." when KEYS[1] is missing; "ERR ..." on bad keys or arguments.
local hex = '[0-9a-f]'
local nsid_pat = string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) ..
    '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12)
local mbxid_pat = '^F' .. string.rep(hex, 32) .. '$'
local MBX_PARTS = {'', '/uids', '/runs', '/msg', '/flags', '/modseq', '/unseen', '/deleted', '/log'}

local function fail(text)
    return redis.error_reply('ERR fsck_repair: ' .. text)
end

local mode, action = ARGV[1], ARGV[2]
if (action ~= 'check' and action ~= 'repair') or #KEYS < 1 then
    return fail('expects a mode, check or repair, and keys')
end
local repair = action == 'repair'
local prefix = string.match(KEYS[1] or '', '^(/ns/{' .. nsid_pat .. '}/)meta$')
if not prefix then
    return fail('KEYS[1] is not a meta key')
end
for i = 2, #KEYS do
    if string.sub(KEYS[i], 1, #prefix) ~= prefix then
        return fail('keys of another namespace')
    end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('NONEXISTENT user is being deleted')
end
local problems = {}
local function problem(fmt, ...)
    problems[#problems + 1] = string.format(fmt, ...)
end

-- Adds and removes members so that zset holds exactly want (uid -> score).
local function sync_zset(key, want, what)
    local have = {}
    local cur = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local extra, missing = {}, {}
    for i = 1, #cur, 2 do
        have[cur[i]] = tonumber(cur[i + 1])
        if want[cur[i]] == nil then
            extra[#extra + 1] = cur[i]
        end
    end
    for m, score in pairs(want) do
        if have[m] == nil or (score ~= true and have[m] ~= score) then
            missing[#missing + 1] = m
        end
    end
    if #extra > 0 or #missing > 0 then
        problem('%s: %d members missing or wrong, %d extra', what, #missing, #extra)
        if repair then
            for _, m in ipairs(extra) do
                redis.call('ZREM', key, m)
            end
            for _, m in ipairs(missing) do
                local score = want[m]
                redis.call('ZADD', key, score == true and 0 or score, m)
            end
        end
    end
end

if mode == 'mailbox' then
    local mbxid = ARGV[3]
    if #ARGV ~= 3 or #KEYS ~= 10 or not string.find(mbxid or '', mbxid_pat) then
        return fail('mailbox mode expects 10 keys and an mbxid')
    end
    for i = 1, 9 do
        if KEYS[1 + i] ~= prefix .. 'mbx/' .. mbxid .. MBX_PARTS[i] then
            return fail('mailbox keys do not match the mbxid')
        end
    end
    local h = redis.call('HMGET', KEYS[2], 'uidvalidity', 'uidnext', 'highestmodseq', 'messages',
        'unseen', 'deleted', 'bytes', 'recent', 'recent_uid')
    if not h[1] then
        problem('mailbox %s: no mailbox hash (cannot repair)', mbxid)
        return {#problems, unpack(problems)}
    end
    local uidnext, hms = tonumber(h[2]) or 1, tonumber(h[3]) or 1
    local msg = redis.call('HGETALL', KEYS[5])
    local uids, sorted, bytes = {}, {}, 0
    for i = 1, #msg, 2 do
        local uid = tonumber(msg[i])
        local size = tonumber(string.match(msg[i + 1], '^%x+ %-?%d+ (%d+) '))
        if not uid or not size then
            problem('message record %s is malformed (left alone)', msg[i])
        else
            uids[msg[i]] = uid
            sorted[#sorted + 1] = uid
            bytes = bytes + size
        end
    end
    table.sort(sorted)
    local n = #sorted
    local maxuid = n > 0 and sorted[n] or 0
    sync_zset(KEYS[3], uids, 'uids')
    -- flags of messages that do not exist
    local flags = redis.call('HGETALL', KEYS[6])
    local flagmap, stray = {}, 0
    for i = 1, #flags, 2 do
        if uids[flags[i]] then
            flagmap[flags[i]] = ' ' .. flags[i + 1] .. ' '
        else
            stray = stray + 1
            if repair then
                redis.call('HDEL', KEYS[6], flags[i])
            end
        end
    end
    if stray > 0 then
        problem('flags: %d entries for messages that do not exist', stray)
    end
    local unseen, deleted = {}, {}
    local nunseen, ndeleted = 0, 0
    for m, uid in pairs(uids) do
        local f = flagmap[m] or ' '
        if not string.find(f, ' \\Seen ', 1, true) then
            unseen[m] = uid
            nunseen = nunseen + 1
        end
        if string.find(f, ' \\Deleted ', 1, true) then
            deleted[m] = uid
            ndeleted = ndeleted + 1
        end
    end
    sync_zset(KEYS[8], unseen, 'unseen index')
    sync_zset(KEYS[9], deleted, 'deleted index')
    -- modseq: every message has one; none above highestmodseq
    local ms = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
    local want_ms, maxms = {}, 0
    for i = 1, #ms, 2 do
        if uids[ms[i]] then
            want_ms[ms[i]] = tonumber(ms[i + 1])
            maxms = math.max(maxms, tonumber(ms[i + 1]))
        end
    end
    for m in pairs(uids) do
        if not want_ms[m] then
            want_ms[m] = hms
        end
    end
    sync_zset(KEYS[7], want_ms, 'modseq')
    -- runs from the sorted UIDs
    local runs, first, last = {}, nil, nil
    for _, uid in ipairs(sorted) do
        if last and uid == last + 1 then
            last = uid
        else
            if first then
                runs[string.format('%d:%d', first, last)] = first
            end
            first, last = uid, uid
        end
    end
    if first then
        runs[string.format('%d:%d', first, last)] = first
    end
    sync_zset(KEYS[4], runs, 'runs')
    -- counters and UIDNEXT / HIGHESTMODSEQ
    local recent_uid = tonumber(h[9]) or uidnext
    local nrecent = 0
    for _, uid in ipairs(sorted) do
        if uid >= recent_uid then
            nrecent = nrecent + 1
        end
    end
    local want = {messages = n, unseen = nunseen, deleted = ndeleted, bytes = bytes, recent = nrecent}
    local have = {messages = h[4], unseen = h[5], deleted = h[6], bytes = h[7], recent = h[8]}
    local fix = {}
    for _, f in ipairs({'messages', 'unseen', 'deleted', 'bytes', 'recent'}) do
        if tonumber(have[f]) ~= want[f] then
            problem('counter %s is %s, should be %d', f, tostring(have[f]), want[f])
            fix[#fix + 1] = f
            fix[#fix + 1] = want[f]
        end
    end
    if uidnext <= maxuid then
        problem('uidnext %d is not above the highest UID %d', uidnext, maxuid)
        fix[#fix + 1] = 'uidnext'
        fix[#fix + 1] = maxuid + 1
    end
    local top = redis.call('XREVRANGE', KEYS[10], '+', '-', 'COUNT', 1)
    local logms = #top > 0 and tonumber(string.match(top[1][1], '^(%d+)')) or 0
    local new_hms = hms
    if maxms > hms or logms > hms then
        problem('highestmodseq %d is below a message (%d) or the change log (%d)', hms, maxms, logms)
        new_hms = math.max(maxms, logms)
    end
    -- A repair changes what sessions and column caches were built from without a log entry:
    -- highestmodseq rises past everything, so selected sessions resynchronise from the UID set
    -- and no snapshot read before the repair can be stored as a cache (cache_put.lua).
    if repair and #problems > 0 then
        fix[#fix + 1] = 'highestmodseq'
        fix[#fix + 1] = math.max(new_hms, hms, maxms, logms) + 1
    end
    if repair and #fix > 0 then
        redis.call('HSET', KEYS[2], unpack(fix))
    end
    return {#problems, unpack(problems)}
end

if mode == 'refs' then
    local nmsg, ncopy = tonumber(ARGV[3]), tonumber(ARGV[4])
    if #ARGV ~= 4 or not nmsg or not ncopy or #KEYS < 2 + nmsg + ncopy or KEYS[2] ~= prefix .. 'gc' then
        return fail('refs mode expects meta, gc, msg keys, copy keys, content keys')
    end
    local count = {}
    for i = 3, 2 + nmsg do
        if not string.find(KEYS[i], '^mbx/F' .. string.rep(hex, 32) .. '/msg$', #prefix + 1) then
            return fail('not a msg key: ' .. KEYS[i])
        end
        local recs = redis.call('HVALS', KEYS[i])
        for _, r in ipairs(recs) do
            local sha = string.match(r, '^(%x+) ')
            if sha then
                count[sha] = (count[sha] or 0) + 1
            end
        end
    end
    for i = 3 + nmsg, 2 + nmsg + ncopy do
        if not string.find(KEYS[i], '^copy/' .. string.rep(hex, 32) .. '$', #prefix + 1) then
            return fail('not a copy key: ' .. KEYS[i])
        end
        for _, r in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
            local sha = string.match(r, '^%d+ (%x+) ')
            if sha then
                count[sha] = (count[sha] or 0) + 1
            end
        end
    end
    local seen = {}
    local now = tonumber(redis.call('TIME')[1])
    for i = 3 + nmsg + ncopy, #KEYS do
        local sha = string.match(KEYS[i], '^content/(' .. string.rep(hex, 64) .. ')$', #prefix + 1)
        if not sha then
            return fail('not a content key: ' .. KEYS[i])
        end
        if redis.call('EXISTS', KEYS[i]) == 1 then
            seen[sha] = true
            local refs = tonumber(redis.call('HGET', KEYS[i], 'refs'))
            local want = count[sha] or 0
            if refs ~= want then
                problem('content %s: refs %s, should be %d', sha, tostring(refs), want)
                if repair then
                    redis.call('HSET', KEYS[i], 'refs', want)
                end
            end
            local ingc = redis.call('ZSCORE', KEYS[2], sha)
            if want == 0 and not ingc then
                problem('content %s: unreferenced but not in gc', sha)
                if repair then
                    redis.call('ZADD', KEYS[2], now, sha)
                end
            elseif want > 0 and ingc then
                problem('content %s: referenced but in gc', sha)
                if repair then
                    redis.call('ZREM', KEYS[2], sha)
                end
            end
        end
    end
    for sha, n in pairs(count) do
        if not seen[sha] then
            problem('content %s: not found, %d messages point at it (cannot repair; if it was ' ..
                'stored after fsck listed the content, run fsck again)', sha, n)
        end
    end
    return {#problems, unpack(problems)}
end

if mode == 'totals' then
    local messages, bytes = 0, 0
    for i = 2, #KEYS do
        if not string.find(KEYS[i], '^mbx/F' .. string.rep(hex, 32) .. '$', #prefix + 1) then
            return fail('not a mailbox key: ' .. KEYS[i])
        end
        local h = redis.call('HMGET', KEYS[i], 'messages', 'bytes')
        messages = messages + (tonumber(h[1]) or 0)
        bytes = bytes + (tonumber(h[2]) or 0)
    end
    local h = redis.call('HMGET', KEYS[1], 'messages', 'bytes')
    if (tonumber(h[1]) or 0) ~= messages or (tonumber(h[2]) or 0) ~= bytes then
        problem('user totals are %s messages, %s bytes; the mailboxes hold %d, %d', tostring(h[1]),
            tostring(h[2]), messages, bytes)
        if repair then
            redis.call('HSET', KEYS[1], 'messages', messages, 'bytes', bytes)
        end
    end
    return {#problems, unpack(problems)}
end
return fail('unknown mode')
