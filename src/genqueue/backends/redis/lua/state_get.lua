-- state_get: read a shared state record unless it expired by the clock. Read-only.
-- KEYS: [1] the record (keys.KeySchema.state).
-- ARGV: [1] clock.
-- Returns: {now, value JSON, version} or {now} if absent or expired.
local now_s, now = clock_now()
local found = redis.call('HMGET', KEYS[1], 'v', 'n', 'x')
if not found[1] or (found[3] and found[3] ~= '' and tonumber(found[3]) <= now) then
  return {now_s}
end
return {now_s, found[1], found[2]}
