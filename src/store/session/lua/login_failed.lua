-- One failed sign-in: the steps of `LockoutPolicy::after_failure`, atomically.
-- KEYS: lock hash. ARGV: now, threshold, window, base, max, memory,
-- attempt id.
-- Returns {failures, locked_until, level, counted (1 or 0)}. The same
-- attempt reported again (a retry after its reply was lost) is counted once.
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local memory = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'locked_until', 'level', 'last')
local failures = tonumber(h[1]) or 0
local window_start = tonumber(h[2]) or now
local locked_until = tonumber(h[3]) or 0
local level = tonumber(h[4]) or 0
if h[5] == ARGV[7] then
  return {failures, locked_until, level, 1}
end
if locked_until > now then
  return {failures, locked_until, level, 0}
end
if failures == 0 or now - window_start >= window then
  failures = 0
  window_start = now
end
failures = failures + 1
if failures >= threshold then
  local seconds = base * (2 ^ math.min(level, 62))
  if seconds > max then seconds = max end
  locked_until = now + seconds
  level = level + 1
  failures = 0
end
redis.call('HSET', KEYS[1], 'failures', failures, 'window_start', window_start,
  'locked_until', locked_until, 'level', level, 'last', ARGV[7])
local keep = memory
if locked_until > now then keep = keep + (locked_until - now) end
redis.call('EXPIRE', KEYS[1], keep)
return {failures, locked_until, level, 1}
