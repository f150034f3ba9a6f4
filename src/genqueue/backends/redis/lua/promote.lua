-- promote: make due scheduled/retrying jobs of one queue queued, oldest due first.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] limit.
-- Returns: {now, number promoted}.
local now_s = clock_now()
return {now_s, promote(now_s, tonumber(ARGV[2]))}
