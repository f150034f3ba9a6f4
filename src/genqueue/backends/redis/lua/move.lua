-- move: a batch of fenced compare-and-set moves of one queue's jobs. Each replaces the
-- stored job by the one the client computed, re-indexes it for its new state, and adds
-- or removes its dead letter entry (and the entry's indexes) in the same step.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, then 15 per move: id, expected state, expected token (attempts),
--       require expired lease ('1' or ''), new state, attempts, lease, started, updated,
--       owner, run_at, finished_at ('' for none), idempotency key (''), body (JSON),
--       entry (JSON, '' unless the new state is dead). The ids of one call are distinct.
-- Returns: {now, ok1, ok2, ...}: 1 where the move was applied, 0 where the stored job
--       was not in the expected state/token (or its lease is live, or another pending
--       job holds its idempotency key).
local now_s, now = clock_now()
local ids = {}
for i = 2, #ARGV, 15 do ids[#ids + 1] = ARGV[i] end
local hots = hmget(K_HOT, ids)
local ops = new_ops()
local out = {now_s}

local function applies(i, hot)
  local state, attempts, lease = parse_hot(hot)
  if state ~= ARGV[i + 1] or attempts ~= ARGV[i + 2] then return false end
  if ARGV[i + 3] == '1' and lease ~= '' and tonumber(lease) > now then
    return false -- the lease is live: a reclaim must not race its worker
  end
  local key = ARGV[i + 12]
  if ARGV[i + 4] == 'queued' and key ~= '' then
    local holder = redis.call('HGET', K_IDEM, key)
    return not holder or holder == ARGV[i]
  end
  return true
end

for j, id in ipairs(ids) do
  local i = 15 * j - 13
  local ok = hots[j] and applies(i, hots[j])
  if ok then
    local state, _, _, _, _, seqm, cm = parse_hot(hots[j])
    local new_state, lease, finished, key = ARGV[i + 4], ARGV[i + 6], ARGV[i + 11], ARGV[i + 12]
    unindex(ops, id, state, seqm, cm, state == 'dead' and redis.call('HGET', K_DLQ, id))
    op(ops.rem, 'HDEL', K_PROG, id)
    op(ops.rem, 'HDEL', K_PATCH, id)
    op(ops.add, 'HSET', K_BODY, id, ARGV[i + 13])
    op(ops.add, 'HSET', K_HOT, id,
      pack_hot(new_state, ARGV[i + 5], lease, ARGV[i + 7], ARGV[i + 8], seqm, cm, ARGV[i + 9]))
    index(ops, id, new_state, seqm, cm, ARGV[i + 10], lease ~= '' and lease or now_s,
      finished ~= '' and finished or now_s)
    if new_state == 'dead' then add_entry(ops, id, ARGV[i + 14]) end
    if key ~= '' then
      if not is_terminal(new_state) then
        op(ops.add, 'HSET', K_IDEM, key, id)
      elseif redis.call('HGET', K_IDEM, key) == id then
        redis.call('HDEL', K_IDEM, key)
      end
    end
  end
  out[#out + 1] = ok and 1 or 0
end
flush(ops)
return out
