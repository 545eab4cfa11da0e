-- Ends one page of a user's indexed sessions older than generation `gen`.
-- KEYS: usess. ARGV: tenant prefix, start, count, gen, reason, linger, except.
-- Returns {seen, dropped, ended}: `ended` counts the sessions that were live
-- until the cut that raised the generation to `gen`.
migrate_index(KEYS[1])
local start = tonumber(ARGV[2])
local gen = tonumber(ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[3]) - 1)
local dropped, ended = 0, 0
for _, sid in ipairs(ids) do
  if sid ~= ARGV[7] then
    local sst = ARGV[1] .. 'sst:' .. sid
    local g = activegen(redis.call('GET', sst))
    if g == nil then
      redis.call('ZREM', KEYS[1], sid)
      dropped = dropped + 1
    elseif g < gen then
      redis.call('SET', sst, ARGV[5], 'EX', ARGV[6])
      redis.call('DEL', ARGV[1] .. 'sess:' .. sid)
      redis.call('ZREM', KEYS[1], sid)
      dropped = dropped + 1
      if g == gen - 1 then ended = ended + 1 end
    end
  end
end
return {#ids, dropped, ended}
