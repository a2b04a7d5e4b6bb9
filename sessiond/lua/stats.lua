-- sessiond/lua/stats.lua -- gauges.
--
-- ARGV:  none.
-- data:  {connected, disconnected, gateways alive, gateways dying}.

local conn = 0
for _, gi in ipairs(redis.call('HKEYS', P .. 'gwl')) do conn = conn + redis.call('SCARD', P .. 'gc:' .. gi) end
return {'ok', 0, {conn, redis.call('ZCARD', P .. 'exp'), redis.call('ZCARD', P .. 'gwdl'),
                  redis.call('LLEN', P .. 'dying')}, CH}
