-- One service's circuit, every transition in one atomic step.
-- The same state machine as tnm/circuit/state.py, in milliseconds.
--
-- KEYS: 1 state hash, 2 failure times (zset), 3 trial permits (zset: token -> deadline),
--       4 (optional) calls per rate bucket (hash: "<bucket>:c|f|s" -> calls, failures, slow)
--       5 the fleet's reporters (zset, trimmed to the window and to REPORTERS_MAX per kind), each
--         kind in its own band of scores, so that a kind is counted with one ZCOUNT:
--         's:<id>' last seen (a call, or a flush of its successes), 'f:<id>' FAILED_BAND +
--         last failure, 'i:<id>' ISOLATED_BAND + isolated until (a process whose own calls
--         met the trigger)
--       6 (optional, not on a Redis Cluster) the namespace's change counter: bumped with
--         every notice, so an idle process sees in one GET that it missed none
-- ARGV: 1 op (acquire|failure|slow|success|release|hold_open|policy|force_open|disable|reset|read|
--         touch|probe)
--       2 now in ms, or "" to use the Redis server's TIME (so every host agrees)
--       3 max_failures  4 window_ms  5 open_ms  6 backoff multiplier  7 max_open_ms
--       8 half_open_max_calls  9 success_threshold  10 trial_timeout_ms
--       11 meta_ttl_ms  12 pub/sub channel  13 service name  14 token  15 reason
--       16 the caller's last good state, 17 its open_until_ms ("" if none): what a
--          corrupt circuit is rewritten from
--       18 failure_rate_threshold ("" if none)  19 slow_call_rate_threshold ("" if none)
--       20 minimum_calls  21 bucket_ms  22 buckets in the window  23 "1" if the call was slow
--       24 the caller's successes not yet added to the buckets (carried by failure and slow;
--          for success, 1 if the caller had not read the circuit and so did not count it)
--       25 "1" if the failure is one of the policy's open_on: it opens the circuit at once
--       26 the calling process's reporter id ("" for an operator's read)
--       27 min_failing_processes (the quorum)
--       28 "<trigger>:<open ms>" if this failure isolates the calling process, else ""
--       max_failures 0 turns the count trigger off. Bucket b holds the calls made in
--       [b * bucket_ms, (b + 1) * bucket_ms); the window is the newest 22 buckets.
--       Fast successes are not sent here: each process adds them to the buckets in the
--       background (backends/redis/_buckets.py); failures and slow calls come here.
-- ops: touch is a read that also keeps an in-use circuit listed for meta_ttl.
-- Returns: {state, open_until_ms, failures_in_window, now_ms, result, reopenings,
--           last_reason, last_ms, permits_in_use, earliest_permit_deadline_ms,
--           states passed through (for events), max_failures, window_ms, repaired,
--           version, calls, failed calls and slow calls in the rate window,
--           opened_by ('' while closed or disabled), the figures that opened it
--           ("failures:calls:failed:slow", '' if none), failing processes in the window,
--           the ms at which a deferred rate decision is due ('' if none),
--           1 if another process called inside the window (else 0: isolation is moot; ''
--           unless the run may isolate its process, ARGV[28])}
--       While open or half-open the state hash keeps why it opened (ob) and those
--       figures (of) until it closes; a failed trial keeps the first opening's figures.
-- Published on a change others must mirror: {service, state, open_until_ms,
--           failures, now_ms, permits_in_use, earliest_permit_deadline_ms, version}
-- version counts the writes: mirrors order what they hear by (now_ms, version), so
-- a stale read cannot overwrite a newer change made in the same millisecond.

local state_key, failures_key, permits_key = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
if op == 'probe' then
  -- initialize() checks the ACL grants: every command the script runs, on a probe
  -- service's keys (deleted again), and a notice that listeners ignore.
  redis.call('TIME')
  redis.call('TYPE', state_key)
  redis.call('HSET', state_key, 'p', 1)
  redis.call('HMGET', state_key, 'p')
  redis.call('HGET', state_key, 'p')
  redis.call('HINCRBY', state_key, 'p', 1)
  redis.call('EXISTS', failures_key)
  redis.call('ZADD', failures_key, 1, 'p')
  redis.call('ZCOUNT', failures_key, 0, 2)
  redis.call('ZCARD', failures_key)
  redis.call('ZRANGE', failures_key, 0, 0, 'WITHSCORES')
  redis.call('ZREM', failures_key, 'p')
  redis.call('ZREMRANGEBYRANK', failures_key, 0, -2)
  redis.call('ZREMRANGEBYSCORE', failures_key, '-inf', 0)
  redis.call('PEXPIRE', state_key, 1000)
  redis.call('PTTL', state_key)
  redis.call('PERSIST', state_key)
  redis.call('HINCRBY', KEYS[4], 'p', 1)
  redis.call('HMGET', KEYS[4], 'p')
  redis.call('HLEN', KEYS[4])
  redis.call('HKEYS', KEYS[4])
  redis.call('HDEL', KEYS[4], 'p')
  redis.call('ZRANGE', KEYS[5], 0, 1, 'BYSCORE', 'LIMIT', 0, 2)
  redis.call('DEL', state_key, failures_key, permits_key, KEYS[4], KEYS[5])
  if KEYS[6] then redis.call('INCRBY', KEYS[6], 0) end
  redis.call('PUBLISH', ARGV[12], cjson.encode({''}))
  return 'ok'
end
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local max_failures = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local open_ms = tonumber(ARGV[5])
local multiplier = tonumber(ARGV[6])
local max_open_ms = tonumber(ARGV[7])
local half_open_max = tonumber(ARGV[8])
local success_threshold = tonumber(ARGV[9])
local trial_timeout_ms = tonumber(ARGV[10])
local ttl_ms = tonumber(ARGV[11])
local token = tonumber(ARGV[14]) or 0
local calls_key = KEYS[4]
local failure_rate = tonumber(ARGV[18] or '')
local slow_rate = tonumber(ARGV[19] or '')
local minimum_calls = tonumber(ARGV[20] or '') or 1
local bucket_ms = tonumber(ARGV[21] or '') or 1
local buckets = tonumber(ARGV[22] or '') or 10
local slow_call = ARGV[23] == '1'
local counts_calls = calls_key ~= nil and (failure_rate ~= nil or slow_rate ~= nil)
local carried = tonumber(ARGV[24] or '') or 0
local trip = ARGV[25] == '1'
-- Fleet decisions (see KEYS[5]): who reports, the quorum, and this process's isolation.
local reporters_key = KEYS[5]
local reporter = ARGV[26] or ''
local quorum = tonumber(ARGV[27] or '') or 1
local isolating_trigger, isolating_ms = string.match(ARGV[28] or '', '^([%a_]+):(%d+)$')
local REPORTERS_MAX = 128
-- The bands of scores (ms): 's:' below FAILED_BAND, 'f:' below ISOLATED_BAND, 'i:' above.
local FAILED_BAND, ISOLATED_BAND = 1e13, 2e13
-- An isolated process counts as isolated until its open time ends and its first trial
-- had this long to run (a failed trial reports it isolated again).
local TRIAL_GRACE_MS = 1000
-- Other processes add their successes every 0.2 s: a rate met while another process is
-- seen is decided this much later, on a window that holds what they had counted.
local DECISION_WAIT_MS = 250
-- INT: times, counts and bucket numbers are whole numbers, written into strings with
-- string.format('%d'): tostring() and a number in a concatenation format with '%.14g', which
-- costs twice as much (and turns 15 digits into an exponent).

-- Garbage written by someone else (a key of the wrong type, an unknown state, a
-- field that is not a number) never fails the script: the circuit is rewritten from
-- the caller's last good state, and the reply says so.
-- Only an unreadable state hash takes the caller's last good state; a bad failures or
-- permits key is just emptied (the state it sits beside is still the truth).
local repaired = 0
local state_lost = false
local function keep_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    redis.call('DEL', key)
    repaired = 1
    return false
  end
  return true
end
-- Cost: the state, failures and calls keys are not type-checked up front (a TYPE each per
-- run): the first command that fails on a key of the wrong type finds it, and on_key
-- deletes it (repaired) and runs the command again.
local function on_key(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'WRONGTYPE', 1, true) then error(reply) end
    redis.call('DEL', key)
    repaired = 1
    reply = redis.call(command, key, ...)
  end
  return reply
end
-- Cost: trial permits exist only while half-open, so the permits key is type-checked and
-- read only when an operation touches it (see permits_key_checked below).
local permits_checked = false
local function check_permits()
  if not permits_checked then
    permits_checked = true
    keep_type(permits_key, 'zset')
  end
end

local STATES = {closed = true, open = true, half_open = true, forced_open = true, disabled = true}
local function is_int_or_nil(v)
  return v == false or v == nil or (tonumber(v) ~= nil and string.match(v, '^%-?%d+$') ~= nil)
end
local function is_finite_or_nil(v)  -- tonumber() also accepts 'inf' and 'nan'
  local n = tonumber(v)
  return v == false or v == nil or (n ~= nil and n == n and n ~= math.huge and n ~= -math.huge)
end
local FIELDS = {'s', 'ou', 'ro', 'ts', 'lr', 'lt', 'mf', 'wm', 'nt', 'fc', 'v', 'ob', 'of', 'svc', 'xp', 'pd'}
local h = redis.pcall('HMGET', state_key, unpack(FIELDS))
if h.err then
  if not string.find(h.err, 'WRONGTYPE', 1, true) then error(h) end
  h = {'wrong type'}  -- not a state: deleted below, and the caller's last good state taken
end
if (h[1] and not STATES[h[1]]) or not is_finite_or_nil(h[2]) or not is_int_or_nil(h[3])
    or not is_int_or_nil(h[4]) or (h[6] and h[6] ~= '' and not is_finite_or_nil(h[6]))
    or not is_int_or_nil(h[7]) or not is_int_or_nil(h[8])
    or not is_int_or_nil(h[9]) or not is_int_or_nil(h[10]) or not is_int_or_nil(h[11]) then
  redis.call('DEL', state_key)
  h = {}
  repaired = 1
  state_lost = true
end
local state = h[1] or 'closed'
local open_until = tonumber(h[2]) or 0
if state_lost and STATES[ARGV[16]] then
  state = ARGV[16]
  open_until = tonumber(ARGV[17]) or 0
  if state == 'forced_open' then open_until = -1 end
end
local reopenings = tonumber(h[3]) or 0
local successes = tonumber(h[4]) or 0
local last_reason = h[5] or ''
local last_ms = h[6] or ''
local version = tonumber(h[11]) or 0
local TRIGGERS = {failures = true, failure_rate = true, slow_call_rate = true, trial_failed = true,
  operator = true, open_on = true}
local opened_by = h[12] or ''
local decision_due = tonumber(h[16] or '')  -- a deferred rate decision (server ms), or nil
local opened_figures = h[13] or ''
if not TRIGGERS[opened_by] or not string.match(opened_figures, '^%d+:%d+:%d+:%d+$') then
  opened_by, opened_figures = '', ''  -- unknown (older data, or garbage): no figures to keep
end

-- Helpers shared by the common failure (just below) and every other run.
local function score_bound(band, ms)  -- an exclusive bound, as ZCOUNT reads it
  return string.format('(%d', band + ms)
end

-- Who left the window leaves the reporters (run when a member is added), and each kind keeps
-- its newest REPORTERS_MAX.
local function trim_reporters()
  local gone = now - window_ms
  redis.call('ZREMRANGEBYSCORE', reporters_key, '-inf', gone)
  redis.call('ZREMRANGEBYSCORE', reporters_key, FAILED_BAND, FAILED_BAND + gone)
  redis.call('ZREMRANGEBYSCORE', reporters_key, ISOLATED_BAND, ISOLATED_BAND + gone)
  if redis.call('ZCARD', reporters_key) > REPORTERS_MAX then
    -- (the bands lie in rank order, callers first, so a crowd of one kind never pushes out
    -- the others)
    local first = 0
    for _, band in ipairs({{'-inf', score_bound(FAILED_BAND, 0)},
        {FAILED_BAND, score_bound(ISOLATED_BAND, 0)}, {ISOLATED_BAND, '+inf'}}) do
      local n = redis.call('ZCOUNT', reporters_key, band[1], band[2])
      if n > REPORTERS_MAX then
        redis.call('ZREMRANGEBYRANK', reporters_key, first, first + n - REPORTERS_MAX - 1)
        n = REPORTERS_MAX
      end
      first = first + n
    end
  end
end

-- Cost: the rate buckets and the reporters must outlive what they hold (the buckets the window
-- reads; the reporters, meta_ttl or an isolated process's mark until its first trial, whichever
-- is longer: a flush of successes pushes them as far, _operations.py's reporters_keep_ms). A run
-- that wrote them reads their expiry and pushes it, a quarter further than needed, only when it
-- falls short: PTTL is a read, and PEXPIRE a write (propagated as PEXPIREAT) that cost more than
-- the rest of the run's expiry.
local function outlive(key, need)
  if redis.call('PTTL', key) < need then
    local keep = math.max(ttl_ms, need)
    redis.call('PEXPIRE', key, keep + math.floor(keep / 4))
  end
end

-- The notice of a change others must mirror, and the namespace's change counter.
local function publish(state_now, failures, permits, earliest)
  redis.call('PUBLISH', ARGV[12],
    cjson.encode({ARGV[13], state_now, open_until, failures, now, permits, earliest, version}))
  if KEYS[6] and type(redis.pcall('INCR', KEYS[6])) == 'table' then
    redis.call('SET', KEYS[6], 1)  -- not a counter any more: start it again
  end
end

-- Idle metadata lives meta_ttl; never less than what the state still needs (`keep`, ms).
-- Cost: the expiry is pushed only when it falls due. It is set a quarter further than
-- needed and its deadline kept in the hash (xp), so most writes skip the PEXPIREs: keys
-- live at least what they need and at most a quarter more after the last write.
-- Returns the time to push (0: still far enough) and the deadline to store.
local function expiry_due(keep, force)
  local ttl = math.max(keep, window_ms)
  -- (a caller's own clock, a test's, is not the one keys expire by: then every write pushes)
  if force or ARGV[2] ~= '' or (tonumber(h[15]) or 0) < now + ttl then
    ttl = ttl + math.floor(ttl / 4)
    return ttl, now + ttl
  end
  return 0, h[15]
end

-- The state's and failures' expiry pushed (ttl > 0), or failures this run made given the
-- state's deadline.
local function push_expiry(ttl, expires, made_failures)
  if ttl > 0 then
    redis.call('PEXPIRE', state_key, ttl)
    redis.call('PEXPIRE', failures_key, ttl)
  elseif made_failures then
    redis.call('PEXPIRE', failures_key, tonumber(expires) - now)
  end
end

-- The rate window: (calls, failures, slow calls) in the newest `buckets` buckets, read with
-- `call` (on_key; or redis.pcall, which returns nil for a key of the wrong type).
local function read_window(call)
  local current = math.floor(now / bucket_ms)
  -- Cost: slow calls are read only under a slow-call rate (nothing else shows their count).
  local kinds = slow_rate ~= nil and 3 or 2
  local fields, n = {}, 0
  for b = current - buckets + 1, current do
    local bucket = string.format('%d', b)  -- (see INT)
    fields[n + 1], fields[n + 2] = bucket .. ':c', bucket .. ':f'
    if kinds == 3 then fields[n + 3] = bucket .. ':s' end
    n = n + kinds
  end
  local v = call('HMGET', calls_key, unpack(fields))
  if v.err then return nil end
  local c, f, sl = 0, 0, 0
  for i = 1, n, kinds do
    c = c + (tonumber(v[i]) or 0)
    f = f + (tonumber(v[i + 1]) or 0)
    if kinds == 3 then sl = sl + (tonumber(v[i + 2]) or 0) end
  end
  return c, f, sl
end

-- The rate trigger (calls, failures, slow calls) meet ('failure_rate' first), or nil.
local function rate_met(c, f, sl)
  if c < minimum_calls then return nil end
  if failure_rate ~= nil and f >= failure_rate * c then return 'failure_rate' end
  if slow_rate ~= nil and sl >= slow_rate * c then return 'slow_call_rate' end
  return nil
end

-- The window as read this run, until the buckets change (count_call and clear_window set
-- window_read = nil).
local window_read = nil
local calls_written = false
local function count_call(failed, slow)
  window_read = nil
  calls_written = true
  local current = math.floor(now / bucket_ms)
  local bucket = string.format('%d', current)
  on_key('HINCRBY', calls_key, bucket .. ':c', 1 + carried)
  carried = 0
  if failed then redis.call('HINCRBY', calls_key, bucket .. ':f', 1) end
  if slow then redis.call('HINCRBY', calls_key, bucket .. ':s', 1) end
  -- Drop buckets that left the window (late background additions can land there).
  if redis.call('HLEN', calls_key) > 3 * (buckets + 1) then
    local oldest = current - buckets
    for _, field in ipairs(redis.call('HKEYS', calls_key)) do
      local b = tonumber(string.match(field, '^(%-?%d+):'))
      if b == nil or b <= oldest then redis.call('HDEL', calls_key, field) end
    end
  end
end


-- FAST: the common write, straight through: a failure of a closed circuit that leaves its
-- triggers short (the count, the rates), from a process that decides with the fleet (no quorum,
-- no isolation, no trial permit, no open_on), on keys that hold what this process last wrote
-- (the hash has every field, and the caller's thresholds). It stores, returns and publishes
-- what the general path below would; any other run, or a key of the wrong type, goes there
-- before this one changes anything. Cost: it skips the general path's setup (two dozen
-- closures and tables) and a read: such a failure runs about a quarter shorter inside Redis.
-- (tests/redis/test_script_fast_path.py runs random sequences through both and compares.)
if op == 'failure' and state == 'closed' and repaired == 0 and token == 0 and ARGV[25] ~= '1'
    and not isolating_trigger and quorum <= 1 and (max_failures > 0 or counts_calls)
    and reporter ~= '' and reporters_key
    and window_ms > 0 and h[1] and h[2] and h[3] and h[4] and h[11] and h[15]
    and tonumber(h[7]) == max_failures and tonumber(h[8]) == window_ms and h[14] == ARGV[13]
    and h[12] == '' and h[13] == '' and h[16] == '' then
  local counted = redis.pcall('ZCOUNT', failures_key, string.format('(%d', now - window_ms), '+inf')
  local short = type(counted) == 'number' and (max_failures == 0 or counted + 1 < max_failures)
  local c, f, sl = 0, 0, 0  -- the rate window with this call in it
  if short and counts_calls then
    c, f, sl = read_window(redis.pcall)
    if c == nil then
      short = false
    else
      -- (slow calls are read, and so shown, only under a slow-call rate: see read_window)
      c, f, sl = c + 1 + carried, f + 1, sl + ((slow_call and slow_rate ~= nil) and 1 or 0)
      short = rate_met(c, f, sl) == nil
    end
  end
  local had_failures, added = true, nil  -- (only the count trigger writes failures)
  if short then
    if max_failures > 0 and counted == 0 then had_failures = redis.call('EXISTS', failures_key) == 1 end
    added = redis.pcall('ZADD', reporters_key, FAILED_BAND + now, 'f:' .. reporter)
  end
  if short and type(added) == 'number' then
    if added > 0 then trim_reporters() end
    version = version + 1
    local failures = counted
    if max_failures > 0 then
      -- (a member already there, from before a lost state restarted the version, is this one)
      failures = counted + redis.call('ZADD', failures_key, now, string.format('%d:%d', now, version))
      redis.call('ZREMRANGEBYRANK', failures_key, 0, -(max_failures + 1))
    end
    if counts_calls then count_call(true, slow_call) end
    local failing = redis.call('ZCOUNT', reporters_key, score_bound(FAILED_BAND, now - window_ms),
      score_bound(ISOLATED_BAND, 0))
    local ttl, expires = expiry_due(ttl_ms, false)
    local write = {'v', version}  -- (only what changed, as below)
    if ARGV[15] ~= h[5] then write[#write + 1], write[#write + 2] = 'lr', ARGV[15] end
    if tonumber(h[6]) ~= now then write[#write + 1], write[#write + 2] = 'lt', now end
    if ttl > 0 and tonumber(h[15]) ~= expires then write[#write + 1], write[#write + 2] = 'xp', expires end
    redis.call('HSET', state_key, unpack(write))
    push_expiry(ttl, expires, not had_failures)
    if calls_written then outlive(calls_key, math.max(window_ms, buckets * bucket_ms)) end
    outlive(reporters_key, math.max(ttl_ms, window_ms))
    if not had_failures then publish(state, failures, 0, '') end
    return {state, open_until, failures, now, 0, reopenings, ARGV[15], now, 0, '', {state},
      max_failures, window_ms, 0, version, c, f, sl, '', '', failing, '', ''}
  end
end
-- (end of FAST)

if op == 'read' or op == 'touch' or op == 'force_open' or op == 'disable' or op == 'reset'
  or op == 'hold_open' then
  -- Report (and keep) the thresholds of the processes that call the service: an
  -- operator's CLI may not know the app's policy.
  max_failures = tonumber(h[7]) or max_failures
  window_ms = tonumber(h[8]) or window_ms
end
local path = {state}  -- every state this operation passes through, in order
local changed = false
-- Other processes mirror "closed with failures recorded" (their dirty flag): publish
-- when it flips, not on every failure.
local had_failures = redis.call('EXISTS', failures_key) == 1
local failures_exist = nil  -- known again once this run adds or deletes failures
local result = 0

local function set_state(s)
  if s ~= state then
    state = s
    changed = true
    path[#path + 1] = s
  end
end

-- Cost: the failures in the window are counted once per run unless the failures key changes
-- (every write to it sets counted_failures = nil).
local counted_failures = nil
local function in_window()
  if counted_failures == nil then
    counted_failures = on_key('ZCOUNT', failures_key, string.format('(%d', now - window_ms), '+inf')
  end
  return counted_failures
end

-- The rate window's counts, read once per run unless the buckets change.
local function window_counts()
  if not counts_calls then return 0, 0, 0 end
  if window_read == nil then window_read = {read_window(on_key)} end
  return window_read[1], window_read[2], window_read[3]
end

-- The rate trigger the window meets, or nil.
local function rate_trip_due()
  return rate_met(window_counts())
end

-- The fleet's reporters: note this process (kind 's:', 'f:' or 'i:'), and count them.
-- Cost: each count is one ZCOUNT (or a ZRANGE of at most two members) over its band, however
-- large the fleet; members that left the window are trimmed when a member is added.
local BAND = {['s:'] = 0, ['f:'] = FAILED_BAND, ['i:'] = ISOLATED_BAND}
local counts_of = {}  -- this run's counts, until the set changes
local reporters_need = nil  -- (ms) how long the set must live after this run, once written
local function note_reporter(kind, score)
  if reporter == '' or not reporters_key then return end
  counts_of = {}
  -- Cost: no TYPE check up front (on_key finds a key of the wrong type).
  local added = on_key('ZADD', reporters_key, BAND[kind] + (score or now), kind .. reporter)
  -- (an isolated process's mark counts until its first trial had time to run)
  reporters_need = math.max(reporters_need or window_ms, (score or now) - now)
  if added > 0 then trim_reporters() end
end

-- Processes that failed inside the window.
local function failing_count()
  if not reporters_key then return 0 end
  if counts_of.failing == nil then
    counts_of.failing = on_key('ZCOUNT', reporters_key, score_bound(FAILED_BAND, now - window_ms),
      score_bound(ISOLATED_BAND, 0))
  end
  return counts_of.failing
end

-- Processes isolated now.
local function isolated_count()
  if not reporters_key then return 0 end
  if counts_of.isolated == nil then
    counts_of.isolated = on_key('ZCOUNT', reporters_key, score_bound(ISOLATED_BAND, now), '+inf')
  end
  return counts_of.isolated
end

-- Whether another process called inside the window.
local function others_seen()
  if not reporters_key then return false end
  if counts_of.others == nil then
    local seen = on_key('ZRANGE', reporters_key, score_bound(0, now - window_ms),
      score_bound(FAILED_BAND, 0), 'BYSCORE', 'LIMIT', 0, 2)
    counts_of.others = #seen == 2 or (#seen == 1 and seen[1] ~= 's:' .. reporter)
  end
  return counts_of.others
end

local function quorum_met()
  if quorum <= 1 then return true end
  return failing_count() >= quorum
end

-- A closed circuit forgets who failed: only 's:' (who calls) outlives it.
local function forget_failing()
  if not reporters_key then return end
  counts_of = {}
  on_key('ZREMRANGEBYSCORE', reporters_key, FAILED_BAND, '+inf')
end

-- Keep the figures that open the circuit (the first opening's, until it closes).
local function freeze_figures()
  if opened_figures ~= '' then return end
  local c, f, sl = window_counts()
  local fl = f
  if max_failures > 0 then fl = in_window() end
  opened_figures = fl .. ':' .. c .. ':' .. f .. ':' .. sl
end

local function clear_window()
  window_read = nil
  if calls_key then redis.call('DEL', calls_key) end
end

local function open_duration()
  if reopenings > 0 and multiplier ~= 1 then
    return math.min(open_ms * multiplier ^ math.min(reopenings, 64), max_open_ms)
  end
  return open_ms
end

local function open_circuit(trigger)
  decision_due = nil
  freeze_figures()
  opened_by = trigger
  open_until = now + open_duration()
  successes = 0
  redis.call('DEL', permits_key)
  permits_checked = true  -- gone: nothing left to check
  clear_window()
  set_state('open')
end

local function close_circuit()
  decision_due = nil
  forget_failing()
  opened_by, opened_figures = '', ''
  open_until = 0
  reopenings = 0
  successes = 0
  redis.call('DEL', failures_key, permits_key)
  counted_failures, permits_checked, failures_exist = 0, true, false
  clear_window()
  set_state('closed')
end

-- A rate trigger met on the window: open if the quorum is met and the window holds every
-- process's calls. While another process is seen, its successes of the last flush interval
-- may not be in the buckets yet: the decision waits DECISION_WAIT_MS (the next failure or
-- the caller's 'decide' makes it), then is made on the window as it is then.
local function rate_decision(trigger)
  if trigger == nil then
    if decision_due ~= nil and now >= decision_due then decision_due = nil end
    return
  end
  if not quorum_met() then return end
  if decision_due == nil then
    if others_seen() then
      decision_due = now + DECISION_WAIT_MS
      changed = true
      return
    end
  elseif now < decision_due then
    return
  end
  open_circuit(trigger)
end

local function release()
  if token > 0 then
    check_permits()
    redis.call('ZREM', permits_key, token)
  end
end

-- What the passing of time decides: open -> half-open, stale permits expire.
if state == 'open' and now >= open_until then
  successes = 0
  set_state('half_open')
end
if state == 'half_open' then
  check_permits()
  redis.call('ZREMRANGEBYSCORE', permits_key, '-inf', now)
end
-- Others mirror how many trial permits are taken (rejecting without a round trip
-- while they are all in use): publish when that count changes. Permits are taken only
-- while half-open and dropped with every other state, so no other state reads them.
local function permits_held()
  if state ~= 'half_open' and token == 0 then return 0 end
  check_permits()
  return redis.call('ZCARD', permits_key)
end
local permits_before = permits_held()

if state == 'disabled' and op ~= 'reset' and op ~= 'force_open' and op ~= 'disable' then
  -- Disabled: every call passes and nothing is recorded.
  if op == 'release' or op == 'failure' or op == 'slow' or op == 'success' or op == 'recheck' then
    release()
  end
  result = 0
elseif op == 'acquire' then
  note_reporter('s:')  -- a process's first call (and trials): it may count successes
  if state == 'closed' then
    result = 0
  elseif state == 'half_open' and permits_before < half_open_max then
    result = redis.call('HINCRBY', state_key, 'nt', 1)
    redis.call('ZADD', permits_key, now + trial_timeout_ms, result)
  else
    result = -1
  end
elseif op == 'failure' then
  release()
  last_reason, last_ms = ARGV[15], now
  if state == 'closed' then
    note_reporter('f:')
    if max_failures > 0 then
      -- (a member unique to this write: its time and the version it stores)
      on_key('ZADD', failures_key, now, string.format('%d:%d', now, version + 1))
      redis.call('ZREMRANGEBYRANK', failures_key, 0, -(max_failures + 1))
      counted_failures, failures_exist = nil, true
      if in_window() >= max_failures and quorum_met() then open_circuit('failures') end
    end
    if counts_calls and state == 'closed' then
      count_call(true, slow_call)
      rate_decision(rate_trip_due())
    end
    if trip and state == 'closed' then open_circuit('open_on') end  -- whatever the quorum
    if isolating_trigger and state == 'closed' then
      -- This process's own calls met the trigger: with a quorum, that many isolated at
      -- once open the fleet's circuit (one sick process never does).
      note_reporter('i:', now + tonumber(isolating_ms) + TRIAL_GRACE_MS)
      if quorum >= 2 and isolated_count() >= quorum then open_circuit(isolating_trigger) end
    end
  elseif state == 'half_open' then
    reopenings = reopenings + 1
    open_circuit(trip and 'open_on' or 'trial_failed')
  end
elseif op == 'slow' then
  -- A success slower than slow_call_seconds: a slow call in the window, a failed trial.
  release()
  if state == 'closed' then
    redis.call('DEL', failures_key)
    counted_failures, failures_exist = 0, false
    if counts_calls then
      count_call(false, true)
      rate_decision(rate_trip_due())
    end
    if isolating_trigger and state == 'closed' then
      note_reporter('i:', now + tonumber(isolating_ms) + TRIAL_GRACE_MS)
      if quorum >= 2 and isolated_count() >= quorum then open_circuit(isolating_trigger) end
    end
  elseif state == 'half_open' then
    reopenings = reopenings + 1
    open_circuit('trial_failed')
  end
elseif op == 'success' or op == 'recheck' then
  release()
  if state == 'closed' and op == 'recheck' then
    -- The caller's first outcome after its policy changed: the triggers are checked under the
    -- new thresholds first, so a lower threshold already met opens the circuit.
    if max_failures > 0 and in_window() >= max_failures then open_circuit('failures') end
    if state == 'closed' and counts_calls then
      local trigger = rate_trip_due()
      if trigger then open_circuit(trigger) end
    end
  end
  if state == 'closed' then
    redis.call('DEL', failures_key)
    counted_failures, failures_exist = 0, false
    -- A trial that ends after its circuit closed is a call of the new window (as in
    -- state.py), and so is a caller's first success (ARGV[24] = 1: it had not read the
    -- circuit, so it could not count it); other successes are counted by their process.
    if counts_calls and (token > 0 or carried > 0) then
      if carried > 0 then note_reporter('s:') end  -- a first call: it counts successes now
      carried = 0
      count_call(false, false)
    end
  elseif state == 'half_open' then
    successes = successes + 1
    if successes >= success_threshold then close_circuit() end
  end
elseif op == 'release' then
  release()
elseif op == 'decide' then
  -- A deferred rate decision that is due (the process that deferred it asks).
  if state == 'closed' and counts_calls and decision_due ~= nil and now >= decision_due then
    rate_decision(rate_trip_due())
  end
elseif op == 'hold_open' then
  -- Open at least ARGV[15] ms more (a server's Retry-After), capped, never shortened.
  if state == 'open' then
    local held = now + math.min(tonumber(ARGV[15]) or 0, max_open_ms)
    if held > open_until then
      open_until = held
      changed = true
    end
  end
elseif op == 'policy' then
  -- The caller's policy changed at run time: its thresholds are stored (below), and an open
  -- deadline further away than its open time is cut to it (never lengthened).
  if state == 'open' then
    local cut = now + open_duration()
    if cut < open_until then
      open_until = cut
      changed = true
    end
  end
elseif op == 'force_open' then
  if state ~= 'disabled' then freeze_figures() else opened_figures = '0:0:0:0' end
  opened_by = 'operator'
  last_reason, last_ms = ARGV[15], now
  redis.call('DEL', permits_key)
  permits_checked = true
  clear_window()
  open_until = -1  -- forced: no deadline
  set_state('forced_open')
elseif op == 'disable' then
  forget_failing()
  opened_by, opened_figures = '', ''
  last_reason, last_ms = ARGV[15], now
  open_until = 0
  reopenings = 0
  successes = 0
  redis.call('DEL', failures_key, permits_key)
  counted_failures, permits_checked, failures_exist = 0, true, false
  clear_window()
  set_state('disabled')
elseif op == 'reset' then
  close_circuit()
end

local failures = 0
if state == 'closed' or op == 'read' or op == 'touch' then failures = in_window() end
local first, permits = {}, 0
if state == 'half_open' then  -- (no other state holds a permit: see permits_held)
  check_permits()
  first = redis.call('ZRANGE', permits_key, 0, 0, 'WITHSCORES')
  permits = redis.call('ZCARD', permits_key)
end
if not ((op == 'read' or op == 'touch') and repaired == 0) then version = version + 1 end
local window_calls, window_failed, window_slow = 0, 0, 0
if state == 'closed' then window_calls, window_failed, window_slow = window_counts() end
if state ~= 'closed' then decision_due = nil end
local failing_processes = failing_count()
-- Whether another process calls matters only to a run that may isolate its process ('' else).
local others = ''
if isolating_trigger then others = others_seen() and 1 or 0 end
local reply = {state, open_until, failures, now, result, reopenings, last_reason, last_ms,
  permits, first[2] or '', path, max_failures, window_ms, repaired, version,
  window_calls, window_failed, window_slow, opened_by, opened_figures, failing_processes,
  decision_due or '', others}
if (op == 'read' or op == 'touch') and repaired == 0 then
  if op == 'touch' then
    -- An in-use circuit stays listed (for status and operators) while its process lives.
    -- Only a caller that never read it lists it anew: for one that did (ARGV[16] set), a
    -- missing key is a lost state, which the caller must see (version 0) and report.
    if redis.call('EXISTS', state_key) == 0 and ARGV[16] == '' then
      redis.call('HSET', state_key, 's', state, 'svc', ARGV[13], 'mf', max_failures, 'wm', window_ms)
    end
    if state ~= 'forced_open' and state ~= 'disabled' and redis.call('PTTL', state_key) < ttl_ms then
      redis.call('PEXPIRE', state_key, ttl_ms)
    end
  end
  -- A read changes nothing else (time-decided transitions are stored by the next write).
  return reply
end

-- A forced-open circuit keeps its keys until reset: an operator's override must not expire.
local held = state == 'forced_open' or state == 'disabled'
local ttl, expires = 0, h[15]
if not held then
  local keep = ttl_ms
  if state == 'open' then keep = math.max(keep, open_until - now + trial_timeout_ms) end
  if state == 'half_open' then keep = math.max(keep, trial_timeout_ms) end
  ttl, expires = expiry_due(keep, changed or repaired == 1)
end

-- Cost: only the fields whose value changes are written (a failure while closed: its reason,
-- time and the version). Numbers compare as numbers: tostring() formats each one with a
-- sprintf, which cost more than the rest of the write (a stored number is an exact copy).
local values = {state, open_until, reopenings, successes, last_reason, last_ms, max_failures, window_ms,
  false, false, version, opened_by, opened_figures, ARGV[13], held and '' or expires, decision_due or ''}
local write = {}
for i = 1, #FIELDS do
  local value, stored = values[i], h[i]
  if value and (value ~= stored and (type(value) ~= 'number' or tonumber(stored or '') ~= value)) then
    write[#write + 1] = FIELDS[i]
    write[#write + 1] = value
  end
end
if #write > 0 then redis.call('HSET', state_key, unpack(write)) end

if held then
  redis.call('PERSIST', state_key)
else
  push_expiry(ttl, expires, failures_exist and not had_failures)
  if state == 'half_open' then redis.call('PEXPIRE', permits_key, math.max(ttl_ms, trial_timeout_ms)) end
end
if calls_written then outlive(calls_key, math.max(window_ms, buckets * bucket_ms)) end
if reporters_need then outlive(reporters_key, math.max(ttl_ms, reporters_need)) end

local function failures_left()
  if failures_exist == nil then return redis.call('EXISTS', failures_key) == 1 end
  return failures_exist
end
if changed or repaired == 1 or permits ~= permits_before
    or had_failures ~= failures_left() then
  publish(state, failures, permits, first[2] or '')
end
return reply
