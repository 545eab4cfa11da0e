-- Updates `last_used_at` of a session that still exists (never re-creates it).
-- KEYS: sess. ARGV: now.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end
return 1
