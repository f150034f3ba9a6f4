-- enqueue: store a batch of new jobs of one queue, all or none.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, then 9 per job: id, state, run_at, idempotency key ('' for none),
--       body (JSON), cm (created member), updated_at, attempts, data digest ('' when the
--       job has no key).
-- Returns: {now, r1, r2, ...}: ri is '' when job i was stored, or {body, hot, prog,
--       patch} of the pending job that holds its idempotency key with the same data
--       digest (the job is not stored).
--       Raises "GENQUEUE_DUPLICATE <id>" (nothing stored) if an id exists with another
--       body; an identical body is a re-sent enqueue and counts as stored.
--       Raises "GENQUEUE_IDEMPOTENCY_CONFLICT <holder id> <key in hex>" (nothing stored) if a
--       key is held, by a pending job or an earlier job of the batch, with another digest.
local N = 9
local now_s = clock_now()
local ids = {}
for i = 2, #ARGV, N do ids[#ids + 1] = ARGV[i] end
local existing = hmget(K_BODY, ids)
local dead = hmget(K_DLQ, ids) -- a whole dead job has no body field (see lib/prelude.lua)
local first = {} -- key -> {id, digest} of the batch's first job with that key
for j, id in ipairs(ids) do
  local i = N * j - 7
  if (existing[j] and existing[j] ~= ARGV[i + 4]) or (dead[j] and is_whole(dead[j])) then
    return redis.error_reply('GENQUEUE_DUPLICATE ' .. id)
  end
  local key, digest = ARGV[i + 3], ARGV[i + 8]
  if key ~= '' then
    local holder, held = idem_get(key)
    if not holder and first[key] then holder, held = first[key][1], first[key][2] end
    if holder and held ~= '' and digest ~= '' and held ~= digest then
      local hex = string.gsub(key, '.', function(c) return string.format('%02x', string.byte(c)) end)
      return redis.error_reply('GENQUEUE_IDEMPOTENCY_CONFLICT ' .. holder .. ' ' .. hex)
    end
    first[key] = first[key] or {id, digest}
  end
end
local seq = redis.call('INCRBY', K_SEQ, #ids) - #ids
local ops = new_ops()
local claimed = {} -- idempotency keys taken by this batch
local out = {now_s}
for j, id in ipairs(ids) do
  local i = N * j - 7
  local state, run_at, key = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = key ~= '' and (claimed[key] or idem_get(key))
  if holder then
    if claimed[key] then flush(ops) end -- the holder is in this batch: write it first
    out[#out + 1] = read_job(holder)
  elseif existing[j] then
    out[#out + 1] = ''
  else
    seq = seq + 1
    local seqm = string.format('%016x', seq) .. id
    local cm = ARGV[i + 5]
    op(ops.add, 'HSET', K_BODY, id, ARGV[i + 4])
    op(ops.add, 'HSET', K_HOT, id, pack_hot(state, ARGV[i + 7], '', '', ARGV[i + 6], seqm, cm, ''))
    index(ops, id, state, seqm, cm, run_at, '', '')
    if key ~= '' and not is_terminal(state) then
      op(ops.add, 'HSET', K_IDEM, key, idem_value(id, ARGV[i + 8]))
      claimed[key] = id
    end
    out[#out + 1] = ''
  end
end
flush(ops)
return out
