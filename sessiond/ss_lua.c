/* ss_lua.c -- sessiond's Redis data model: every state change is one Lua
 * script, so that any number of sessiond replicas agree without talking to
 * each other (Redis runs one script at a time; a script sees and leaves a
 * consistent state).
 *
 * The scripts are sessiond/lua/<name>.lua, each run with
 * sessiond/lua/prelude.lua (shared helpers) in front of it (the build puts
 * it there); each file says its ARGV and reply. docs/architecture.md
 * ("Redis key layout") describes the keys, how presence changes are
 * collected and which clocks are used.
 */
#include "ss_lua.h"

const char ss_lua_open[] = {
#include "sessiond/lua/open.lua.h"
    0
};
const char ss_lua_close[] = {
#include "sessiond/lua/close.lua.h"
    0
};
const char ss_lua_room[] = {
#include "sessiond/lua/room.lua.h"
    0
};
const char ss_lua_quality[] = {
#include "sessiond/lua/quality.lua.h"
    0
};
const char ss_lua_presence[] = {
#include "sessiond/lua/presence.lua.h"
    0
};
const char ss_lua_get[] = {
#include "sessiond/lua/get.lua.h"
    0
};
const char ss_lua_heartbeat[] = {
#include "sessiond/lua/heartbeat.lua.h"
    0
};
const char ss_lua_sweep[] = {
#include "sessiond/lua/sweep.lua.h"
    0
};
const char ss_lua_snap_part[] = {
#include "sessiond/lua/snap_part.lua.h"
    0
};
const char ss_lua_snap_finish[] = {
#include "sessiond/lua/snap_finish.lua.h"
    0
};
const char ss_lua_stats[] = {
#include "sessiond/lua/stats.lua.h"
    0
};
