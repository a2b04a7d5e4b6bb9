/* ss_lua.c -- sessiond's Redis data model: every state change is one Lua
 * script, so that any number of sessiond replicas agree without talking to
 * each other (Redis runs one script at a time; a script sees and leaves a
 * consistent state).
 *
 * Keys (all carry the hash tag {sess}: one slot, so a script may derive the
 * keys it touches from its arguments):
 *
 *   tether:{sess}:s:<sid>   hash, one session:
 *       user, created         owner (never changes) and creation time (ms)
 *       gi, gw, inc, conn     holder: gateway incarnation "<instance>|<inc>",
 *                             its instance and incarnation, and the
 *                             gateway-local connection id
 *       live                  1 while a connection holds it, else 0
 *       disc_at, dr           when it was disconnected (ms, the gateway's
 *                             at_ms, or the dead gateway's last sign of life)
 *                             and why: c (closed by the gateway), g (gateway
 *                             died), s (absent from the gateway's snapshot)
 *       last_seen, disconnects, client
 *       okey, ores, oat       the open that made the current holder
 *                             ("<gi>|<conn>"), its result ("resumed,disc_ms")
 *                             and its at_ms: a retried open is answered from
 *                             them and changes nothing; an older one (a late
 *                             retry: a smaller conn id of the same gateway,
 *                             whose ids grow, or an earlier at_ms of another)
 *                             changes nothing either
 *       m:<room>              membership "<flag>:<ts>:<req_id>": J joined by
 *                             the current connection, O carried over from an
 *                             earlier connection and not re-joined yet, X left.
 *                             ts/req_id order one gateway's joins and leaves
 *                             (req_id is monotonic per gateway rpc client,
 *                             compared as decimal strings; ts is the gateway's
 *                             clock, compared with its snapshots')
 *       p:<room>              last delivered position "<epoch> <seq>"
 *       q, rtt, loss, jitter, bw, q_at, recs   last connection quality
 *     No TTL while live; once disconnected a backstop TTL of its expiry
 *     deadline + 1 h (the sweep below ends it on time; the TTL only cleans up
 *     after a sessiond that never comes back).
 *   tether:{sess}:r:<room>  hash user -> "<sid>:<L|D>,..." the sessions of the
 *                           user in the room, L (its connection is live) or D
 *                           (disconnected, session alive). A user's presence
 *                           in the room: online if any L, reconnecting if any
 *                           D, offline (field absent) otherwise.
 *   tether:{sess}:u:<user>  the user's most recent session id (deleted when
 *                           that session ends)
 *   tether:{sess}:pk:<gi>|<conn>  hash, 10 min: events of a connection that
 *                           is not (yet) its session's holder -- m:<room>,
 *                           p:<room>, close "<bye>,<at_ms>" -- applied when
 *                           its open (or a snapshot listing it) arrives.
 *                           After an outage the gateway's retries run on
 *                           independent timers, so a close may overtake its
 *                           open; without this the open would make a closed
 *                           connection live (a ghost)
 *   tether:{sess}:t:<sid>   tombstone of an ended session (its okey), 5 min:
 *                           a late retry of the open that created it must not
 *                           bring it back
 *   tether:{sess}:exp       zset sid -> expiry deadline (disc_at + TTL, ms)
 *   tether:{sess}:rejoin    zset sid -> deadline for carried-over (O)
 *                           memberships to be re-joined after a resume
 *   tether:{sess}:gwi       hash instance -> current incarnation
 *   tether:{sess}:gwl       hash gi -> last sign of life (ms, Redis clock)
 *   tether:{sess}:gwdl      zset gi -> deadline; an incarnation past it is
 *                           dead. Removing it from this zset (ZREM == 1) is
 *                           the claim: exactly one replica kills a gateway
 *   tether:{sess}:gc:<gi>   set of sids held live by that incarnation
 *   tether:{sess}:dying     list of gi whose sessions are being marked
 *                           disconnected, a batch per sweep call
 *   tether:{sess}:gwdead    zset gi -> when its reaping finished (1 h): a
 *                           "dead" gateway heard from again is recognised as
 *                           wrongly declared dead (its sessions need a
 *                           snapshot), not taken for a new one
 *   tether:{sess}:snapc:<k> / snaps:<k>   claim and seen-set of one snapshot
 *                           reconcile (k = gi:snapshot_id:ts), 60 s
 *
 * Presence changes: every script collects the (room, user, state) whose
 * user-level state changed, in the order they happened, and returns them;
 * the replica that ran it publishes them. A state that does not change
 * (a second tab, a resume that re-joins) produces nothing.
 *
 * Clocks: deadlines and liveness use Redis's clock (TIME), so replicas agree;
 * disc_at and at_ms come from the gateways, which is what "measured from the
 * moment the server noticed the drop" means (disconnected_ms compares two
 * gateways' clocks: NTP-synchronised in any real deployment).
 *
 * Gateway liveness comes from heartbeats (and snapshots); a request only
 * checks that its sender is the instance's current incarnation (one HGET),
 * since a script's cost is mostly its number of Redis calls (~3 us each).
 *
 * Every script returns {code, gw_status, data, changes}: code "ok",
 * "forbidden", "notfound", "stale" or "claimed"; gw_status from gw_touch
 * (0 known, 1 new incarnation, 2 was declared dead, 3 stale incarnation);
 * data per script (below); changes a flat list room, user, state.
 */
#include "ss_lua.h"

/* Shared helpers, prepended to every script (see the data model above). */
#define PRELUDE \
    "local P = 'tether:{sess}:'\n" \
    "local CH = {}\n" \
    "local function I(x) return string.format('%d', math.floor(x)) end\n" \
    "local function now_ms()\n" \
    "  local t = redis.call('TIME')\n" \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "end\n" \
    "local function idlt(a, b)\n" \
    "  if #a ~= #b then return #a < #b end\n" \
    "  return a < b\n" \
    "end\n" \
    "local function sget(sid)\n" \
    "  local a = redis.call('HGETALL', P .. 's:' .. sid)\n" \
    "  if #a == 0 then return nil end\n" \
    "  local h = {}\n" \
    "  for i = 1, #a, 2 do h[a[i]] = a[i + 1] end\n" \
    "  return h\n" \
    "end\n" \
    "local function mparse(v)\n" \
    "  local t = {}\n" \
    "  if v then\n" \
    "    for sid, st in string.gmatch(v, '([^:,]+):([LD])') do t[sid] = st end\n" \
    "  end\n" \
    "  return t\n" \
    "end\n" \
    "local function mstate(t)\n" \
    "  local s = false\n" \
    "  for _, st in pairs(t) do\n" \
    "    if st == 'L' then return 'online' end\n" \
    "    s = 'reconnecting'\n" \
    "  end\n" \
    "  return s\n" \
    "end\n" \
    "local function setm(room, user, sid, st)\n" \
    "  local k = P .. 'r:' .. room\n" \
    "  local t = mparse(redis.call('HGET', k, user))\n" \
    "  if t[sid] == st then return end\n" \
    "  local before = mstate(t)\n" \
    "  t[sid] = st\n" \
    "  local parts = {}\n" \
    "  for s, x in pairs(t) do parts[#parts + 1] = s .. ':' .. x end\n" \
    "  if #parts == 0 then\n" \
    "    redis.call('HDEL', k, user)\n" \
    "  else\n" \
    "    redis.call('HSET', k, user, table.concat(parts, ','))\n" \
    "  end\n" \
    "  local after = mstate(t)\n" \
    "  if before ~= after then\n" \
    "    CH[#CH + 1] = room\n" \
    "    CH[#CH + 1] = user\n" \
    "    CH[#CH + 1] = after or 'offline'\n" \
    "  end\n" \
    "end\n" \
    "local function mflag(v) return string.sub(v, 1, 1) end\n" \
    "local function mts(v) return tonumber(string.match(v, '^%a:(%d+)')) or 0 end\n" \
    "local function mrid(v) return string.match(v, '^%a:%d+:(%d+)') or '0' end\n" \
    "local function rooms_of(h)\n" \
    "  local out = {}\n" \
    "  for f, v in pairs(h) do\n" \
    "    if string.sub(f, 1, 2) == 'm:' and mflag(v) ~= 'X' then out[#out + 1] = string.sub(f, 3) end\n" \
    "  end\n" \
    "  return out\n" \
    "end\n" \
    "local function backstop(k, deadline, now)\n" \
    "  local ms = deadline - now\n" \
    "  if ms < 0 then ms = 0 end\n" \
    "  redis.call('PEXPIRE', k, I(ms + 3600000))\n" \
    "end\n" \
    "local function disconnect(sid, h, at, why, ttl, now, popped)\n" \
    "  local k = P .. 's:' .. sid\n" \
    "  if not popped then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end\n" \
    "  local dl = at + ttl\n" \
    "  redis.call('HSET', k, 'live', '0', 'disc_at', I(at), 'last_seen', I(at), 'dr', why,\n" \
    "             'disconnects', I((tonumber(h.disconnects) or 0) + 1))\n" \
    "  redis.call('ZADD', P .. 'exp', I(dl), sid)\n" \
    "  backstop(k, dl, now)\n" \
    "  local carried = false\n" \
    "  for f, v in pairs(h) do\n" \
    "    if string.sub(f, 1, 2) == 'm:' and mflag(v) ~= 'X' then\n" \
    "      if mflag(v) == 'O' then carried = true end\n" \
    "      setm(string.sub(f, 3), h.user, sid, 'D')\n" \
    "    end\n" \
    "  end\n" \
    "  if carried then redis.call('ZREM', P .. 'rejoin', sid) end\n" \
    "end\n" \
    "local function end_session(sid, h)\n" \
    "  for _, room in ipairs(rooms_of(h)) do setm(room, h.user, sid, nil) end\n" \
    "  if h.live == '1' then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end\n" \
    "  redis.call('ZREM', P .. 'exp', sid)\n" \
    "  redis.call('ZREM', P .. 'rejoin', sid)\n" \
    "  redis.call('DEL', P .. 's:' .. sid)\n" \
    "  redis.call('SET', P .. 't:' .. sid, h.okey or '-', 'PX', 300000)\n" \
    "  local uk = P .. 'u:' .. h.user\n" \
    "  if redis.call('GET', uk) == sid then redis.call('DEL', uk) end\n" \
    "end\n" \
    "local function park(gi, conn, field, value)\n" \
    "  local pk = P .. 'pk:' .. gi .. '|' .. conn\n" \
    "  redis.call('HSET', pk, field, value)\n" \
    "  redis.call('PEXPIRE', pk, 600000)\n" \
    "end\n" \
    "local function unpark(sid, gi, conn, since, ttl, now)\n" \
    "  local pk = P .. 'pk:' .. gi .. '|' .. conn\n" \
    "  local pa = redis.call('HGETALL', pk)\n" \
    "  if #pa == 0 then return end\n" \
    "  redis.call('DEL', pk)\n" \
    "  local h = sget(sid)\n" \
    "  if not h or h.live ~= '1' or h.gi ~= gi or h.conn ~= conn then return end\n" \
    "  local k = P .. 's:' .. sid\n" \
    "  local close = nil\n" \
    "  for i = 1, #pa, 2 do\n" \
    "    local f, v = pa[i], pa[i + 1]\n" \
    "    local kind = string.sub(f, 1, 2)\n" \
    "    if kind == 'm:' then\n" \
    "      if mts(v) >= since then\n" \
    "        redis.call('HSET', k, f, v)\n" \
    "        if mflag(v) == 'J' then setm(string.sub(f, 3), h.user, sid, 'L') else setm(string.sub(f, 3), h.user, sid, nil) end\n" \
    "      end\n" \
    "    elseif kind == 'p:' then\n" \
    "      redis.call('HSET', k, f, v)\n" \
    "    elseif f == 'close' then\n" \
    "      close = v\n" \
    "    end\n" \
    "  end\n" \
    "  if close then\n" \
    "    h = sget(sid)\n" \
    "    local bye, at = string.match(close, '^(%d),(%d+)$')\n" \
    "    if bye == '1' then end_session(sid, h) else disconnect(sid, h, tonumber(at), 'c', ttl, now) end\n" \
    "  end\n" \
    "end\n" \
    "local function gw_alive(gi, now)\n" \
    "  local s = redis.call('ZSCORE', P .. 'gwdl', gi)\n" \
    "  return s and tonumber(s) >= now\n" \
    "end\n" \
    "local function gw_kill(gi)\n" \
    "  if redis.call('ZREM', P .. 'gwdl', gi) == 1 then\n" \
    "    redis.call('RPUSH', P .. 'dying', gi)\n" \
    "    return 1\n" \
    "  end\n" \
    "  return 0\n" \
    "end\n" \
    "local function gw_touch(inst, inc, now, dead_after)\n" \
    "  local gi = inst .. '|' .. inc\n" \
    "  local cur = redis.call('HGET', P .. 'gwi', inst)\n" \
    "  local st = 0\n" \
    "  if not cur then\n" \
    "    st = 1\n" \
    "    if redis.call('ZREM', P .. 'gwdead', gi) == 1 then st = 2 end\n" \
    "  elseif cur ~= inc then\n" \
    "    if idlt(inc, cur) then return gi, 3 end\n" \
    "    gw_kill(inst .. '|' .. cur)\n" \
    "    st = 1\n" \
    "  elseif not redis.call('ZSCORE', P .. 'gwdl', gi) then\n" \
    "    st = 2\n" \
    "    redis.call('LREM', P .. 'dying', 0, gi)\n" \
    "  end\n" \
    "  if st ~= 0 then redis.call('HSET', P .. 'gwi', inst, inc) end\n" \
    "  redis.call('HSET', P .. 'gwl', gi, I(now))\n" \
    "  redis.call('ZADD', P .. 'gwdl', 'GT', I(now + dead_after), gi)\n" \
    "  return gi, st\n" \
    "end\n" \
    "local function gw_seen(inst, inc, now, dead_after)\n" \
    "  if redis.call('HGET', P .. 'gwi', inst) == inc then return inst .. '|' .. inc, 0 end\n" \
    "  return gw_touch(inst, inc, now, dead_after)\n" \
    "end\n"

/* SessOpenReq. ARGV: sid, user, conn, client, at_ms, instance, incarnation,
 * ttl_ms, dead_after_ms, rejoin_grace_ms. data: {resumed, disconnected_ms,
 * owner}. forbidden: the session belongs to another user (untouched). An
 * unknown session is created; a disconnected one is resumed (its memberships
 * become O, to be re-joined within the grace); a live one is taken over
 * (resumed, disconnected_ms 0 unless its gateway is dead). An open older
 * than the holder's (a late retry) changes nothing. Events of the
 * connection that arrived before its open (parked) are applied now. */
const char ss_lua_open[] = PRELUDE
    "local now = now_ms()\n"
    "local sid, user, conn, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local at = tonumber(ARGV[5])\n"
    "if at <= 0 then at = now end\n"
    "local ttl, dead_after, grace = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])\n"
    "local gi, gst = gw_seen(ARGV[6], ARGV[7], now, dead_after)\n"
    "if gst == 3 then return {'stale', gst, {}, CH} end\n"
    "local okey = gi .. '|' .. conn\n"
    "local k = P .. 's:' .. sid\n"
    "local h = sget(sid)\n"
    "local resumed, disc = 0, 0\n"
    "if not h then\n"
    "  if redis.call('GET', P .. 't:' .. sid) == okey then return {'ok', gst, {0, 0, user}, CH} end\n"
    "  redis.call('HSET', k, 'user', user, 'created', I(at), 'disconnects', '0')\n"
    "else\n"
    "  if h.user ~= user then return {'forbidden', gst, {0, 0, h.user}, CH} end\n"
    "  if h.okey == okey then\n"
    "    local r0, d0 = string.match(h.ores or '', '^(%d+),(%d+)$')\n"
    "    return {'ok', gst, {tonumber(r0) or 0, tonumber(d0) or 0, user}, CH}\n"
    "  end\n"
    "  -- A late retry of an open older than the holder's (same gateway: its\n"
    "  -- connection ids grow; another gateway: at_ms) must not take it back.\n"
    "  if h.gi and (h.gi == gi and idlt(conn, h.conn or '0') or h.gi ~= gi and at < (tonumber(h.oat) or 0)) then\n"
    "    return {'ok', gst, {1, 0, user}, CH}\n"
    "  end\n"
    "  resumed = 1\n"
    "  if h.live == '1' then\n"
    "    redis.call('SREM', P .. 'gc:' .. h.gi, sid)\n"
    "    if not gw_alive(h.gi, now) then\n"
    "      local last = tonumber(redis.call('HGET', P .. 'gwl', h.gi))\n"
    "      if last and at > last then disc = at - last end\n"
    "    end\n"
    "    redis.call('HSET', k, 'disconnects', I((tonumber(h.disconnects) or 0) + 1))\n"
    "  else\n"
    "    local d0 = tonumber(h.disc_at) or at\n"
    "    if at > d0 then disc = at - d0 end\n"
    "    redis.call('ZREM', P .. 'exp', sid)\n"
    "  end\n"
    "  local carried = false\n"
    "  for f, v in pairs(h) do\n"
    "    if string.sub(f, 1, 2) == 'm:' then\n"
    "      if mflag(v) == 'X' then\n"
    "        redis.call('HDEL', k, f)\n"
    "      else\n"
    "        redis.call('HSET', k, f, 'O' .. string.sub(v, 2))\n"
    "        carried = true\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if carried then redis.call('ZADD', P .. 'rejoin', I(now + grace), sid) end\n"
    "end\n"
    "redis.call('HSET', k, 'gi', gi, 'gw', ARGV[6], 'inc', ARGV[7], 'conn', conn, 'live', '1', 'disc_at', '0',\n"
    "           'last_seen', I(at), 'client', client, 'okey', okey, 'ores', resumed .. ',' .. I(disc),\n"
    "           'oat', I(at), 'dr', '')\n"
    "redis.call('PERSIST', k)\n"
    "redis.call('SADD', P .. 'gc:' .. gi, sid)\n"
    "redis.call('SET', P .. 'u:' .. user, sid)\n"
    "-- Its connection's joins, leaves or close may have arrived first (the\n"
    "-- gateway's retries after an outage run on independent timers).\n"
    "unpark(sid, gi, conn, 0, ttl, now)\n"
    "return {'ok', gst, {resumed, disc, user}, CH}\n";

/* SessCloseReq. ARGV: sid, conn, bye, at_ms, instance, incarnation, ttl_ms,
 * dead_after_ms, npos, then npos (room, epoch, seq). data: {0 nothing to do,
 * 1 disconnected, 2 ended}. Only the current holder (gateway incarnation and
 * connection) closes at once; a close of any other connection is parked,
 * in case its open is still on the way. */
const char ss_lua_close[] = PRELUDE
    "local now = now_ms()\n"
    "local sid, conn, bye = ARGV[1], ARGV[2], ARGV[3] == '1'\n"
    "local at = tonumber(ARGV[4])\n"
    "if at <= 0 then at = now end\n"
    "local ttl, dead_after = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local gi, gst = gw_seen(ARGV[5], ARGV[6], now, dead_after)\n"
    "local h = sget(sid)\n"
    "local n = tonumber(ARGV[9])\n"
    "if not h or h.gi ~= gi or h.conn ~= conn then\n"
    "  -- Not (yet) the holder: late news of an old connection, or news that\n"
    "  -- overtook its open. Parked for that open; expires otherwise.\n"
    "  for i = 0, n - 1 do\n"
    "    local b = 10 + i * 3\n"
    "    park(gi, conn, 'p:' .. ARGV[b], ARGV[b + 1] .. ' ' .. ARGV[b + 2])\n"
    "  end\n"
    "  park(gi, conn, 'close', (bye and '1' or '0') .. ',' .. I(at))\n"
    "  return {'ok', gst, {0}, CH}\n"
    "end\n"
    "local k = P .. 's:' .. sid\n"
    "for i = 0, n - 1 do\n"
    "  local b = 10 + i * 3\n"
    "  redis.call('HSET', k, 'p:' .. ARGV[b], ARGV[b + 1] .. ' ' .. ARGV[b + 2])\n"
    "end\n"
    "if bye then\n"
    "  end_session(sid, h)\n"
    "  return {'ok', gst, {2}, CH}\n"
    "end\n"
    "if h.live == '1' then\n"
    "  disconnect(sid, h, at, 'c', ttl, now)\n"
    "  return {'ok', gst, {1}, CH}\n"
    "end\n"
    "if h.dr ~= 'c' then\n"
    "  local d0 = tonumber(h.disc_at) or at\n"
    "  if at < d0 then\n"
    "    redis.call('HSET', k, 'disc_at', I(at), 'last_seen', I(at))\n"
    "    redis.call('ZADD', P .. 'exp', I(at + ttl), sid)\n"
    "  end\n"
    "  redis.call('HSET', k, 'dr', 'c')\n"
    "end\n"
    "return {'ok', gst, {0}, CH}\n";

/* SessRoomReq. ARGV: sid, conn, room, joined, ts, req_id, instance,
 * incarnation, dead_after_ms. data: {1 applied, 0 ignored or parked}. */
const char ss_lua_room[] = PRELUDE
    "local now = now_ms()\n"
    "local sid, conn, room, joined = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'\n"
    "local ts, rid = tonumber(ARGV[5]), ARGV[6]\n"
    "local gi, gst = gw_seen(ARGV[7], ARGV[8], now, tonumber(ARGV[9]))\n"
    "local h = sget(sid)\n"
    "local f = 'm:' .. room\n"
    "if not h or h.gi ~= gi or h.conn ~= conn then\n"
    "  local pv = redis.call('HGET', P .. 'pk:' .. gi .. '|' .. conn, f)\n"
    "  if not pv or not idlt(rid, mrid(pv)) then\n"
    "    park(gi, conn, f, (joined and 'J:' or 'X:') .. I(ts) .. ':' .. rid)\n"
    "  end\n"
    "  return {h and 'ok' or 'notfound', gst, {0}, CH}\n"
    "end\n"
    "local cur = h[f]\n"
    "if cur and mflag(cur) ~= 'O' and idlt(rid, mrid(cur)) then return {'ok', gst, {0}, CH} end\n"
    "local k = P .. 's:' .. sid\n"
    "if joined then\n"
    "  redis.call('HSET', k, f, 'J:' .. I(ts) .. ':' .. rid, 'last_seen', I(ts))\n"
    "  setm(room, h.user, sid, h.live == '1' and 'L' or 'D')\n"
    "else\n"
    "  redis.call('HSET', k, f, 'X:' .. I(ts) .. ':' .. rid, 'last_seen', I(ts))\n"
    "  setm(room, h.user, sid, nil)\n"
    "end\n"
    "return {'ok', gst, {1}, CH}\n";

/* SessQualityReq. ARGV: sid ("" = the user's latest), user ("" = any),
 * rtt, loss, jitter, bw, quality, at_ms, recommendations ("\n"-joined).
 * data: {sid}. */
const char ss_lua_quality[] = PRELUDE
    "local sid, user = ARGV[1], ARGV[2]\n"
    "if sid == '' then\n"
    "  sid = redis.call('GET', P .. 'u:' .. user)\n"
    "  if not sid then return {'notfound', 0, {}, CH} end\n"
    "end\n"
    "local k = P .. 's:' .. sid\n"
    "local owner = redis.call('HGET', k, 'user')\n"
    "if not owner then return {'notfound', 0, {}, CH} end\n"
    "if user ~= '' and owner ~= user then return {'forbidden', 0, {}, CH} end\n"
    "redis.call('HSET', k, 'q', ARGV[7], 'rtt', ARGV[3], 'loss', ARGV[4], 'jitter', ARGV[5], 'bw', ARGV[6],\n"
    "           'q_at', ARGV[8], 'recs', ARGV[9])\n"
    "return {'ok', 0, {sid}, CH}\n";

/* PresenceReq. ARGV: room. data: flat user, state (online/reconnecting).
 * Entries whose session key is gone (a backstop TTL fired while no sessiond
 * ran) are removed on the way, with their presence change. */
const char ss_lua_presence[] = PRELUDE
    "local room = ARGV[1]\n"
    "local a = redis.call('HGETALL', P .. 'r:' .. room)\n"
    "local out = {}\n"
    "for i = 1, #a, 2 do\n"
    "  local user, t = a[i], mparse(a[i + 1])\n"
    "  for sid in pairs(t) do\n"
    "    if redis.call('EXISTS', P .. 's:' .. sid) == 0 then\n"
    "      setm(room, user, sid, nil)\n"
    "      t[sid] = nil\n"
    "    end\n"
    "  end\n"
    "  local st = mstate(t)\n"
    "  if st then\n"
    "    out[#out + 1] = user\n"
    "    out[#out + 1] = st\n"
    "  end\n"
    "end\n"
    "return {'ok', 0, out, CH}\n";

/* SessGetReq. ARGV: sid ("" = the user's latest), user ("" = any owner).
 * data: {sid, expiry deadline or "0", {field, value, ...}}. */
const char ss_lua_get[] = PRELUDE
    "local sid, user = ARGV[1], ARGV[2]\n"
    "if sid == '' then\n"
    "  sid = redis.call('GET', P .. 'u:' .. user)\n"
    "  if not sid then return {'notfound', 0, {}, CH} end\n"
    "end\n"
    "local a = redis.call('HGETALL', P .. 's:' .. sid)\n"
    "if #a == 0 then return {'notfound', 0, {}, CH} end\n"
    "if user ~= '' then\n"
    "  for i = 1, #a, 2 do\n"
    "    if a[i] == 'user' and a[i + 1] ~= user then return {'forbidden', 0, {}, CH} end\n"
    "  end\n"
    "end\n"
    "local e = redis.call('ZSCORE', P .. 'exp', sid)\n"
    "return {'ok', 0, {sid, e or '0', a}, CH}\n";

/* gw.heartbeat. ARGV: instance, incarnation, dead_after_ms. data: {number of
 * sessions the incarnation holds}. */
const char ss_lua_heartbeat[] = PRELUDE
    "local now = now_ms()\n"
    "local gi, gst = gw_touch(ARGV[1], ARGV[2], now, tonumber(ARGV[3]))\n"
    "return {'ok', gst, {redis.call('SCARD', P .. 'gc:' .. gi)}, CH}\n";

/* The periodic sweep. ARGV: claim (1: kill gateways past their deadline;
 * the caller passes 0 while its own bus is not healthy, since it would not
 * see heartbeats), batch, ttl_ms. Marks up to batch sessions of dying
 * gateways disconnected (disc_at = the gateway's last sign of life), ends up
 * to batch expired sessions, drops up to batch sessions' O memberships past
 * their rejoin grace. data: {deaths, marked, expired, rejoins dropped, more,
 * {gateways declared dead}}. */
const char ss_lua_sweep[] = PRELUDE
    "local now = now_ms()\n"
    "local claim, batch, ttl = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local deaths, marked, expired, dropped = 0, 0, 0, 0\n"
    "local killed = {}\n"
    "if claim then\n"
    "  for _, gi in ipairs(redis.call('ZRANGEBYSCORE', P .. 'gwdl', '-inf', I(now), 'LIMIT', 0, 64)) do\n"
    "    if gw_kill(gi) == 1 then\n"
    "      deaths = deaths + 1\n"
    "      killed[#killed + 1] = gi\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local budget = batch\n"
    "while budget > 0 do\n"
    "  local gi = redis.call('LINDEX', P .. 'dying', 0)\n"
    "  if not gi then break end\n"
    "  local last = tonumber(redis.call('HGET', P .. 'gwl', gi)) or now\n"
    "  local sids = redis.call('SPOP', P .. 'gc:' .. gi, budget)\n"
    "  for _, sid in ipairs(sids) do\n"
    "    local h = sget(sid)\n"
    "    if h and h.live == '1' and h.gi == gi then\n"
    "      disconnect(sid, h, last, 'g', ttl, now, true)\n"
    "      marked = marked + 1\n"
    "    end\n"
    "  end\n"
    "  budget = budget - #sids\n"
    "  if redis.call('SCARD', P .. 'gc:' .. gi) == 0 then\n"
    "    redis.call('LPOP', P .. 'dying')\n"
    "    redis.call('HDEL', P .. 'gwl', gi)\n"
    "    local inst, inc = string.match(gi, '^(.*)|(%d+)$')\n"
    "    if inst and redis.call('HGET', P .. 'gwi', inst) == inc then\n"
    "      redis.call('HDEL', P .. 'gwi', inst)\n"
    "      redis.call('ZADD', P .. 'gwdead', I(now), gi)\n"
    "      redis.call('ZREMRANGEBYSCORE', P .. 'gwdead', '-inf', I(now - 3600000))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local more = budget <= 0 and 1 or 0\n"
    "local sids = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', I(now), 'LIMIT', 0, batch)\n"
    "for _, sid in ipairs(sids) do\n"
    "  if redis.call('ZREM', P .. 'exp', sid) == 1 then\n"
    "    local h = sget(sid)\n"
    "    if h and h.live ~= '1' then\n"
    "      end_session(sid, h)\n"
    "      expired = expired + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #sids == batch then more = 1 end\n"
    "sids = redis.call('ZRANGEBYSCORE', P .. 'rejoin', '-inf', I(now), 'LIMIT', 0, batch)\n"
    "for _, sid in ipairs(sids) do\n"
    "  if redis.call('ZREM', P .. 'rejoin', sid) == 1 then\n"
    "    local h = sget(sid)\n"
    "    if h and h.live == '1' then\n"
    "      for f, v in pairs(h) do\n"
    "        if string.sub(f, 1, 2) == 'm:' and mflag(v) == 'O' then\n"
    "          redis.call('HDEL', P .. 's:' .. sid, f)\n"
    "          setm(string.sub(f, 3), h.user, sid, nil)\n"
    "          dropped = dropped + 1\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #sids == batch then more = 1 end\n"
    "return {'ok', 0, {deaths, marked, expired, dropped, more, killed}, CH}\n";

/* One part of a gateway's snapshot. ARGV: instance, incarnation, snapshot
 * ts, key, token, dead_after_ms, ttl_ms, nconns, then per conn: conn, sid,
 * user, client, nrooms, rooms... The first part claims the reconcile for
 * token (another replica's parts get "claimed"), and each part that runs to
 * its end counts itself, so that the finish can tell a part went missing. Every listed connection is
 * live with exactly its rooms, unless newer news says otherwise: a
 * connection its gateway closed stays closed, a session another live
 * gateway holds (or this gateway's newer connection) stays there, a join,
 * leave or close after the snapshot (parked or not) wins.
 * data: {created, revived, taken over}. */
const char ss_lua_snap_part[] = PRELUDE
    "local now = now_ms()\n"
    "local inst, inc, sts = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local ck, seen = P .. 'snapc:' .. ARGV[4], P .. 'snaps:' .. ARGV[4]\n"
    "local tok = ARGV[5]\n"
    "local dead_after, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local c0 = redis.call('GET', ck)\n"
    "if not c0 then\n"
    "  redis.call('SET', ck, tok, 'PX', 60000)\n"
    "elseif c0 ~= tok then\n"
    "  return {'claimed', 0, {0, 0, 0}, CH}\n"
    "end\n"
    "local gi, gst = gw_touch(inst, inc, now, dead_after)\n"
    "if gst == 3 then return {'stale', gst, {0, 0, 0}, CH} end\n"
    "local function sync(sid, h, rooms)\n"
    "  local k = P .. 's:' .. sid\n"
    "  for f, v in pairs(h) do\n"
    "    if string.sub(f, 1, 2) == 'm:' then\n"
    "      local room, fl = string.sub(f, 3), mflag(v)\n"
    "      if not rooms[room] and fl == 'J' and mts(v) < sts then\n"
    "        redis.call('HDEL', k, f)\n"
    "        setm(room, h.user, sid, nil)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for room in pairs(rooms) do\n"
    "    local v = h['m:' .. room]\n"
    "    if not (v and mflag(v) == 'X' and mts(v) >= sts) then\n"
    "      if not v or mflag(v) ~= 'J' then redis.call('HSET', k, 'm:' .. room, 'J:' .. I(sts) .. ':0') end\n"
    "      setm(room, h.user, sid, 'L')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local made, revived, taken = 0, 0, 0\n"
    "local i = 9\n"
    "for _ = 1, tonumber(ARGV[8]) do\n"
    "  local conn, sid, user, client, nr = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])\n"
    "  local rooms = {}\n"
    "  for j = 1, nr do rooms[ARGV[i + 4 + j]] = true end\n"
    "  i = i + 5 + nr\n"
    "  local k = P .. 's:' .. sid\n"
    "  local h = sget(sid)\n"
    "  -- Another user's session is not this connection's: untouched, and not\n"
    "  -- counted as seen (its holder here, if any, is judged on its own).\n"
    "  if not (h and h.user ~= user) then redis.call('SADD', seen, sid) end\n"
    "  local take = false\n"
    "  if not h then\n"
    "    if redis.call('EXISTS', P .. 't:' .. sid) == 0 then\n"
    "      redis.call('HSET', k, 'user', user, 'created', I(sts), 'disconnects', '0')\n"
    "      h = {user = user, disconnects = '0'}\n"
    "      take = true\n"
    "      made = made + 1\n"
    "    end\n"
    "  elseif h.user ~= user then\n"
    "    h = nil\n"
    "  elseif h.gi == gi and h.conn == conn then\n"
    "    if h.live ~= '1' and h.dr ~= 'c' then\n"
    "      take = true\n"
    "      revived = revived + 1\n"
    "    end\n"
    "  elseif h.gi == gi then\n"
    "    -- The gateway's own later connection (its ids grow): it knows best.\n"
    "    if idlt(h.conn, conn) then\n"
    "      take = true\n"
    "      taken = taken + 1\n"
    "    end\n"
    "  elseif h.live ~= '1' or not gw_alive(h.gi, now) then\n"
    "    take = true\n"
    "    taken = taken + 1\n"
    "  end\n"
    "  if take then\n"
    "    if h.live == '1' then redis.call('SREM', P .. 'gc:' .. h.gi, sid) end\n"
    "    if h.gi ~= gi or h.conn ~= conn then\n"
    "      for f, v in pairs(h) do\n"
    "        if string.sub(f, 1, 2) == 'm:' and mflag(v) == 'J' then\n"
    "          h[f] = 'O' .. string.sub(v, 2)\n"
    "          redis.call('HSET', k, f, h[f])\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    redis.call('ZREM', P .. 'exp', sid)\n"
    "    redis.call('ZREM', P .. 'rejoin', sid)\n"
    "    redis.call('HSET', k, 'gi', gi, 'gw', inst, 'inc', inc, 'conn', conn, 'live', '1', 'disc_at', '0',\n"
    "               'last_seen', I(sts), 'client', client, 'okey', gi .. '|' .. conn, 'ores', '0,0', 'oat', I(sts),\n"
    "               'dr', '')\n"
    "    redis.call('PERSIST', k)\n"
    "    redis.call('SADD', P .. 'gc:' .. gi, sid)\n"
    "    redis.call('SET', P .. 'u:' .. user, sid)\n"
    "    h.live, h.gi, h.conn = '1', gi, conn\n"
    "  end\n"
    "  if h and h.live == '1' and h.gi == gi and h.conn == conn then\n"
    "    sync(sid, h, rooms)\n"
    "    unpark(sid, gi, conn, sts, ttl, now)\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', seen, 60000)\n"
    "local nk = P .. 'snapn:' .. ARGV[4]\n"
    "redis.call('INCR', nk)\n"
    "redis.call('PEXPIRE', nk, 60000)\n"
    "return {'ok', gst, {made, revived, taken}, CH}\n";

/* After the last part: sessions the incarnation holds that no part listed
 * and that were opened before the snapshot are disconnected at its ts.
 * ARGV: instance, incarnation, snapshot ts, key, token, ttl_ms, number of
 * part calls. data: {n}; "incomplete" (nothing done) when a part call did
 * not run to its end. */
const char ss_lua_snap_finish[] = PRELUDE
    "local now = now_ms()\n"
    "local inst, inc, sts = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local ck, seen = P .. 'snapc:' .. ARGV[4], P .. 'snaps:' .. ARGV[4]\n"
    "if redis.call('GET', ck) ~= ARGV[5] then return {'claimed', 0, {0}, CH} end\n"
    "local gi, ttl = inst .. '|' .. inc, tonumber(ARGV[6])\n"
    "local nk = P .. 'snapn:' .. ARGV[4]\n"
    "local got = tonumber(redis.call('GET', nk) or '0')\n"
    "redis.call('DEL', nk)\n"
    "if got ~= tonumber(ARGV[7]) then\n"
    "  redis.call('DEL', seen)\n"
    "  return {'incomplete', 0, {0}, CH}\n"
    "end\n"
    "local n = 0\n"
    "for _, sid in ipairs(redis.call('SDIFF', P .. 'gc:' .. gi, seen)) do\n"
    "  local h = sget(sid)\n"
    "  if h and h.live == '1' and h.gi == gi and (tonumber(h.oat) or 0) < sts then\n"
    "    disconnect(sid, h, sts, 's', ttl, now)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', seen)\n"
    "return {'ok', 0, {n}, CH}\n";

/* Gauges. data: {connected, disconnected, gateways alive, gateways dying}. */
const char ss_lua_stats[] = PRELUDE
    "local conn = 0\n"
    "for _, gi in ipairs(redis.call('HKEYS', P .. 'gwl')) do conn = conn + redis.call('SCARD', P .. 'gc:' .. gi) end\n"
    "return {'ok', 0, {conn, redis.call('ZCARD', P .. 'exp'), redis.call('ZCARD', P .. 'gwdl'),\n"
    "                  redis.call('LLEN', P .. 'dying')}, CH}\n";
