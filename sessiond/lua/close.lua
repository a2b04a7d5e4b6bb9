-- sessiond/lua/close.lua -- SessCloseReq.
--
-- ARGV:  sid, conn, bye, at_ms, instance, incarnation, ttl_ms, dead_after_ms,
--        npos, then npos (room, epoch, seq).
-- data:  {0 nothing to do, 1 disconnected, 2 ended}.
--
-- Only the current holder (gateway incarnation and connection) closes at once;
-- a close of any other connection is parked, in case its open is still on the
-- way.

local now = now_ms()
local sid, conn, bye = ARGV[1], ARGV[2], ARGV[3] == '1'
local at = tonumber(ARGV[4])
if at <= 0 then at = now end
local ttl, dead_after = tonumber(ARGV[7]), tonumber(ARGV[8])
local gi, gst = gw_seen(ARGV[5], ARGV[6], now, dead_after)
local h = sget(sid)
local n = tonumber(ARGV[9])
if not h or h.gi ~= gi or h.conn ~= conn then
  -- Not (yet) the holder: late news of an old connection, or news that
  -- overtook its open. Parked for that open; expires otherwise.
  for i = 0, n - 1 do
    local b = 10 + i * 3
    park(gi, conn, 'p:' .. ARGV[b], ARGV[b + 1] .. ' ' .. ARGV[b + 2])
  end
  park(gi, conn, 'close', (bye and '1' or '0') .. ',' .. I(at))
  return {'ok', gst, {0}, CH}
end
local k = P .. 's:' .. sid
for i = 0, n - 1 do
  local b = 10 + i * 3
  redis.call('HSET', k, 'p:' .. ARGV[b], ARGV[b + 1] .. ' ' .. ARGV[b + 2])
end
if bye then
  end_session(sid, h)
  return {'ok', gst, {2}, CH}
end
if h.live == '1' then
  disconnect(sid, h, at, 'c', ttl, now)
  return {'ok', gst, {1}, CH}
end
if h.dr ~= 'c' then
  local d0 = tonumber(h.disc_at) or at
  if at < d0 then
    redis.call('HSET', k, 'disc_at', I(at), 'last_seen', I(at))
    redis.call('ZADD', P .. 'exp', I(at + ttl), sid)
  end
  redis.call('HSET', k, 'dr', 'c')
end
return {'ok', gst, {0}, CH}
