-- read_jobs: read jobs of one queue (and their dead letter entries) atomically. Read-only.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, then job ids.
-- Returns: {now, body1, hot1, prog1, patch1, entry1, body2, ...}: five values per id,
--       nil where absent (no body: no such job in this queue).
local now_s = clock_now()
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local parts = {hmget(K_BODY, ids), hmget(K_HOT, ids), hmget(K_PROG, ids), hmget(K_PATCH, ids),
  hmget(K_DLQ, ids)}
local out = {now_s}
for i = 1, #ids do
  for p = 1, 5 do out[#out + 1] = parts[p][i] end
end
return out
