-- Takes a single-use record (an authorization code) atomically.
-- KEYS[1] the record; ARGV[1] the mark to leave in its place (unique to
-- this call); ARGV[2] how long the mark is kept (seconds).
-- Answers the stored value as it was (`new:…` the first time, `used:…`
-- after), or nil. The mark keeps the value after it (`used:{mark}\n{value}`)
-- so that this very call, run again (a client's retry after its reply was
-- lost), answers `new:…` again instead of taking its own record for a replay.
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
if string.sub(value, 1, 4) == 'new:' then
  redis.call('SET', KEYS[1], 'used:' .. ARGV[1] .. '\n' .. string.sub(value, 5),
    'EX', tonumber(ARGV[2]))
  return value
end
local mine = 'used:' .. ARGV[1] .. '\n'
if string.sub(value, 1, #mine) == mine then
  return 'new:' .. string.sub(value, #mine + 1)
end
return value
