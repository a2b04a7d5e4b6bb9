-- replayd/lua/range.lua -- reads a page of a room's history.
--
-- KEYS:  [1] meta, [2] log.
-- ARGV:  [1] after_seq, [2] limit, [3] from_oldest ("1": from the oldest
--        entry kept, whatever after_seq says).
-- Reply: {epoch, top, first_available, more (0/1), {entries}}; an unknown room
--        is {"", 0, 1, 0, {}}.

local m = redis.call('HMGET', KEYS[1], 'epoch', 'top')
local epoch, top = m[1], tonumber(m[2])
if not epoch or not top then return {'', 0, 1, 0, {}} end
local first = top - redis.call('LLEN', KEYS[2]) + 1
local after = tonumber(ARGV[1])
if ARGV[3] == '1' or after < first - 1 then after = first - 1 end
if after >= top then return {epoch, top, first, 0, {}} end
local last = math.min(top, after + tonumber(ARGV[2]))
local es = redis.call('LRANGE', KEYS[2], after + 1 - first, last - first)
return {epoch, top, first, last < top and 1 or 0, es}
