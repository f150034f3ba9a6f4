-- update_running: store progress and running updates of a job whose lease is held.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] job id, [3] fencing token, [4] progress JSON ('' to keep),
--       [5] patch JSON line ('' for none): remote id, meta to merge, cost to replace.
-- Returns: {now, 1} if written, {now, 0} if the lease is not held.
local now_s, now = clock_now()
local id = ARGV[2]
local hot = redis.call('HGET', K_HOT, id)
if not hot then return {now_s, 0} end
local state, attempts, lease, started, _, seqm, cm, owner = parse_hot(hot)
if state ~= 'active' or attempts ~= ARGV[3] or lease == '' or tonumber(lease) <= now then
  return {now_s, 0}
end
redis.call('HSET', K_HOT, id, pack_hot(state, attempts, lease, started, now_s, seqm, cm, owner))
if ARGV[4] ~= '' then redis.call('HSET', K_PROG, id, ARGV[4]) end
if ARGV[5] ~= '' then
  -- Patches are appended, never merged here: Lua's JSON encoder would round floats.
  local old = redis.call('HGET', K_PATCH, id)
  redis.call('HSET', K_PATCH, id, old and (old .. '\n' .. ARGV[5]) or ARGV[5])
end
return {now_s, 1}
