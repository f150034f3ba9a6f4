-- slot_holders: the holders of the slots that have not expired by the clock. Read-only.
-- KEYS: [1] the slot set (keys.KeySchema.slots).
-- ARGV: [1] clock.
-- Returns: {now, holder...}.
local now_s = clock_now()
local reply = {now_s}
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_s, '+inf')) do
  reply[#reply + 1] = holder
end
return reply
