-- sessiond/lua/prelude.lua -- helpers prepended to every sessiond script (the
-- build concatenates this file and the script; docs/architecture.md, "Redis key
-- layout", describes the keys). Declares P (the key prefix), CH (the presence
-- changes a script returns) and the helper functions; .luacheckrc lists them
-- as the other scripts' globals.
--
-- Every sessiond script returns {code, gw_status, data, changes}: code "ok",
-- "forbidden", "notfound", "stale", "claimed" or "incomplete"; gw_status from
-- gw_touch (0 known, 1 new incarnation, 2 was declared dead, 3 stale
-- incarnation); data per script; changes a flat list room, user, state.
-- No sessiond script takes KEYS: every key derives from its arguments and the
-- hash tag {sess}, one slot.

local P = 'tether:{sess}:'
local CH = {}
local function I(x) return string.format('%d', math.floor(x)) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function idlt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function sget(sid)
  local a = redis.call('HGETALL', P .. 's:' .. sid)
  if #a == 0 then return nil end
  local h = {}
  for i = 1, #a, 2 do h[a[i]] = a[i + 1] end
  return h
end
local function mparse(v)
  local t = {}
  if v then
    for sid, st in string.gmatch(v, '([^:,]+):([LD])') do t[sid] = st end
  end
  return t
end
local function mstate(t)
  local s = false
  for _, st in pairs(t) do
    if st == 'L' then return 'online' end
    s = 'reconnecting'
  end
  return s
end
local function setm(room, user, sid, st)
  local k = P .. 'r:' .. room
  local t = mparse(redis.call('HGET', k, user))
  if t[sid] == st then return end
  local before = mstate(t)
  t[sid] = st
  local parts = {}
  for s, x in pairs(t) do parts[#parts + 1] = s .. ':' .. x end
  if #parts == 0 then
    redis.call('HDEL', k, user)
  else
    redis.call('HSET', k, user, table.concat(parts, ','))
  end
  local after = mstate(t)
  if before ~= after then
    CH[#CH + 1] = room
    CH[#CH + 1] = user
    CH[#CH + 1] = after or 'offline'
  end
end
local function mflag(v) return string.sub(v, 1, 1) end
local function mts(v) return tonumber(string.match(v, '^%a:(%d+)')) or 0 end
local function mrid(v) return string.match(v, '^%a:%d+:(%d+)') or '0' end
local function rooms_of(h)
  local out = {}
  for f, v in pairs(h) do
    if string.sub(f, 1, 2) == 'm:' and mflag(v) ~= 'X' then out[#out + 1] = string.sub(f, 3) end
  end
  return out
end
local function backstop(k, deadline, now)
  local ms = deadline - now
  if ms < 0 then ms = 0 end
  redis.call('PEXPIRE', k, I(ms + 3600000))
end
local function disconnect(sid, h, at, why, ttl, now, popped)
  local k = P .. 's:' .. sid
  if not popped then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end
  local dl = at + ttl
  redis.call('HSET', k, 'live', '0', 'disc_at', I(at), 'last_seen', I(at), 'dr', why,
             'disconnects', I((tonumber(h.disconnects) or 0) + 1))
  redis.call('ZADD', P .. 'exp', I(dl), sid)
  backstop(k, dl, now)
  local carried = false
  for f, v in pairs(h) do
    if string.sub(f, 1, 2) == 'm:' and mflag(v) ~= 'X' then
      if mflag(v) == 'O' then carried = true end
      setm(string.sub(f, 3), h.user, sid, 'D')
    end
  end
  if carried then redis.call('ZREM', P .. 'rejoin', sid) end
end
local function end_session(sid, h)
  for _, room in ipairs(rooms_of(h)) do setm(room, h.user, sid, nil) end
  if h.live == '1' then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end
  redis.call('ZREM', P .. 'exp', sid)
  redis.call('ZREM', P .. 'rejoin', sid)
  redis.call('DEL', P .. 's:' .. sid)
  redis.call('SET', P .. 't:' .. sid, h.okey or '-', 'PX', 300000)
  local uk = P .. 'u:' .. h.user
  if redis.call('GET', uk) == sid then redis.call('DEL', uk) end
end
local function park(gi, conn, field, value)
  local pk = P .. 'pk:' .. gi .. '|' .. conn
  redis.call('HSET', pk, field, value)
  redis.call('PEXPIRE', pk, 600000)
end
local function unpark(sid, gi, conn, since, ttl, now)
  local pk = P .. 'pk:' .. gi .. '|' .. conn
  local pa = redis.call('HGETALL', pk)
  if #pa == 0 then return end
  redis.call('DEL', pk)
  local h = sget(sid)
  if not h or h.live ~= '1' or h.gi ~= gi or h.conn ~= conn then return end
  local k = P .. 's:' .. sid
  local close = nil
  for i = 1, #pa, 2 do
    local f, v = pa[i], pa[i + 1]
    local kind = string.sub(f, 1, 2)
    if kind == 'm:' then
      if mts(v) >= since then
        redis.call('HSET', k, f, v)
        if mflag(v) == 'J' then
          setm(string.sub(f, 3), h.user, sid, 'L')
        else
          setm(string.sub(f, 3), h.user, sid, nil)
        end
      end
    elseif kind == 'p:' then
      redis.call('HSET', k, f, v)
    elseif f == 'close' then
      close = v
    end
  end
  if close then
    h = sget(sid)
    local bye, at = string.match(close, '^(%d),(%d+)$')
    if bye == '1' then end_session(sid, h) else disconnect(sid, h, tonumber(at), 'c', ttl, now) end
  end
end
local function gw_alive(gi, now)
  local s = redis.call('ZSCORE', P .. 'gwdl', gi)
  return s and tonumber(s) >= now
end
local function gw_kill(gi)
  if redis.call('ZREM', P .. 'gwdl', gi) == 1 then
    redis.call('RPUSH', P .. 'dying', gi)
    return 1
  end
  return 0
end
local function gw_touch(inst, inc, now, dead_after)
  local gi = inst .. '|' .. inc
  local cur = redis.call('HGET', P .. 'gwi', inst)
  local st = 0
  if not cur then
    st = 1
    if redis.call('ZREM', P .. 'gwdead', gi) == 1 then st = 2 end
  elseif cur ~= inc then
    if idlt(inc, cur) then return gi, 3 end
    gw_kill(inst .. '|' .. cur)
    st = 1
  elseif not redis.call('ZSCORE', P .. 'gwdl', gi) then
    st = 2
    redis.call('LREM', P .. 'dying', 0, gi)
  end
  if st ~= 0 then redis.call('HSET', P .. 'gwi', inst, inc) end
  redis.call('HSET', P .. 'gwl', gi, I(now))
  redis.call('ZADD', P .. 'gwdl', 'GT', I(now + dead_after), gi)
  return gi, st
end
local function gw_seen(inst, inc, now, dead_after)
  if redis.call('HGET', P .. 'gwi', inst) == inc then return inst .. '|' .. inc, 0 end
  return gw_touch(inst, inc, now, dead_after)
end
