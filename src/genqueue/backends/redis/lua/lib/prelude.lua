-- genqueue prelude: prepended by scripts.py to every script in lua/. It is not a script.
--
-- It names the queue's keys, reads the clock, packs the per-job "hot" record, and batches
-- writes. Every queue script gets the queue's keys in KEYS, in this order
-- (keys.QUEUE_KEYS):
--   1 body  2 hot  3 prog  4 patch  5 ready  6 delayed  7 leases  8 finished  9 idem
--   10 seq  11 dlq  12 dlq:all  13 dlq:user  14 dlq:kind  15 dlq:task  16 dlq:fp
--   17 dlq:expires (no longer written)  18 dlq:cost  19-25 jobs:<state> (queued scheduled active retrying
--   completed dead cancelled)  26 dlq:fptask  27 dlq:counts  28 dlq:stacks
-- ARGV[1] is always the clock: '' for Redis TIME, or epoch seconds (a test FakeClock).
-- Every reply starts with the time the script used, so the client can track the offset
-- between its clock and the server's for free.
--
-- Hot record: "state|attempts|lease|started|updated|seqm|cm|owner" (owner last: it may
-- contain '|'). Times are stored as the exact strings they were computed as ('%.17g').
--
-- Wake-ups: a script that adds jobs to the queue's ready or delayed set publishes on a
-- channel named like the queue's ready key, once per flush, the earliest due time it added
-- (as text). Idle workers subscribed to it fetch at once instead of polling, and a worker on
-- many queues fetches only from those it heard of (see fanin.py; a lost message costs it
-- latency, never a job).
-- WAKE is PUBLISH; scripts.py loads a second set of the scripts for Redis Cluster, where
-- it is SPUBLISH (sharded: the channel is in the queue's slot, see wake.py).
--
-- Batching: scripts work on many jobs at once, so reads use one HMGET per key and writes
-- are collected per key (ops) and sent as one variadic command per key: a batch of N jobs
-- costs a handful of commands, not a handful per job. Removals are flushed before
-- additions (a job leaves its old indexes before it joins its new ones), and no argument
-- list is unpacked in pieces larger than UNPACK_MAX (Lua's unpack limit is ~8000).

local K_BODY, K_HOT, K_PROG, K_PATCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_READY, K_DELAYED, K_LEASES, K_FINISHED = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_IDEM, K_SEQ, K_DLQ, K_DLQ_ALL = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local K_DLQ_VALUES = {KEYS[13], KEYS[14], KEYS[15], KEYS[16], KEYS[26]}
local K_DLQ_EXPIRES, K_DLQ_COST = KEYS[17], KEYS[18]
local K_DLQ_COUNTS, K_DLQ_STACKS = KEYS[27], KEYS[28]
local K_JOBS = {
  queued = KEYS[19], scheduled = KEYS[20], active = KEYS[21], retrying = KEYS[22],
  completed = KEYS[23], dead = KEYS[24], cancelled = KEYS[25],
}
local UNPACK_MAX = 4000
local WAKE = 'PUBLISH'

local function clock_now()
  if ARGV[1] ~= '' then
    return ARGV[1], tonumber(ARGV[1])
  end
  local t = redis.call('TIME')
  local s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  return s, tonumber(s)
end

local function fmt(n)
  return string.format('%.17g', n)
end

local function parse_hot(raw)
  return string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end

local function pack_hot(state, attempts, lease, started, updated, seqm, cm, owner)
  return table.concat({state, attempts, lease, started, updated, seqm, cm, owner}, '|')
end

local function is_terminal(state)
  return state == 'completed' or state == 'dead' or state == 'cancelled'
end

-- Run a variadic command over a long argument list, UNPACK_MAX arguments at a time.
local function call_chunked(cmd, key, args)
  for i = 1, #args, UNPACK_MAX do
    redis.call(cmd, key, unpack(args, i, math.min(i + UNPACK_MAX - 1, #args)))
  end
end

-- HMGET of many fields: values in field order, false where absent.
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, UNPACK_MAX do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + UNPACK_MAX - 1, #fields)))
    for _, v in ipairs(part) do out[#out + 1] = v end
  end
  return out
end

local function new_ops()
  return {rem = {}, add = {}, counts = {}, dropped = false, wake = false}
end

-- Collect one write: group is ops.rem (ZREM, HDEL) or ops.add (ZADD, HSET).
local function op(group, cmd, key, a, b)
  local g = group[key]
  if not g then
    g = {cmd = cmd, args = {}}
    group[key] = g
  end
  g.args[#g.args + 1] = a
  if b ~= nil then g.args[#g.args + 1] = b end
end

-- Note that work is due at run_at (a number or its text): flush publishes the earliest.
local function due_at(ops, run_at)
  local t = tonumber(run_at)
  if not ops.wake or t < ops.wake then ops.wake = t end
end

local function flush(ops)
  for key, g in pairs(ops.rem) do call_chunked(g.cmd, key, g.args) end
  for key, g in pairs(ops.add) do call_chunked(g.cmd, key, g.args) end
  ops.rem, ops.add = {}, {}
  for name, delta in pairs(ops.counts) do
    if delta ~= 0 and redis.call('HINCRBY', K_DLQ_COUNTS, name, delta) <= 0 then
      redis.call('HDEL', K_DLQ_COUNTS, name)
    end
  end
  ops.counts = {}
  if ops.dropped and redis.call('HLEN', K_DLQ) == 0 then
    -- No entries left: drop the float drift of the cost sums, count afresh, and let go
    -- of dlq:expires members older releases left behind.
    redis.call('DEL', K_DLQ_COST, K_DLQ_COUNTS, K_DLQ_STACKS, K_DLQ_EXPIRES)
  end
  ops.dropped = false
  if ops.wake then
    -- Wake idle workers of this queue (they subscribe to a channel named like the key).
    redis.call(WAKE, K_READY, fmt(ops.wake))
    ops.wake = false
  end
end

-- A value as a member prefix (keys.value_prefix): its byte length in 4 digits, then it.
local function vp(value)
  return string.format('%04d', #value) .. value
end

-- keys.time_key: 16 hex digits that sort like the float (text: its exact digits).
local function time_key(text)
  local b = {string.byte(struct.pack('>d', tonumber(text)), 1, 8)}
  if b[1] >= 128 then
    for i = 1, 8 do b[i] = 255 - b[i] end -- negative: every bit flipped
  else
    b[1] = b[1] + 128 -- positive: the sign bit set
  end
  return string.format(string.rep('%02x', 8), unpack(b))
end

-- keys.dlq_tail: the tail of a DLQ index member, time_key .. id (48 hex digits) in 32
-- characters of TAIL_CHARS (in byte order, 6 bits each), so that it sorts the same way.
local TAIL_CHARS = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz'
local TAIL_CHAR -- value -> character, made when first needed (most calls need none)

local function dlq_tail(hex)
  if not TAIL_CHAR then
    TAIL_CHAR = {}
    for i = 1, 64 do TAIL_CHAR[i - 1] = string.sub(TAIL_CHARS, i, i) end
  end
  local b, out = {string.byte(hex, 1, 48)}, {}
  for i = 1, 48, 3 do -- three lowercase hex digits (12 bits) make two characters
    local x, y, z = b[i], b[i + 1], b[i + 2]
    x = x < 58 and x - 48 or x - 87
    y = y < 58 and y - 48 or y - 87
    z = z < 58 and z - 48 or z - 87
    out[#out + 1] = TAIL_CHAR[x * 4 + math.floor(y / 4)] .. TAIL_CHAR[y % 4 * 16 + z]
  end
  return table.concat(out)
end

-- Layout 2 keeps a dead job whole in its K_DLQ field, with no body or hot record of its
-- own (that saves a hash field and most of a hot record, ~250 bytes per dead job):
--   "<attempts>|<lease>|<updated>|<seq>|<ck>|<owner>\n<entry JSON>\n<body>"
-- seq is its seqm's 16 hex digits without the leading zeros, ck its cm without the id;
-- updated is '' when it is the entry's failed_at (it is, when a worker moves it); its
-- start time is in its body, as a finished job's is. An entry stored before (layout 1,
-- or a dead job whose owner holds a newline) is the entry JSON alone ('{' first), its
-- job in K_BODY and K_HOT. JSON as orjson writes it holds no newline.
local function is_whole(raw)
  return string.byte(raw, 1) ~= 123 -- '{'
end

-- e: the decoded entry.
local function pack_dead(id, attempts, lease, updated, seqm, cm, owner, e, entry, body)
  local seq = string.match(string.sub(seqm, 1, #seqm - #id), '^0*(.-.)$') or ''
  local head = {attempts, lease, updated == e.a and '' or updated, seq,
    string.sub(cm, 1, #cm - #id), owner}
  return table.concat(head, '|') .. '\n' .. entry .. '\n' .. body
end

-- A whole dead job's entry JSON, body and hot record (and its decoded entry, when it
-- had to be decoded: for the update time).
local function unpack_dead(id, raw)
  local a = string.find(raw, '\n', 1, true)
  local b = string.find(raw, '\n', a + 1, true)
  local entry, e = string.sub(raw, a + 1, b - 1), nil
  local attempts, lease, updated, seq, ck, owner =
    string.match(string.sub(raw, 1, a - 1), '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if updated == '' then
    e = cjson.decode(entry)
    updated = e.a
  end
  local seqm = seq ~= '' and (string.rep('0', 16 - #seq) .. seq .. id) or ''
  return entry, string.sub(raw, b + 1),
    pack_hot('dead', attempts, lease, '', updated, seqm, ck .. id, owner), e
end

-- The decoded entry of a K_DLQ field, whichever form it has.
local function entry_of(raw)
  if not is_whole(raw) then return cjson.decode(raw) end
  local a = string.find(raw, '\n', 1, true)
  return cjson.decode(string.sub(raw, a + 1, string.find(raw, '\n', a + 1, true) - 1))
end

-- A K_DLQ field with its entry JSON replaced by text.
local function with_entry(raw, text)
  if not is_whole(raw) then return text end
  local a = string.find(raw, '\n', 1, true)
  local b = string.find(raw, '\n', a + 1, true)
  return string.sub(raw, 1, a) .. text .. string.sub(raw, b)
end

-- Hot records of jobs, false where there is no job; a whole dead job's is in its entry.
local function hots_of(ids)
  local hots = hmget(K_HOT, ids)
  local missing, at = {}, {}
  for i, id in ipairs(ids) do
    if not hots[i] then
      missing[#missing + 1] = id
      at[#at + 1] = i
    end
  end
  if #missing == 0 then return hots end
  for j, raw in ipairs(hmget(K_DLQ, missing)) do
    if raw and is_whole(raw) then
      local _, _, hot = unpack_dead(missing[j], raw)
      hots[at[j]] = hot
    end
  end
  return hots
end

-- A dead letter entry is JSON. Version 2 (e.v == 2): u user (null for none), t task,
-- k kind, f fingerprint, r reason, a failed_at, x expiry, s the keys of its job's
-- stacks, c cost ([unit, amount]); its index members are built here. Entries stored
-- before 2026-12-04 also hold tk, time_key(a), and -amount after each cost. An entry
-- stored before version 2 (no v) lists its members in m and is not in the counters
-- until dlq_upgrade.lua rewrites it as version 2.
-- Members in keys.DLQ_VALUE_INDEXES order, after dlq:all's ('' where there is none).
-- Layout 1 stored the hex digits themselves as the tail (dlq_retail.lua rewrites them).
local function entry_members(id, e)
  if e.v ~= 2 then return e.m end
  local tail = dlq_tail((e.tk or time_key(e.a)) .. id)
  local user = type(e.u) == 'string' and (vp(e.u) .. tail) or ''
  return {'', user, vp(e.k) .. tail, vp(e.t) .. tail, vp(e.f) .. tail, ''}
end

-- Add (sign 1) or take away (-1) a version 2 entry from the counters.
local function count_entry(ops, e, sign)
  local day = string.format('%d', math.floor(tonumber(e.a) / 86400))
  local names = {'n', 'k:' .. e.k, 't:' .. e.t, 'f:' .. e.f, 'ft:' .. vp(e.f) .. e.t, 'd:' .. day}
  names[#names + 1] = type(e.u) == 'string' and ('u:' .. e.u) or 'u'
  for _, name in ipairs(names) do ops.counts[name] = (ops.counts[name] or 0) + sign end
end

-- A dead letter entry joins or leaves its indexes and counters. Cost is rare and per
-- unit, and stacks are shared between entries, so both are written at once (a drop and
-- an add of one call may share a stack). stacks: JSON [[key, text], ...] of the stacks
-- the entry refers to ('' for none); each is stored with its first entry. e: the decoded
-- entry, if the caller has it.
local function add_entry(ops, id, raw, stacks, e)
  e = e or entry_of(raw)
  local m = entry_members(id, e)
  op(ops.add, 'HSET', K_DLQ, id, raw)
  if m[1] ~= '' then op(ops.add, 'ZADD', K_DLQ_ALL, 0, m[1]) end
  for i = 1, #K_DLQ_VALUES do
    if m[i + 1] and m[i + 1] ~= '' then op(ops.add, 'ZADD', K_DLQ_VALUES[i], 0, m[i + 1]) end
  end
  for _, c in ipairs(e.c) do redis.call('HINCRBYFLOAT', K_DLQ_COST, c[1], c[2]) end
  if e.v == 2 then
    if redis.call('HLEN', K_DLQ) == 0 then
      redis.call('HSET', K_DLQ_COUNTS, 'exact', '1') -- counting from an empty DLQ
    end
    count_entry(ops, e, 1)
  end
  if stacks and stacks ~= '' then
    for _, s in ipairs(cjson.decode(stacks)) do
      if redis.call('HINCRBY', K_DLQ_STACKS, 'r:' .. s[1], 1) == 1 then
        redis.call('HSET', K_DLQ_STACKS, 's:' .. s[1], s[2])
      end
    end
  end
end

local function drop_entry(ops, id, raw)
  local e = entry_of(raw)
  local m = entry_members(id, e)
  if m[1] ~= '' then op(ops.rem, 'ZREM', K_DLQ_ALL, m[1]) end
  for i = 1, #K_DLQ_VALUES do
    if m[i + 1] and m[i + 1] ~= '' then op(ops.rem, 'ZREM', K_DLQ_VALUES[i], m[i + 1]) end
  end
  op(ops.rem, 'ZREM', K_DLQ_EXPIRES, id) -- entries stored before dlq_expire.lua used dlq:kind
  op(ops.rem, 'HDEL', K_DLQ, id)
  for _, c in ipairs(e.c) do
    local minus = c[3] or (string.sub(c[2], 1, 1) == '-' and string.sub(c[2], 2) or '-' .. c[2])
    redis.call('HINCRBYFLOAT', K_DLQ_COST, c[1], minus)
  end
  if e.v == 2 then
    count_entry(ops, e, -1)
    for _, key in ipairs(e.s) do
      if redis.call('HINCRBY', K_DLQ_STACKS, 'r:' .. key, -1) <= 0 then
        redis.call('HDEL', K_DLQ_STACKS, 'r:' .. key, 's:' .. key)
      end
    end
  end
  ops.dropped = true
end

-- Take a job out of the indexes of its state (entry: its dead letter entry, if dead).
local function unindex(ops, id, state, seqm, cm, entry)
  if state == 'queued' then
    op(ops.rem, 'ZREM', K_READY, seqm)
  elseif state == 'scheduled' or state == 'retrying' then
    op(ops.rem, 'ZREM', K_DELAYED, id)
  elseif state == 'active' then
    op(ops.rem, 'ZREM', K_LEASES, id)
  elseif state == 'completed' or state == 'cancelled' then
    op(ops.rem, 'ZREM', K_FINISHED, id)
  elseif state == 'dead' and entry then
    drop_entry(ops, id, entry)
  end
  op(ops.rem, 'ZREM', K_JOBS[state], cm)
end

-- Put a job in the indexes of its state (a dead job's entry is added by the caller).
local function index(ops, id, state, seqm, cm, run_at, lease, finished)
  if state == 'queued' then
    op(ops.add, 'ZADD', K_READY, run_at, seqm)
    due_at(ops, run_at)
  elseif state == 'scheduled' or state == 'retrying' then
    op(ops.add, 'ZADD', K_DELAYED, run_at, id)
    due_at(ops, run_at)
  elseif state == 'active' then
    op(ops.add, 'ZADD', K_LEASES, lease, id)
  elseif state == 'completed' or state == 'cancelled' then
    op(ops.add, 'ZADD', K_FINISHED, finished, id)
  end
  op(ops.add, 'ZADD', K_JOBS[state], 0, cm)
end

-- Delete jobs and everything that points at them; returns which existed (true/false).
local function delete_jobs(ops, ids)
  local hots = hmget(K_HOT, ids)
  local entries = hmget(K_DLQ, ids)
  local existed = {}
  for i, id in ipairs(ids) do
    if not hots[i] and entries[i] and is_whole(entries[i]) then
      local _, _, hot = unpack_dead(id, entries[i])
      hots[i] = hot
    end
    existed[i] = hots[i] ~= false
    if hots[i] then
      local state, _, _, _, _, seqm, cm = parse_hot(hots[i])
      unindex(ops, id, state, seqm, cm, entries[i])
      if state ~= 'dead' and entries[i] then drop_entry(ops, id, entries[i]) end
      op(ops.rem, 'HDEL', K_BODY, id)
      op(ops.rem, 'HDEL', K_HOT, id)
      op(ops.rem, 'HDEL', K_PROG, id)
      op(ops.rem, 'HDEL', K_PATCH, id)
    elseif entries[i] then
      drop_entry(ops, id, entries[i]) -- an entry without its job: drop it all the same
    end
  end
  flush(ops)
  return existed
end

-- Make due scheduled/retrying jobs queued, oldest due first; return how many.
local function promote(now_s, limit)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, limit)
  local n = #due / 2
  if n == 0 then return 0 end
  -- The due members are exactly the lowest n ranks.
  redis.call('ZREMRANGEBYRANK', K_DELAYED, 0, n - 1)
  local ids = {}
  for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
  local hots = hmget(K_HOT, ids)
  local ops = new_ops()
  for i, id in ipairs(ids) do
    if hots[i] then
      local state, attempts, lease, started, _, seqm, cm, owner = parse_hot(hots[i])
      op(ops.add, 'HSET', K_HOT, id, pack_hot('queued', attempts, lease, started, now_s, seqm, cm, owner))
      op(ops.add, 'ZADD', K_READY, due[2 * i], seqm)
      due_at(ops, due[2 * i])
      op(ops.rem, 'ZREM', K_JOBS[state], cm)
      op(ops.add, 'ZADD', K_JOBS.queued, 0, cm)
    end
  end
  flush(ops)
  return n
end

-- The stored parts of a job: body, hot record, progress, running patches.
-- Idempotency: K_IDEM maps a key to "<holder id>:<digest of its data>". A value without
-- a digest (stored before digests were kept) matches any data.
local function idem_get(key)
  local v = redis.call('HGET', K_IDEM, key)
  if not v then return false, '' end
  return string.match(v, '^([^:]*):?(.*)$')
end

local function idem_value(id, digest)
  if digest == '' then return id end
  return id .. ':' .. digest
end

local function read_job(id)
  return {
    redis.call('HGET', K_BODY, id), redis.call('HGET', K_HOT, id),
    redis.call('HGET', K_PROG, id), redis.call('HGET', K_PATCH, id),
  }
end
