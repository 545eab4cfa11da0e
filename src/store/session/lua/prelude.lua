-- Shared by every script that reads session state (prepended by redis.rs).
-- A session state (`sst:{sid}`) is `active:{generation}`, `revoked` or
-- `disabled`; a user cut-off (`ucut:{user}`) is `{generation}:{reason}`.
local function cutgen(v)
  if not v then return 0 end
  return tonumber(string.match(v, '^(%d+)')) or 0
end
-- The generation of an active session state, or nil when it is over.
local function activegen(st)
  if not st then return nil end
  local g = string.match(st, '^active:?(%d*)$')
  if not g then return nil end
  return tonumber(g) or 0
end
local function live(st, gen)
  local g = activegen(st)
  return g ~= nil and g >= gen
end
-- Sets a TTL on a key that has one, only ever making it longer.
local function grow(key, ttl)
  local t = redis.call('TTL', key)
  if t >= 0 and t < ttl then redis.call('EXPIRE', key, ttl) end
end
-- Earlier versions kept the user index as a plain set: turn it into the
-- sorted set (by creation time) this version pages through.
local function migrate_index(key)
  if redis.call('TYPE', key)['ok'] == 'set' then
    local ttl = redis.call('TTL', key)
    local ids = redis.call('SMEMBERS', key)
    redis.call('DEL', key)
    for _, sid in ipairs(ids) do redis.call('ZADD', key, 0, sid) end
    if ttl > 0 and #ids > 0 then redis.call('EXPIRE', key, ttl) end
  end
end
