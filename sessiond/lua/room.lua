-- sessiond/lua/room.lua -- SessRoomReq (join or leave).
--
-- ARGV:  sid, conn, room, joined, ts, req_id, instance, incarnation,
--        dead_after_ms.
-- data:  {1 applied, 0 ignored or parked}.

local now = now_ms()
local sid, conn, room, joined = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local ts, rid = tonumber(ARGV[5]), ARGV[6]
local gi, gst = gw_seen(ARGV[7], ARGV[8], now, tonumber(ARGV[9]))
local h = sget(sid)
local f = 'm:' .. room
if not h or h.gi ~= gi or h.conn ~= conn then
  local pv = redis.call('HGET', P .. 'pk:' .. gi .. '|' .. conn, f)
  if not pv or not idlt(rid, mrid(pv)) then
    park(gi, conn, f, (joined and 'J:' or 'X:') .. I(ts) .. ':' .. rid)
  end
  return {h and 'ok' or 'notfound', gst, {0}, CH}
end
local cur = h[f]
if cur and mflag(cur) ~= 'O' and idlt(rid, mrid(cur)) then return {'ok', gst, {0}, CH} end
local k = P .. 's:' .. sid
if joined then
  redis.call('HSET', k, f, 'J:' .. I(ts) .. ':' .. rid, 'last_seen', I(ts))
  setm(room, h.user, sid, h.live == '1' and 'L' or 'D')
else
  redis.call('HSET', k, f, 'X:' .. I(ts) .. ':' .. rid, 'last_seen', I(ts))
  setm(room, h.user, sid, nil)
end
return {'ok', gst, {1}, CH}
