-- Compare-and-swap of a family's current refresh token; the session's
-- last use is recorded in the same step.
-- KEYS: old rt, new rt, fam, sst, ucut, sess.
-- ARGV: now, new hash, sealed successor, ttl, family, sid, client, user,
-- exp, fexp, scope, client generation. Returns 'ok', 'race' or 'revoked'.
if redis.call('HGET', KEYS[1], 'state') ~= 'current' then return 'race' end
if redis.call('HGET', KEYS[3], 'status') ~= 'active' then return 'revoked' end
if not live(redis.call('GET', KEYS[4]), cutgen(redis.call('GET', KEYS[5]))) then return 'revoked' end
redis.call('HSET', KEYS[1], 'state', 'rotated', 'rotated_at', ARGV[1], 'successor', ARGV[2], 'sealed', ARGV[3])
redis.call('HSET', KEYS[2], 'family', ARGV[5], 'sid', ARGV[6], 'client', ARGV[7], 'user', ARGV[8],
  'exp', ARGV[9], 'fexp', ARGV[10], 'scope', ARGV[11], 'cgen', ARGV[12], 'state', 'current')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], 'current', ARGV[2])
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('HSET', KEYS[6], 'last_used_at', ARGV[1]) end
return 'ok'
