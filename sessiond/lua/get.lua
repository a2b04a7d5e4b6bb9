-- sessiond/lua/get.lua -- SessGetReq.
--
-- ARGV:  sid ("" = the user's latest), user ("" = any owner).
-- data:  {sid, expiry deadline or "0", {field, value, ...}}.

local sid, user = ARGV[1], ARGV[2]
if sid == '' then
  sid = redis.call('GET', P .. 'u:' .. user)
  if not sid then return {'notfound', 0, {}, CH} end
end
local a = redis.call('HGETALL', P .. 's:' .. sid)
if #a == 0 then return {'notfound', 0, {}, CH} end
if user ~= '' then
  for i = 1, #a, 2 do
    if a[i] == 'user' and a[i + 1] ~= user then return {'forbidden', 0, {}, CH} end
  end
end
local e = redis.call('ZSCORE', P .. 'exp', sid)
return {'ok', 0, {sid, e or '0', a}, CH}
