-- Reserves one sign-in attempt before its password is checked: admitted
-- while the failures of the window plus the attempts in flight stay below
-- the threshold, so a burst of guesses cannot all be checked before the
-- lock engages; legitimate parallel sign-ins wait for the others instead.
-- KEYS: lock hash, pending sorted set (attempt id -> expiry).
-- ARGV: now, attempt id, pending ttl, threshold, window.
-- Returns 'admitted', 'wait' or 'locked'.
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'locked_until')
local failures = tonumber(h[1]) or 0
local window_start = tonumber(h[2]) or now
local locked_until = tonumber(h[3]) or 0
if locked_until > now then return 'locked' end
if now - window_start >= tonumber(ARGV[5]) then failures = 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- The same attempt again (a retry after its reply was lost): admitted once.
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 'admitted' end
if failures + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'wait' end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
grow(KEYS[2], tonumber(ARGV[3]))
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return 'admitted'
