-- Raises a user's cut-off generation: every session created before it is
-- over. The session `except` (if any) is carried over to the new generation.
-- KEYS: ucut, sst of `except` (or ucut again). ARGV: reason, ttl when the
-- cut-off is new, '1' when there is an `except`. Returns the new generation.
local v = redis.call('GET', KEYS[1])
local gen = cutgen(v) + 1
if v then
  redis.call('SET', KEYS[1], gen .. ':' .. ARGV[1], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], gen .. ':' .. ARGV[1], 'EX', ARGV[2])
end
if ARGV[3] == '1' and live(redis.call('GET', KEYS[2]), gen - 1) then
  redis.call('SET', KEYS[2], 'active:' .. gen, 'KEEPTTL')
end
return gen
