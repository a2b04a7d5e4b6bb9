-- replayd/lua/append.lua -- appends the batches of several rooms in one call
-- (docs/architecture.md, "Redis key layout": the keys and invariants).
--
-- KEYS:  per batch g: meta, log, dedup key prefix ("tether:{room}:dd"; the
--        bucket is appended here, from Redis's clock).
-- ARGV:  [1] epoch suffix (8 hex digits), [2] "size:burst:min_age_ms",
--        [3] history TTL (s), [4] dedup TTL (s), [5] meta TTL (s),
--        [6] the number of batches G, then G message counts, G floors
--        (epoch, seq: a seq known to have been handed out in that epoch;
--        "" and 0 for none), then per message its dedup field
--        ("<len(user)>:<user>:<id>") and its entry tail
--        ("<len(id)> <len(from)>\n<id>|<from>|<data>").
-- Reply: one {epoch, seq, ts, duplicate[, stored entry]} per message, in order.
--
-- A meta whose epoch is the floor's but whose top is below the floor's seq was
-- rolled back (Redis came back older than what it acknowledged): the room
-- starts a new epoch, exactly as when its meta is gone, instead of handing
-- those seqs out again to other messages. A duplicate of a message still in
-- the log comes with the stored entry, so that replayd can publish it again:
-- the first attempt's publication may never have left (replayd died between
-- Redis and the bus). A message repeated within a batch, or in a later batch
-- of the same call, is a duplicate of its first occurrence. A room's log is
-- pushed before its dedup records and meta are written, so a failing push
-- leaves no trace of that room's batch; an error fails the whole call.

local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local size, cap, age = string.match(ARGV[2], '^(%d+):(%d+):(%d+)$')
size, cap, age = tonumber(size), tonumber(cap), tonumber(age)
if age == 0 then cap = size end
local httl, dttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket = math.floor(ts / (dttl * 1000))
local bs, bps = string.format('%d', bucket), string.format('%d', bucket - 1)
local tss, capneg, ddttl = string.format('%d', ts), string.format('%d', -cap), string.format('%d', 2 * dttl + 1)
local every = httl * 100
local G = tonumber(ARGV[6])
local out = {}
local ki, ai = 1, 7 + 3 * G
for g = 1, G do
  local n = tonumber(ARGV[6 + g])
  local fe, fs = ARGV[5 + G + 2 * g], tonumber(ARGV[6 + G + 2 * g])
  local mk, lk, dk = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  local dcur = dk .. ':' .. bs
  local m = redis.call('HMGET', mk, 'epoch', 'top', 'exp', 'ddb', 'ots')
  local epoch, top = m[1], tonumber(m[2])
  local fresh = not epoch or not top
  if not fresh and fe == epoch and fs and top < fs then fresh = true end
  if fresh then
    epoch = string.format('%012x', ts) .. ARGV[1]
    top = 0
  end
  local fields = {}
  for i = 1, n do fields[i] = ARGV[ai + 2 * i - 2] end
  local cur = redis.call('HMGET', dcur, unpack(fields))
  local prev = redis.call('HMGET', dk .. ':' .. bps, unpack(fields))
  local top0, llen = top, nil
  local push, seen, rec = {}, {}, {}
  for i = 1, n do
    local f = fields[i]
    local d = seen[f] or cur[i] or prev[i]
    local e, s, t
    if d then e, s, t = string.match(d, '^([^:]*):(%d+):(%d+)$') end
    if e then
      local entry = ''
      local sn = tonumber(s)
      if not seen[f] and not fresh and e == epoch then
        llen = llen or redis.call('LLEN', lk)
        local first = top0 - llen + 1
        if sn >= first and sn <= top0 then
          entry = redis.call('LINDEX', lk, sn - first) or ''
        end
      end
      out[#out + 1] = {e, sn, tonumber(t), 1, entry}
    else
      top = top + 1
      push[#push + 1] = string.format('%d %d ', top, ts) .. ARGV[ai + 2 * i - 1]
      local v = string.format('%s:%d:%d', epoch, top, ts)
      seen[f] = v
      rec[#rec + 1] = f
      rec[#rec + 1] = v
      out[#out + 1] = {epoch, top, ts, 0}
    end
  end
  ai = ai + 2 * n
  if #push > 0 then
    if fresh then redis.call('DEL', lk) end
    local len = redis.call('RPUSH', lk, unpack(push))
    local created = len == #push
    if len > cap then redis.call('LTRIM', lk, capneg, '-1'); len = cap end
    local ots0 = (not fresh and not created) and tonumber(m[5]) or nil
    local ots = (fresh or created) and ts or ots0
    if len > size and not (ots and ots > ts - age) then
      local drop = 0
      while len - drop > size do
        local e = redis.call('LINDEX', lk, string.format('%d', drop))
        local ets = tonumber(string.match(e, '^%d+ (%d+) '))
        if ets then ots = ets end
        if ets and ets > ts - age then break end
        drop = drop + 1
      end
      if drop > 0 then redis.call('LTRIM', lk, string.format('%d', drop), '-1') end
    end
    redis.call('HSET', dcur, unpack(rec))
    local exp = tonumber(m[3])
    local ttls = fresh or created or not exp or ts - exp >= every or ts < exp
    local ddb = fresh or m[4] ~= bs
    if ddb then redis.call('EXPIRE', dcur, ddttl) end
    local hs = {'epoch', epoch, 'top', string.format('%d', top)}
    if ttls then hs[#hs + 1] = 'exp'; hs[#hs + 1] = tss end
    if ddb then hs[#hs + 1] = 'ddb'; hs[#hs + 1] = bs end
    if ots and ots ~= ots0 then hs[#hs + 1] = 'ots'; hs[#hs + 1] = string.format('%d', ots) end
    redis.call('HSET', mk, unpack(hs))
    if ttls then
      redis.call('EXPIRE', lk, ARGV[3])
      redis.call('EXPIRE', mk, ARGV[5])
    end
  end
end
return out
