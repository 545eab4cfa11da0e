-- A refresh token with its family, session state and user cut-off.
-- KEYS: rt. ARGV: tenant prefix.
-- Returns {token hash, family current, family status, session state, cut-off}.
local rt = redis.call('HGETALL', KEYS[1])
if #rt == 0 then return false end
local h = {}
for i = 1, #rt, 2 do h[rt[i]] = rt[i + 1] end
local fam = redis.call('HMGET', ARGV[1] .. 'fam:' .. h['family'], 'current', 'status')
local sst = redis.call('GET', ARGV[1] .. 'sst:' .. h['sid'])
local cut = redis.call('GET', ARGV[1] .. 'ucut:' .. h['user'])
return {rt, fam[1] or '', fam[2] or '', sst or '', cut or ''}
