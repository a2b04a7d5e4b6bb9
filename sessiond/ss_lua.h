/* ss_lua.h -- the Lua scripts of sessiond's Redis data model (sessiond/lua/
 * says each script's arguments and results). */
#ifndef TETHER_SS_LUA_H
#define TETHER_SS_LUA_H

extern const char ss_lua_open[];
extern const char ss_lua_close[];
extern const char ss_lua_room[];
extern const char ss_lua_quality[];
extern const char ss_lua_presence[];
extern const char ss_lua_get[];
extern const char ss_lua_heartbeat[];
extern const char ss_lua_sweep[];
extern const char ss_lua_snap_part[];
extern const char ss_lua_snap_finish[];
extern const char ss_lua_stats[];

#endif
