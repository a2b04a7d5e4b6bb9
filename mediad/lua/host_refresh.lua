-- mediad/lua/host_refresh.lua -- refreshes the claims this mediad holds.
--
-- KEYS:  the claims we think we hold.
-- ARGV:  [1] me, [2] ttl_ms.
-- Reply: the 1-based indexes of the claims taken by others (expired ones, after
--        a Redis hiccup, are taken again).

local lost = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if not v or v == ARGV[1] then redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  else lost[#lost + 1] = i end
end
return lost
