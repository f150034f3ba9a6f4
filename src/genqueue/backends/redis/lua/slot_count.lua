-- slot_count: count the slots that have not expired by the clock. Read-only.
-- KEYS: [1] the slot set (keys.KeySchema.slots).
-- ARGV: [1] clock.
-- Returns: {now, count}.
local now_s = clock_now()
return {now_s, redis.call('ZCOUNT', KEYS[1], '(' .. now_s, '+inf')}
