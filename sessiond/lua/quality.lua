-- sessiond/lua/quality.lua -- SessQualityReq.
--
-- ARGV:  sid ("" = the user's latest), user ("" = any), rtt, loss, jitter, bw,
--        quality, at_ms, recommendations ("\n"-joined).
-- data:  {sid}.

local sid, user = ARGV[1], ARGV[2]
if sid == '' then
  sid = redis.call('GET', P .. 'u:' .. user)
  if not sid then return {'notfound', 0, {}, CH} end
end
local k = P .. 's:' .. sid
local owner = redis.call('HGET', k, 'user')
if not owner then return {'notfound', 0, {}, CH} end
if user ~= '' and owner ~= user then return {'forbidden', 0, {}, CH} end
redis.call('HSET', k, 'q', ARGV[7], 'rtt', ARGV[3], 'loss', ARGV[4], 'jitter', ARGV[5], 'bw', ARGV[6],
           'q_at', ARGV[8], 'recs', ARGV[9])
return {'ok', 0, {sid}, CH}
