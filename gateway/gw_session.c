/* gw_session.c -- sessions and presence on the gateway (see gw_session.h).
 *
 * Every request to sessiond is idempotent and retried by lib/rpc. Those a
 * client waits for (the hello) get a short deadline and a fallback; those it
 * does not (joins, leaves, closes, quality) are retried for a minute in the
 * background, with a bound on how many may be outstanding: past it they are
 * dropped and counted, and sessiond's snapshot reconcile repairs the rest.
 */
#include "gw_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

#define HELLO_TIMEOUT_MS 500
#define HELLO_ATTEMPTS 2
#define EVENT_TIMEOUT_MS 1000
#define EVENT_ATTEMPTS 60
#define EVENTS_MAX 20000
#define MEMBERS_TIMEOUT_MS 250
#define SNAPSHOT_PART 500

static struct {
    loop_timer heartbeat;
    uint64_t last_ok_ms;
    uint64_t last_fail_ms;  /* the last request sessiond did not answer */
    unsigned events_inflight;
    metrics_series *m_dropped, *m_open_fallback, *m_foreign;
} S;

int gw_sess_enabled(void) { return G.sessiond != NULL; }

/* Known down: the latest thing we heard from sessiond was a failure. A
 * gateway that has not asked yet (just started) does not know; it asks. */
static int known_down(void) { return S.last_fail_ms > S.last_ok_ms; }

/* A request sent at sent_ms got no answer. It says sessiond is down only if
 * nothing was answered since it was sent: a request that timed out while a
 * later one was answered (a ping dropped while the connection was being
 * set up, a stall) would otherwise mark a sessiond that just answered as
 * down, and hellos would skip it until the next ping: a resume within the
 * TTL answered resumed: false (test_sessiond_e2e, now and then). */
static void note_timeout(uint64_t sent_ms)
{
    if (sent_ms >= S.last_ok_ms)
        S.last_fail_ms = loop_now_ms(G.l);
}

int gw_sess_ready(void)
{
    if (!G.sessiond)
        return 1;
    return S.last_ok_ms && loop_now_ms(G.l) - S.last_ok_ms < 3000;
}

/* ---- background events ---------------------------------------------------------- */

static void event_done(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    S.events_inflight--;
    if (status == 0 && rep)
        S.last_ok_ms = loop_now_ms(G.l);
    else if (status == -ETIMEDOUT)
        note_timeout((uint64_t)(uintptr_t)arg);
}

static void send_event(bus_env *req)
{
    if (!G.sessiond)
        return;
    if (S.events_inflight >= EVENTS_MAX) {
        metrics_inc(S.m_dropped);
        return;
    }
    if (rpc_call(G.sessiond, req, EVENT_TIMEOUT_MS, EVENT_ATTEMPTS, event_done, (void *)(uintptr_t)loop_now_ms(G.l)))
        S.events_inflight++;
}

/* ---- session ids ----------------------------------------------------------------- */

void gw_random(void *p, size_t n)
{
    /* getrandom on Linux >= 3.17 does not fail for small sizes. If it ever
     * does, a guessable fallback would make session ids guessable: stop. */
    if (getrandom(p, n, 0) != (ssize_t)n) {
        LOG_ERROR("getrandom failed", "{s:s}", "error", strerror(errno));
        abort();
    }
}

static void new_session_id(char *out, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[16];
    gw_random(r, sizeof(r));
    size_t o = 0;
    for (size_t i = 0; i < sizeof(r) && o + 1 < n; i++)
        out[o++] = b64[r[i] & 63];
    out[o] = 0;
}

/* c presented a session id that belongs to another user: it gets a new one. */
static void rekey(gw_conn *c)
{
    metrics_inc(S.m_foreign);
    LOG_INFO("hello with another user's session id: new session", "{s:I,s:s}", "conn", (json_int_t)c->id, "user",
             c->claims.sub);
    if (c->session[0] && hmap_get(G.sessions, c->session) == c)
        hmap_del(G.sessions, c->session);
    new_session_id(c->session, sizeof(c->session));
    hmap_put(G.sessions, c->session, c);
}

void gw_sess_choose(gw_conn *c, const char *presented)
{
    gw_conn *old = presented && *presented ? hmap_get(G.sessions, presented) : NULL;
    if (!presented || !*presented) {
        new_session_id(c->session, sizeof(c->session));
        hmap_put(G.sessions, c->session, c);
        return;
    }
    snprintf(c->session, sizeof(c->session), "%s", presented);
    if (old && old != c && strcmp(old->claims.sub, c->claims.sub) != 0) {
        /* Held here by another user: nothing of theirs is closed, read or
         * resumed. For sessions held elsewhere sessiond decides the same
         * (hello_reply). */
        c->session[0] = 0;
        rekey(c);
        return;
    }
    if (old && old != c) {
        /* The same user's session: taken over. */
        hmap_del(G.sessions, c->session);
        old->session[0] = 0;
        gw_conn_close(old, 4006, "session taken over");
    }
    hmap_put(G.sessions, c->session, c);
}

/* The open of a hello sessiond did not answer in time, sent afterwards. If
 * sessiond then says the id is another user's, the connection moves to a
 * new session (its client keeps the id it was welcomed with; a resume with
 * it is refused the same way) and the open is sent again for that one. */
typedef struct open_ctx {
    uint64_t conn_id;
    uint64_t sent_ms;
    int rekeyed;
} open_ctx;

static void send_open_ctx(gw_conn *c, open_ctx *x);

static void open_event_done(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    open_ctx *x = arg;
    S.events_inflight--;
    if (status == 0 && rep)
        S.last_ok_ms = loop_now_ms(G.l);
    else if (status == -ETIMEDOUT)
        note_timeout(x->sent_ms);
    gw_conn *c = gw_conn_find(x->conn_id);
    if (c && !c->close_code && !x->rekeyed && status == 0 && rep &&
        rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR && rep->error->code == GW_E_FORBIDDEN) {
        rekey(c);
        x->rekeyed = 1;
        send_open_ctx(c, x);
        return;
    }
    free(x);
}

static void send_open_ctx(gw_conn *c, open_ctx *x)
{
    if (S.events_inflight >= EVENTS_MAX) {
        metrics_inc(S.m_dropped);
        free(x);
        return;
    }
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq o = TETHER__BUS__SESS_OPEN_REQ__INIT;
    o.session = c->session;
    o.user = c->claims.sub;
    o.conn = c->id;
    o.client = c->client;
    o.at_ms = loop_wall_ms();
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
    req.sess_open_req = &o;
    x->sent_ms = loop_now_ms(G.l);
    if (rpc_call(G.sessiond, &req, EVENT_TIMEOUT_MS, EVENT_ATTEMPTS, open_event_done, x))
        S.events_inflight++;
    else
        free(x);
}

static void send_open_event(gw_conn *c)
{
    if (!G.sessiond)
        return;
    open_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->conn_id = c->id;
    send_open_ctx(c, x);
}

/* ---- hello ------------------------------------------------------------------------- */

typedef struct hello_ctx {
    uint64_t conn_id;
    gw_room_pos *rooms;
    size_t nrooms;
    int retried;
    uint64_t sent_ms;
} hello_ctx;

static void hello_finish(gw_conn *c, int resumed, int64_t disconnected_ms, gw_room_pos *rooms, size_t nrooms)
{
    c->hello_pending = 0;
    c->ready = 1;
    gw_conn_rx_pause(c, 0);
    int64_t exp_in = (c->claims.exp - (int64_t)time(NULL)) * 1000;
    gw_conn_send_take(c, gw_enc_welcome(c->proto, c->session, c->claims.sub, resumed, disconnected_ms,
                                        G.cfg.heartbeat_ms, G.cfg.session_ttl_ms, exp_in > 0 ? exp_in : 0));
    LOG_DEBUG("hello", "{s:I,s:s,s:s,s:b,s:i}", "conn", (json_int_t)c->id, "user", c->claims.sub, "session",
              c->session, "resumed", resumed, "rooms", (int)nrooms);
    if (nrooms)
        gw_sub_start_many(c, rooms, nrooms);
    gw_conn_replay_held(c);
}

static void hello_send(hello_ctx *x, gw_conn *c);

static void hello_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    hello_ctx *x = arg;
    gw_conn *c = gw_conn_find(x->conn_id);
    if (!c || c->close_code)
        goto out;
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REP) {
        S.last_ok_ms = loop_now_ms(G.l);
        hello_finish(c, rep->sess_open_rep->resumed, rep->sess_open_rep->disconnected_ms, x->rooms, x->nrooms);
    } else if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR &&
               rep->error->code == GW_E_FORBIDDEN && !x->retried) {
        /* The id belongs to another user: never an error loop, a fresh
         * session, and sessiond left theirs untouched. */
        rekey(c);
        x->retried = 1;
        hello_send(x, c);
        return;
    } else {
        /* sessiond unreachable: serve anyway, tell it later. */
        if (status == -ETIMEDOUT)
            note_timeout(x->sent_ms);
        metrics_inc(S.m_open_fallback);
        LOG_WARN("sessiond did not answer the hello in time", "{s:I,s:s}", "conn", (json_int_t)c->id, "session",
                 c->session);
        hello_finish(c, 0, 0, x->rooms, x->nrooms);
        send_open_event(c);
    }
out:
    free(x->rooms);
    free(x);
}

static void hello_send(hello_ctx *x, gw_conn *c)
{
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq o = TETHER__BUS__SESS_OPEN_REQ__INIT;
    o.session = c->session;
    o.user = c->claims.sub;
    o.conn = c->id;
    o.client = c->client;
    o.at_ms = loop_wall_ms();
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
    req.sess_open_req = &o;
    x->sent_ms = loop_now_ms(G.l);
    if (!rpc_call(G.sessiond, &req, HELLO_TIMEOUT_MS, HELLO_ATTEMPTS, hello_reply, x)) {
        hello_finish(c, 0, 0, x->rooms, x->nrooms);
        free(x->rooms);
        free(x);
    }
}

void gw_sess_hello(gw_conn *c, gw_room_pos *rooms, size_t nrooms)
{
    if (!G.sessiond) {
        hello_finish(c, 0, 0, rooms, nrooms);
        free(rooms);
        return;
    }
    if (known_down()) {
        /* sessiond is known to be down: no wait, tell it when it is back. */
        metrics_inc(S.m_open_fallback);
        hello_finish(c, 0, 0, rooms, nrooms);
        free(rooms);
        send_open_event(c);
        return;
    }
    hello_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        hello_finish(c, 0, 0, rooms, nrooms);
        free(rooms);
        return;
    }
    x->conn_id = c->id;
    x->rooms = rooms;
    x->nrooms = nrooms;
    /* Frames the client sends after hello wait in the socket until welcome
     * is out, so nothing it asks for is answered before it. */
    c->hello_pending = 1;
    gw_conn_rx_pause(c, 1);
    hello_send(x, c);
}

/* ---- joins, leaves, closes, quality ---------------------------------------------------- */

void gw_sess_room(gw_conn *c, const char *room, int joined)
{
    if (!G.sessiond || !c->ready || !c->session[0])
        return;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessRoomReq r = TETHER__BUS__SESS_ROOM_REQ__INIT;
    r.session = c->session;
    r.conn = c->id;
    r.room = (char *)room;
    r.joined = joined;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ROOM_REQ;
    req.sess_room_req = &r;
    send_event(&req);
}

void gw_sess_conn_closed(gw_conn *c)
{
    if (!G.sessiond || !c->ready || !c->session[0])
        return;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessCloseReq cl = TETHER__BUS__SESS_CLOSE_REQ__INIT;
    Tether__Bus__RoomPos *pos = calloc(c->nsubs ? c->nsubs : 1, sizeof(*pos));
    Tether__Bus__RoomPos **pp = calloc(c->nsubs ? c->nsubs : 1, sizeof(*pp));
    if (pos && pp) {
        for (uint32_t i = 0; i < c->nsubs; i++) {
            tether__bus__room_pos__init(&pos[i]);
            pos[i].room = c->subs[i]->room->name;
            pos[i].epoch = (char *)gw_room_epoch(c->subs[i]->room);
            pos[i].seq = c->subs[i]->pos;
            pp[i] = &pos[i];
        }
        cl.n_rooms = c->nsubs;
        cl.rooms = pp;
    }
    cl.session = c->session;
    cl.conn = c->id;
    cl.bye = c->bye;
    cl.at_ms = loop_wall_ms();
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_CLOSE_REQ;
    req.sess_close_req = &cl;
    send_event(&req);
    free(pos);
    free(pp);
}

static void fill_quality(Tether__Bus__SessQualityReq *q, const quality_in *in, const quality_out *out)
{
    q->rtt_ms = in->rtt_ms;
    q->loss_pct = in->loss_pct;
    q->jitter_ms = in->jitter_ms;
    q->bandwidth_kbps = in->bandwidth_kbps;
    q->quality = (char *)quality_name(out->level);
    q->n_recommendations = out->nrecs;
    q->recommendations = (char **)out->recs;
    q->at_ms = loop_wall_ms();
}

void gw_sess_quality(gw_conn *c, const quality_in *in, const quality_out *out)
{
    if (!G.sessiond || !c->ready)
        return;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessQualityReq q = TETHER__BUS__SESS_QUALITY_REQ__INIT;
    fill_quality(&q, in, out);
    q.session = c->session;
    q.user = c->claims.sub;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_QUALITY_REQ;
    req.sess_quality_req = &q;
    send_event(&req);
}

uint64_t gw_sess_call_quality(const char *user, const quality_in *in, const quality_out *out, rpc_reply_cb *cb,
                              void *arg)
{
    if (!G.sessiond)
        return 0;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessQualityReq q = TETHER__BUS__SESS_QUALITY_REQ__INIT;
    fill_quality(&q, in, out);
    q.session = (char *)"";
    q.user = (char *)user;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_QUALITY_REQ;
    req.sess_quality_req = &q;
    return rpc_call(G.sessiond, &req, 500, 3, cb, arg);
}

uint64_t gw_sess_call_get(const char *user, rpc_reply_cb *cb, void *arg)
{
    if (!G.sessiond)
        return 0;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessGetReq g = TETHER__BUS__SESS_GET_REQ__INIT;
    g.session = (char *)"";
    g.user = (char *)user;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REQ;
    req.sess_get_req = &g;
    return rpc_call(G.sessiond, &req, 500, 3, cb, arg);
}

/* ---- presence ------------------------------------------------------------------------- */

/* What a subscription's presence needs until its `subscribed` is sent. */
struct gw_sub_presence {
    int resync;             /* more changes came than pre_events holds: fetch members again */
    gw_buf *members;        /* presence {members} to send after `subscribed` */
    gw_buf *pre_events[16]; /* presence changes seen before `subscribed` */
    uint32_t npre;
};

static void presence_drop(gw_sub_presence *p)
{
    gw_buf_unref(p->members);
    p->members = NULL;
    for (uint32_t i = 0; i < p->npre; i++)
        gw_buf_unref(p->pre_events[i]);
    p->npre = 0;
}

void gw_sess_sub_created(gw_sub *s)
{
    s->presence = calloc(1, sizeof(*s->presence));
    gw_sess_room(s->conn, s->room->name, 1);
    gw_sess_members(s);
}

void gw_sess_sub_stopping(gw_sub *s)
{
    if (s->presence)
        presence_drop(s->presence);
    free(s->presence);
    s->presence = NULL;
}

typedef struct members_ctx {
    uint64_t conn_id;
    uint64_t gen;
    char room[GW_MAX_ROOM + 1];
} members_ctx;

static gw_buf *members_frame(int proto, const Tether__Bus__PresenceRep *pr, const char *room)
{
    size_t n = pr ? pr->n_members : 0;
    gw_member *m = calloc(n ? n : 1, sizeof(*m));
    if (!m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        m[i].user = pr->members[i]->user ? pr->members[i]->user : "";
        m[i].state = pr->members[i]->state ? pr->members[i]->state : "online";
    }
    gw_buf *b = gw_enc_presence(proto, room, NULL, NULL, m, n);
    free(m);
    return b;
}

static void members_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    members_ctx *x = arg;
    gw_conn *c = gw_conn_find(x->conn_id);
    gw_sub *s = c ? gw_conn_find_sub(c, x->room) : NULL;
    if (!s || s->gen != x->gen)
        goto out;
    s->held = 0;
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REP) {
        S.last_ok_ms = loop_now_ms(G.l);
        gw_buf_unref(s->presence->members);
        s->presence->members = members_frame(c->proto, rep->presence_rep, x->room);
        if (s->announced)
            gw_sess_after_subscribed(s);
    }
    /* Without sessiond the subscription goes on without a members list. */
    if (!s->announced)
        gw_sub_resume_read(s);
out:
    free(x);
}

static void members_fetch(gw_sub *s, uint32_t timeout_ms)
{
    if (!s->presence)
        return; /* out of memory at its start: no members list */
    members_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->conn_id = s->conn->id;
    x->gen = s->gen;
    snprintf(x->room, sizeof(x->room), "%s", s->room->name);
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__PresenceReq pr = TETHER__BUS__PRESENCE_REQ__INIT;
    pr.room = s->room->name;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REQ;
    req.presence_req = &pr;
    if (rpc_call(G.sessiond, &req, timeout_ms, 1, members_reply, x)) {
        s->held = 1;
    } else {
        free(x);
    }
}

void gw_sess_members(gw_sub *s)
{
    if (!G.sessiond)
        return;
    /* sessiond known down: do not hold subscriptions up waiting for it. */
    if (known_down())
        return;
    members_fetch(s, MEMBERS_TIMEOUT_MS);
}

void gw_sess_after_subscribed(gw_sub *s)
{
    gw_sub_presence *p = s->presence;
    if (!p)
        return;
    if (p->members) {
        gw_conn_send(s->conn, p->members);
        for (uint32_t i = 0; i < p->npre; i++)
            gw_conn_send(s->conn, p->pre_events[i]);
    }
    presence_drop(p);
    /* More changes than were kept: a fresh list replaces what was dropped. */
    if (p->resync && !s->held && G.sessiond) {
        p->resync = 0;
        members_fetch(s, 1000);
    }
}

static void on_presence(const Tether__Bus__PresenceEvent *p)
{
    if (!p->room || !p->user || !p->state)
        return;
    gw_room *r = hmap_get(G.rooms, p->room);
    if (!r)
        return;
    gw_buf *enc[2] = { NULL, NULL };
    for (gw_sub *s = r->subs; s; s = s->rnext) {
        int proto = s->conn->proto;
        if (!enc[proto])
            enc[proto] = gw_enc_presence(proto, r->name, p->user, p->state, NULL, 0);
        if (!enc[proto])
            continue;
        if (s->announced) {
            gw_conn_send(s->conn, enc[proto]);
        } else if (s->presence && (s->presence->members || s->held)) {
            /* Not announced yet: kept, and sent after the members list, in
             * order. Changes that arrive while the list is still being
             * fetched are kept too: the list may predate them (a join
             * storm lost exactly those, tests/chaos). Replaying a change
             * the list already has is harmless; the last one wins. */
            gw_sub_presence *ps = s->presence;
            if (ps->npre < sizeof(ps->pre_events) / sizeof(ps->pre_events[0]))
                ps->pre_events[ps->npre++] = gw_buf_ref(enc[proto]);
            else
                ps->resync = 1;
        }
    }
    gw_buf_unref(enc[0]);
    gw_buf_unref(enc[1]);
}

void gw_sess_on_gap(const char *topic)
{
    if (strncmp(topic, "presence.", 9) != 0)
        return;
    /* Presence events were lost: give every subscriber a fresh list. */
    gw_room *r = hmap_get(G.rooms, topic + 9);
    if (!r || !G.sessiond)
        return;
    LOG_INFO("presence events lost, refreshing members", "{s:s}", "room", r->name);
    for (gw_sub *s = r->subs; s; s = s->rnext)
        if (s->announced && !s->held)
            members_fetch(s, 1000);
}

/* ---- snapshots and heartbeats -------------------------------------------------------------- */

static void publish_snapshot(uint64_t snapshot_id)
{
    uint32_t parts = (G.nconns + SNAPSHOT_PART - 1) / SNAPSHOT_PART;
    if (parts == 0)
        parts = 1;
    list_node *n_at = list_first(&G.conn_list);
    for (uint32_t part = 1; part <= parts; part++) {
        Tether__Bus__GwConn *gc = calloc(SNAPSHOT_PART, sizeof(*gc));
        Tether__Bus__GwConn **gp = calloc(SNAPSHOT_PART, sizeof(*gp));
        char ***rooms = calloc(SNAPSHOT_PART, sizeof(*rooms));
        size_t n = 0;
        if (!gc || !gp || !rooms)
            goto next;
        for (; n_at && n < SNAPSHOT_PART; n_at = list_next(&G.conn_list, n_at)) {
            gw_conn *c = list_entry(n_at, gw_conn, link);
            if (!c->ready || c->close_code || !c->session[0])
                continue;
            tether__bus__gw_conn__init(&gc[n]);
            gc[n].conn = c->id;
            gc[n].session = c->session;
            gc[n].user = c->claims.sub;
            gc[n].client = c->client;
            rooms[n] = calloc(c->nsubs ? c->nsubs : 1, sizeof(char *));
            if (rooms[n]) {
                for (uint32_t i = 0; i < c->nsubs; i++)
                    rooms[n][i] = c->subs[i]->room->name;
                gc[n].n_rooms = c->nsubs;
                gc[n].rooms = rooms[n];
            }
            gp[n] = &gc[n];
            n++;
        }
        bus_env ev = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__GwSnapshot snap = TETHER__BUS__GW_SNAPSHOT__INIT;
        snap.snapshot_id = snapshot_id;
        snap.part = part;
        snap.parts = parts;
        snap.n_conns = n;
        snap.conns = gp;
        ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_GW_SNAPSHOT;
        ev.gw_snapshot = &snap;
        bus_publish(G.bus, "gw.snapshot", &ev);
    next:
        for (size_t i = 0; rooms && i < n; i++)
            free(rooms[i]);
        free(rooms);
        free(gc);
        free(gp);
    }
}

void gw_sess_on_bus(const bus_env *env)
{
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_EVENT && env->presence_event)
        on_presence(env->presence_event);
    else if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_SNAPSHOT_REQ && env->snapshot_req)
        publish_snapshot(env->snapshot_req->snapshot_id);
}

static void ping_reply(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    if (status == 0 && rep)
        S.last_ok_ms = loop_now_ms(G.l);
    else if (status == -ETIMEDOUT)
        note_timeout((uint64_t)(uintptr_t)arg);
}

static void heartbeat_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    bus_env ev = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = 1000;
    hb.connections = G.nconns;
    ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    ev.heartbeat = &hb;
    bus_publish(G.bus, "gw.heartbeat", &ev);
    if (G.sessiond) {
        bus_env req = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__PingReq pr = TETHER__BUS__PING_REQ__INIT;
        req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ;
        req.ping_req = &pr;
        rpc_call(G.sessiond, &req, 1000, 1, ping_reply, (void *)(uintptr_t)loop_now_ms(G.l));
    }
}

static double inflight_fn(void *arg)
{
    (void)arg;
    return S.events_inflight;
}

void gw_sess_init(void)
{
    if (G.cfg.sessiond_enabled) {
        G.sessiond = rpc_client_new(G.l, G.cfg.sessiond, "gateway");
        if (!G.sessiond) {
            fprintf(stderr, "TETHER_SESSIOND: '%s' is not a usable endpoint list\n", G.cfg.sessiond);
            exit(2);
        }
    }
    bus_subscribe(G.bus, "sess.snapshot");
    S.m_dropped = metrics_counter("tether_gateway_session_events_dropped_total",
                                  "Session events dropped because too many were waiting for sessiond", NULL);
    S.m_open_fallback = metrics_counter("tether_gateway_hello_without_sessiond_total",
                                        "Hellos answered without sessiond (resumed: false)", NULL);
    S.m_foreign = metrics_counter("tether_gateway_session_foreign_total",
                                  "Hellos with another user's session id (given a new session)", NULL);
    metrics_gauge_fn("tether_gateway_session_events_pending", "Session events waiting for sessiond", NULL,
                     inflight_fn, NULL);
    loop_timer_start(G.l, &S.heartbeat, 0, 1000, heartbeat_cb, NULL);
}
