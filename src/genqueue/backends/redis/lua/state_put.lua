-- state_put: compare-and-set a shared state record on its version.
-- KEYS: [1] the record (keys.KeySchema.state).
-- ARGV: [1] clock, [2] value JSON, [3] expected version (0: absent or expired),
--       [4] ttl seconds ('' for none).
-- Returns: {now, new version} or {now, 0} if the stored version was not the expected one.
-- Versions keep growing across expiry; the record itself is dropped an hour after it
-- expires, so abandoned keys do not pile up.
local now_s, now = clock_now()
local found = redis.call('HMGET', KEYS[1], 'n', 'x')
local version = tonumber(found[1] or '0')
local live = version
if found[2] and found[2] ~= '' and tonumber(found[2]) <= now then live = 0 end
if live ~= tonumber(ARGV[3]) then return {now_s, 0} end
local expires = ''
if ARGV[4] ~= '' then expires = fmt(now + tonumber(ARGV[4])) end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', version + 1, 'x', expires)
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 3600)
else
  redis.call('PERSIST', KEYS[1])
end
return {now_s, version + 1}
