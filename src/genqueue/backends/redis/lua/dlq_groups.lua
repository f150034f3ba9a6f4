-- dlq_groups: count a queue's dead letter entries per group of one value index, walking
-- the distinct groups (skip scan: two commands per group), at most a limit per call.
-- Read-only.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] index (1 user, 2 kind, 3 task, 4 fingerprint, 5 fingerprint+task:
--       keys.DLQ_VALUE_INDEXES), [3] lex bound to resume from ('' to start),
--       [4] most groups to return, [5] group prefix to stay within ('' for all).
-- Returns: {now, resume bound ('' when done), group1, count1, group2, count2, ...}; a
--       group is the member prefix before time_key + id (value_prefix parts).
local now_s = clock_now()
local key = K_DLQ_VALUES[tonumber(ARGV[2])]
local within = ARGV[5]
local start = ARGV[3]
if start == '' then start = within ~= '' and ('[' .. within) or '-' end
local stop = within ~= '' and ('(' .. within .. 'g') or '+'
local out = {now_s, ''}
for _ = 1, tonumber(ARGV[4]) do
  local m = redis.call('ZRANGEBYLEX', key, start, stop, 'LIMIT', 0, 1)[1]
  if not m then return out end
  local group = string.sub(m, 1, #m - 48) -- members end with 16 hex of time + 32 of id
  out[#out + 1] = group
  out[#out + 1] = redis.call('ZLEXCOUNT', key, '[' .. group, '(' .. group .. 'g')
  start = '(' .. group .. 'g'
end
out[2] = start
return out
