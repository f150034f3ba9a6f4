-- move: a batch of fenced compare-and-set moves of one queue's jobs. Each replaces the
-- stored job by the one the client computed, re-indexes it for its new state, and adds
-- or removes its dead letter entry (and the entry's indexes) in the same step.
-- KEYS: the queue's keys (see lib/prelude.lua).
-- ARGV: [1] clock, [2] the moves as one JSON array (one argument, so that the client does
--       not encode thousands of arguments), [3] '1' when the call is sent again after a
--       failure that may have come after it ran (else ''); each move is an array of 17
--       strings: id,
--       expected state, expected token (attempts), require expired lease ('1' or ''), new
--       state, attempts, lease, started, updated, owner, run_at, expiry of a finished
--       job ('' for none: then it is indexed by now and keeps its seqm, as jobs stored
--       before expiries were), idempotency key (''), body (JSON text, or '@<n>': the body
--       is ARGV[n], binary: a dead job's compact body; '' for a finished job that expires
--       as it finishes: it is deleted), entry (JSON text, '' unless the new state is
--       dead), data digest ('' without a key), the entry's stacks (JSON [[key, text],
--       ...], '' for none; see add_entry). The ids of one call are distinct. A finished
--       job's hot record keeps no ready member and no start time (its body has it): a
--       finished job never runs again.
-- Returns: {now, ok1, ok2, ...}: 1 where the move was applied, 0 where the stored job
--       was not in the expected state/token (or its lease is live, or another pending
--       job holds its idempotency key). A move sent again (ARGV[3]) that finds the job
--       as it would have left it (state, attempts, owner and update time, the mover's
--       own clock reading) was applied by the first send, whose reply was lost: 1.
local now_s, now = clock_now()
local moves = cjson.decode(ARGV[2])
local ids = {}
for j, m in ipairs(moves) do ids[j] = m[1] end
local hots = hots_of(ids)
local ops = new_ops()
local out = {now_s}

local function applies(m, hot)
  local state, attempts, lease = parse_hot(hot)
  if state ~= m[2] or attempts ~= m[3] then return false end
  if m[4] == '1' and lease ~= '' and tonumber(lease) > now then
    return false -- the lease is live: a reclaim must not race its worker
  end
  local key = m[13]
  if m[5] == 'queued' and key ~= '' then
    local holder = idem_get(key)
    return not holder or holder == m[1]
  end
  return true
end

local function applied_before(m, hot)
  local state, attempts, _, _, updated, _, _, owner = parse_hot(hot)
  return state == m[5] and attempts == m[6] and updated == m[9] and owner == m[10]
end

for j, id in ipairs(ids) do
  local m = moves[j]
  local ok = hots[j] and applies(m, hots[j])
  local again = ARGV[3] == '1' and not ok and hots[j] and applied_before(m, hots[j])
  if ok then
    local state, _, _, _, _, seqm, cm = parse_hot(hots[j])
    local new_state, lease, finished, key = m[5], m[7], m[12], m[13]
    unindex(ops, id, state, seqm, cm, state == 'dead' and redis.call('HGET', K_DLQ, id))
    op(ops.rem, 'HDEL', K_PROG, id)
    op(ops.rem, 'HDEL', K_PATCH, id)
    local started = m[8]
    if finished ~= '' then seqm, started = '', '' end
    local body = m[14]
    if string.sub(body, 1, 1) == '@' then body = ARGV[tonumber(string.sub(body, 2))] end
    local whole = new_state == 'dead' and not string.find(m[10], '\n', 1, true)
    if body == '' or whole then
      op(ops.rem, 'HDEL', K_BODY, id)
      op(ops.rem, 'HDEL', K_HOT, id)
    else
      op(ops.add, 'HSET', K_BODY, id, body)
      op(ops.add, 'HSET', K_HOT, id,
        pack_hot(new_state, m[6], lease, started, m[9], seqm, cm, m[10]))
    end
    if body ~= '' then
      index(ops, id, new_state, seqm, cm, m[11], lease ~= '' and lease or now_s,
        finished ~= '' and finished or now_s)
    end
    if whole then
      local e = cjson.decode(m[15])
      local raw = pack_dead(id, m[6], lease, m[9], seqm, cm, m[10], e, m[15], body)
      add_entry(ops, id, raw, m[17], e)
    elseif new_state == 'dead' then
      add_entry(ops, id, m[15], m[17])
    end
    if key ~= '' then
      if not is_terminal(new_state) then
        -- At once, not with the batched writes: a later move of this call (a second dead
        -- job with the same key being redriven) must see that the key is taken.
        redis.call('HSET', K_IDEM, key, idem_value(id, m[16]))
      elseif idem_get(key) == id then
        redis.call('HDEL', K_IDEM, key)
      end
    end
  end
  out[#out + 1] = (ok or again) and 1 or 0
end
flush(ops)
return out
