-- sessiond/lua/presence.lua -- PresenceReq.
--
-- ARGV:  room.
-- data:  flat user, state (online/reconnecting).
--
-- Entries whose session key is gone (a backstop TTL fired while no sessiond
-- ran) are removed on the way, with their presence change.

local room = ARGV[1]
local a = redis.call('HGETALL', P .. 'r:' .. room)
local out = {}
for i = 1, #a, 2 do
  local user, t = a[i], mparse(a[i + 1])
  for sid in pairs(t) do
    if redis.call('EXISTS', P .. 's:' .. sid) == 0 then
      setm(room, user, sid, nil)
      t[sid] = nil
    end
  end
  local st = mstate(t)
  if st then
    out[#out + 1] = user
    out[#out + 1] = st
  end
end
return {'ok', 0, out, CH}
