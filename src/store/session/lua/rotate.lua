-- Compare-and-swap of a family's current refresh token. The family keeps
-- the hashes of its current token and of the one before it; the sealed
-- successor pair lives only for the grace window. The session's last use is
-- recorded in the same step.
-- KEYS: fam, sst, ucut, sess, grace.
-- ARGV: old hash, new hash, now, family ttl, sealed successor, grace ttl,
-- sid, client, user, exp, fexp, scope, client generation.
-- Returns 'ok', 'race' or 'revoked'. The same rotation run again (a retry
-- after its reply was lost) answers 'ok' again: the new hash is unique to it.
local fam = redis.call('HMGET', KEYS[1], 'current', 'status', 'prev')
if fam[1] == ARGV[2] and fam[3] == ARGV[1] then return 'ok' end
if fam[1] ~= ARGV[1] then return 'race' end
if fam[2] ~= 'active' then return 'revoked' end
if not live(redis.call('GET', KEYS[2]), cutgen(redis.call('GET', KEYS[3]))) then return 'revoked' end
redis.call('HSET', KEYS[1], 'current', ARGV[2], 'prev', ARGV[1], 'prev_at', ARGV[3],
  'sid', ARGV[7], 'client', ARGV[8], 'user', ARGV[9], 'exp', ARGV[10], 'fexp', ARGV[11],
  'scope', ARGV[12], 'cgen', ARGV[13])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[5], ARGV[5], 'EX', ARGV[6])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('HSET', KEYS[4], 'last_used_at', ARGV[3]) end
return 'ok'
