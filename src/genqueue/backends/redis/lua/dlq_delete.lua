-- dlq_delete: delete dead letter entries of one queue and their dead jobs.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, then distinct job ids (callers send at most a few hundred).
-- Returns: {now, deleted_id, ...}: the ids that had an entry.
local now_s = clock_now()
local asked = {}
for i = 2, #ARGV do asked[#asked + 1] = ARGV[i] end
local entries = hmget(K_DLQ, asked)
local ids = {}
for i, id in ipairs(asked) do
  if entries[i] then ids[#ids + 1] = id end
end
delete_jobs(new_ops(), ids)
local out = {now_s}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
