/* test_replayd.c -- the replayd binary against a real redis-server, both
 * started by the test on free loopback ports, driven over real ZeroMQ with
 * lib/rpc; its bus publications are read from a SUB socket bound where
 * replayd's PUB connects (TETHER_BUS_IN).
 *
 * Covers: validation (4400), contiguous seqs in request order, publications
 * in seq order, dedup (first seq + duplicate, not republished), a new
 * (later-sorting) epoch when the meta is lost, trim to the history size,
 * range after_seq / limit / more / from_oldest, an expired log, batched
 * ranges over three rooms, heads, NOSCRIPT recovery after SCRIPT FLUSH, a
 * Redis stall (timeout, dropped request, retry = first seq, head repair),
 * Redis killed and restarted, a pipelined throughput measurement (printed,
 * not a threshold), and SIGTERM draining to exit 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "bus.h"
#include "log.h"
#include "loop.h"
#include "rpc.h"
#include "zsock.h"
#include "test_replayd_util.h"

#define HISTORY 20
#define RD_BIG (64 * 1024) /* replayd's data limit */

static loop *L;
static rpc_client *C;
static zsock *SUB;
static int g_redis_port, g_rpc_port, g_http_port, g_bus_port;
static pid_t g_redis, g_replayd;
static char g_log[256];

/* ---- bus capture ----------------------------------------------------------------- */

static bus_env **g_evs;
static size_t g_nevs, g_capevs;
static unsigned long long g_perf_pubs;

static void on_bus(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    (void)arg;
    if (n != 2)
        return;
    bus_env *e = bus_decode(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                            zmq_msg_size(&parts[1]));
    if (!e)
        return;
    if (strncmp(e->topic, "room.perf.", 10) == 0) {
        g_perf_pubs++;
        bus_env_free(e);
        return;
    }
    if (g_nevs == g_capevs) {
        g_capevs = g_capevs ? g_capevs * 2 : 256;
        g_evs = realloc(g_evs, g_capevs * sizeof(*g_evs));
    }
    g_evs[g_nevs++] = e;
}

/* RoomMessages captured for room, in arrival order (up to max). */
static size_t room_msgs(const char *room, const Tether__Bus__RoomMessage **out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < g_nevs; i++) {
        const bus_env *e = g_evs[i];
        if (e->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE && strcmp(e->room_message->room, room) == 0) {
            if (k < max && out)
                out[k] = e->room_message;
            k++;
        }
    }
    return k;
}

/* The latest RoomHead captured for room, or NULL. */
static const Tether__Bus__RoomHead *room_head(const char *room)
{
    for (size_t i = g_nevs; i-- > 0;) {
        const bus_env *e = g_evs[i];
        if (e->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_HEAD && strcmp(e->room_head->room, room) == 0)
            return e->room_head;
    }
    return NULL;
}

static void spin(unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (tu_ms() < end)
        loop_run_once(L, (int)(end - tu_ms()) > 0 ? (int)(end - tu_ms()) : 0);
}

static int wait_msgs(const char *room, size_t n, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (room_msgs(room, NULL, 0) < n && tu_ms() < end)
        loop_run_once(L, 10);
    return room_msgs(room, NULL, 0) >= n;
}

/* ---- rpc helpers ------------------------------------------------------------------ */

typedef struct callres {
    int done;
    int status;
    bus_env *rep;
} callres;

static void on_rep(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    callres *r = arg;
    r->done = 1;
    r->status = status;
    if (rep) {
        /* rep is borrowed: keep a copy through a pack/unpack round trip. */
        size_t n = tether__bus__envelope__get_packed_size(rep);
        uint8_t *b = malloc(n ? n : 1);
        tether__bus__envelope__pack(rep, b);
        r->rep = tether__bus__envelope__unpack(NULL, n, b);
        free(b);
    }
}

static int run_until(const int *flag, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (!*flag && tu_ms() < end)
        loop_run_once(L, 10);
    return *flag;
}

static bus_env *call(bus_env *req, uint32_t timeout_ms, uint32_t attempts, int *status)
{
    callres r = { 0 };
    assert_true(rpc_call(C, req, timeout_ms, attempts, on_rep, &r) > 0);
    run_until(&r.done, timeout_ms * attempts + 2000);
    assert_true(r.done);
    if (status)
        *status = r.status;
    return r.rep;
}

static void append_env(bus_env *env, Tether__Bus__AppendReq *ar, const char *room, const char *user, const char *id,
                       const char *data)
{
    tether__bus__envelope__init(env);
    tether__bus__append_req__init(ar);
    ar->room = (char *)room;
    ar->user = (char *)user;
    ar->id = (char *)id;
    ar->data = (char *)data;
    env->payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REQ;
    env->append_req = ar;
}

/* One append, waited for. Returns the reply (free with bus_env_free) or NULL on timeout. */
static bus_env *append_ex(const char *room, const char *user, const char *id, const char *data, uint32_t timeout_ms,
                          uint32_t attempts)
{
    bus_env env;
    Tether__Bus__AppendReq ar;
    append_env(&env, &ar, room, user, id, data);
    int st;
    bus_env *rep = call(&env, timeout_ms, attempts, &st);
    return st == 0 ? rep : NULL;
}

static bus_env *append(const char *room, const char *user, const char *id, const char *data)
{
    return append_ex(room, user, id, data, 2000, 1);
}

/* An append carrying a floor (what a gateway delivered in the room). */
static bus_env *append_floor(const char *room, const char *id, const char *floor_epoch, uint64_t floor_seq)
{
    bus_env env;
    Tether__Bus__AppendReq ar;
    append_env(&env, &ar, room, "u", id, "1");
    ar.floor_epoch = (char *)floor_epoch;
    ar.floor_seq = floor_seq;
    int st;
    bus_env *rep = call(&env, 2000, 1, &st);
    return st == 0 ? rep : NULL;
}

/* Appends and checks it was sequenced: returns the AppendRep's seq; epoch copied out. */
static uint64_t append_ok(const char *room, const char *user, const char *id, const char *data, char *epoch,
                          int *dup)
{
    bus_env *rep = append(room, user, id, data);
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP);
    assert_string_equal(rep->append_rep->room, room);
    uint64_t seq = rep->append_rep->seq;
    if (epoch)
        strcpy(epoch, rep->append_rep->epoch);
    if (dup)
        *dup = rep->append_rep->duplicate;
    assert_true(rep->append_rep->ts > 1600000000000LL);
    bus_env_free(rep);
    return seq;
}

static uint32_t append_error(const char *room, const char *user, const char *id, const char *data)
{
    bus_env *rep = append(room, user, id, data);
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_ERROR);
    uint32_t code = rep->error->code;
    bus_env_free(rep);
    return code;
}

typedef struct ritem {
    const char *room;
    uint64_t after;
    uint32_t limit;
    int from_oldest;
} ritem;

/* A RangeReq of n items; returns the RangeRep envelope (checked). */
static bus_env *range_n(const ritem *items, size_t n)
{
    Tether__Bus__RangeItem its[8], *itp[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        tether__bus__range_item__init(&its[i]);
        its[i].room = (char *)items[i].room;
        its[i].after_seq = items[i].after;
        its[i].limit = items[i].limit;
        its[i].from_oldest = items[i].from_oldest;
        itp[i] = &its[i];
    }
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    rq.n_items = n;
    rq.items = itp;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    env.range_req = &rq;
    int st;
    bus_env *rep = call(&env, 3000, 1, &st);
    assert_int_equal(st, 0);
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP);
    assert_int_equal(rep->range_rep->n_rooms, n);
    return rep;
}

static bus_env *range1(const char *room, uint64_t after, uint32_t limit, int from_oldest)
{
    ritem it = { room, after, limit, from_oldest };
    return range_n(&it, 1);
}

/* Checks a RangeRoom: position fields and that messages are first..last. */
static void check_room(const Tether__Bus__RangeRoom *rr, const char *room, const char *epoch, uint64_t top,
                       uint64_t first_available, uint64_t first, uint64_t last, int more)
{
    assert_string_equal(rr->room, room);
    if (epoch)
        assert_string_equal(rr->epoch, epoch);
    assert_int_equal(rr->top, top);
    assert_int_equal(rr->first_available, first_available);
    assert_int_equal(rr->more, more);
    size_t want = last >= first ? (size_t)(last - first + 1) : 0;
    assert_int_equal(rr->n_messages, want);
    for (size_t i = 0; i < rr->n_messages; i++) {
        assert_int_equal(rr->messages[i]->seq, first + i);
        assert_string_equal(rr->messages[i]->epoch, rr->epoch);
        assert_string_equal(rr->messages[i]->room, room);
    }
}

/* A command on the database replayd uses (1). */
static redisReply *db1(const char *fmt, ...)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis_port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    freeReplyObject(redisCommand(c, "SELECT 1"));
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static int http_status(const char *path, char *body, size_t n) { return tu_http_get(g_http_port, path, body, n); }

static int wait_ready(int want, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    for (;;) {
        int st = http_status("/readyz", NULL, 0);
        if (st == want)
            return 1;
        if (tu_ms() >= end)
            return 0;
        spin(20);
    }
}

/* ---- setup ------------------------------------------------------------------------- */

static void replayd_path(char *buf, size_t n)
{
    const char *env = getenv("TETHER_REPLAYD_BIN");
    if (env) {
        snprintf(buf, n, "%s", env);
        return;
    }
    char exe[512];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[k > 0 ? k : 0] = '\0';
    /* build/tests/test_replayd -> build/bin/replayd */
    char *s = strrchr(exe, '/');
    if (s)
        *s = '\0';
    s = strrchr(exe, '/');
    if (s)
        *s = '\0';
    snprintf(buf, n, "%s/bin/replayd", exe);
}

static pid_t start_replayd(void)
{
    static char e_redis[96], e_rpc[64], e_bus[64], e_http[64];
    snprintf(e_redis, sizeof(e_redis), "TETHER_REDIS=redis://127.0.0.1:%d/1", g_redis_port);
    snprintf(e_rpc, sizeof(e_rpc), "TETHER_REPLAYD=tcp://127.0.0.1:%d", g_rpc_port);
    snprintf(e_bus, sizeof(e_bus), "TETHER_BUS_IN=tcp://127.0.0.1:%d", g_bus_port);
    snprintf(e_http, sizeof(e_http), "TETHER_HTTP=127.0.0.1:%d", g_http_port);
    const char *env[] = { e_redis, e_rpc, e_bus, e_http, "TETHER_HISTORY_SIZE=20", "TETHER_HISTORY_MIN_AGE_MS=0", "TETHER_LOG_LEVEL=info", NULL };
    char bin[600];
    replayd_path(bin, sizeof(bin));
    const char *argv[] = { bin, NULL };
    return tu_spawn(argv, env, g_log);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_replayd");
    log_level = LOG_LVL_WARN;
    L = loop_new();
    g_redis_port = tu_free_port();
    g_rpc_port = tu_free_port();
    g_http_port = tu_free_port();
    g_bus_port = tu_free_port();
    snprintf(g_log, sizeof(g_log), "%s/replayd.log", tu_dir());
    fprintf(stderr, "# logs in %s\n", tu_dir());
    g_redis = tu_redis_start(g_redis_port);
    if (g_redis <= 0)
        return -1;
    /* replayd's PUB connects to TETHER_BUS_IN; stand in for busd's XSUB. */
    void *s = zsock_socket(ZMQ_SUB);
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", g_bus_port);
    if (!s || zmq_bind(s, ep) < 0 || zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) < 0)
        return -1;
    SUB = zsock_new(L, s, on_bus, NULL);
    g_replayd = start_replayd();
    if (g_replayd <= 0 || !wait_ready(200, 10000))
        return -1;
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", g_rpc_port);
    C = rpc_client_new(L, ep, "test");
    if (!C)
        return -1;
    /* PUB/SUB joins late: publish until the first publication is seen. */
    uint64_t end = tu_ms() + 10000;
    for (int i = 0; tu_ms() < end; i++) {
        char id[32];
        snprintf(id, sizeof(id), "w%d", i);
        bus_env *rep = append("warm", "u", id, "0");
        bus_env_free(rep);
        if (wait_msgs("warm", 1, 100))
            return 0;
    }
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rpc_client_free(C);
    zsock_free(SUB);
    tu_stop(g_replayd, SIGKILL, 2000);
    tu_stop(g_redis, SIGKILL, 2000);
    for (size_t i = 0; i < g_nevs; i++)
        bus_env_free(g_evs[i]);
    free(g_evs);
    zsock_ctx_term();
    loop_free(L);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_validation(void **state)
{
    (void)state;
    char big[RD_BIG + 2];
    assert_int_equal(append_error("", "u", "a", "1"), 4400);
    assert_int_equal(append_error("a b", "u", "a", "1"), 4400);
    assert_int_equal(append_error("a#b", "u", "a", "1"), 4400);
    assert_int_equal(append_error("a{b", "u", "a", "1"), 4400); /* would break the hash tag */
    memset(big, 'r', 129);
    big[129] = '\0';
    assert_int_equal(append_error(big, "u", "a", "1"), 4400);
    big[128] = '\0';
    assert_int_equal(append_ok(big, "u", "a", "1", NULL, NULL), 1); /* 128 is fine */
    assert_int_equal(append_error("v.a", "u", "", "1"), 4400);
    assert_int_equal(append_error("v.a", "u", "a/b", "1"), 4400);
    assert_int_equal(append_error("v.a", "u", "a@b", "1"), 4400);
    memset(big, 'i', 65);
    big[65] = '\0';
    assert_int_equal(append_error("v.a", "u", big, "1"), 4400);
    big[64] = '\0';
    assert_int_equal(append_ok("v.a", "u", big, "1", NULL, NULL), 1);
    assert_int_equal(append_error("v.a", "", "a", "1"), 4400);
    memset(big, 'u', 129);
    big[129] = '\0';
    assert_int_equal(append_error("v.a", big, "a", "1"), 4400);
    /* data: 64 KiB is the limit. */
    memset(big, 'd', RD_BIG + 1);
    big[RD_BIG + 1] = '\0';
    assert_int_equal(append_error("v.b", "u", "a", big), 4400);
    big[RD_BIG] = '\0';
    assert_int_equal(append_ok("v.b", "u", "a", big, NULL, NULL), 1);
    assert_int_equal(append_ok("Az09._:@/-x", "u", "Az09._:-", "1", NULL, NULL), 1);
    /* A range with one bad room fails as a whole. */
    Tether__Bus__RangeItem it = TETHER__BUS__RANGE_ITEM__INIT, *itp = &it;
    it.room = (char *)"bad room";
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    rq.n_items = 1;
    rq.items = &itp;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    env.range_req = &rq;
    bus_env *rep = call(&env, 2000, 1, NULL);
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_ERROR);
    assert_int_equal(rep->error->code, 4400);
    bus_env_free(rep);
    /* Not a request replayd serves. */
    Tether__Bus__RoomHead rh = TETHER__BUS__ROOM_HEAD__INIT;
    tether__bus__envelope__init(&env);
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_HEAD;
    env.room_head = &rh;
    rep = call(&env, 2000, 1, NULL);
    assert_non_null(rep);
    assert_int_equal(rep->error->code, 4400);
    bus_env_free(rep);
}

static void test_seq_contiguous(void **state)
{
    (void)state;
    enum { N = 200 };
    static callres rs[N];
    static char ids[N][16], datas[N][32];
    memset(rs, 0, sizeof(rs));
    /* All in flight at once: replayd must not wait for one to send the next. */
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m%d", i);
        snprintf(datas[i], sizeof(datas[i]), "{\"n\":%d}", i);
        bus_env env;
        Tether__Bus__AppendReq ar;
        append_env(&env, &ar, "seq.a", "alice", ids[i], datas[i]);
        assert_true(rpc_call(C, &env, 5000, 1, on_rep, &rs[i]) > 0);
    }
    assert_true(run_until(&rs[N - 1].done, 5000));
    char epoch[80] = "";
    int64_t last_ts = 0;
    for (int i = 0; i < N; i++) {
        assert_true(run_until(&rs[i].done, 2000));
        assert_int_equal(rs[i].status, 0);
        const Tether__Bus__AppendRep *a = rs[i].rep->append_rep;
        assert_non_null(a);
        /* One client, one replica: seq follows request order exactly. */
        assert_int_equal(a->seq, (uint64_t)i + 1);
        assert_false(a->duplicate);
        if (i == 0) {
            strcpy(epoch, a->epoch);
            assert_int_equal(strlen(epoch), 20);
            assert_int_equal(strspn(epoch, "0123456789abcdef"), 20);
        }
        assert_string_equal(a->epoch, epoch);
        assert_true(a->ts >= last_ts);
        last_ts = a->ts;
        bus_env_free(rs[i].rep);
    }
    /* The publications: every one, in seq order, complete. */
    assert_true(wait_msgs("seq.a", N, 5000));
    static const Tether__Bus__RoomMessage *ms[N + 10];
    assert_int_equal(room_msgs("seq.a", ms, N + 10), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ms[i]->seq, (uint64_t)i + 1);
        assert_string_equal(ms[i]->epoch, epoch);
        assert_string_equal(ms[i]->id, ids[i]);
        assert_string_equal(ms[i]->from, "alice");
        assert_string_equal(ms[i]->data, datas[i]);
        assert_true(ms[i]->ts > 0);
    }
}

static void test_dedup(void **state)
{
    (void)state;
    char e1[80], e2[80];
    int dup;
    assert_int_equal(append_ok("dd.a", "u1", "x", "1", e1, &dup), 1);
    assert_false(dup);
    bus_env *first = append("dd.a", "u1", "x", "1");
    bus_env *again = append("dd.a", "u1", "x", "changed");
    assert_non_null(first);
    assert_non_null(again);
    assert_int_equal(again->append_rep->seq, 1);
    assert_true(again->append_rep->duplicate);
    assert_true(first->append_rep->duplicate);
    assert_string_equal(again->append_rep->epoch, e1);
    assert_int_equal(again->append_rep->ts, first->append_rep->ts);
    bus_env_free(first);
    bus_env_free(again);
    /* Same id, other user: a different publish. */
    assert_int_equal(append_ok("dd.a", "u2", "x", "2", e2, &dup), 2);
    assert_false(dup);
    /* Users and ids may both contain ':'; ("a:b", "c") is not ("a", "b:c"). */
    assert_int_equal(append_ok("dd.a", "a:b", "c", "3", NULL, &dup), 3);
    assert_false(dup);
    assert_int_equal(append_ok("dd.a", "a", "b:c", "4", NULL, &dup), 4);
    assert_false(dup);
    /* Repeats inside one batch (sent together, sequenced by one script):
     * the repeat is a duplicate of the first, with its seq. */
    static callres rs[4];
    memset(rs, 0, sizeof(rs));
    const char *bid[4] = { "y", "y", "z", "y" };
    for (int i = 0; i < 4; i++) {
        bus_env env;
        Tether__Bus__AppendReq ar;
        append_env(&env, &ar, "dd.a", "u1", bid[i], "6");
        assert_true(rpc_call(C, &env, 3000, 1, on_rep, &rs[i]) > 0);
    }
    assert_true(run_until(&rs[3].done, 3000));
    const uint64_t want_seq[4] = { 5, 5, 6, 5 };
    const int want_dup[4] = { 0, 1, 0, 1 };
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i].status, 0);
        assert_int_equal(rs[i].rep->append_rep->seq, want_seq[i]);
        assert_int_equal(rs[i].rep->append_rep->duplicate, want_dup[i]);
        bus_env_free(rs[i].rep);
    }
    /* Same id in another room: independent. */
    assert_int_equal(append_ok("dd.b", "u1", "x", "5", NULL, &dup), 1);
    assert_false(dup);
    /* Every seq is published in order. A duplicate of a message still in the
     * log is published again, with the stored copy (never the retry's data),
     * so a subscriber that missed the first publication gets it at once:
     * 1 (first), 1, 1 (the two duplicates), 2, 3, 4, 5, 6. Duplicates inside
     * one batch are not re-published: their original is in the same batch. */
    assert_true(wait_msgs("dd.a", 8, 3000));
    const Tether__Bus__RoomMessage *ms[64];
    size_t n = room_msgs("dd.a", ms, 64);
    /* At least those 8; more only if lib/rpc retried an attempt under load,
     * and then only copies of seqs already published. */
    assert_true(n >= 8 && n <= 64);
    uint64_t top = 0;
    size_t seq1 = 0;
    for (size_t i = 0; i < n; i++) {
        if (ms[i]->seq > top) {
            assert_int_equal(ms[i]->seq, top + 1); /* new seqs appear in order, none skipped */
            top = ms[i]->seq;
        }
        if (ms[i]->seq == 1) {
            seq1++;
            assert_string_equal(ms[i]->data, "1");  /* the stored copy, never the retry's "changed" */
            assert_string_equal(ms[i]->id, "x");
            assert_string_equal(ms[i]->from, "u1");
            assert_int_equal(ms[i]->ts, ms[0]->ts);
        }
    }
    assert_int_equal(top, 6);
    assert_true(seq1 >= 3);
    /* The dedup record is in the room's current bucket, which lives
     * 2 x TETHER_DEDUP_TTL_S + 1 s (600 s) from its first write. */
    redisReply *r = db1("KEYS tether:{dd.a}:dd:*");
    assert_non_null(r);
    assert_true(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->elements <= 2);
    char key[128];
    snprintf(key, sizeof(key), "%s", r->element[r->elements - 1]->str);
    if (r->elements == 2 && strcmp(r->element[0]->str, key) > 0)
        snprintf(key, sizeof(key), "%s", r->element[0]->str); /* the later bucket */
    freeReplyObject(r);
    r = db1("HGET %s 2:u1:x", key);
    assert_true(r && r->type == REDIS_REPLY_STRING && strstr(r->str, ":1:") != NULL);
    freeReplyObject(r);
    r = db1("TTL %s", key);
    assert_non_null(r);
    assert_true(r->integer > 1190 && r->integer <= 1201);
    freeReplyObject(r);
}

static void test_new_epoch(void **state)
{
    (void)state;
    char e1[80], e2[80];
    assert_int_equal(append_ok("ep.a", "u", "a1", "1", e1, NULL), 1);
    assert_int_equal(append_ok("ep.a", "u", "a2", "2", NULL, NULL), 2);
    /* Lose the meta (as a flush or an eviction would). */
    redisReply *r = db1("DEL tether:{ep.a}:meta");
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    spin(3); /* the epoch's time prefix is in ms: make the order visible */
    assert_int_equal(append_ok("ep.a", "u", "a3", "3", e2, NULL), 1);
    assert_string_not_equal(e1, e2);
    assert_int_equal(strlen(e2), 20);
    /* A later epoch sorts after the earlier one (the gateway relies on it). */
    assert_true(strcmp(e2, e1) > 0);
    /* The old epoch's log is gone with it: nothing of epoch 1 is served as epoch 2. */
    bus_env *rep = range1("ep.a", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "ep.a", e2, 1, 1, 1, 1, 0);
    assert_string_equal(rep->range_rep->rooms[0]->messages[0]->id, "a3");
    bus_env_free(rep);
    /* A retry of a publish acknowledged in the old epoch still gets its first ack. */
    rep = append("ep.a", "u", "a1", "1");
    assert_non_null(rep);
    assert_true(rep->append_rep->duplicate);
    assert_string_equal(rep->append_rep->epoch, e1);
    assert_int_equal(rep->append_rep->seq, 1);
    bus_env_free(rep);
}

/* Redis came back older than what it acknowledged (AOF everysec after a
 * crash, a restored backup): the room's meta keeps its epoch but its top
 * goes back. Handing those seqs out again would give subscribers a second
 * message at a seq they already have, which they drop: a silent hole. The
 * room must start a new epoch instead, whether the floor is replayd's own
 * memory or a gateway's; and a floor at or below top changes nothing. */
static void test_rollback_new_epoch(void **state)
{
    (void)state;
    char e1[80], e2[80];
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "r%d", i);
        assert_int_equal(append_ok("rb.a", "u", id, "1", i == 1 ? e1 : NULL, NULL), (uint64_t)i);
    }
    /* The rollback: top 5 -> 3, the log with it. */
    redisReply *r = db1("HSET tether:{rb.a}:meta top 3");
    freeReplyObject(r);
    r = db1("LTRIM tether:{rb.a}:log 0 2");
    freeReplyObject(r);
    spin(3);
    /* replayd handed out 5 itself: a new epoch, from 1. */
    assert_int_equal(append_ok("rb.a", "u", "r6", "1", e2, NULL), 1);
    assert_string_not_equal(e1, e2);
    assert_true(strcmp(e2, e1) > 0);
    bus_env *rep = range1("rb.a", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "rb.a", e2, 1, 1, 1, 1, 0);
    bus_env_free(rep);
    /* A retry of a publish of the old epoch is answered as it was (e1): that
     * must not replace what replayd knows of the new one. */
    assert_int_equal(append_ok("rb.a", "u", "r7", "1", NULL, NULL), 2);
    int dup = 0;
    char e1b[80];
    assert_int_equal(append_ok("rb.a", "u", "r1", "1", e1b, &dup), 1);
    assert_true(dup);
    assert_string_equal(e1b, e1);
    r = db1("HSET tether:{rb.a}:meta top 1");
    freeReplyObject(r);
    r = db1("LTRIM tether:{rb.a}:log 0 0");
    freeReplyObject(r);
    spin(3);
    char e3[80];
    assert_int_equal(append_ok("rb.a", "u", "r8", "1", e3, NULL), 1);
    assert_string_not_equal(e3, e2);

    /* A room this replayd never appended to: only the gateway's floor knows. */
    const char *ep = "00000000000000000001";
    r = db1("HSET tether:{rb.b}:meta epoch 00000000000000000001 top 7");
    freeReplyObject(r);
    /* Floors at or below top, or of another epoch: the epoch goes on. */
    rep = append_floor("rb.b", "b8", ep, 7);
    assert_non_null(rep);
    assert_string_equal(rep->append_rep->epoch, ep);
    assert_int_equal(rep->append_rep->seq, 8);
    bus_env_free(rep);
    rep = append_floor("rb.b", "b9", "00000000000000000000", 100);
    assert_non_null(rep);
    assert_string_equal(rep->append_rep->epoch, ep);
    assert_int_equal(rep->append_rep->seq, 9);
    bus_env_free(rep);
    /* A gateway delivered up to 12 in this epoch: top 9 was rolled back. */
    rep = append_floor("rb.b", "b10", ep, 12);
    assert_non_null(rep);
    assert_string_not_equal(rep->append_rep->epoch, ep);
    assert_int_equal(rep->append_rep->seq, 1);
    assert_false(rep->append_rep->duplicate);
    bus_env_free(rep);
}

static void test_trim_and_range(void **state)
{
    (void)state;
    char epoch[80];
    for (int i = 1; i <= 30; i++) {
        char id[16], data[32];
        snprintf(id, sizeof(id), "m%d", i);
        snprintf(data, sizeof(data), "{\"n\":%d}", i);
        assert_int_equal(append_ok("tr.a", "bob", id, data, epoch, NULL), (uint64_t)i);
    }
    /* Everything still stored: the last HISTORY. */
    bus_env *rep = range1("tr.a", 0, 0, 0);
    const Tether__Bus__RangeRoom *rr = rep->range_rep->rooms[0];
    check_room(rr, "tr.a", epoch, 30, 30 - HISTORY + 1, 11, 30, 0);
    assert_string_equal(rr->messages[0]->id, "m11");
    assert_string_equal(rr->messages[0]->from, "bob");
    assert_string_equal(rr->messages[0]->data, "{\"n\":11}");
    assert_true(rr->messages[0]->ts > 1600000000000LL);
    assert_true(rr->messages[19]->ts >= rr->messages[0]->ts);
    bus_env_free(rep);
    /* after_seq */
    rep = range1("tr.a", 25, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 26, 30, 0);
    bus_env_free(rep);
    /* limit + more */
    rep = range1("tr.a", 12, 3, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 13, 15, 1);
    bus_env_free(rep);
    /* limit that ends exactly at top: no more */
    rep = range1("tr.a", 27, 3, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 28, 30, 0);
    bus_env_free(rep);
    /* from_oldest ignores after_seq */
    rep = range1("tr.a", 25, 2, 1);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 11, 12, 1);
    bus_env_free(rep);
    /* at or past top: nothing */
    rep = range1("tr.a", 30, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 1, 0, 0);
    bus_env_free(rep);
    rep = range1("tr.a", 1000, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 11, 1, 0, 0);
    bus_env_free(rep);
    /* a room that never existed */
    rep = range1("tr.none", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.none", "", 0, 1, 1, 0, 0);
    bus_env_free(rep);
    /* TTLs: log = history TTL, meta >= 24 h. */
    redisReply *r = db1("TTL tether:{tr.a}:log");
    assert_true(r && r->integer > 590 && r->integer <= 600);
    freeReplyObject(r);
    r = db1("TTL tether:{tr.a}:meta");
    assert_true(r && r->integer > 86000 && r->integer <= 86400);
    freeReplyObject(r);
    r = db1("LLEN tether:{tr.a}:log");
    assert_true(r && r->integer == HISTORY);
    freeReplyObject(r);
    /* The log expired but the meta did not: same epoch, a trim, no new epoch. */
    freeReplyObject(db1("DEL tether:{tr.a}:log"));
    rep = range1("tr.a", 5, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 30, 31, 1, 0, 0);
    bus_env_free(rep);
    char e2[80];
    assert_int_equal(append_ok("tr.a", "bob", "m31", "31", e2, NULL), 31);
    assert_string_equal(e2, epoch);
    rep = range1("tr.a", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "tr.a", epoch, 31, 31, 31, 31, 0);
    bus_env_free(rep);
}

static void test_batched_range(void **state)
{
    (void)state;
    char e1[80], e2[80];
    for (int i = 1; i <= 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "%d", i);
        append_ok("b.1", "u", id, "x", e1, NULL);
    }
    for (int i = 1; i <= 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "%d", i);
        append_ok("b.2", "u", id, "y", e2, NULL);
    }
    double ranges0 = tu_metric(g_http_port, "tether_replayd_ranges_total");
    ritem items[3] = { { "b.2", 2, 0, 0 }, { "b.1", 0, 0, 1 }, { "b.3", 0, 0, 0 } };
    bus_env *rep = range_n(items, 3);
    /* One reply, rooms in request order. */
    check_room(rep->range_rep->rooms[0], "b.2", e2, 5, 1, 3, 5, 0);
    check_room(rep->range_rep->rooms[1], "b.1", e1, 3, 1, 1, 3, 0);
    check_room(rep->range_rep->rooms[2], "b.3", "", 0, 1, 1, 0, 0);
    bus_env_free(rep);
    assert_true(tu_metric(g_http_port, "tether_replayd_ranges_total") == ranges0 + 1);
    /* The same room several times in one request is fine too. */
    ritem same[3] = { { "b.2", 0, 2, 0 }, { "b.2", 2, 2, 0 }, { "b.2", 4, 2, 0 } };
    rep = range_n(same, 3);
    check_room(rep->range_rep->rooms[0], "b.2", e2, 5, 1, 1, 2, 1);
    check_room(rep->range_rep->rooms[1], "b.2", e2, 5, 1, 3, 4, 1);
    check_room(rep->range_rep->rooms[2], "b.2", e2, 5, 1, 5, 5, 0);
    bus_env_free(rep);
}

static void test_heads(void **state)
{
    (void)state;
    char epoch[80];
    append_ok("hd.a", "u", "1", "x", NULL, NULL);
    append_ok("hd.a", "u", "2", "x", epoch, NULL);
    uint64_t end = tu_ms() + 3000;
    const Tether__Bus__RoomHead *h = NULL;
    while (tu_ms() < end && !(h = room_head("hd.a")))
        loop_run_once(L, 20);
    assert_non_null(h);
    assert_int_equal(h->seq, 2);
    assert_string_equal(h->epoch, epoch);
}

static void test_noscript(void **state)
{
    (void)state;
    redisReply *r = db1("SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    char epoch[80];
    assert_int_equal(append_ok("ns.a", "u", "1", "x", epoch, NULL), 1);
    assert_int_equal(append_ok("ns.a", "u", "2", "x", NULL, NULL), 2);
    bus_env *rep = range1("ns.a", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "ns.a", epoch, 2, 1, 1, 2, 0);
    bus_env_free(rep);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_script_reloads_total{conn=\"append\"}") >= 1);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_script_reloads_total{conn=\"read\"}") >= 1);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_reconnects_total{conn=\"append\"}") == 0);
}

static void test_redis_stall(void **state)
{
    (void)state;
    char epoch[80];
    assert_int_equal(append_ok("st.a", "u", "1", "x", epoch, NULL), 1);
    double dropped0 = tu_metric(g_http_port, "tether_replayd_requests_dropped_total{reason=\"store\"}");
    /* Redis stops answering for 2 s with this append on the wire. */
    redisContext *blocker = tu_redis_block(g_redis_port, "2");
    assert_non_null(blocker);
    bus_env env;
    Tether__Bus__AppendReq ar;
    append_env(&env, &ar, "st.a", "u", "2", "y");
    int st;
    bus_env *rep = call(&env, 1600, 1, &st);
    /* No answer: replayd gave up after its 1 s Redis deadline and dropped it. */
    assert_int_equal(st, -ETIMEDOUT);
    assert_null(rep);
    assert_true(tu_metric(g_http_port, "tether_replayd_requests_dropped_total{reason=\"store\"}") > dropped0);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_timeouts_total{conn=\"append\"}") >= 1);
    /* The client retries as the gateway would (same request, 1 s x 10). Redis
     * did receive the first attempt before it stalled, so the retry must get
     * that first seq back as a duplicate, or sequence it now: never twice. */
    rep = append_ex("st.a", "u", "2", "y", 1000, 10);
    assert_non_null(rep);
    assert_int_equal(rep->append_rep->seq, 2);
    int was_dup = rep->append_rep->duplicate;
    bus_env_free(rep);
    redisFree(blocker);
    bus_env *rr = range1("st.a", 0, 0, 0);
    check_room(rr->range_rep->rooms[0], "st.a", epoch, 2, 1, 1, 2, 0);
    assert_string_equal(rr->range_rep->rooms[0]->messages[1]->id, "2");
    bus_env_free(rr);
    /* If the first attempt's publication never happened (duplicate), a head
     * announcing seq 2 tells subscribers to read it. */
    uint64_t end = tu_ms() + 3000;
    const Tether__Bus__RoomHead *h = NULL;
    while (tu_ms() < end && !((h = room_head("st.a")) && h->seq == 2))
        loop_run_once(L, 20);
    assert_non_null(h);
    assert_int_equal(h->seq, 2);
    fprintf(stderr, "# stalled append: retry was %s\n", was_dup ? "a duplicate (first attempt ran)" : "sequenced");
}

static void test_redis_restart(void **state)
{
    (void)state;
    char e1[80], e2[80], body[4096];
    assert_int_equal(append_ok("rs.a", "u", "1", "x", e1, NULL), 1);
    double reconnects0 = tu_metric(g_http_port, "tether_replayd_redis_reconnects_total{conn=\"append\"}");
    tu_stop(g_redis, SIGKILL, 2000);
    g_redis = 0;
    assert_true(wait_ready(503, 3000));
    assert_int_equal(http_status("/readyz", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "\"ready\":false"));
    assert_int_equal(http_status("/healthz", NULL, 0), 200);
    /* While Redis is down, appends are not answered (the client retries). */
    bus_env *rep = append_ex("rs.a", "u", "2", "y", 500, 1);
    assert_null(rep);
    g_redis = tu_redis_start(g_redis_port);
    assert_true(g_redis > 0);
    assert_true(wait_ready(200, 10000));
    /* Redis came back empty (no persistence here): a new epoch from seq 1. */
    assert_int_equal(append_ok("rs.a", "u", "3", "z", e2, NULL), 1);
    assert_string_not_equal(e1, e2);
    assert_true(strcmp(e2, e1) > 0);
    rep = range1("rs.a", 0, 0, 0);
    check_room(rep->range_rep->rooms[0], "rs.a", e2, 1, 1, 1, 1, 0);
    bus_env_free(rep);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_reconnects_total{conn=\"append\"}") > reconnects0);
    assert_true(tu_metric(g_http_port, "tether_replayd_redis_reconnects_total{conn=\"read\"}") >= 1);
}

/* ---- throughput ---------------------------------------------------------------------- */

typedef struct perf {
    int sent, done, ok, target, window, rooms;
    char data[128];
} perf;

static perf P;
static void perf_send(void);

static void on_perf(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    (void)arg;
    P.done++;
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP)
        P.ok++;
    if (P.sent < P.target)
        perf_send();
}

static void perf_send(void)
{
    char room[32], id[32];
    snprintf(room, sizeof(room), "perf.%d.%d", P.rooms, P.sent % P.rooms);
    snprintf(id, sizeof(id), "p%d", P.sent);
    bus_env env;
    Tether__Bus__AppendReq ar;
    append_env(&env, &ar, room, "loadgen", id, P.data);
    rpc_call(C, &env, 10000, 1, on_perf, NULL);
    P.sent++;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, stt = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* Sends target appends over rooms with window in flight; prints the rate,
 * replayd's and Redis's CPU per append and the mean batch size. */
static void throughput(int rooms, int target, int window)
{
    memset(&P, 0, sizeof(P));
    P.target = target;
    P.window = window;
    P.rooms = rooms;
    memset(P.data, 'x', 100);
    P.data[0] = '"';
    P.data[99] = '"';
    double cpu_r0 = proc_cpu_s(g_replayd), cpu_db0 = proc_cpu_s(g_redis);
    double batches0 = tu_metric(g_http_port, "tether_replayd_append_batches_total");
    uint64_t t0 = tu_ms();
    while (P.sent < P.window)
        perf_send();
    uint64_t end = t0 + 60000;
    while (P.done < P.target && tu_ms() < end)
        loop_run_once(L, 10);
    double secs = (double)(tu_ms() - t0) / 1000.0;
    double cpu_r = proc_cpu_s(g_replayd) - cpu_r0, cpu_db = proc_cpu_s(g_redis) - cpu_db0;
    double batches = tu_metric(g_http_port, "tether_replayd_append_batches_total") - batches0;
    int ok = P.ok ? P.ok : 1;
    fprintf(stderr,
            "# throughput, %d room(s): %d acknowledged appends in %.2f s = %.0f/s (window %d, 100-byte data); "
            "replayd %.1f us/append, redis %.1f us/append, %.1f appends per script call\n",
            rooms, P.ok, secs, P.ok / secs, P.window, cpu_r * 1e6 / ok, cpu_db * 1e6 / ok,
            batches > 0 ? P.ok / batches : 0.0);
    assert_int_equal(P.done, P.target);
    assert_int_equal(P.ok, P.target);
    /* Spot check: one room holds its last HISTORY messages, contiguous. */
    char room[32];
    snprintf(room, sizeof(room), "perf.%d.%d", rooms, rooms - 1);
    bus_env *rep = range1(room, 0, 0, 0);
    const Tether__Bus__RangeRoom *rr = rep->range_rep->rooms[0];
    assert_int_equal(rr->top, (uint64_t)(target / rooms));
    check_room(rr, room, NULL, rr->top, rr->top - HISTORY + 1, rr->top - HISTORY + 1, rr->top, 0);
    bus_env_free(rep);
}

static void test_throughput(void **state)
{
    (void)state;
    fprintf(stderr, "# (the load generator, replayd and redis share this machine's cores)\n");
    throughput(100, 60000, 2000);
    throughput(1, 60000, 2000);
}

static void test_sigterm(void **state)
{
    (void)state;
    /* Appends in flight when SIGTERM arrives are still answered. */
    enum { N = 100 };
    static callres rs[N];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t%d", i);
        bus_env env;
        Tether__Bus__AppendReq ar;
        append_env(&env, &ar, "term.a", "u", id, "1");
        rpc_call(C, &env, 3000, 1, on_rep, &rs[i]);
    }
    assert_true(run_until(&rs[0].done, 3000));
    kill(g_replayd, SIGTERM);
    uint64_t end = tu_ms() + 8000;
    int st = -1;
    while (tu_ms() < end) {
        loop_run_once(L, 10);
        if (waitpid(g_replayd, &st, WNOHANG) == g_replayd)
            break;
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    g_replayd = 0;
    assert_true(run_until(&rs[N - 1].done, 4000));
    int answered = 0;
    for (int i = 0; i < N; i++) {
        if (rs[i].status == 0) {
            answered++;
            assert_int_equal(rs[i].rep->append_rep->seq, (uint64_t)answered);
        }
        bus_env_free(rs[i].rep);
    }
    assert_true(answered >= 1);
    fprintf(stderr, "# SIGTERM: %d of %d appends in flight were answered, exit status 0\n", answered, N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_seq_contiguous),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_new_epoch),
        cmocka_unit_test(test_rollback_new_epoch),
        cmocka_unit_test(test_trim_and_range),
        cmocka_unit_test(test_batched_range),
        cmocka_unit_test(test_heads),
        cmocka_unit_test(test_noscript),
        cmocka_unit_test(test_redis_stall),
        cmocka_unit_test(test_throughput),
        cmocka_unit_test(test_redis_restart),
        cmocka_unit_test(test_sigterm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
