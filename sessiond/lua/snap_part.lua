-- sessiond/lua/snap_part.lua -- one part of a gateway's snapshot.
--
-- ARGV:  instance, incarnation, snapshot ts, key, token, dead_after_ms, ttl_ms,
--        nconns, then per conn: conn, sid, user, client, nrooms, rooms...
-- data:  {created, revived, taken over}.
--
-- The first part claims the reconcile for token (another replica's parts get
-- "claimed"), and each part that runs to its end counts itself, so that the
-- finish can tell a part went missing. Every listed connection is live with
-- exactly its rooms, unless newer news says otherwise: a connection its
-- gateway closed stays closed, a session another live gateway holds (or this
-- gateway's newer connection) stays there, a join, leave or close after the
-- snapshot (parked or not) wins.

local now = now_ms()
local inst, inc, sts = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ck, seen = P .. 'snapc:' .. ARGV[4], P .. 'snaps:' .. ARGV[4]
local tok = ARGV[5]
local dead_after, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local c0 = redis.call('GET', ck)
if not c0 then
  redis.call('SET', ck, tok, 'PX', 60000)
elseif c0 ~= tok then
  return {'claimed', 0, {0, 0, 0}, CH}
end
local gi, gst = gw_touch(inst, inc, now, dead_after)
if gst == 3 then return {'stale', gst, {0, 0, 0}, CH} end
local function sync(sid, h, rooms)
  local k = P .. 's:' .. sid
  for f, v in pairs(h) do
    if string.sub(f, 1, 2) == 'm:' then
      local room, fl = string.sub(f, 3), mflag(v)
      if not rooms[room] and fl == 'J' and mts(v) < sts then
        redis.call('HDEL', k, f)
        setm(room, h.user, sid, nil)
      end
    end
  end
  for room in pairs(rooms) do
    local v = h['m:' .. room]
    if not (v and mflag(v) == 'X' and mts(v) >= sts) then
      if not v or mflag(v) ~= 'J' then redis.call('HSET', k, 'm:' .. room, 'J:' .. I(sts) .. ':0') end
      setm(room, h.user, sid, 'L')
    end
  end
end
local made, revived, taken = 0, 0, 0
local i = 9
for _ = 1, tonumber(ARGV[8]) do
  local conn, sid, user, client, nr = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local rooms = {}
  for j = 1, nr do rooms[ARGV[i + 4 + j]] = true end
  i = i + 5 + nr
  local k = P .. 's:' .. sid
  local h = sget(sid)
  -- Another user's session is not this connection's: untouched, and not
  -- counted as seen (its holder here, if any, is judged on its own).
  if not (h and h.user ~= user) then redis.call('SADD', seen, sid) end
  local take = false
  if not h then
    if redis.call('EXISTS', P .. 't:' .. sid) == 0 then
      redis.call('HSET', k, 'user', user, 'created', I(sts), 'disconnects', '0')
      h = {user = user, disconnects = '0'}
      take = true
      made = made + 1
    end
  elseif h.user ~= user then
    h = nil
  elseif h.gi == gi and h.conn == conn then
    if h.live ~= '1' and h.dr ~= 'c' then
      take = true
      revived = revived + 1
    end
  elseif h.gi == gi then
    -- The gateway's own later connection (its ids grow): it knows best.
    if idlt(h.conn, conn) then
      take = true
      taken = taken + 1
    end
  elseif h.live ~= '1' or not gw_alive(h.gi, now) then
    take = true
    taken = taken + 1
  end
  if take then
    if h.live == '1' then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end
    if h.gi ~= gi or h.conn ~= conn then
      for f, v in pairs(h) do
        if string.sub(f, 1, 2) == 'm:' and mflag(v) == 'J' then
          h[f] = 'O' .. string.sub(v, 2)
          redis.call('HSET', k, f, h[f])
        end
      end
    end
    redis.call('ZREM', P .. 'exp', sid)
    redis.call('ZREM', P .. 'rejoin', sid)
    redis.call('HSET', k, 'gi', gi, 'gw', inst, 'inc', inc, 'conn', conn, 'live', '1', 'disc_at', '0',
               'last_seen', I(sts), 'client', client, 'okey', gi .. '|' .. conn, 'ores', '0,0', 'oat', I(sts),
               'dr', '')
    redis.call('PERSIST', k)
    redis.call('SADD', P .. 'gc:' .. gi, sid)
    redis.call('SET', P .. 'u:' .. user, sid)
    h.live, h.gi, h.conn = '1', gi, conn
  end
  if h and h.live == '1' and h.gi == gi and h.conn == conn then
    sync(sid, h, rooms)
    unpark(sid, gi, conn, sts, ttl, now)
  end
end
redis.call('PEXPIRE', seen, 60000)
local nk = P .. 'snapn:' .. ARGV[4]
redis.call('INCR', nk)
redis.call('PEXPIRE', nk, 60000)
return {'ok', gst, {made, revived, taken}, CH}
