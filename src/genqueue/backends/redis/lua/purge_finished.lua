-- purge_finished: delete completed/cancelled jobs of one queue, the soonest to expire
-- first, at most a limit (callers keep it small: bounded script time): those whose expiry
-- (their score in the finished set) is at or before an instant and, with a count cap,
-- those beyond the `keep` that expire last. Both criteria pick a prefix of the finished
-- set (it is ordered by expiry), so the larger one is taken.
-- A member stored before expiries were (its hot record still has a ready member) is
-- scored by its finish time: past the age rule it is deleted; else, unless the cap takes
-- it, it is re-scored to its expiry (finish time + age) and its hot record compacted.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] expired at or before (epoch seconds), [3] limit, [4] keep (the
--       count cap; '' for none), [5] finished before (exclusive): the age rule.
-- Returns: {now, number deleted, number examined (deleted or re-scored)}.
local now_s = clock_now()
local expired, before = tonumber(ARGV[2]), tonumber(ARGV[5])
local n = redis.call('ZCOUNT', K_FINISHED, '-inf', ARGV[2])
local over = 0
if ARGV[4] ~= '' then
  over = redis.call('ZCARD', K_FINISHED) - tonumber(ARGV[4])
  n = math.max(n, over)
end
n = math.min(n, tonumber(ARGV[3]))
if n <= 0 then return {now_s, 0, 0} end
local found = redis.call('ZRANGE', K_FINISHED, 0, n - 1, 'WITHSCORES')
local ids = {}
for i = 1, #found, 2 do ids[#ids + 1] = found[i] end
local hots = hmget(K_HOT, ids)
local doomed, ops = {}, new_ops()
for i, id in ipairs(ids) do
  local score = tonumber(found[2 * i])
  local state, attempts, lease, started, updated, seqm, cm, owner = '', '', '', '', '', '', '', ''
  if hots[i] then state, attempts, lease, started, updated, seqm, cm, owner = parse_hot(hots[i]) end
  if i <= over or seqm == '' or score < before then
    doomed[#doomed + 1] = id
    op(ops.rem, 'ZREM', K_FINISHED, id) -- even without a job (delete_jobs skips those)
  else
    op(ops.add, 'ZADD', K_FINISHED, score + (expired - before), id)
    op(ops.add, 'HSET', K_HOT, id, pack_hot(state, attempts, lease, started, updated, '', cm, owner))
  end
end
flush(ops)
if #doomed > 0 then delete_jobs(new_ops(), doomed) end
return {now_s, #doomed, #ids}
