-- A session's state, record and its user's cut-off.
-- KEYS: sst, sess. ARGV: tenant prefix. Returns {state, record, cut-off}.
local st = redis.call('GET', KEYS[1]) or ''
local s = redis.call('HGETALL', KEYS[2])
local cut = ''
if #s > 0 then
  local user = redis.call('HGET', KEYS[2], 'user_id')
  if user then cut = redis.call('GET', ARGV[1] .. 'ucut:' .. user) or '' end
end
return {st, s, cut}
