-- Revokes a family that still exists (a family that expired stays gone:
-- no key without a TTL). KEYS: fam.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'status', 'revoked') end
return 1
