-- .luacheckrc -- luacheck settings for the Redis scripts in */lua/ (make lint).
-- Redis runs scripts on Lua 5.1 with these globals and libraries loaded.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct" }
max_line_length = 120

-- sessiond's prelude is prepended to every sessiond script: its local
-- helpers are used by the scripts, not by the prelude itself.
files["sessiond/lua/prelude.lua"] = { ignore = { "211" } }

-- What the prelude declares, as the other sessiond scripts see it. CH is
-- the list of presence changes a script appends to.
files["sessiond/lua/*.lua"] = {
    globals = { "CH" },
    read_globals = {
        "P", "I", "now_ms", "idlt", "sget", "mparse", "mstate", "setm", "mflag", "mts", "mrid",
        "rooms_of", "backstop", "disconnect", "end_session", "park", "unpark", "gw_alive", "gw_kill",
        "gw_touch", "gw_seen",
    },
}
