-- dlq_retail: rewrite the members of one DLQ value index that layout 1 stored, whose
-- tail is time_key .. id itself (48 hex digits), with the tail layout 2 stores
-- (dlq_tail: 32 characters), a bounded number per call. Members already rewritten are
-- left as they are (their tail is 32 characters long: the value's prefix says where it
-- starts), so the walk may meet them again without harm.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] the index's position in KEYS, [3] where to go on from (a
--       ZRANGEBYLEX min: '-' to start), [4] members per call.
-- Returns: {now, where the next call goes on from ('' when the index is done), members
--       rewritten}.
local now_s = clock_now()
local key = KEYS[tonumber(ARGV[2])]
local n = tonumber(ARGV[4])
local members = redis.call('ZRANGEBYLEX', key, ARGV[3], '+', 'LIMIT', 0, n)
local ops = new_ops()
local rewritten = 0
for _, m in ipairs(members) do
  local head = 4 + tonumber(string.sub(m, 1, 4))
  if #m - head == 48 then
    op(ops.rem, 'ZREM', key, m)
    op(ops.add, 'ZADD', key, 0, string.sub(m, 1, head) .. dlq_tail(string.sub(m, head + 1)))
    rewritten = rewritten + 1
  end
end
flush(ops)
local from = #members < n and '' or ('(' .. members[#members])
return {now_s, from, rewritten}
