-- fetch: promote due delayed jobs of one queue (bounded), then claim up to N due queued
-- jobs, oldest due first (enqueue order on ties), under a lease.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] worker id, [3] limit, [4] lease seconds, [5] promote limit,
--       [6] '1' to report when the queue's next job is due ('' not to).
-- Returns: {now, next, left, id1, body1, attempts1, id2, ...}; each claimed job is now
--       active with attempts + 1, owner = worker, started = updated = now and lease = now
--       + lease seconds (the client fills those in from now). next and left ('' unless
--       asked): the due time of the queue's next job after those claimed (the earliest of
--       its ready and delayed heads, 'inf' when both are empty, or, when the limit was
--       reached, the last claimed job's due time: a lower bound that costs no extra read),
--       and how many jobs are left in its ready set.
local now_s, now = clock_now()
local limit = tonumber(ARGV[3])
promote(now_s, tonumber(ARGV[5]))
local items = redis.call('ZRANGEBYSCORE', K_READY, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, limit)
local n = #items / 2
local next_due, left = '', ''
if ARGV[6] == '1' then
  left = redis.call('ZCARD', K_READY) - n
  if n > 0 and n == limit then
    next_due = items[#items]
  else
    local ready = redis.call('ZRANGE', K_READY, n, n, 'WITHSCORES')
    local delayed = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    local t = math.huge
    if ready[2] then t = tonumber(ready[2]) end
    if delayed[2] and tonumber(delayed[2]) < t then t = tonumber(delayed[2]) end
    next_due = t == math.huge and 'inf' or fmt(t)
  end
end
local out = {now_s, next_due, left}
if n == 0 then return out end
-- The claimed members are exactly the lowest ranks.
redis.call('ZREMRANGEBYRANK', K_READY, 0, n - 1)
local lease = fmt(now + tonumber(ARGV[4]))
local owner = ARGV[2]
local ids = {}
for i = 1, n do ids[i] = string.sub(items[2 * i - 1], 17) end
local hots = hmget(K_HOT, ids)
local bodies = hmget(K_BODY, ids)
local ops = new_ops()
for i, id in ipairs(ids) do
  if hots[i] then
    local state, attempts, _, _, _, seqm, cm = parse_hot(hots[i])
    local a = tostring(tonumber(attempts) + 1)
    op(ops.add, 'HSET', K_HOT, id, pack_hot('active', a, lease, now_s, now_s, seqm, cm, owner))
    op(ops.add, 'ZADD', K_LEASES, lease, id)
    op(ops.rem, 'ZREM', K_JOBS[state], cm)
    op(ops.add, 'ZADD', K_JOBS.active, 0, cm)
    out[#out + 1] = id
    out[#out + 1] = bodies[i]
    out[#out + 1] = a
  end
end
flush(ops)
return out
