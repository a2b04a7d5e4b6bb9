-- sessiond/lua/snap_finish.lua -- after the last part of a snapshot.
--
-- ARGV:  instance, incarnation, snapshot ts, key, token, ttl_ms, number of part
--        calls.
-- data:  {n}; "incomplete" (nothing done) when a part call did not run to its
--        end.
--
-- Sessions the incarnation holds that no part listed and that were opened
-- before the snapshot are disconnected at its ts.

local now = now_ms()
local inst, inc, sts = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ck, seen = P .. 'snapc:' .. ARGV[4], P .. 'snaps:' .. ARGV[4]
if redis.call('GET', ck) ~= ARGV[5] then return {'claimed', 0, {0}, CH} end
local gi, ttl = inst .. '|' .. inc, tonumber(ARGV[6])
local nk = P .. 'snapn:' .. ARGV[4]
local got = tonumber(redis.call('GET', nk) or '0')
redis.call('DEL', nk)
if got ~= tonumber(ARGV[7]) then
  redis.call('DEL', seen)
  return {'incomplete', 0, {0}, CH}
end
local n = 0
for _, sid in ipairs(redis.call('SDIFF', P .. 'gc:' .. gi, seen)) do
  local h = sget(sid)
  if h and h.live == '1' and h.gi == gi and (tonumber(h.oat) or 0) < sts then
    disconnect(sid, h, sts, 's', ttl, now)
    n = n + 1
  end
end
redis.call('DEL', seen)
return {'ok', 0, {n}, CH}
