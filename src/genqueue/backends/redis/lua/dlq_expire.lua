-- dlq_expire: delete dead letter entries of one queue (and their dead jobs) whose
-- retention ended by the clock, oldest expiry first, at most a limit.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] limit (callers keep it small: bounded script time).
-- Returns: {now, expired_id, ...}.
local now_s = clock_now()
local ids = redis.call('ZRANGEBYSCORE', K_DLQ_EXPIRES, '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[2]))
delete_jobs(new_ops(), ids)
-- Also forget ids whose entry was already gone, so they are not returned again.
if #ids > 0 then call_chunked('ZREM', K_DLQ_EXPIRES, ids) end
local out = {now_s}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
