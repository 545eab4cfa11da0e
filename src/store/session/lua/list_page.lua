-- One page of a user's index: the records of live sessions; ids of sessions
-- that are over leave the index.
-- KEYS: usess, ucut. ARGV: tenant prefix, start, count.
-- Returns {seen, dropped, {record...}}.
migrate_index(KEYS[1])
local gen = cutgen(redis.call('GET', KEYS[2]))
local start = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[3]) - 1)
local out = {}
local dropped = 0
for _, sid in ipairs(ids) do
  local s = {}
  if live(redis.call('GET', ARGV[1] .. 'sst:' .. sid), gen) then
    s = redis.call('HGETALL', ARGV[1] .. 'sess:' .. sid)
  end
  if #s > 0 then
    table.insert(out, s)
  else
    redis.call('ZREM', KEYS[1], sid)
    dropped = dropped + 1
  end
end
return {#ids, dropped, out}
