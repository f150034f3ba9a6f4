-- dlq_upgrade: rewrite dead letter entries stored before counters existed (no version)
-- as version 2 entries, counted, out of the indexes no longer written (dlq:all,
-- dlq:fptask) and with version 2's member tails, a bounded number per call; their job
-- bodies stay as they are (readers accept both). When a full pass ends, the counters are
-- marked exact.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] HSCAN cursor of the entries ('0' to start), [3] entries per call.
-- Returns: {now, next cursor ('0' when the pass is done), entries rewritten}.
local now_s = clock_now()
local reply = redis.call('HSCAN', K_DLQ, ARGV[2], 'COUNT', tonumber(ARGV[3]))
local items = reply[2]
local ops = new_ops()
local rewritten = 0
for i = 1, #items, 2 do
  local id, raw = items[i], items[i + 1]
  local e = entry_of(raw)
  if e.v ~= 2 then
    local r = e.r
    -- Times as the exact text Python reads back (cjson would round them to 14 digits).
    local new = {
      v = 2, u = r.user_id, t = r.task, k = r.error_kind, f = r.fingerprint,
      r = r.reason, a = fmt(r.failed_at), tk = string.sub(e.m[1], 1, 16), x = e.x, c = e.c,
    }
    local text = cjson.encode(new)
    -- cjson writes an empty array as {}: entries list their stacks and cost as arrays.
    text = string.gsub(text, '"c":{}', '"c":[]')
    text = string.sub(text, 1, #text - 1) .. ',"s":[]}'
    op(ops.rem, 'ZREM', K_DLQ_ALL, e.m[1])
    if e.m[6] and e.m[6] ~= '' then op(ops.rem, 'ZREM', K_DLQ_VALUES[5], e.m[6]) end
    -- Its value members get the tail version 2 entries have (see entry_members).
    local m = entry_members(id, cjson.decode(text))
    for i = 1, 4 do
      if e.m[i + 1] ~= '' then op(ops.rem, 'ZREM', K_DLQ_VALUES[i], e.m[i + 1]) end
      if m[i + 1] ~= '' then op(ops.add, 'ZADD', K_DLQ_VALUES[i], 0, m[i + 1]) end
    end
    op(ops.add, 'HSET', K_DLQ, id, with_entry(raw, text))
    count_entry(ops, cjson.decode(text), 1)
    rewritten = rewritten + 1
  end
end
flush(ops)
if reply[1] == '0' and redis.call('HLEN', K_DLQ) > 0 then
  redis.call('HSET', K_DLQ_COUNTS, 'exact', '1')
end
return {now_s, reply[1], rewritten}
