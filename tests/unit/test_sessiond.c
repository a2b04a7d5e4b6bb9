/* test_sessiond.c -- the sessiond binary against a real redis-server and a
 * real busd, all started by the test on free loopback ports, driven by
 * simulated gateways (test_sessiond_util.h) over real ZeroMQ: requests on
 * DEALER sockets with retries, heartbeats and snapshots on the bus, presence
 * events read back from the bus.
 *
 * Covers: open / close / resume within the TTL (resumed, exact
 * disconnected_ms), retried and late requests, another user's session
 * (4503), bye, two tabs, PresenceReq, quality, validation (4400), a gateway
 * dying with 200 sessions (all reconnecting within 3 s of its silence, then
 * online on another gateway, zero offline), a restarted gateway (new
 * incarnation), a gateway wrongly declared dead coming back (snapshot),
 * sessiond kill -9 and restart with a snapshot reconcile, sessiond kill -9
 * during churn, bus loss (source_seq gap) and an incomplete snapshot
 * (re-request), the HTTP API and metrics, expiry after the TTL and the
 * rejoin grace (TTL 2 s), and SIGTERM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_sessiond_util.h"

#define TTL_S 30

static ts_gw *GA;   /* a gateway alive for the whole run */
static ts_gw *ANSWERING[16];
static size_t NANSWERING;

/* Gateways that answer SnapshotReqs (as real ones do). */
static void answer_snapshots(uint64_t id, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < NANSWERING; i++)
        if (ANSWERING[i]->answer_snapshots)
            ts_gw_snapshot(ANSWERING[i], id);
}

static void answering(ts_gw *g)
{
    g->answer_snapshots = 1;
    ANSWERING[NANSWERING++] = g;
}

static void not_answering(ts_gw *g)
{
    for (size_t i = 0; i < NANSWERING; i++)
        if (ANSWERING[i] == g)
            ANSWERING[i] = ANSWERING[--NANSWERING];
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int64_t open_ok(ts_gw *g, const char *sid, const char *user, uint64_t conn, int64_t at, int *resumed)
{
    bus_env *rep = ts_open(g, sid, user, conn, at);
    assert_non_null(rep);
    if (rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REP)
        fail_msg("open %s: payload %d (error %u %s)", sid, rep->payload_case,
                 rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR ? rep->error->code : 0,
                 rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR ? rep->error->reason : "");
    assert_string_equal(rep->sess_open_rep->user, user);
    int64_t d = rep->sess_open_rep->disconnected_ms;
    if (resumed)
        *resumed = rep->sess_open_rep->resumed;
    bus_env_free(rep);
    return d;
}

static void ack_ok(bus_env *rep)
{
    assert_non_null(rep);
    if (rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ACK)
        fail_msg("expected SessAck, got payload %d (%s)", rep->payload_case,
                 rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR ? rep->error->reason : "");
    bus_env_free(rep);
}

static uint32_t error_code(bus_env *rep)
{
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_ERROR);
    uint32_t c = rep->error->code;
    bus_env_free(rep);
    return c;
}

typedef struct want_states {
    const char *room, *user, *want;
    size_t from;
    char got[512];
} want_states;

static int states_are(void *arg)
{
    want_states *w = arg;
    ts_states(w->room, w->user, w->from, w->got, sizeof(w->got));
    return !strcmp(w->got, w->want);
}

/* Waits up to ms for the presence events of (room, user) since from to be
 * exactly want ("online,reconnecting,..."); then checks nothing else comes
 * for settle_ms. */
static void expect_states(const char *room, const char *user, size_t from, const char *want, unsigned ms,
                          unsigned settle_ms)
{
    want_states w = { room, user, want, from, "" };
    if (!ts_wait(states_are, &w, ms))
        fail_msg("presence of %s in %s: got [%s], want [%s]", user, room, w.got, want);
    ts_spin(settle_ms);
    if (!states_are(&w))
        fail_msg("presence of %s in %s: got [%s] after settling, want [%s]", user, room, w.got, want);
}

static const char *member_state(ts_gw *g, const char *room, const char *user)
{
    static char buf[32];
    bus_env *rep = ts_presence(g, room);
    assert_non_null(rep);
    snprintf(buf, sizeof(buf), "%s", ts_member(rep, user));
    bus_env_free(rep);
    return buf;
}

/* SessGetRep of session (copy; bus_env_free). */
static bus_env *get_ok(ts_gw *g, const char *sid, const char *user)
{
    bus_env *rep = ts_get(g, sid, user);
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REP);
    return rep;
}

static int connected(ts_gw *g, const char *sid)
{
    bus_env *rep = get_ok(g, sid, "");
    int c = rep->sess_get_rep->found ? rep->sess_get_rep->connected : -1;
    bus_env_free(rep);
    return c;
}

static int64_t now_ms(void) { return loop_wall_ms(); }

/* ---- tests -------------------------------------------------------------------------------- */

static void test_open_close_resume(void **state)
{
    (void)state;
    size_t from = W.npev;
    int64_t t0 = now_ms();
    int resumed = -1;
    open_ok(GA, "res-s1", "alice", 1, t0, &resumed);
    assert_int_equal(resumed, 0);
    ack_ok(ts_room(GA, "res-s1", 1, "res.room", 1));
    /* The same open again (what a retry is): the first answer, no change. */
    open_ok(GA, "res-s1", "alice", 1, t0, &resumed);
    assert_int_equal(resumed, 0);
    expect_states("res.room", "alice", from, "online", 2000, 0);

    bus_env env;
    Tether__Bus__SessCloseReq cr;
    ts_close_env(&env, &cr, "res-s1", 1, 0, t0 + 1000);
    Tether__Bus__RoomPos pos = TETHER__BUS__ROOM_POS__INIT, *posp = &pos;
    pos.room = (char *)"res.room";
    pos.epoch = (char *)"0190abcdef0123456789";
    pos.seq = 42;
    cr.n_rooms = 1;
    cr.rooms = &posp;
    ack_ok(ts_call(GA, &env));
    ack_ok(ts_call(GA, &env)); /* retried close: nothing more happens */
    expect_states("res.room", "alice", from, "online,reconnecting", 2000, 0);
    assert_string_equal(member_state(GA, "res.room", "alice"), "reconnecting");
    assert_int_equal(connected(GA, "res-s1"), 0);

    /* Back 700 ms after the drop was noticed, on another connection. */
    int64_t d = open_ok(GA, "res-s1", "alice", 2, t0 + 1700, &resumed);
    assert_int_equal(resumed, 1);
    assert_int_equal(d, 700);
    ack_ok(ts_room(GA, "res-s1", 2, "res.room", 1));
    expect_states("res.room", "alice", from, "online,reconnecting,online", 2000, 200);

    /* The old connection's late news changes nothing. */
    ack_ok(ts_close(GA, "res-s1", 1, 0, t0 + 1800));
    ack_ok(ts_room(GA, "res-s1", 1, "res.room", 0));
    assert_int_equal(connected(GA, "res-s1"), 1);
    assert_string_equal(member_state(GA, "res.room", "alice"), "online");

    bus_env *rep = get_ok(GA, "res-s1", "");
    const Tether__Bus__SessGetRep *g = rep->sess_get_rep;
    assert_true(g->found);
    assert_string_equal(g->session, "res-s1");
    assert_string_equal(g->user, "alice");
    assert_string_equal(g->gateway, GA->instance);
    assert_true(g->connected);
    assert_int_equal(g->disconnects, 1);
    assert_int_equal(g->expires_ms, 0);
    assert_int_equal(g->n_rooms, 1);
    assert_string_equal(g->rooms[0]->room, "res.room");
    assert_string_equal(g->rooms[0]->epoch, "0190abcdef0123456789");
    assert_int_equal(g->rooms[0]->seq, 42);
    bus_env_free(rep);
    /* By user: the user's most recent session. */
    rep = get_ok(GA, "", "alice");
    assert_true(rep->sess_get_rep->found);
    assert_string_equal(rep->sess_get_rep->session, "res-s1");
    bus_env_free(rep);
    ack_ok(ts_close(GA, "res-s1", 2, 1, 0));
}

static void test_disconnected_record(void **state)
{
    (void)state;
    int64_t t0 = now_ms();
    open_ok(GA, "rec-s1", "rec-user", 5, t0, NULL);
    ack_ok(ts_close(GA, "rec-s1", 5, 0, t0 + 10));
    bus_env *rep = get_ok(GA, "rec-s1", "rec-user");
    const Tether__Bus__SessGetRep *g = rep->sess_get_rep;
    assert_true(g->found);
    assert_false(g->connected);
    assert_int_equal(g->last_seen_ms, t0 + 10);
    assert_int_equal(g->expires_ms, t0 + 10 + TTL_S * 1000);
    assert_int_equal(g->disconnects, 1);
    bus_env_free(rep);
    /* Someone else's user name with that session id: refused. */
    assert_int_equal(error_code(ts_get(GA, "rec-s1", "mallory")), 4503);
    rep = get_ok(GA, "nope-nope", "");
    assert_false(rep->sess_get_rep->found);
    bus_env_free(rep);
    ack_ok(ts_close(GA, "rec-s1", 5, 1, 0));
}

static void test_other_users_session(void **state)
{
    (void)state;
    open_ok(GA, "own-s1", "alice", 10, 0, NULL);
    ack_ok(ts_close(GA, "own-s1", 10, 0, 0));
    assert_int_equal(error_code(ts_open(GA, "own-s1", "mallory", 11, 0)), 4503);
    /* Untouched: still alice's, still disconnected, resumable by her. */
    int resumed;
    open_ok(GA, "own-s1", "alice", 12, 0, &resumed);
    assert_int_equal(resumed, 1);
    ack_ok(ts_close(GA, "own-s1", 12, 1, 0));
}

static void test_bye(void **state)
{
    (void)state;
    size_t from = W.npev;
    open_ok(GA, "bye-s1", "bob", 20, 0, NULL);
    ack_ok(ts_room(GA, "bye-s1", 20, "bye.room", 1));
    ack_ok(ts_room(GA, "bye-s1", 20, "bye.other", 1));
    ack_ok(ts_close(GA, "bye-s1", 20, 1, 0));
    expect_states("bye.room", "bob", from, "online,offline", 2000, 0);
    expect_states("bye.other", "bob", from, "online,offline", 2000, 0);
    assert_string_equal(member_state(GA, "bye.room", "bob"), "");
    bus_env *rep = get_ok(GA, "bye-s1", "");
    assert_false(rep->sess_get_rep->found);
    bus_env_free(rep);
    /* The same id again: a fresh session, never an error. */
    int resumed = -1;
    open_ok(GA, "bye-s1", "bob", 21, 0, &resumed);
    assert_int_equal(resumed, 0);
    /* A late retry of the first open (conn 20) does not resurrect anything. */
    ack_ok(ts_close(GA, "bye-s1", 21, 1, 0));
    open_ok(GA, "bye-s1", "bob", 21, 0, &resumed);
    assert_int_equal(resumed, 0);
    rep = get_ok(GA, "bye-s1", "");
    assert_false(rep->sess_get_rep->found);
    bus_env_free(rep);
}

static void test_takeover(void **state)
{
    (void)state;
    size_t from = W.npev;
    open_ok(GA, "tk-s1", "tina", 30, 0, NULL);
    ack_ok(ts_room(GA, "tk-s1", 30, "tk.room", 1));
    /* A newer connection resumes the session while the old one still holds it. */
    int resumed;
    int64_t d = open_ok(GA, "tk-s1", "tina", 31, 0, &resumed);
    assert_int_equal(resumed, 1);
    assert_int_equal(d, 0);
    ack_ok(ts_room(GA, "tk-s1", 31, "tk.room", 1));
    /* The old connection's close (4006 on the gateway) is old news. */
    ack_ok(ts_close(GA, "tk-s1", 30, 0, 0));
    expect_states("tk.room", "tina", from, "online", 2000, 300);
    assert_int_equal(connected(GA, "tk-s1"), 1);
    ack_ok(ts_close(GA, "tk-s1", 31, 1, 0));
}

static void test_two_tabs(void **state)
{
    (void)state;
    size_t from = W.npev;
    open_ok(GA, "tab-s1", "carol", 40, 0, NULL);
    open_ok(GA, "tab-s2", "carol", 41, 0, NULL);
    ack_ok(ts_room(GA, "tab-s1", 40, "tab.room", 1));
    ack_ok(ts_room(GA, "tab-s2", 41, "tab.room", 1));
    expect_states("tab.room", "carol", from, "online", 2000, 0);
    /* One tab drops: still online. */
    ack_ok(ts_close(GA, "tab-s1", 40, 0, 0));
    expect_states("tab.room", "carol", from, "online", 2000, 300);
    assert_string_equal(member_state(GA, "tab.room", "carol"), "online");
    /* The other one too: reconnecting. */
    ack_ok(ts_close(GA, "tab-s2", 41, 0, 0));
    expect_states("tab.room", "carol", from, "online,reconnecting", 2000, 0);
    /* One comes back: online. */
    open_ok(GA, "tab-s1", "carol", 42, 0, NULL);
    ack_ok(ts_room(GA, "tab-s1", 42, "tab.room", 1));
    expect_states("tab.room", "carol", from, "online,reconnecting,online", 2000, 0);
    /* It leaves for good while the other is still within its TTL. */
    ack_ok(ts_close(GA, "tab-s1", 42, 1, 0));
    expect_states("tab.room", "carol", from, "online,reconnecting,online,reconnecting", 2000, 0);
    ack_ok(ts_close(GA, "tab-s2", 41, 1, 0));
    expect_states("tab.room", "carol", from, "online,reconnecting,online,reconnecting,offline", 2000, 0);
}

static void test_room_leave_and_order(void **state)
{
    (void)state;
    size_t from = W.npev;
    open_ok(GA, "lv-s1", "dave", 50, 0, NULL);
    ack_ok(ts_room(GA, "lv-s1", 50, "lv.room", 1));
    ack_ok(ts_room(GA, "lv-s1", 50, "lv.room", 0));
    expect_states("lv.room", "dave", from, "online,offline", 2000, 0);
    /* A join and a leave sent in that order, answered in any order: the later
     * request (req_id) wins. */
    bus_env ej, el;
    Tether__Bus__SessRoomReq rj, rl;
    ts_room_env(&ej, &rj, "lv-s1", 50, "lv.two", 1);
    ts_room_env(&el, &rl, "lv-s1", 50, "lv.two", 0);
    ts_sync sj = { 0 }, sl = { 0 };
    uint64_t idj = ts_call_async(GA, &ej, 1000, 5, ts_sync_cb, &sj);
    ts_call_async(GA, &el, 1000, 5, ts_sync_cb, &sl);
    ts_wait(ts_sync_done, &sl, 3000);
    ts_wait(ts_sync_done, &sj, 3000);
    bus_env_free(sj.rep);
    bus_env_free(sl.rep);
    /* The join again, as a late retry with its original id. */
    ej.req_id = idj;
    ej.source = &GA->src;
    size_t n = tether__bus__envelope__get_packed_size(&ej);
    uint8_t *b = malloc(n);
    tether__bus__envelope__pack(&ej, b);
    static const char empty[1];
    const void *bufs[2] = { empty, b };
    size_t lens[2] = { 0, n };
    zsock_send(GA->dealer, bufs, lens, 2);
    free(b);
    ts_spin(300);
    assert_string_equal(member_state(GA, "lv.two", "dave"), "");
    ack_ok(ts_close(GA, "lv-s1", 50, 1, 0));
}

static void test_presence_members(void **state)
{
    (void)state;
    open_ok(GA, "pm-s1", "p1", 60, 0, NULL);
    open_ok(GA, "pm-s2", "p2", 61, 0, NULL);
    open_ok(GA, "pm-s3", "p3", 62, 0, NULL);
    for (int i = 0; i < 3; i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "pm-s%d", i + 1);
        ack_ok(ts_room(GA, sid, 60 + (uint64_t)i, "pm.room", 1));
    }
    ack_ok(ts_close(GA, "pm-s2", 61, 0, 0));
    ack_ok(ts_close(GA, "pm-s3", 62, 1, 0));
    bus_env *rep = ts_presence(GA, "pm.room");
    assert_non_null(rep);
    assert_int_equal(rep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REP);
    assert_string_equal(rep->presence_rep->room, "pm.room");
    assert_int_equal(rep->presence_rep->n_members, 2);
    assert_string_equal(ts_member(rep, "p1"), "online");
    assert_string_equal(ts_member(rep, "p2"), "reconnecting");
    assert_string_equal(ts_member(rep, "p3"), "");
    bus_env_free(rep);
    rep = ts_presence(GA, "pm.empty");
    assert_int_equal(rep->presence_rep->n_members, 0);
    bus_env_free(rep);
    ack_ok(ts_close(GA, "pm-s1", 60, 1, 0));
    ack_ok(ts_close(GA, "pm-s2", 61, 1, 0));
}

static bus_env *quality(ts_gw *g, const char *sid, const char *user, double rtt, double loss, double jitter, double bw,
                        const char *level)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessQualityReq r = TETHER__BUS__SESS_QUALITY_REQ__INIT;
    r.session = (char *)sid;
    r.user = (char *)user;
    r.rtt_ms = rtt;
    r.loss_pct = loss;
    r.jitter_ms = jitter;
    r.bandwidth_kbps = bw;
    r.quality = (char *)level;
    char *recs[1] = { (char *)"use a wired network" };
    if (level && *level) {
        r.n_recommendations = 1;
        r.recommendations = recs;
    }
    r.at_ms = 1234;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_QUALITY_REQ;
    env.sess_quality_req = &r;
    return ts_call(g, &env);
}

static void test_quality(void **state)
{
    (void)state;
    open_ok(GA, "q-s1", "quinn", 70, 0, NULL);
    ack_ok(quality(GA, "q-s1", "quinn", 180, 0.5, 10, 900, "fair"));
    bus_env *rep = get_ok(GA, "q-s1", "");
    assert_string_equal(rep->sess_get_rep->quality, "fair");
    assert_true(rep->sess_get_rep->rtt_ms == 180);
    assert_true(rep->sess_get_rep->loss_pct == 0.5);
    assert_true(rep->sess_get_rep->jitter_ms == 10);
    assert_true(rep->sess_get_rep->bandwidth_kbps == 900);
    bus_env_free(rep);
    /* The HTTP API's form: no session, the user's latest; no level: sessiond
     * classifies (lib/quality: 6 % loss is poor). */
    ack_ok(quality(GA, "", "quinn", 20, 6, 5, 0, ""));
    rep = get_ok(GA, "q-s1", "");
    assert_string_equal(rep->sess_get_rep->quality, "poor");
    bus_env_free(rep);
    assert_int_equal(error_code(quality(GA, "q-s1", "mallory", 1, 0, 0, 0, "good")), 4503);
    assert_int_equal(error_code(quality(GA, "", "nobody-here", 1, 0, 0, 0, "good")), 4404);
    assert_int_equal(error_code(quality(GA, "q-s1", "quinn", 1, 0, 0, 0, "great")), 4400);
    assert_int_equal(error_code(quality(GA, "q-s1", "quinn", -1, 0, 0, 0, "good")), 4400);
    ack_ok(ts_close(GA, "q-s1", 70, 1, 0));
}

static void test_validation(void **state)
{
    (void)state;
    assert_int_equal(error_code(ts_open(GA, "bad session", "u", 1, 0)), 4400);
    assert_int_equal(error_code(ts_open(GA, "", "u", 1, 0)), 4400);
    assert_int_equal(error_code(ts_open(GA, "ok-s", "", 1, 0)), 4400);
    assert_int_equal(error_code(ts_room(GA, "ok-s", 1, "bad room!", 1)), 4400);
    assert_int_equal(error_code(ts_presence(GA, "")), 4400);
    assert_int_equal(error_code(ts_get(GA, "", "")), 4400);
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__AppendReq ar = TETHER__BUS__APPEND_REQ__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REQ;
    env.append_req = &ar;
    assert_int_equal(error_code(ts_call(GA, &env)), 4400);
    /* A close is never lost over its positions (a lost close is a ghost):
     * the invalid ones are skipped. An odd client string is dropped too. */
    bus_env oe = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq orq = TETHER__BUS__SESS_OPEN_REQ__INIT;
    orq.session = (char *)"val-s1";
    orq.user = (char *)"vu";
    orq.conn = 3;
    orq.client = (char *)"bad\tclient";
    oe.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
    oe.sess_open_req = &orq;
    bus_env *orep = ts_call(GA, &oe);
    assert_non_null(orep);
    assert_int_equal(orep->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REP);
    bus_env_free(orep);
    bus_env ce;
    Tether__Bus__SessCloseReq cr;
    ts_close_env(&ce, &cr, "val-s1", 3, 0, 0);
    Tether__Bus__RoomPos p1 = TETHER__BUS__ROOM_POS__INIT, p2 = TETHER__BUS__ROOM_POS__INIT, *pp[2] = { &p1, &p2 };
    p1.room = (char *)"bad room!";
    p1.epoch = (char *)"";
    p2.room = (char *)"val.ok";
    p2.epoch = (char *)"abc";
    p2.seq = 7;
    cr.n_rooms = 2;
    cr.rooms = pp;
    ack_ok(ts_call(GA, &ce));
    bus_env *g = get_ok(GA, "val-s1", "");
    assert_false(g->sess_get_rep->connected);
    assert_int_equal(g->sess_get_rep->n_rooms, 1);
    assert_string_equal(g->sess_get_rep->rooms[0]->room, "val.ok");
    assert_int_equal(g->sess_get_rep->rooms[0]->seq, 7);
    bus_env_free(g);
    ack_ok(ts_close(GA, "val-s1", 3, 1, 0));
    /* A request whose source names no gateway cannot hold a connection. */
    ts_gw *anon = ts_gw_new("", 0);
    assert_int_equal(error_code(ts_open(anon, "ok-s", "u", 1, 0)), 4400);
    ts_gw_free(anon);
}

/* 200 clients on a gateway that dies (stops heartbeating, as a SIGKILL
 * does): every one shows reconnecting within 3 s, then online again when
 * they resume on another gateway; nobody is ever offline. */
static void test_gateway_death_200(void **state)
{
    (void)state;
    enum { N = 200 };
    ts_gw *d = ts_gw_new("gw-doomed", 1000001);
    ts_gw_heartbeats(d, 1000);
    ts_spin(100);
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "death-%d", i);
        snprintf(user, sizeof(user), "du%d", i);
        open_ok(d, sid, user, (uint64_t)i + 1, 0, NULL);
        ack_ok(ts_room(d, sid, (uint64_t)i + 1, "death.room", 1));
    }
    ts_spin(1100); /* a heartbeat after the last request */
    size_t from = ts_quiet(200);
    /* The gateway dies now (as a SIGKILL would, somewhere between two
     * heartbeats). */
    uint64_t killed = tu_ms();
    int64_t last_hb_wall = now_ms() - (int64_t)(killed - d->last_hb_ms);
    ts_gw_silence(d);
    uint64_t end = tu_ms() + 6000;
    while (ts_count("death.room", "reconnecting", from) < N && tu_ms() < end)
        loop_run_once(W.l, 5);
    size_t got = ts_count("death.room", "reconnecting", from);
    uint64_t last = 0;
    for (size_t i = from; i < W.npev; i++)
        if (!strcmp(W.pev[i].room, "death.room") && W.pev[i].at_ms > last)
            last = W.pev[i].at_ms;
    fprintf(stderr,
            "# gateway death: %zu of %d sessions reconnecting, the last %llu ms after the death "
            "(%llu ms after its last heartbeat)\n",
            got, N, (unsigned long long)(last - killed), (unsigned long long)(last - d->last_hb_ms));
    assert_int_equal(got, N);
    /* Dead after 2.5 s of silence, swept every 250 ms: within 3 s of the
     * last heartbeat, so within 3 s of the death whenever it happened. */
    assert_true(last - d->last_hb_ms <= 3000);
    /* They come back on another gateway: online again, never offline. */
    int64_t back = now_ms();
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "death-%d", i);
        snprintf(user, sizeof(user), "du%d", i);
        int resumed;
        int64_t dms = open_ok(GA, sid, user, 100000 + (uint64_t)i, back, &resumed);
        assert_int_equal(resumed, 1);
        /* Measured from the dead gateway's last sign of life. */
        assert_true(dms >= back - last_hb_wall - 50 && dms <= back - last_hb_wall + 50);
        ack_ok(ts_room(GA, sid, 100000 + (uint64_t)i, "death.room", 1));
    }
    end = tu_ms() + 5000;
    while (ts_count("death.room", "online", from) < N && tu_ms() < end)
        loop_run_once(W.l, 5);
    ts_spin(300);
    assert_int_equal(ts_count("death.room", "online", from), N);
    assert_int_equal(ts_count("death.room", "offline", from), 0);
    char buf[64];
    assert_string_equal(ts_states("death.room", "du7", from, buf, sizeof(buf)), "reconnecting,online");
    for (int i = 0; i < N; i++) {
        char sid[32];
        snprintf(sid, sizeof(sid), "death-%d", i);
        ack_ok(ts_close(GA, sid, 100000 + (uint64_t)i, 1, 0));
    }
    ts_gw_free(d);
}

/* A gateway restarted under the same instance name: its old incarnation's
 * sessions are disconnected at once, without waiting for silence. */
static void test_gateway_new_incarnation(void **state)
{
    (void)state;
    enum { N = 20 };
    ts_gw *g1 = ts_gw_new("gw-restart", 2000001);
    ts_gw_heartbeats(g1, 1000);
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "inc-%d", i);
        snprintf(user, sizeof(user), "iu%d", i);
        open_ok(g1, sid, user, (uint64_t)i + 1, 0, NULL);
        ack_ok(ts_room(g1, sid, (uint64_t)i + 1, "inc.room", 1));
    }
    size_t from = ts_quiet(200);
    ts_gw_silence(g1);
    ts_gw *g2 = ts_gw_new("gw-restart", 2000002);
    uint64_t t0 = tu_ms();
    ts_gw_heartbeats(g2, 1000);
    uint64_t end = tu_ms() + 3000;
    while (ts_count("inc.room", "reconnecting", from) < N && tu_ms() < end)
        loop_run_once(W.l, 5);
    uint64_t took = tu_ms() - t0;
    fprintf(stderr, "# new incarnation: %d sessions of the old one reconnecting after %llu ms\n", N,
            (unsigned long long)took);
    assert_int_equal(ts_count("inc.room", "reconnecting", from), N);
    assert_true(took < 1500);
    /* A request of the old incarnation is refused. */
    assert_int_equal(error_code(ts_open(g1, "inc-x", "iux", 99, 0)), 4500);
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "inc-%d", i);
        snprintf(user, sizeof(user), "iu%d", i);
        int resumed;
        open_ok(g2, sid, user, (uint64_t)i + 1, 0, &resumed);
        assert_int_equal(resumed, 1);
        ack_ok(ts_close(g2, sid, (uint64_t)i + 1, 1, 0));
    }
    ts_quiet(200);
    assert_int_equal(ts_count("inc.room", "offline", from), N);
    ts_gw_free(g1);
    ts_gw_free(g2);
}

/* A gateway wrongly declared dead (its heartbeats were lost for 3 s) comes
 * back: sessiond asks it for a snapshot and its sessions are live again. */
static void test_gateway_resurrected(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-lazarus", 3000001);
    answering(g);
    ts_gw_heartbeats(g, 1000);
    open_ok(g, "laz-s1", "lu1", 1, 0, NULL);
    ack_ok(ts_room(g, "laz-s1", 1, "laz.room", 1));
    ts_conn *c = ts_gw_conn(g, 1, "laz-s1", "lu1");
    c->rooms[c->nrooms++] = "laz.room";
    size_t from = ts_quiet(200);
    ts_gw_silence(g);
    expect_states("laz.room", "lu1", from, "reconnecting", 6000, 0);
    assert_int_equal(connected(GA, "laz-s1"), 0);
    unsigned answered = g->snapshots_answered;
    ts_gw_heartbeats(g, 1000);
    expect_states("laz.room", "lu1", from, "reconnecting,online", 5000, 300);
    assert_true(g->snapshots_answered > answered);
    assert_int_equal(connected(GA, "laz-s1"), 1);
    ack_ok(ts_close(g, "laz-s1", 1, 1, 0));
    not_answering(g);
    ts_gw_free(g);
}

static void restart_sessiond(int ttl_s)
{
    tu_stop(W.sessiond, SIGKILL, 2000);
    assert_true(ts_sessiond_up(ttl_s));
}

/* sessiond killed (-9) and restarted: what Redis holds is intact, and the
 * snapshot it asks for on start fixes what it could not hear meanwhile. */
static void test_sessiond_kill9_snapshot(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-snap", 4000001);
    answering(g);
    ts_gw_heartbeats(g, 1000);
    const char *sids[4] = { "ks-1", "ks-2", "ks-3", "ks-4" };
    const char *users[4] = { "ku1", "ku2", "ku3", "ku4" };
    for (int i = 0; i < 2; i++) {
        open_ok(g, sids[i], users[i], (uint64_t)i + 1, 0, NULL);
        ack_ok(ts_room(g, sids[i], (uint64_t)i + 1, "ks.room", 1));
        ts_conn *c = ts_gw_conn(g, (uint64_t)i + 1, sids[i], users[i]);
        c->rooms[c->nrooms++] = "ks.room";
    }
    open_ok(GA, "ks-keep", "kkeep", 7000, 0, NULL);
    ack_ok(ts_room(GA, "ks-keep", 7000, "ks.room", 1));
    ack_ok(ts_close(GA, "ks-keep", 7000, 0, 0));
    size_t from = ts_quiet(200);
    size_t reqs = W.nsnapreq;
    tu_stop(W.sessiond, SIGKILL, 2000);
    /* While sessiond is down: ku2's connection ends and its close is lost
     * (the gateway's queue overflowed); ku3 connects and its open waits in
     * the gateway's retries; ku4 connects and its open is lost. */
    ts_gw_unconn(g, 2);
    ts_sync s3 = { 0 };
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq r = TETHER__BUS__SESS_OPEN_REQ__INIT;
    r.session = (char *)sids[2];
    r.user = (char *)users[2];
    r.conn = 3;
    r.at_ms = now_ms();
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
    env.sess_open_req = &r;
    ts_call_async(g, &env, 300, 100, ts_sync_cb, &s3);
    ts_conn *c3 = ts_gw_conn(g, 3, sids[2], users[2]);
    c3->rooms[c3->nrooms++] = "ks.room";
    ts_conn *c4 = ts_gw_conn(g, 4, sids[3], users[3]);
    c4->rooms[c4->nrooms++] = "ks.room";
    ts_spin(500);
    W.sessiond = ts_start_sessiond(TTL_S);
    assert_true(ts_ready(10000));
    assert_true(ts_wait(ts_sync_done, &s3, 5000));
    assert_int_equal(s3.status, 0);
    bus_env_free(s3.rep);
    expect_states("ks.room", "ku2", from, "reconnecting", 5000, 0);
    expect_states("ks.room", "ku4", from, "online", 5000, 0);
    assert_true(W.nsnapreq > reqs);
    /* Everything else as it was. */
    assert_int_equal(connected(GA, sids[0]), 1);
    assert_int_equal(connected(GA, sids[1]), 0);
    assert_int_equal(connected(GA, sids[2]), 1);
    assert_int_equal(connected(GA, sids[3]), 1);
    assert_int_equal(connected(GA, "ks-keep"), 0);
    bus_env *rep = ts_presence(GA, "ks.room");
    assert_string_equal(ts_member(rep, "ku1"), "online");
    assert_string_equal(ts_member(rep, "ku2"), "reconnecting");
    assert_string_equal(ts_member(rep, "ku3"), "online");
    assert_string_equal(ts_member(rep, "ku4"), "online");
    assert_string_equal(ts_member(rep, "kkeep"), "reconnecting");
    bus_env_free(rep);
    char buf[128];
    assert_string_equal(ts_states("ks.room", "ku1", from, buf, sizeof(buf)), "");
    assert_string_equal(ts_states("ks.room", "kkeep", from, buf, sizeof(buf)), "");
    ts_spin(3000); /* judging gateways again */
    for (int i = 0; i < 4; i++)
        ack_ok(ts_close(g, sids[i], (uint64_t)i + 1, 1, 0));
    ack_ok(ts_close(GA, "ks-keep", 7000, 1, 0));
    not_answering(g);
    ts_gw_free(g);
}

/* ---- kill -9 during churn ------------------------------------------------------------------ */

#define CHURN_USERS 40
#define CHURN_STEPS 12

typedef struct churner {
    ts_gw *g;
    int idx, step;
    uint64_t conn;
    char sid[32], user[32];
    int failed;
    int live; /* the truth, as the gateway knows it */
    loop_timer t;
} churner;

static churner CH[CHURN_USERS];
static int churn_done;

static void churn_next(churner *c);

static void churn_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    churn_next(arg);
}

static void churn_cb(ts_gw *g, int status, const bus_env *rep, void *arg)
{
    (void)g;
    churner *c = arg;
    if (status != 0 || !rep || rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR)
        c->failed++;
    c->step++;
    /* Paced (20..100 ms per step) so that the churn spans the kill. */
    loop_timer_start(W.l, &c->t, 20 + (uint64_t)((c->idx * 37 + c->step * 11) % 80), 0, churn_tick, c);
}

/* Steps: open, join, close, open, join, close, ...; users with an even index
 * stop connected, odd ones disconnected. */
static void churn_next(churner *c)
{
    int last = CHURN_STEPS - (c->idx % 2 ? 0 : 1);
    if (c->step >= last) {
        churn_done++;
        return;
    }
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq o = TETHER__BUS__SESS_OPEN_REQ__INIT;
    Tether__Bus__SessRoomReq rr;
    Tether__Bus__SessCloseReq cr;
    switch (c->step % 3) {
    case 0:
        c->conn++;
        o.session = c->sid;
        o.user = c->user;
        o.conn = c->conn;
        o.at_ms = now_ms();
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
        env.sess_open_req = &o;
        c->live = 1;
        ts_gw_conn(c->g, c->conn, c->sid, c->user);
        break;
    case 1: {
        ts_room_env(&env, &rr, c->sid, c->conn, "churn.room", 1);
        ts_conn *tc = ts_gw_conn(c->g, c->conn, c->sid, c->user);
        tc->rooms[0] = "churn.room";
        tc->nrooms = 1;
        break;
    }
    default:
        ts_close_env(&env, &cr, c->sid, c->conn, 0, now_ms());
        c->live = 0;
        ts_gw_unconn(c->g, c->conn);
        break;
    }
    ts_call_async(c->g, &env, 250, 200, churn_cb, c);
}

static void test_sessiond_kill9_churn(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-churn", 5000001);
    answering(g);
    ts_gw_heartbeats(g, 1000);
    ts_spin(50);
    churn_done = 0;
    for (int i = 0; i < CHURN_USERS; i++) {
        churner *c = &CH[i];
        memset(c, 0, sizeof(*c));
        c->g = g;
        c->idx = i;
        c->conn = (uint64_t)i * 1000;
        snprintf(c->sid, sizeof(c->sid), "churn-%d", i);
        snprintf(c->user, sizeof(c->user), "cu%d", i);
    }
    size_t from = W.npev;
    for (int i = 0; i < CHURN_USERS; i++)
        churn_next(&CH[i]);
    ts_spin(250);
    tu_stop(W.sessiond, SIGKILL, 2000);
    ts_spin(700);
    W.sessiond = ts_start_sessiond(TTL_S);
    assert_true(ts_ready(10000));
    uint64_t end = tu_ms() + 30000;
    while (churn_done < CHURN_USERS && tu_ms() < end)
        loop_run_once(W.l, 10);
    assert_int_equal(churn_done, CHURN_USERS);
    ts_spin(500);
    int bad = 0;
    for (int i = 0; i < CHURN_USERS; i++) {
        churner *c = &CH[i];
        if (c->failed)
            fprintf(stderr, "# churn %s: %d steps failed\n", c->user, c->failed);
        bad += c->failed;
        int con = connected(GA, c->sid);
        const char *st = member_state(GA, "churn.room", c->user);
        const char *want = c->live ? "online" : "reconnecting";
        if (con != c->live || strcmp(st, want) != 0) {
            fprintf(stderr, "# churn %s: connected %d presence %s, want %d %s\n", c->user, con, st, c->live, want);
            bad++;
        }
        /* The last event each observer got agrees with the record. */
        char buf[512];
        ts_states("churn.room", c->user, from, buf, sizeof(buf));
        const char *lastev = strrchr(buf, ',');
        lastev = lastev ? lastev + 1 : buf;
        if (*buf && strcmp(lastev, want) != 0) {
            fprintf(stderr, "# churn %s: events [%s], want last %s\n", c->user, buf, want);
            bad++;
        }
    }
    assert_int_equal(ts_count("churn.room", "offline", from), 0);
    assert_int_equal(bad, 0);
    fprintf(stderr, "# kill -9 during churn: %d users x %d steps, %llu retries, all records and presence right\n",
            CHURN_USERS, CHURN_STEPS, (unsigned long long)g->retries);
    ts_spin(2600); /* judging gateways again before the next test */
    for (int i = 0; i < CHURN_USERS; i++)
        ack_ok(ts_close(g, CH[i].sid, CH[i].conn, 1, 0));
    not_answering(g);
    ts_gw_free(g);
}

/* ---- bus loss ------------------------------------------------------------------------------ */

static void test_bus_gap_asks_snapshot(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-gappy", 6000001);
    ts_gw_heartbeats(g, 1000);
    ts_spin(2500); /* rounds of earlier tests are over */
    size_t reqs = W.nsnapreq;
    ts_gw_heartbeat(g, 3); /* three heartbeats lost */
    uint64_t end = tu_ms() + 3000;
    while (W.nsnapreq == reqs && tu_ms() < end)
        loop_run_once(W.l, 5);
    assert_true(W.nsnapreq > reqs);
    ts_gw_free(g);
}

/* A snapshot that lists another user's connection under alice's session id
 * (and not alice's own connection) neither hands mallory the session nor
 * keeps alice's absent connection live: her session is disconnected like
 * any session the snapshot does not list, and stays hers. */
static void test_snapshot_foreign_session(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-snoop", 6500001);
    answering(g);
    ts_gw_heartbeats(g, 1000);
    open_ok(g, "snoop-s1", "alice", 1, 0, NULL);
    ack_ok(ts_room(g, "snoop-s1", 1, "snoop.room", 1));
    ts_conn *c = ts_gw_conn(g, 1, "snoop-s1", "alice");
    c->rooms[c->nrooms++] = "snoop.room";
    ts_spin(2500); /* rounds of earlier tests (and of this gateway's start) are over */
    assert_int_equal(connected(GA, "snoop-s1"), 1);
    size_t from = ts_quiet(200);
    /* alice's connection is gone; mallory's claims her session id. */
    ts_gw_unconn(g, 1);
    c = ts_gw_conn(g, 2, "snoop-s1", "mallory");
    c->rooms[c->nrooms++] = "snoop.room";
    ts_gw_heartbeat(g, 3); /* a gap: sessiond asks for a snapshot */
    expect_states("snoop.room", "alice", from, "reconnecting", 5000, 300);
    expect_states("snoop.room", "mallory", from, "", 0, 0);
    assert_int_equal(connected(GA, "snoop-s1"), 0);
    bus_env *rep = get_ok(GA, "snoop-s1", "");
    assert_string_equal(rep->sess_get_rep->user, "alice");
    bus_env_free(rep);
    assert_string_equal(member_state(GA, "snoop.room", "mallory"), "");
    int resumed;
    open_ok(g, "snoop-s1", "alice", 3, 0, &resumed);
    assert_int_equal(resumed, 1);
    ack_ok(ts_close(g, "snoop-s1", 3, 1, 0));
    ts_gw_unconn(g, 2);
    not_answering(g);
    ts_gw_free(g);
}

static void test_incomplete_snapshot_rerequested(void **state)
{
    (void)state;
    ts_gw *g = ts_gw_new("gw-partial", 7000001);
    answering(g);
    g->snap_parts = 2;
    g->snap_drop_part = 2;
    ts_gw_heartbeats(g, 1000);
    ts_conn *c = ts_gw_conn(g, 1, "part-s1", "pu1");
    c->rooms[c->nrooms++] = "part.room";
    ts_gw_conn(g, 2, "part-s2", "pu2");
    ts_spin(2500);
    size_t reqs = W.nsnapreq;
    ts_gw_heartbeat(g, 2); /* a gap: sessiond asks */
    uint64_t end = tu_ms() + 3000;
    while (W.nsnapreq == reqs && tu_ms() < end)
        loop_run_once(W.l, 5);
    assert_true(W.nsnapreq > reqs);
    uint64_t t0 = tu_ms();
    reqs = W.nsnapreq;
    g->snap_drop_part = 0; /* the next answer arrives whole */
    end = tu_ms() + 4000;
    while (W.nsnapreq == reqs && tu_ms() < end)
        loop_run_once(W.l, 5);
    fprintf(stderr, "# incomplete snapshot re-requested after %llu ms\n", (unsigned long long)(tu_ms() - t0));
    assert_true(W.nsnapreq > reqs);
    /* The whole answer was reconciled: both connections (unknown before) live. */
    end = tu_ms() + 3000;
    while (connected(GA, "part-s2") != 1 && tu_ms() < end)
        ts_spin(50);
    assert_int_equal(connected(GA, "part-s1"), 1);
    assert_int_equal(connected(GA, "part-s2"), 1);
    assert_string_equal(member_state(GA, "part.room", "pu1"), "online");
    ack_ok(ts_close(g, "part-s1", 1, 1, 0));
    ack_ok(ts_close(g, "part-s2", 2, 1, 0));
    not_answering(g);
    ts_gw_free(g);
}

/* ---- replicas ---------------------------------------------------------------------------- */

/* Two replicas share the work: requests round-robin over both, both sweep,
 * both hear the gateway; every change is still published exactly once. */
static void test_two_replicas(void **state)
{
    (void)state;
    enum { N = 100 };
    char ep2[64], log2[300];
    int http2 = tu_free_port();
    snprintf(ep2, sizeof(ep2), "tcp://127.0.0.1:%d", tu_free_port());
    snprintf(log2, sizeof(log2), "%s/sessiond2.log", tu_dir());
    pid_t r2 = ts_start_replica(ep2, http2, log2, TTL_S);
    assert_true(ts_ready_at(http2, 10000));
    ts_gw *g = ts_gw_new("gw-two", 8000001);
    ts_gw_connect(g, ep2);
    ts_gw_heartbeats(g, 1000);
    ts_spin(3300); /* both replicas judging gateways */
    size_t from = ts_quiet(100);
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "two-%d", i);
        snprintf(user, sizeof(user), "tw%d", i);
        open_ok(g, sid, user, (uint64_t)i + 1, 0, NULL);
        ack_ok(ts_room(g, sid, (uint64_t)i + 1, "two.room", 1));
    }
    ts_spin(1100);
    ts_quiet(200);
    assert_int_equal(ts_count("two.room", "online", from), N);
    ts_gw_silence(g);
    uint64_t end = tu_ms() + 6000;
    while (ts_count("two.room", "reconnecting", from) < N && tu_ms() < end)
        loop_run_once(W.l, 5);
    ts_quiet(500);
    assert_int_equal(ts_count("two.room", "reconnecting", from), N);
    ts_gw *g2 = ts_gw_new("gw-two-b", 8000002);
    ts_gw_connect(g2, ep2);
    ts_gw_heartbeats(g2, 1000);
    for (int i = 0; i < N; i++) {
        char sid[32], user[32];
        snprintf(sid, sizeof(sid), "two-%d", i);
        snprintf(user, sizeof(user), "tw%d", i);
        int resumed;
        open_ok(g2, sid, user, (uint64_t)i + 1, 0, &resumed);
        assert_int_equal(resumed, 1);
        ack_ok(ts_room(g2, sid, (uint64_t)i + 1, "two.room", 1));
        ack_ok(ts_close(g2, sid, (uint64_t)i + 1, 1, 0));
    }
    ts_quiet(300);
    assert_int_equal(ts_count("two.room", "online", from), 2 * N);
    assert_int_equal(ts_count("two.room", "offline", from), N);
    double d1 = tu_metric(W.http_port, "tether_sessiond_gateway_sessions_marked_total");
    double d2 = tu_metric(http2, "tether_sessiond_gateway_sessions_marked_total");
    fprintf(stderr, "# two replicas: the dead gateway's sessions were marked %.0f by one, %.0f by the other\n", d1, d2);
    int st = tu_stop(r2, SIGTERM, 5000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ts_gw_free(g);
    ts_gw_free(g2);
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

#define OPKEY ("Bearer " TS_OPKEY)

static void test_http(void **state)
{
    (void)state;
    open_ok(GA, "http-s1", "hanna", 80, 0, NULL);
    ack_ok(ts_room(GA, "http-s1", 80, "http.room", 1));
    ack_ok(quality(GA, "http-s1", "hanna", 50, 0, 3, 2000, "good"));
    static char body[64 * 1024];
    /* Operators only: no key, a wrong one, another scheme: 401, and nothing of the record. */
    static const char *bad[] = { NULL, "Bearer wrong-key-0123456789abcdef", "Basic " TS_OPKEY, "Bearer ",
                                 "Bearer " TS_OPKEY "x", TS_OPKEY };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions/http-s1", bad[i], body, sizeof(body)), 401);
        assert_null(strstr(body, "hanna"));
        assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions?user=hanna", bad[i], body, sizeof(body)), 401);
        assert_null(strstr(body, "http-s1"));
    }
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions/http-s1", "bearer " TS_OPKEY, body, sizeof(body)),
                     200);
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions/http-s1", OPKEY, body, sizeof(body)), 200);
    json_error_t err;
    json_t *o = json_loads(body, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "user")), "hanna");
    assert_string_equal(json_string_value(json_object_get(o, "gateway")), GA->instance);
    assert_true(json_is_true(json_object_get(o, "connected")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "quality"), "level")), "good");
    json_t *rooms = json_object_get(o, "rooms");
    assert_int_equal(json_array_size(rooms), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rooms, 0), "room")), "http.room");
    assert_true(json_integer_value(json_object_get(o, "created_ms")) > 0);
    json_decref(o);
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions?user=hanna", OPKEY, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"http-s1\""));
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions/unknown-one", OPKEY, body, sizeof(body)), 404);
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions/bad%20id", OPKEY, body, sizeof(body)), 400);
    assert_int_equal(tu_http_get_auth(W.http_port, "/v1/sessions", OPKEY, body, sizeof(body)), 400);
    assert_int_equal(tu_http_get(W.http_port, "/v1/other", body, sizeof(body)), 404);
    assert_int_equal(tu_http_get(W.http_port, "/healthz", body, sizeof(body)), 200);
    ts_spin(1100); /* gauges refresh every second */
    assert_true(tu_metric(W.http_port, "tether_sessiond_sessions{state=\"connected\"}") >= 1);
    assert_true(tu_metric(W.http_port, "tether_sessiond_sessions{state=\"disconnected\"}") >= 0);
    assert_true(tu_metric(W.http_port, "tether_sessiond_gateways_alive") >= 1);
    assert_true(tu_metric(W.http_port, "tether_sessiond_opens_total") >= 1);
    assert_true(tu_metric(W.http_port, "tether_sessiond_request_latency_seconds_count{type=\"open\"}") >= 1);
    ack_ok(ts_close(GA, "http-s1", 80, 1, 0));
}

/* ---- TTL ---------------------------------------------------------------------------------- */

static void test_expiry_after_ttl(void **state)
{
    (void)state;
    restart_sessiond(2);
    size_t from = W.npev;
    open_ok(GA, "ttl-s1", "tom", 90, 0, NULL);
    ack_ok(ts_room(GA, "ttl-s1", 90, "ttl.room", 1));
    uint64_t t0 = tu_ms();
    ack_ok(ts_close(GA, "ttl-s1", 90, 0, now_ms()));
    expect_states("ttl.room", "tom", from, "online,reconnecting,offline", 4000, 0);
    uint64_t took = W.pev[W.npev - 1].at_ms - t0;
    fprintf(stderr, "# TTL 2 s: offline %llu ms after the disconnect\n", (unsigned long long)took);
    assert_true(took >= 1900 && took <= 2700);
    int resumed = -1;
    open_ok(GA, "ttl-s1", "tom", 91, 0, &resumed);
    assert_int_equal(resumed, 0);
    bus_env *rep = get_ok(GA, "ttl-s1", "");
    assert_int_equal(rep->sess_get_rep->disconnects, 0);
    bus_env_free(rep);

    /* Resumed without re-joining a room: left after the rejoin grace
     * (min(10 s, TTL)); the re-joined one stays. */
    ack_ok(ts_room(GA, "ttl-s1", 91, "ttl.a", 1));
    ack_ok(ts_room(GA, "ttl-s1", 91, "ttl.b", 1));
    ack_ok(ts_close(GA, "ttl-s1", 91, 0, 0));
    from = ts_quiet(200);
    open_ok(GA, "ttl-s1", "tom", 92, 0, &resumed);
    assert_int_equal(resumed, 1);
    ack_ok(ts_room(GA, "ttl-s1", 92, "ttl.a", 1));
    expect_states("ttl.a", "tom", from, "online", 2000, 0);
    expect_states("ttl.b", "tom", from, "offline", 4000, 0);
    assert_string_equal(member_state(GA, "ttl.a", "tom"), "online");
    ack_ok(ts_close(GA, "ttl-s1", 92, 1, 0));
    restart_sessiond(TTL_S);
}

static void test_sigterm(void **state)
{
    (void)state;
    int st = tu_stop(W.sessiond, SIGTERM, 8000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    W.sessiond = 0;
}

static int group_setup(void **state)
{
    (void)state;
    W.on_snapreq = answer_snapshots;
    if (!ts_world_start("test_sessiond", TTL_S))
        return -1;
    GA = ts_gw_new("gw-alive", 9000001);
    ts_gw_heartbeats(GA, 1000);
    ts_spin(200);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_gw_free(GA);
    ts_world_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_close_resume),
        cmocka_unit_test(test_disconnected_record),
        cmocka_unit_test(test_other_users_session),
        cmocka_unit_test(test_bye),
        cmocka_unit_test(test_takeover),
        cmocka_unit_test(test_two_tabs),
        cmocka_unit_test(test_room_leave_and_order),
        cmocka_unit_test(test_presence_members),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_gateway_death_200),
        cmocka_unit_test(test_gateway_new_incarnation),
        cmocka_unit_test(test_gateway_resurrected),
        cmocka_unit_test(test_sessiond_kill9_snapshot),
        cmocka_unit_test(test_sessiond_kill9_churn),
        cmocka_unit_test(test_bus_gap_asks_snapshot),
        cmocka_unit_test(test_snapshot_foreign_session),
        cmocka_unit_test(test_incomplete_snapshot_rerequested),
        cmocka_unit_test(test_two_replicas),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_expiry_after_ttl),
        cmocka_unit_test(test_sigterm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
