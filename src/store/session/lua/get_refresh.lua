-- A refresh token of an earlier version (one record per token) with its
-- family, session state, user cut-off and grace data.
-- KEYS: rt. ARGV: tenant prefix.
-- Returns {token hash, family hash, session state, cut-off, sealed} or false.
local rt = redis.call('HGETALL', KEYS[1])
if #rt == 0 then return false end
local h = {}
for i = 1, #rt, 2 do h[rt[i]] = rt[i + 1] end
local fam = redis.call('HGETALL', ARGV[1] .. 'fam:' .. h['family'])
local sst = redis.call('GET', ARGV[1] .. 'sst:' .. h['sid'])
local cut = redis.call('GET', ARGV[1] .. 'ucut:' .. h['user'])
local sealed = redis.call('GET', ARGV[1] .. 'grace:' .. h['family'])
return {rt, fam, sst or '', cut or '', sealed or ''}
