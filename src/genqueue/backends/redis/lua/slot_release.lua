-- slot_release: give a concurrency slot back.
-- KEYS: [1] the slot set (keys.KeySchema.slots).
-- ARGV: [1] clock, [2] holder.
-- Returns: {now, 1 if the holder had a slot else 0}.
local now_s = clock_now()
return {now_s, redis.call('ZREM', KEYS[1], ARGV[2])}
