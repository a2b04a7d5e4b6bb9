/* test_sessiond_util.h -- a world for testing the sessiond binary: a real
 * redis-server, a real busd and sessiond on free loopback ports, plus
 * simulated gateways. Header-only (static), shared by tests/unit/
 * test_sessiond.c and bench/sessiond_bench.c.
 *
 * A simulated gateway (ts_gw) is what lib/rpc cannot be: a client with a
 * source of our choosing (instance, incarnation), so that one process can be
 * several gateways, or one gateway restarted. It sends requests on its own
 * DEALER with request ids, timeouts and retries (the same id each time, as
 * the real gateway does), publishes gw.heartbeat / gw.snapshot with correct
 * per-topic source_seq, and can answer SnapshotReqs with the connections the
 * test gives it.
 *
 * Bus capture: every presence.* event and every sess.snapshot request is
 * recorded in arrival order (ts_world.pev / snapreqs).
 */
#ifndef TETHER_TEST_SESSIOND_UTIL_H
#define TETHER_TEST_SESSIOND_UTIL_H

#include <inttypes.h>
#include <stdarg.h>

#include "bus.h"
#include "hmap.h"
#include "log.h"
#include "u64map.h"
#include "loop.h"
#include "zsock.h"
#include "test_replayd_util.h"

/* ---- the world ------------------------------------------------------------------------ */

typedef struct ts_pev {
    char room[136], user[136], state[16];
    uint64_t at_ms; /* monotonic, when captured */
} ts_pev;

typedef struct ts_world {
    loop *l;
    int redis_port, bus_in_port, bus_out_port, bus_http_port, rpc_port, http_port;
    pid_t redis, busd, sessiond;
    char rpc_ep[64], bus_in[64], bus_out[64], log[256];
    int ttl_s;
    zsock *pub, *sub;
    ts_pev *pev;
    size_t npev, cappev;
    uint64_t snapreqs[4096];
    size_t nsnapreq;
    void (*on_snapreq)(uint64_t id, void *arg);
    void *on_snapreq_arg;
} ts_world;

static ts_world W;

static inline void ts_bin_path(const char *name, char *buf, size_t n)
{
    char exe[512];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[k > 0 ? k : 0] = '\0';
    /* build/tests/test_x or build/bench/x -> build/bin/<name> */
    char *s = strrchr(exe, '/');
    if (s)
        *s = '\0';
    s = strrchr(exe, '/');
    if (s)
        *s = '\0';
    snprintf(buf, n, "%s/bin/%s", exe, name);
}

/* Runs the loop for ms. */
static inline void ts_spin(unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (tu_ms() < end)
        loop_run_once(W.l, (int)(end - tu_ms()));
}

/* Runs the loop until pred(arg) or ms pass; returns pred's last value. */
static inline int ts_wait(int (*pred)(void *), void *arg, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    int ok;
    while (!(ok = pred(arg)) && tu_ms() < end)
        loop_run_once(W.l, 5);
    return ok;
}

static inline void ts_on_bus(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    (void)arg;
    if (n != 2)
        return;
    bus_env *e = bus_decode(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                            zmq_msg_size(&parts[1]));
    if (!e)
        return;
    if (e->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_EVENT) {
        if (W.npev == W.cappev) {
            W.cappev = W.cappev ? W.cappev * 2 : 1024;
            W.pev = realloc(W.pev, W.cappev * sizeof(*W.pev));
        }
        ts_pev *p = &W.pev[W.npev++];
        snprintf(p->room, sizeof(p->room), "%s", e->presence_event->room);
        snprintf(p->user, sizeof(p->user), "%s", e->presence_event->user);
        snprintf(p->state, sizeof(p->state), "%s", e->presence_event->state);
        p->at_ms = tu_ms();
    } else if (e->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_SNAPSHOT_REQ) {
        if (W.nsnapreq < sizeof(W.snapreqs) / sizeof(W.snapreqs[0]))
            W.snapreqs[W.nsnapreq++] = e->snapshot_req->snapshot_id;
        if (W.on_snapreq)
            W.on_snapreq(e->snapshot_req->snapshot_id, W.on_snapreq_arg);
    }
    bus_env_free(e);
}

/* Runs the loop until no presence event has arrived for quiet_ms (at most
 * 5 s): events travel through busd while replies come straight back, so a
 * test takes its "from" index only once the bus is quiet. Returns W.npev. */
static inline size_t ts_quiet(unsigned quiet_ms)
{
    uint64_t end = tu_ms() + 5000;
    size_t n = W.npev;
    uint64_t since = tu_ms();
    while (tu_ms() < end && tu_ms() - since < quiet_ms) {
        loop_run_once(W.l, 5);
        if (W.npev != n) {
            n = W.npev;
            since = tu_ms();
        }
    }
    return W.npev;
}

/* The states of user in room, in order, from event index from on, joined by
 * ',' into buf ("" when none). */
static inline const char *ts_states(const char *room, const char *user, size_t from, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = from; i < W.npev; i++)
        if (!strcmp(W.pev[i].room, room) && !strcmp(W.pev[i].user, user))
            used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", used ? "," : "", W.pev[i].state);
    return buf;
}

/* How many events of room with state since from. */
static inline size_t ts_count(const char *room, const char *state, size_t from)
{
    size_t k = 0;
    for (size_t i = from; i < W.npev; i++)
        if ((!room || !strcmp(W.pev[i].room, room)) && !strcmp(W.pev[i].state, state))
            k++;
    return k;
}

/* The operator key every replica is started with (GET /v1/sessions). */
#define TS_OPKEY "test-operator-key-0123456789"

/* Starts a sessiond replica binding rpc_ep and HTTP on http_port, logging
 * to log (appended). */
static inline pid_t ts_start_replica(const char *rpc_ep, int http_port, const char *log, int ttl_s)
{
    static char e_redis[96], e_rpc[96], e_in[96], e_out[96], e_http[64], e_ttl[64];
    snprintf(e_redis, sizeof(e_redis), "TETHER_REDIS=redis://127.0.0.1:%d/0", W.redis_port);
    snprintf(e_rpc, sizeof(e_rpc), "TETHER_SESSIOND=%s", rpc_ep);
    snprintf(e_in, sizeof(e_in), "TETHER_BUS_IN=%s", W.bus_in);
    snprintf(e_out, sizeof(e_out), "TETHER_BUS_OUT=%s", W.bus_out);
    snprintf(e_http, sizeof(e_http), "TETHER_HTTP=127.0.0.1:%d", http_port);
    snprintf(e_ttl, sizeof(e_ttl), "TETHER_SESSION_TTL_S=%d", ttl_s);
    const char *env[] = { e_redis, e_rpc, e_in, e_out, e_http, e_ttl, "TETHER_LOG_LEVEL=info",
                          "TETHER_OPERATOR_KEY=" TS_OPKEY, NULL };
    char bin[600];
    ts_bin_path("sessiond", bin, sizeof(bin));
    const char *argv[] = { bin, NULL };
    return tu_spawn(argv, env, log);
}

static inline pid_t ts_start_sessiond(int ttl_s)
{
    W.ttl_s = ttl_s;
    return ts_start_replica(W.rpc_ep, W.http_port, W.log, ttl_s);
}

/* Polls /readyz (sessiond's Redis and bus round trip) on http_port for up
 * to ms. */
static inline int ts_ready_at(int http_port, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (tu_ms() < end) {
        if (tu_http_get(http_port, "/readyz", NULL, 0) == 200)
            return 1;
        loop_run_once(W.l, 20);
    }
    return 0;
}

static inline int ts_ready(unsigned ms) { return ts_ready_at(W.http_port, ms); }

/* Starts sessiond and waits until it is ready and judging gateways (its
 * bus has been stable for 3 s): from then on it behaves as a long-running
 * replica. */
static inline int ts_sessiond_up(int ttl_s)
{
    W.sessiond = ts_start_sessiond(ttl_s);
    if (W.sessiond <= 0 || !ts_ready(10000))
        return 0;
    ts_spin(3300);
    return 1;
}

static inline int ts_world_start(const char *name, int ttl_s)
{
    signal(SIGPIPE, SIG_IGN);
    log_init(name);
    log_level = LOG_LVL_WARN;
    W.l = loop_new();
    W.redis_port = tu_free_port();
    W.bus_in_port = tu_free_port();
    W.bus_out_port = tu_free_port();
    W.bus_http_port = tu_free_port();
    W.rpc_port = tu_free_port();
    W.http_port = tu_free_port();
    snprintf(W.rpc_ep, sizeof(W.rpc_ep), "tcp://127.0.0.1:%d", W.rpc_port);
    snprintf(W.bus_in, sizeof(W.bus_in), "tcp://127.0.0.1:%d", W.bus_in_port);
    snprintf(W.bus_out, sizeof(W.bus_out), "tcp://127.0.0.1:%d", W.bus_out_port);
    snprintf(W.log, sizeof(W.log), "%s/sessiond.log", tu_dir());
    fprintf(stderr, "# logs in %s\n", tu_dir());
    W.redis = tu_redis_start(W.redis_port);
    if (W.redis <= 0)
        return 0;
    static char e_in[96], e_out[96], e_http[64];
    snprintf(e_in, sizeof(e_in), "TETHER_BUS_IN=%s", W.bus_in);
    snprintf(e_out, sizeof(e_out), "TETHER_BUS_OUT=%s", W.bus_out);
    snprintf(e_http, sizeof(e_http), "TETHER_HTTP=127.0.0.1:%d", W.bus_http_port);
    const char *env[] = { e_in, e_out, e_http, "TETHER_LOG_LEVEL=warn", NULL };
    char bin[600], log[300];
    ts_bin_path("busd", bin, sizeof(bin));
    snprintf(log, sizeof(log), "%s/busd.log", tu_dir());
    const char *argv[] = { bin, NULL };
    W.busd = tu_spawn(argv, env, log);
    uint64_t end = tu_ms() + 5000;
    while (tu_http_get(W.bus_http_port, "/healthz", NULL, 0) != 200)
        if (tu_ms() > end)
            return 0;
        else
            loop_run_once(W.l, 20);
    void *p = zsock_socket(ZMQ_PUB), *s = zsock_socket(ZMQ_SUB);
    if (!p || !s || zmq_connect(p, W.bus_in) < 0 || zmq_connect(s, W.bus_out) < 0 ||
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "presence.", 9) < 0 ||
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "sess.snapshot", 13) < 0)
        return 0;
    W.pub = zsock_new(W.l, p, NULL, NULL);
    W.sub = zsock_new(W.l, s, ts_on_bus, NULL);
    if (!W.pub || !W.sub)
        return 0;
    /* sessiond's first SnapshotReq is the sign that our SUB is joined too. */
    if (!ts_sessiond_up(ttl_s))
        return 0;
    return W.nsnapreq > 0;
}

static inline void ts_world_stop(void)
{
    zsock_free(W.pub);
    zsock_free(W.sub);
    tu_stop(W.sessiond, SIGTERM, 3000);
    tu_stop(W.busd, SIGTERM, 3000);
    tu_stop(W.redis, SIGKILL, 2000);
    free(W.pev);
    zsock_ctx_term();
    loop_free(W.l);
}

/* ---- simulated gateways ---------------------------------------------------------------- */

typedef struct ts_gw ts_gw;
typedef void ts_cb(ts_gw *g, int status, const bus_env *rep, void *arg);

typedef struct ts_pend {
    ts_gw *g;
    uint64_t id;
    uint8_t *buf;
    size_t len;
    uint32_t timeout_ms, left;
    ts_cb *cb;
    void *arg;
    loop_timer t;
} ts_pend;

/* A connection as the gateway would list it in a snapshot. */
typedef struct ts_conn {
    uint64_t conn;
    char session[72], user[72];
    const char *rooms[8];
    size_t nrooms;
} ts_conn;

struct ts_gw {
    char instance[64];
    uint64_t incarnation;
    Tether__Bus__Source src;
    zsock *dealer;
    u64map *calls;
    uint64_t next_id;
    hmap *seqs; /* topic -> last source_seq */
    loop_timer hb_t;
    uint32_t hb_interval, connections;
    uint64_t last_hb_ms; /* monotonic, when the last heartbeat was published */
    unsigned long long retries, timeouts;
    /* Snapshot answering. */
    int answer_snapshots;
    uint32_t snap_parts;   /* split the answer in this many parts (>= 1) */
    uint32_t snap_drop_part; /* 0, or a part number never sent */
    ts_conn *conns;
    size_t nconns;
    unsigned snapshots_answered;
};

static inline void ts_gw_msg(zsock *s, zmq_msg_t *parts, size_t n, void *arg);

static inline ts_gw *ts_gw_new(const char *instance, uint64_t incarnation)
{
    ts_gw *g = calloc(1, sizeof(*g));
    snprintf(g->instance, sizeof(g->instance), "%s", instance);
    g->incarnation = incarnation;
    tether__bus__source__init(&g->src);
    g->src.service = (char *)"gateway";
    g->src.instance = g->instance;
    g->src.incarnation = incarnation;
    g->calls = u64map_new();
    g->seqs = hmap_new();
    g->next_id = incarnation << 8;
    g->snap_parts = 1;
    void *d = zsock_socket(ZMQ_DEALER);
    int one = 1;
    zmq_setsockopt(d, ZMQ_IMMEDIATE, &one, sizeof(one));
    zmq_connect(d, W.rpc_ep);
    g->dealer = zsock_new(W.l, d, ts_gw_msg, g);
    return g;
}

/* Also sends g's requests to another replica (round robin, as a DEALER does). */
static inline void ts_gw_connect(ts_gw *g, const char *rpc_ep) { zmq_connect(zsock_raw(g->dealer), rpc_ep); }

static inline void ts_call_finish(ts_pend *c, int status, const bus_env *rep)
{
    ts_gw *g = c->g;
    u64map_del(g->calls, c->id);
    loop_timer_stop(W.l, &c->t);
    ts_cb *cb = c->cb;
    void *arg = c->arg;
    free(c->buf);
    free(c);
    if (cb)
        cb(g, status, rep, arg);
}

static inline void ts_gw_free(ts_gw *g)
{
    if (!g)
        return;
    loop_timer_stop(W.l, &g->hb_t);
    u64map_iter it = { 0 };
    uint64_t k;
    void *v;
    while (u64map_next(g->calls, &it, &k, &v))
        ts_call_finish(v, -ECANCELED, NULL);
    u64map_free(g->calls);
    hmap_free(g->seqs);
    zsock_free(g->dealer);
    free(g->conns);
    free(g);
}

static inline void ts_gw_msg(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    ts_gw *g = arg;
    if (n != 2 || zmq_msg_size(&parts[0]) != 0)
        return;
    bus_env *e = tether__bus__envelope__unpack(NULL, zmq_msg_size(&parts[1]), zmq_msg_data(&parts[1]));
    if (!e)
        return;
    ts_pend *c = u64map_get(g->calls, e->req_id);
    if (c)
        ts_call_finish(c, 0, e);
    tether__bus__envelope__free_unpacked(e, NULL);
}

static inline void ts_call_send(ts_pend *c)
{
    static const char empty[1];
    const void *bufs[2] = { empty, c->buf };
    size_t lens[2] = { 0, c->len };
    zsock_send(c->g->dealer, bufs, lens, 2);
}

static inline void ts_call_timeout(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    ts_pend *c = arg;
    if (c->left <= 1) {
        c->g->timeouts++;
        ts_call_finish(c, -ETIMEDOUT, NULL);
        return;
    }
    c->left--;
    c->g->retries++;
    ts_call_send(c);
    loop_timer_start(l, &c->t, c->timeout_ms, 0, ts_call_timeout, c);
}

/* Sends req (borrowed) from g; cb(g, 0, rep) on a reply, or -ETIMEDOUT after
 * attempts tries of timeout_ms each. Returns the request id. */
static inline uint64_t ts_call_async(ts_gw *g, bus_env *req, uint32_t timeout_ms, uint32_t attempts, ts_cb *cb,
                                     void *arg)
{
    ts_pend *c = calloc(1, sizeof(*c));
    c->g = g;
    c->id = ++g->next_id;
    req->req_id = c->id;
    req->source = &g->src;
    req->ts = loop_wall_ms();
    c->len = tether__bus__envelope__get_packed_size(req);
    c->buf = malloc(c->len ? c->len : 1);
    tether__bus__envelope__pack(req, c->buf);
    c->timeout_ms = timeout_ms;
    c->left = attempts;
    c->cb = cb;
    c->arg = arg;
    u64map_put(g->calls, c->id, c);
    ts_call_send(c);
    loop_timer_start(W.l, &c->t, timeout_ms, 0, ts_call_timeout, c);
    return c->id;
}

typedef struct ts_sync {
    int done, status;
    bus_env *rep;
} ts_sync;

static inline void ts_sync_cb(ts_gw *g, int status, const bus_env *rep, void *arg)
{
    (void)g;
    ts_sync *s = arg;
    s->done = 1;
    s->status = status;
    if (rep) {
        size_t n = tether__bus__envelope__get_packed_size(rep);
        uint8_t *b = malloc(n ? n : 1);
        tether__bus__envelope__pack(rep, b);
        s->rep = tether__bus__envelope__unpack(NULL, n, b);
        free(b);
    }
}

static inline int ts_sync_done(void *arg) { return ((ts_sync *)arg)->done; }

/* A call, waited for (1 s per attempt, 5 attempts). Returns a copy of the
 * reply (bus_env_free) or NULL on timeout. */
static inline bus_env *ts_call(ts_gw *g, bus_env *req)
{
    ts_sync s = { 0 };
    ts_call_async(g, req, 1000, 5, ts_sync_cb, &s);
    ts_wait(ts_sync_done, &s, 8000);
    return s.rep;
}

/* ---- request builders ------------------------------------------------------------------ */

static inline bus_env *ts_open(ts_gw *g, const char *session, const char *user, uint64_t conn, int64_t at_ms)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq r = TETHER__BUS__SESS_OPEN_REQ__INIT;
    r.session = (char *)session;
    r.user = (char *)user;
    r.conn = conn;
    r.client = (char *)"test/1";
    r.at_ms = at_ms;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
    env.sess_open_req = &r;
    return ts_call(g, &env);
}

static inline void ts_close_env(bus_env *env, Tether__Bus__SessCloseReq *r, const char *session, uint64_t conn,
                                int bye, int64_t at_ms)
{
    tether__bus__envelope__init(env);
    tether__bus__sess_close_req__init(r);
    r->session = (char *)session;
    r->conn = conn;
    r->bye = bye;
    r->at_ms = at_ms;
    env->payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_CLOSE_REQ;
    env->sess_close_req = r;
}

static inline bus_env *ts_close(ts_gw *g, const char *session, uint64_t conn, int bye, int64_t at_ms)
{
    bus_env env;
    Tether__Bus__SessCloseReq r;
    ts_close_env(&env, &r, session, conn, bye, at_ms);
    return ts_call(g, &env);
}

static inline void ts_room_env(bus_env *env, Tether__Bus__SessRoomReq *r, const char *session, uint64_t conn,
                               const char *room, int joined)
{
    tether__bus__envelope__init(env);
    tether__bus__sess_room_req__init(r);
    r->session = (char *)session;
    r->conn = conn;
    r->room = (char *)room;
    r->joined = joined;
    env->payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ROOM_REQ;
    env->sess_room_req = r;
}

static inline bus_env *ts_room(ts_gw *g, const char *session, uint64_t conn, const char *room, int joined)
{
    bus_env env;
    Tether__Bus__SessRoomReq r;
    ts_room_env(&env, &r, session, conn, room, joined);
    return ts_call(g, &env);
}

static inline bus_env *ts_presence(ts_gw *g, const char *room)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__PresenceReq r = TETHER__BUS__PRESENCE_REQ__INIT;
    r.room = (char *)room;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REQ;
    env.presence_req = &r;
    return ts_call(g, &env);
}

static inline bus_env *ts_get(ts_gw *g, const char *session, const char *user)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessGetReq r = TETHER__BUS__SESS_GET_REQ__INIT;
    r.session = (char *)session;
    r.user = (char *)user;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REQ;
    env.sess_get_req = &r;
    return ts_call(g, &env);
}

/* The state of user in a PresenceRep ("" when absent). */
static inline const char *ts_member(const bus_env *rep, const char *user)
{
    if (!rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REP)
        return "?";
    for (size_t i = 0; i < rep->presence_rep->n_members; i++)
        if (!strcmp(rep->presence_rep->members[i]->user, user))
            return rep->presence_rep->members[i]->state;
    return "";
}

/* ---- bus publications ------------------------------------------------------------------ */

/* Publishes env (borrowed) on topic from g. skip > 0 burns that many
 * source_seq numbers first (a simulated loss). */
static inline void ts_gw_publish(ts_gw *g, const char *topic, bus_env *env, unsigned skip)
{
    uintptr_t seq = (uintptr_t)hmap_get(g->seqs, topic) + 1 + skip;
    hmap_put(g->seqs, topic, (void *)seq);
    env->topic = (char *)topic;
    env->source = &g->src;
    env->source_seq = seq;
    env->ts = loop_wall_ms();
    size_t len = tether__bus__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    tether__bus__envelope__pack(env, buf);
    const void *bufs[2] = { topic, buf };
    size_t lens[2] = { strlen(topic), len };
    zsock_send(W.pub, bufs, lens, 2);
    free(buf);
}

static inline void ts_gw_heartbeat(ts_gw *g, unsigned skip)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = g->hb_interval ? g->hb_interval : 1000;
    hb.connections = g->connections;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    env.heartbeat = &hb;
    ts_gw_publish(g, "gw.heartbeat", &env, skip);
    g->last_hb_ms = tu_ms();
}

static inline void ts_gw_hb_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    ts_gw_heartbeat(arg, 0);
}

/* Heartbeats every interval ms from now on (one at once). */
static inline void ts_gw_heartbeats(ts_gw *g, uint32_t interval)
{
    g->hb_interval = interval;
    loop_timer_start(W.l, &g->hb_t, 0, interval, ts_gw_hb_tick, g);
}

static inline void ts_gw_silence(ts_gw *g) { loop_timer_stop(W.l, &g->hb_t); }

/* Publishes g's connections (g->conns) as a snapshot answering id. */
static inline void ts_gw_snapshot(ts_gw *g, uint64_t id)
{
    uint32_t parts = g->snap_parts ? g->snap_parts : 1;
    size_t per = (g->nconns + parts - 1) / parts;
    for (uint32_t p = 1; p <= parts; p++) {
        size_t from = (p - 1) * per, to = from + per < g->nconns ? from + per : g->nconns;
        if (from > to)
            from = to;
        Tether__Bus__GwConn *gc = calloc(to - from + 1, sizeof(*gc));
        Tether__Bus__GwConn **gp = calloc(to - from + 1, sizeof(*gp));
        for (size_t i = from; i < to; i++) {
            Tether__Bus__GwConn *c = &gc[i - from];
            tether__bus__gw_conn__init(c);
            c->conn = g->conns[i].conn;
            c->session = g->conns[i].session;
            c->user = g->conns[i].user;
            c->n_rooms = g->conns[i].nrooms;
            c->rooms = (char **)g->conns[i].rooms;
            c->client = (char *)"test/1";
            gp[i - from] = c;
        }
        bus_env env = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__GwSnapshot s = TETHER__BUS__GW_SNAPSHOT__INIT;
        s.snapshot_id = id;
        s.part = p;
        s.parts = parts;
        s.n_conns = to - from;
        s.conns = gp;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_GW_SNAPSHOT;
        env.gw_snapshot = &s;
        /* A dropped part still uses its source_seq, as a real loss would. */
        if (p == g->snap_drop_part)
            hmap_put(g->seqs, "gw.snapshot", (void *)((uintptr_t)hmap_get(g->seqs, "gw.snapshot") + 1));
        else
            ts_gw_publish(g, "gw.snapshot", &env, 0);
        free(gc);
        free(gp);
    }
    g->snapshots_answered++;
}

/* Adds (or replaces, by conn) a connection to g's snapshot list. */
static inline ts_conn *ts_gw_conn(ts_gw *g, uint64_t conn, const char *session, const char *user)
{
    for (size_t i = 0; i < g->nconns; i++)
        if (g->conns[i].conn == conn)
            return &g->conns[i];
    g->conns = realloc(g->conns, (g->nconns + 1) * sizeof(*g->conns));
    ts_conn *c = &g->conns[g->nconns++];
    memset(c, 0, sizeof(*c));
    c->conn = conn;
    snprintf(c->session, sizeof(c->session), "%s", session);
    snprintf(c->user, sizeof(c->user), "%s", user);
    return c;
}

static inline void ts_gw_unconn(ts_gw *g, uint64_t conn)
{
    for (size_t i = 0; i < g->nconns; i++)
        if (g->conns[i].conn == conn) {
            g->conns[i] = g->conns[--g->nconns];
            return;
        }
}

#endif
