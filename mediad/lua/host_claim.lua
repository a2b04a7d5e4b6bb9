-- mediad/lua/host_claim.lua -- claims a room for this mediad.
--
-- KEYS:  [1] the room's claim (tether:media:host:<room>).
-- ARGV:  [1] me ("<endpoint>|<instance>|<incarnation>"), [2] my endpoint, [3] ttl_ms,
--        [4] take_over ("1": take it even from a live owner).
-- Reply: {1, endpoint} when the room is (now) ours, else {0, owner endpoint}.

local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[3]) return { 1, ARGV[2] } end
local ep = v and string.match(v, '^([^|]*)|') or nil
if not v or ep == ARGV[2] or ARGV[4] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return { 1, ARGV[2] }
end
return { 0, ep or '' }
