-- Takes a single-use record (an authorization code) atomically.
-- KEYS[1] the record; ARGV[1] the mark to leave in its place.
-- Answers the stored value as it was (`new:…` the first time, `used:…`
-- after), or nil. The mark keeps the record's expiry.
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
if string.sub(value, 1, 4) == 'new:' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], 'used:' .. ARGV[1], 'PX', ttl)
  else
    redis.call('DEL', KEYS[1])
  end
end
return value
