-- dlq_expire: delete dead letter entries of one queue (and their dead jobs) whose
-- retention ended by the clock, at most a limit.
-- Expiry has no index of its own (it cost ~135 bytes per entry): dlq:kind holds each
-- kind's entries oldest failure first, and an entry's expiry is its failure time plus
-- the dead-letter retention of the worker that stored it, so each kind's range is walked
-- from its start while its entries are due. An entry due behind one that is not (only a
-- retention shortened between their failures does that) goes when the older one does.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] limit (callers keep it small: bounded script time).
-- Returns: {now, expired_id, ...}.
local now_s, now = clock_now()
local limit = tonumber(ARGV[2])
local K_KIND = K_DLQ_VALUES[2]
local ids = {}
local ops = new_ops()

-- The job id at the end of a member (the last 32 of the 48 hex digits its tail spells).
local VALUES = {}
for i = 1, #TAIL_CHARS do VALUES[string.byte(TAIL_CHARS, i)] = i - 1 end
local function member_id(m)
  local out = {}
  for i = #m - 31, #m, 2 do
    local v = VALUES[string.byte(m, i)] * 64 + VALUES[string.byte(m, i + 1)]
    out[#out + 1] = string.format('%03x', v)
  end
  return string.sub(table.concat(out), 17)
end

-- Take the due entries at the start of one kind's range (prefix: its value_prefix).
local function walk(prefix)
  local from, step = '[' .. prefix, 8
  while #ids < limit do
    local members = redis.call('ZRANGEBYLEX', K_KIND, from, '(' .. prefix .. '\255',
      'LIMIT', 0, math.min(step, limit - #ids))
    if #members == 0 then return end
    local mids = {}
    for i, m in ipairs(members) do mids[i] = member_id(m) end
    local entries = hmget(K_DLQ, mids)
    for i, raw in ipairs(entries) do
      if not raw then
        op(ops.rem, 'ZREM', K_KIND, members[i]) -- a member left without its entry
      elseif tonumber(entry_of(raw).x) > now then
        return
      else
        ids[#ids + 1] = mids[i]
      end
    end
    from, step = '(' .. members[#members], step * 4
  end
end

-- Each kind in turn: the first member after the previous kind's range names the next.
local after = '-'
while #ids < limit do
  local first = redis.call('ZRANGEBYLEX', K_KIND, after, '+', 'LIMIT', 0, 1)[1]
  if not first then break end
  local prefix = string.sub(first, 1, 4 + tonumber(string.sub(first, 1, 4)))
  walk(prefix)
  after = '(' .. prefix .. '\255'
end
flush(ops)
delete_jobs(ops, ids)
-- Entries stored before expiry used dlq:kind were also indexed in dlq:expires: dropping
-- an entry takes it out of there too (see drop_entry).
local out = {now_s}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
