-- heartbeat: extend the leases of one queue's running jobs that are still held.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] lease seconds, then pairs: job id, fencing token (attempts).
-- Returns: {now, lost_id, ...}: the ids whose lease is no longer held (not active, other
--       token, or expired by the server clock).
local now_s, now = clock_now()
local lease = fmt(now + tonumber(ARGV[2]))
local ids = {}
for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local hots = hmget(K_HOT, ids)
local ops = new_ops()
local out = {now_s}
for j, id in ipairs(ids) do
  local held = false
  if hots[j] then
    local state, attempts, old, started, updated, seqm, cm, owner = parse_hot(hots[j])
    if state == 'active' and attempts == ARGV[2 * j + 2] and old ~= '' and tonumber(old) > now then
      op(ops.add, 'HSET', K_HOT, id, pack_hot(state, attempts, lease, started, updated, seqm, cm, owner))
      op(ops.add, 'ZADD', K_LEASES, lease, id)
      held = true
    end
  end
  if not held then out[#out + 1] = id end
end
flush(ops)
return out
