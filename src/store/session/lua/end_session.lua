-- Ends one session. KEYS: sst, sess. ARGV: tenant prefix, reason, linger, sid.
-- Returns 1 when the session was live.
local st = redis.call('GET', KEYS[1])
if activegen(st) == nil then return 0 end
local was = 1
local user = redis.call('HGET', KEYS[2], 'user_id')
if user then
  if not live(st, cutgen(redis.call('GET', ARGV[1] .. 'ucut:' .. user))) then was = 0 end
  migrate_index(ARGV[1] .. 'usess:' .. user)
  redis.call('ZREM', ARGV[1] .. 'usess:' .. user, ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
return was
