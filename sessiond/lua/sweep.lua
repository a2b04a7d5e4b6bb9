-- sessiond/lua/sweep.lua -- the periodic sweep.
--
-- ARGV:  claim (1: kill gateways past their deadline; the caller passes 0
--        while its own bus is not healthy, since it would not see heartbeats),
--        batch, ttl_ms.
-- data:  {deaths, marked, expired, rejoins dropped, more, {gateways declared
--        dead}}.
--
-- Marks up to batch sessions of dying gateways disconnected (disc_at = the
-- gateway's last sign of life), ends up to batch expired sessions, drops up to
-- batch sessions' O memberships past their rejoin grace.

local now = now_ms()
local claim, batch, ttl = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local deaths, marked, expired, dropped = 0, 0, 0, 0
local killed = {}
if claim then
  for _, gi in ipairs(redis.call('ZRANGEBYSCORE', P .. 'gwdl', '-inf', I(now), 'LIMIT', 0, 64)) do
    if gw_kill(gi) == 1 then
      deaths = deaths + 1
      killed[#killed + 1] = gi
    end
  end
end
local budget = batch
while budget > 0 do
  local gi = redis.call('LINDEX', P .. 'dying', 0)
  if not gi then break end
  local last = tonumber(redis.call('HGET', P .. 'gwl', gi)) or now
  local sids = redis.call('SPOP', P .. 'gc:' .. gi, budget)
  for _, sid in ipairs(sids) do
    local h = sget(sid)
    if h and h.live == '1' and h.gi == gi then
      disconnect(sid, h, last, 'g', ttl, now, true)
      marked = marked + 1
    end
  end
  budget = budget - #sids
  if redis.call('SCARD', P .. 'gc:' .. gi) == 0 then
    redis.call('LPOP', P .. 'dying')
    redis.call('HDEL', P .. 'gwl', gi)
    local inst, inc = string.match(gi, '^(.*)|(%d+)$')
    if inst and redis.call('HGET', P .. 'gwi', inst) == inc then
      redis.call('HDEL', P .. 'gwi', inst)
      redis.call('ZADD', P .. 'gwdead', I(now), gi)
      redis.call('ZREMRANGEBYSCORE', P .. 'gwdead', '-inf', I(now - 3600000))
    end
  end
end
local more = budget <= 0 and 1 or 0
local sids = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', I(now), 'LIMIT', 0, batch)
for _, sid in ipairs(sids) do
  if redis.call('ZREM', P .. 'exp', sid) == 1 then
    local h = sget(sid)
    if h and h.live ~= '1' then
      end_session(sid, h)
      expired = expired + 1
    end
  end
end
if #sids == batch then more = 1 end
sids = redis.call('ZRANGEBYSCORE', P .. 'rejoin', '-inf', I(now), 'LIMIT', 0, batch)
for _, sid in ipairs(sids) do
  if redis.call('ZREM', P .. 'rejoin', sid) == 1 then
    local h = sget(sid)
    if h and h.live == '1' then
      for f, v in pairs(h) do
        if string.sub(f, 1, 2) == 'm:' and mflag(v) == 'O' then
          redis.call('HDEL', P .. 's:' .. sid, f)
          setm(string.sub(f, 3), h.user, sid, nil)
          dropped = dropped + 1
        end
      end
    end
  end
end
if #sids == batch then more = 1 end
return {'ok', 0, {deaths, marked, expired, dropped, more, killed}, CH}
