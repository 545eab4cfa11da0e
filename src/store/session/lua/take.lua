-- Takes a single-use record (an authorization code) atomically.
-- KEYS[1] the record; ARGV[1] the mark to leave in its place; ARGV[2] how
-- long the mark is kept (seconds).
-- Answers the stored value as it was (`new:…` the first time, `used:…`
-- after), or nil.
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
if string.sub(value, 1, 4) == 'new:' then
  redis.call('SET', KEYS[1], 'used:' .. ARGV[1], 'EX', tonumber(ARGV[2]))
end
return value
