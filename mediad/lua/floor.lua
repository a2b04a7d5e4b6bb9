-- mediad/lua/floor.lua -- push-to-talk floors (docs/architecture.md, "Redis key
-- layout"). One script; ARGV[1] names the operation.
--
-- KEYS:  [1] the room's floor hash (tether:ptt:<room>; "" for sweep and
--        gw_dead), [2] the due zset (tether:ptt:due).
-- ARGV:  [1] op, then per op:
--        get         room
--        request     room, user, session, gw, conn, max_ms
--        release     room, user
--        disconnect  room, user, gw, conn, grace_ms
--        sweep       floor key prefix ("tether:ptt:"), limit
--        gw_dead     gw instance, grace_ms, floor key prefix
-- Reply: {state, holder, max_left_ms, seq, gw, conn, events}; events is a flat
--        list of 8-tuples (room, state, holder, gw, conn, max_ms, reason, seq).
--        An unknown op is an error reply.

local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ev = {}
local ttl = 86400
local function emit(room, state, holder, gw, conn, max_ms, reason, seq)
  for _, v in ipairs({room, state, holder, gw, tostring(conn), tostring(max_ms), reason, tostring(seq)}) do
    ev[#ev + 1] = v
  end
end
local function load(key)
  local h = redis.call('HMGET', key, 'holder', 'session', 'gw', 'conn', 'deadline', 'grace', 'seq')
  return { holder = h[1] or '', session = h[2] or '', gw = h[3] or '', conn = h[4] or '0',
           deadline = tonumber(h[5] or '0'), grace = tonumber(h[6] or '0'), seq = tonumber(h[7] or '0') }
end
local function gwset(gw) return 'tether:pttgw:' .. gw end
local function free(key, room, f, state, reason)
  if f.gw ~= '' then redis.call('SREM', gwset(f.gw), room) end
  f.seq = f.seq + 1
  redis.call('HSET', key, 'holder', '', 'session', '', 'gw', '', 'conn', '0', 'deadline', '0', 'grace', '0',
             'seq', f.seq)
  redis.call('EXPIRE', key, ttl)
  redis.call('ZREM', KEYS[2], room)
  emit(room, state, f.holder, f.gw, f.conn, 0, reason, f.seq)
  f.holder = ''
end
local function expire(key, room, f)
  if f.holder == '' then return end
  if f.grace > 0 and f.grace <= now then free(key, room, f, 'idle', 'holder disconnected')
  elseif f.deadline <= now then free(key, room, f, 'revoked', 'max talk time') end
end
local function left(f) if f.holder == '' then return 0 end return math.max(0, f.deadline - now) end
local function reply(state, f) return { state, f.holder, left(f), f.seq, f.gw, f.conn, ev } end
if op == 'sweep' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
  for _, room in ipairs(due) do
    local key = ARGV[2] .. room
    local f = load(key)
    expire(key, room, f)
    if f.holder == '' then redis.call('ZREM', KEYS[2], room)
    else
      local d = f.deadline
      if f.grace > 0 and f.grace < d then d = f.grace end
      redis.call('ZADD', KEYS[2], d, room)
    end
  end
  return { 'ok', '', 0, 0, '', '0', ev }
end
if op == 'gw_dead' then
  local set = gwset(ARGV[2])
  for _, room in ipairs(redis.call('SMEMBERS', set)) do
    local key = ARGV[4] .. room
    local f = load(key)
    expire(key, room, f)
    if f.holder ~= '' and f.gw == ARGV[2] and f.grace == 0 then
      f.grace = now + tonumber(ARGV[3])
      redis.call('HSET', key, 'grace', f.grace)
      local d = f.deadline
      if f.grace < d then d = f.grace end
      redis.call('ZADD', KEYS[2], d, room)
    elseif f.holder == '' or f.gw ~= ARGV[2] then
      redis.call('SREM', set, room)
    end
  end
  return { 'ok', '', 0, 0, '', '0', ev }
end
local key, room = KEYS[1], ARGV[2]
local f = load(key)
expire(key, room, f)
if op == 'get' then
  if f.holder == '' then return reply('idle', f) end
  return reply('taken', f)
elseif op == 'request' then
  local user, session, gw, conn, max_ms = ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
  if f.holder == '' then
    f.seq = f.seq + 1
    f.holder, f.session, f.gw, f.conn, f.deadline, f.grace = user, session, gw, conn, now + max_ms, 0
    redis.call('HSET', key, 'holder', user, 'session', session, 'gw', gw, 'conn', conn,
               'deadline', f.deadline, 'grace', 0, 'seq', f.seq, 'max', max_ms, 'since', now)
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', KEYS[2], f.deadline, room)
    redis.call('SADD', gwset(gw), room)
    redis.call('EXPIRE', gwset(gw), ttl)
    emit(room, 'taken', user, gw, conn, max_ms, 'granted', f.seq)
    return reply('granted', f)
  end
  if f.holder == user then
    if f.gw ~= gw or f.conn ~= conn or f.grace > 0 then
      if f.gw ~= gw then
        redis.call('SREM', gwset(f.gw), room)
        redis.call('SADD', gwset(gw), room)
        redis.call('EXPIRE', gwset(gw), ttl)
      end
      f.seq = f.seq + 1
      f.session, f.gw, f.conn, f.grace = session, gw, conn, 0
      redis.call('HSET', key, 'session', session, 'gw', gw, 'conn', conn, 'grace', 0, 'seq', f.seq)
      redis.call('EXPIRE', key, ttl)
      redis.call('ZADD', KEYS[2], f.deadline, room)
      emit(room, 'taken', user, gw, conn, left(f), 'resumed', f.seq)
    end
    return reply('granted', f)
  end
  return reply('denied', f)
elseif op == 'release' then
  if f.holder ~= '' and f.holder == ARGV[3] then
    free(key, room, f, 'idle', 'released')
    return reply('idle', f)
  end
  return reply('none', f)
elseif op == 'disconnect' then
  local user, gw, conn, grace = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  if f.holder == user and f.gw == gw and f.conn == conn and f.grace == 0 then
    f.grace = now + grace
    redis.call('HSET', key, 'grace', f.grace)
    local d = f.deadline
    if f.grace < d then d = f.grace end
    redis.call('ZADD', KEYS[2], d, room)
    return reply('suspended', f)
  end
  return reply('none', f)
end
return redis.error_reply('unknown op')
