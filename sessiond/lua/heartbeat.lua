-- sessiond/lua/heartbeat.lua -- gw.heartbeat.
--
-- ARGV:  instance, incarnation, dead_after_ms.
-- data:  {number of sessions the incarnation holds}.

local now = now_ms()
local gi, gst = gw_touch(ARGV[1], ARGV[2], now, tonumber(ARGV[3]))
return {'ok', gst, {redis.call('SCARD', P .. 'gc:' .. gi)}, CH}
