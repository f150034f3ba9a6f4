-- dlq_scan: the members of one range of a DLQ index, newest first, whose entries hold
-- every given field: a filter on two or more fields reads the index of one and tests the
-- others here, instead of sending every candidate to the client. Read-only.
-- Every member of an entry ends with the same tail, keys.dlq_tail (32 characters: its
-- time_key(failed_at) .. id), after its value's prefix, so an entry has value v of
-- another field exactly when that field's index holds value_prefix(v) .. tail: one
-- ZMSCORE per field tests a whole chunk of candidates without reading their entries.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] the index's position in KEYS, [3] high and [4] low bounds (as
--       ZREVRANGEBYLEX takes them), [5] how many matches to return at most, [6] how many
--       members to examine at most (bounds the script's time), then two per other field:
--       its index's position in KEYS and the value_prefix of the value wanted.
-- Returns: {now, last member examined ('' for none), '1' when the range is exhausted
--       (else ''), matching members...}.
local now_s = clock_now()
local key = KEYS[tonumber(ARGV[2])]
local high, low = ARGV[3], ARGV[4]
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local probes = {}
for i = 7, #ARGV, 2 do
  probes[#probes + 1] = {KEYS[tonumber(ARGV[i])], ARGV[i + 1]}
end
local CHUNK = 500
local TAIL = 32

local out = {now_s, '', ''}

-- Clear ok[i] for each member whose entry lacks the value of prefix in index key.
local function probe(members, ok, key, prefix)
  local wanted, at = {}, {}
  for i, m in ipairs(members) do
    if ok[i] then
      wanted[#wanted + 1] = prefix .. string.sub(m, -TAIL)
      at[#wanted] = i
    end
  end
  if #wanted == 0 then return end
  local scores = redis.call('ZMSCORE', key, unpack(wanted))
  for j, score in ipairs(scores) do
    if not score then ok[at[j]] = false end
  end
end

-- ok[i]: whether members[i]'s entry holds every probed value.
local function test(members)
  local ok = {}
  for i = 1, #members do ok[i] = true end
  for _, p in ipairs(probes) do probe(members, ok, p[1], p[2]) end
  return ok
end

local examined = 0
while examined < budget do
  local n = math.min(CHUNK, budget - examined)
  local members = redis.call('ZREVRANGEBYLEX', key, high, low, 'LIMIT', 0, n)
  local ok = test(members)
  for i, m in ipairs(members) do
    examined = examined + 1
    out[2] = m
    if ok[i] then
      out[#out + 1] = m
      if #out - 3 >= want then return out end
    end
  end
  if #members < n then
    out[3] = '1'
    return out
  end
  high = '(' .. members[#members]
end
return out
