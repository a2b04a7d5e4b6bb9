-- sessiond/lua/open.lua -- SessOpenReq.
--
-- ARGV:  sid, user, conn, client, at_ms, instance, incarnation, ttl_ms,
--        dead_after_ms, rejoin_grace_ms.
-- data:  {resumed, disconnected_ms, owner}.
--
-- forbidden: the session belongs to another user (untouched). An unknown
-- session is created; a disconnected one is resumed (its memberships become O,
-- to be re-joined within the grace); a live one is taken over (resumed,
-- disconnected_ms 0 unless its gateway is dead). An open older than the
-- holder's (a late retry) changes nothing. Events of the connection that
-- arrived before its open (parked) are applied now.

local now = now_ms()
local sid, user, conn, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local at = tonumber(ARGV[5])
if at <= 0 then at = now end
local ttl, dead_after, grace = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local gi, gst = gw_seen(ARGV[6], ARGV[7], now, dead_after)
if gst == 3 then return {'stale', gst, {}, CH} end
local okey = gi .. '|' .. conn
local k = P .. 's:' .. sid
local h = sget(sid)
local resumed, disc = 0, 0
if not h then
  if redis.call('GET', P .. 't:' .. sid) == okey then return {'ok', gst, {0, 0, user}, CH} end
  redis.call('HSET', k, 'user', user, 'created', I(at), 'disconnects', '0')
else
  if h.user ~= user then return {'forbidden', gst, {0, 0, h.user}, CH} end
  if h.okey == okey then
    local r0, d0 = string.match(h.ores or '', '^(%d+),(%d+)$')
    return {'ok', gst, {tonumber(r0) or 0, tonumber(d0) or 0, user}, CH}
  end
  -- A late retry of an open older than the holder's (same gateway: its
  -- connection ids grow; another gateway: at_ms) must not take it back.
  if h.gi and (h.gi == gi and idlt(conn, h.conn or '0') or h.gi ~= gi and at < (tonumber(h.oat) or 0)) then
    return {'ok', gst, {1, 0, user}, CH}
  end
  resumed = 1
  if h.live == '1' then
    redis.call('SREM', P .. 'gc:' .. h.gi, sid)
    if not gw_alive(h.gi, now) then
      local last = tonumber(redis.call('HGET', P .. 'gwl', h.gi))
      if last and at > last then disc = at - last end
    end
    redis.call('HSET', k, 'disconnects', I((tonumber(h.disconnects) or 0) + 1))
  else
    local d0 = tonumber(h.disc_at) or at
    if at > d0 then disc = at - d0 end
    redis.call('ZREM', P .. 'exp', sid)
  end
  local carried = false
  for f, v in pairs(h) do
    if string.sub(f, 1, 2) == 'm:' then
      if mflag(v) == 'X' then
        redis.call('HDEL', k, f)
      else
        redis.call('HSET', k, f, 'O' .. string.sub(v, 2))
        carried = true
      end
    end
  end
  if carried then redis.call('ZADD', P .. 'rejoin', I(now + grace), sid) end
end
redis.call('HSET', k, 'gi', gi, 'gw', ARGV[6], 'inc', ARGV[7], 'conn', conn, 'live', '1', 'disc_at', '0',
           'last_seen', I(at), 'client', client, 'okey', okey, 'ores', resumed .. ',' .. I(disc),
           'oat', I(at), 'dr', '')
redis.call('PERSIST', k)
redis.call('SADD', P .. 'gc:' .. gi, sid)
redis.call('SET', P .. 'u:' .. user, sid)
-- Its connection's joins, leaves or close may have arrived first (the
-- gateway's retries after an outage run on independent timers).
unpark(sid, gi, conn, 0, ttl, now)
return {'ok', gst, {resumed, disc, user}, CH}
