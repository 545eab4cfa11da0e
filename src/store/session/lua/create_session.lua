-- Creates a session under the user's current cut-off generation, indexes it,
-- and ends the user's oldest live sessions beyond the cap.
-- KEYS: sst, sess, usess, ucut.
-- ARGV: ttl, sid, created_at, linger, max_sessions, tenant prefix, then the
-- session hash as field, value pairs. Returns the ids of ended sessions.
local ttl = tonumber(ARGV[1])
local cut = redis.call('GET', KEYS[4])
local gen = cutgen(cut)
if cut then grow(KEYS[4], ttl) else redis.call('SET', KEYS[4], '0:revoked', 'EX', ttl) end
redis.call('SET', KEYS[1], 'active:' .. gen, 'EX', ttl)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[2], ttl)
migrate_index(KEYS[3])
local existed = redis.call('EXISTS', KEYS[3])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
if existed == 0 then redis.call('EXPIRE', KEYS[3], ttl) else grow(KEYS[3], ttl) end
local ended = {}
local max = tonumber(ARGV[5])
local n = redis.call('ZCARD', KEYS[3])
if n > max then
  -- Only live sessions count: drop the ids of those that are over first
  -- (the index never holds more than max + 1 ids after this).
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if not live(redis.call('GET', ARGV[6] .. 'sst:' .. sid), gen) then
      redis.call('ZREM', KEYS[3], sid)
      n = n - 1
    end
  end
end
while n > max do
  local sid = redis.call('ZPOPMIN', KEYS[3])[1]
  local sst = ARGV[6] .. 'sst:' .. sid
  if live(redis.call('GET', sst), gen) then
    redis.call('SET', sst, 'revoked', 'EX', ARGV[4])
    redis.call('DEL', ARGV[6] .. 'sess:' .. sid)
    table.insert(ended, sid)
  end
  n = n - 1
end
return ended
