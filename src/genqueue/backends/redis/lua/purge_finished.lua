-- purge_finished: delete completed/cancelled jobs of one queue that finished before an
-- instant, oldest first, at most a limit (callers keep it small: bounded script time).
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] finished before (exclusive, epoch seconds), [3] limit.
-- Returns: {now, number deleted}.
local now_s = clock_now()
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #ids == 0 then return {now_s, 0} end
redis.call('ZREMRANGEBYRANK', K_FINISHED, 0, #ids - 1)
delete_jobs(new_ops(), ids)
return {now_s, #ids}
