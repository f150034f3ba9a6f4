-- fetch: promote due delayed jobs of one queue (bounded), then claim up to N due queued
-- jobs, oldest due first (enqueue order on ties), under a lease.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] worker id, [3] limit, [4] lease seconds, [5] promote limit.
-- Returns: {now, id1, body1, attempts1, id2, ...}; each claimed job is now active with
--       attempts + 1, owner = worker, started = updated = now and lease = now + lease
--       seconds (the client fills those in from now).
local now_s, now = clock_now()
promote(now_s, tonumber(ARGV[5]))
local items = redis.call('ZRANGEBYSCORE', K_READY, '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {now_s}
if #items == 0 then return out end
-- The claimed members are exactly the lowest ranks.
redis.call('ZREMRANGEBYRANK', K_READY, 0, #items - 1)
local lease = fmt(now + tonumber(ARGV[4]))
local owner = ARGV[2]
local ids = {}
for i, m in ipairs(items) do ids[i] = string.sub(m, 17) end
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
