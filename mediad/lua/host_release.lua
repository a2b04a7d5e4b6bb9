-- mediad/lua/host_release.lua -- gives a room's claim up if it is still ours.
--
-- KEYS:  [1] the room's claim.
-- ARGV:  [1] me.
-- Reply: 1 when it was deleted, else 0.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
