-- read_jobs: read jobs of one queue (and their dead letter entries) atomically. Read-only.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, then job ids.
-- Returns: {now, body1, hot1, prog1, patch1, entry1, body2, ..., key1, stack1, ...}: five
--       values per id, nil where absent (no body: no such job in this queue; a whole
--       dead job's body, hot record and entry are cut from its entry), then each
--       stack the entries refer to (version 2 entries list their stacks' keys), once.
local now_s = clock_now()
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local parts = {hmget(K_BODY, ids), hmget(K_HOT, ids), hmget(K_PROG, ids), hmget(K_PATCH, ids),
  hmget(K_DLQ, ids)}
local out = {now_s}
local wanted, seen = {}, {}
for i = 1, #ids do
  local entry, e = parts[5][i], nil
  if entry and is_whole(entry) then
    parts[5][i], parts[1][i], parts[2][i], e = unpack_dead(ids[i], entry)
    entry = parts[5][i]
  end
  for p = 1, 5 do out[#out + 1] = parts[p][i] end
  if entry then
    e = e or cjson.decode(entry)
    for _, key in ipairs(e.s or {}) do
      if not seen[key] then
        seen[key] = true
        wanted[#wanted + 1] = 's:' .. key
      end
    end
  end
end
if #wanted > 0 then
  local texts = hmget(K_DLQ_STACKS, wanted)
  for i, field in ipairs(wanted) do
    out[#out + 1] = string.sub(field, 3)
    out[#out + 1] = texts[i]
  end
end
return out
