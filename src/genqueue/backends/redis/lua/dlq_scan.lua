-- dlq_scan: the members of one range of a DLQ index, newest first, whose entries hold
-- every given field: a filter on two or more fields reads the index of one and matches
-- the others here, next to the entries, instead of sending every candidate's entry to
-- the client. Read-only.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] the index's position in KEYS, [3] high and [4] low bounds (as
--       ZREVRANGEBYLEX takes them), [5] how many matches to return at most, [6] how many
--       members to examine at most (bounds the script's time), then the needles, two per
--       field: exact substrings of a version 2 entry ('"k":"auth"', a key and its whole
--       JSON value, so that it cannot match inside another value) as the client encodes
--       it, then as Lua's encoder does (it escapes '/' and DEL: dlq_upgrade.lua writes
--       entries too); a field matches when either is found.
-- Returns: {now, last member examined ('' for none), '1' when the range is exhausted
--       (else ''), the positions among the members returned of entries stored before
--       version 2 (comma-separated, '' for none), matching members...}. An entry stored
--       before version 2 is returned as a match, unchecked: the caller checks it.
local now_s = clock_now()
local key = KEYS[tonumber(ARGV[2])]
local high, low = ARGV[3], ARGV[4]
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local needles = {}
for i = 7, #ARGV, 2 do
  needles[#needles + 1] = {ARGV[i], ARGV[i + 1] ~= ARGV[i] and ARGV[i + 1] or false}
end
local CHUNK = 500

local out = {now_s, '', '', ''}
local unchecked = {}

local function matches(entry)
  if not string.find(entry, '"v":2', 1, true) then
    unchecked[#unchecked + 1] = #out - 3
    return true
  end
  for _, pair in ipairs(needles) do
    if not string.find(entry, pair[1], 1, true)
        and not (pair[2] and string.find(entry, pair[2], 1, true)) then
      return false
    end
  end
  return true
end

local function reply()
  out[4] = table.concat(unchecked, ',')
  return out
end

local examined = 0
while examined < budget do
  local n = math.min(CHUNK, budget - examined)
  local members = redis.call('ZREVRANGEBYLEX', key, high, low, 'LIMIT', 0, n)
  local ids = {}
  for i, m in ipairs(members) do ids[i] = string.sub(m, -32) end
  local entries = #ids > 0 and hmget(K_DLQ, ids) or {}
  for i, m in ipairs(members) do
    examined = examined + 1
    out[2] = m
    if entries[i] and matches(entries[i]) then
      out[#out + 1] = m
      if #out - 4 >= want then return reply() end
    end
  end
  if #members < n then
    out[3] = '1'
    return reply()
  end
  high = '(' .. members[#members]
end
return reply()
