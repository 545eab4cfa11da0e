-- A refresh-token family (tokens that name their family) with its session
-- state, user cut-off and grace data.
-- KEYS: fam, grace. ARGV: tenant prefix.
-- Returns {family hash, session state, cut-off, sealed successor} or false.
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return false end
local h = {}
for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
if not h['sid'] then return false end
local sst = redis.call('GET', ARGV[1] .. 'sst:' .. h['sid'])
local cut = redis.call('GET', ARGV[1] .. 'ucut:' .. h['user'])
local sealed = redis.call('GET', KEYS[2])
return {f, sst or '', cut or '', sealed or ''}
