-- purge_finished: delete completed/cancelled jobs of one queue, oldest first, at most a
-- limit (callers keep it small: bounded script time): those that finished before an
-- instant and, with a count cap, those beyond the newest `keep`. Both criteria pick a
-- prefix of the finished set (it is ordered by finish time), so the larger one is taken.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] finished before (exclusive, epoch seconds), [3] limit,
--       [4] keep (the count cap; '' for none).
-- Returns: {now, number deleted}.
local now_s = clock_now()
local n = redis.call('ZCOUNT', K_FINISHED, '-inf', '(' .. ARGV[2])
if ARGV[4] ~= '' then
  n = math.max(n, redis.call('ZCARD', K_FINISHED) - tonumber(ARGV[4]))
end
n = math.min(n, tonumber(ARGV[3]))
if n <= 0 then return {now_s, 0} end
local ids = redis.call('ZRANGE', K_FINISHED, 0, n - 1)
redis.call('ZREMRANGEBYRANK', K_FINISHED, 0, n - 1)
delete_jobs(new_ops(), ids)
return {now_s, #ids}
