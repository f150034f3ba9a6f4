-- slot_acquire: take or renew one of N concurrency slots for a holder.
-- KEYS: [1] the slot set (keys.KeySchema.slots): holder -> expiry.
-- ARGV: [1] clock, [2] holder, [3] limit, [4] ttl seconds.
-- Returns: {now, 1} if the holder has a slot until now + ttl, else {now, 0}. Expired
--       slots are free; a holder that has a slot keeps it even above a lowered limit.
local now_s, now = clock_now()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_s)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return {now_s, 0}
end
redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[4])), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 3600)
return {now_s, 1}
