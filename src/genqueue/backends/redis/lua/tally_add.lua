-- tally_add: add counts to one minute's analytics tally, all at once.
-- KEYS: [1] the minute's hash (keys.KeySchema.tally), [2] the index of minutes
--       (keys.KeySchema.tally_index); both share one hash tag, so one slot on Cluster.
-- ARGV: [1] clock, [2] the minute's bucket number, [3] seconds the hash is kept,
--       [4] the oldest bucket the index keeps, then name, count pairs.
-- Returns: {now}.
-- A script rather than MULTI: redis-py runs each command of a Cluster transaction in a
-- thread with an event loop of its own, which binds the client's locks to that loop.
local now_s = clock_now()
for i = 5, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
return {now_s}
