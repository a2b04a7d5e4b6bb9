/* md_room.c -- rooms hosted here, their sessions and media requests (see md_room.h). */
#include "md_room.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"
#include "md_floor.h"
#include "md_host.h"

#define TICK_MS 1000

struct md_rooms {
    md_ctx *c;
    hmap *rooms;        /* name -> md_room */
    hmap *sess;         /* key -> md_sess */
    hmap *gws;          /* gateway instance -> gw_seen */
    loop_timer tick;
    unsigned ticks;
};

typedef struct gw_seen {
    uint64_t last_ms;
    int dead;           /* its floors were put in grace */
} gw_seen;

/* An offer waiting for Redis (hosting claim, floor state). */
typedef struct offer_op {
    md_rooms *rs;
    rpc_server *srv;
    rpc_ctx *ctx;
    char room[MD_MAX_ROOM + 1];
    char key[MD_SESS_KEY];
    Tether__Bus__MediaReq req;   /* strings point into the fields below */
    char gw[MD_MAX_GW + 1], user[MD_MAX_USER + 1], session[MD_MAX_SESSION + 1];
    char *sdp_text;
    md_sdp *sdp;
    md_sdp_pick pick;
    char *answer;
} offer_op;

static void offer_free(offer_op *op)
{
    if (!op)
        return;
    free(op->sdp_text);
    free(op->sdp);
    free(op->answer);
    free(op);
}

/* ---- rooms and membership ------------------------------------------------------------ */

static md_room *room_new(md_rooms *rs, const char *name)
{
    md_room *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->rs = rs;
    list_init(&r->members);
    snprintf(r->name, sizeof(r->name), "%s", name);
    if (hmap_put(rs->rooms, r->name, r) < 0) {
        free(r);
        return NULL;
    }
    LOG_INFO("room hosted", "{s:s}", "room", r->name);
    return r;
}

static void room_free(md_room *r)
{
    md_rooms *rs = r->rs;
    hmap_del(rs->rooms, r->name);
    md_host_release(rs->c->host, r->name);
    LOG_INFO("room released", "{s:s}", "room", r->name);
    free(r);
}

static void room_add(md_room *r, md_sess *s)
{
    s->room = r;
    list_insert_head(&r->members, &s->link);
    r->nmembers++;
    r->talker_known = 0;
}

/* Takes s out of its room and of the session map, and destroys it. The room
 * goes when its last member does, unless keep_room (a session replaced). */
static void sess_drop(md_sess *s, int keep_room)
{
    md_room *r = s->room;
    md_rooms *rs = r->rs;
    if (hmap_get(rs->sess, s->key) == s)
        hmap_del(rs->sess, s->key);
    list_remove(&s->link);
    r->nmembers--;
    r->talker_known = 0;
    if (r->talker == s)
        r->talker = NULL;
    LOG_INFO("media session closed", "{s:s,s:s,s:i}", "session", s->key, "room", r->name, "members",
             (int)r->nmembers);
    md_sess_destroy(s);
    if (r->nmembers == 0 && !keep_room)
        room_free(r);
}

static void sess_remove(md_sess *s) { sess_drop(s, 0); }

md_sess *md_room_talker(md_room *r)
{
    if (r->talker_known)
        return r->talker;
    r->talker = NULL;
    if (r->holder[0]) {
        list_node *n;
        list_foreach(n, &r->members) {
            md_sess *s = list_entry(n, md_sess, link);
            if (!s->dead && s->conn == r->holder_conn && !strcmp(s->gw, r->holder_gw)) {
                r->talker = s;
                break;
            }
        }
        /* The holder may have resumed on another connection whose floor
         * event is still on its way: its user's session talks meanwhile. */
        if (!r->talker) {
            list_foreach(n, &r->members) {
                md_sess *s = list_entry(n, md_sess, link);
                if (!s->dead && !strcmp(s->user, r->holder)) {
                    r->talker = s;
                    break;
                }
            }
        }
    }
    r->talker_known = 1;
    return r->talker;
}

/* ---- notices ---------------------------------------------------------------------------- */

static void notice(md_rooms *rs, const char *gw, uint64_t conn, const char *room, const char *action,
                   const char *reason, const char *cand, const char *mid)
{
    char topic[MD_MAX_GW + 16];
    snprintf(topic, sizeof(topic), "media.gw.%s", gw);
    Tether__Bus__MediaNotice n = TETHER__BUS__MEDIA_NOTICE__INIT;
    n.room = (char *)room;
    n.conn = conn;
    n.action = (char *)action;
    n.reason = (char *)(reason ? reason : "");
    n.candidate = (char *)(cand ? cand : "");
    n.mid = (char *)(mid ? mid : "");
    bus_env ev = TETHER__BUS__ENVELOPE__INIT;
    ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_NOTICE;
    ev.media_notice = &n;
    if (bus_publish(rs->c->b, topic, &ev) < 0)
        LOG_WARN("media notice not published", "{s:s,s:s,s:s}", "gateway", gw, "room", room, "action", action);
}

void md_room_notice(md_sess *s, const char *action, const char *reason)
{
    notice(s->room->rs, s->gw, s->conn, s->room->name, action, reason, NULL, NULL);
}

void md_room_sess_failed(md_sess *s, const char *action, const char *reason)
{
    if (s->dead)
        return;
    LOG_INFO("media session failed", "{s:s,s:s}", "session", s->key, "reason", reason);
    metrics_inc(md_m.sessions_dropped);
    if (action)
        md_room_notice(s, action, reason);
    sess_remove(s);
}

/* ---- floor ---------------------------------------------------------------------------- */

static void apply_floor(md_room *r, uint64_t seq, const char *state, const char *holder, const char *gw,
                        uint64_t conn, uint32_t max_ms)
{
    if (seq <= r->floor_seq && r->floor_seq != 0)
        return;
    r->floor_seq = seq;
    int taken = !strcmp(state, "taken");
    const char *was = r->holder;
    if (taken && strcmp(was, holder) != 0)
        metrics_inc(md_m.talker_switches);
    snprintf(r->holder, sizeof(r->holder), "%s", taken ? holder : "");
    snprintf(r->holder_gw, sizeof(r->holder_gw), "%s", taken ? gw : "");
    r->holder_conn = taken ? conn : 0;
    r->holder_max_ms = taken ? max_ms : 0;
    if (taken)
        r->burst = seq;
    r->talker_known = 0;
}

void md_rooms_on_floor(md_rooms *rs, const Tether__Bus__PttEvent *ev)
{
    if (!ev->room || !ev->state)
        return;
    md_room *r = hmap_get(rs->rooms, ev->room);
    if (!r)
        return;
    /* A resume re-announces the same holder with a new seq: same burst. */
    int resumed = !strcmp(ev->state, "taken") && !strcmp(r->holder, ev->holder ? ev->holder : "");
    uint64_t burst = r->burst;
    apply_floor(r, ev->seq, ev->state, ev->holder ? ev->holder : "", ev->gateway ? ev->gateway : "", ev->conn,
                ev->max_ms);
    if (resumed)
        r->burst = burst;
}

typedef struct refresh_op {
    md_rooms *rs;
    char room[MD_MAX_ROOM + 1];
} refresh_op;

static void on_refreshed(int status, const md_floor_state *st, void *arg)
{
    refresh_op *x = arg;
    md_room *r = status == 0 && st ? hmap_get(x->rs->rooms, x->room) : NULL;
    if (r)
        apply_floor(r, st->seq, st->state, st->holder, st->gateway, st->conn, st->max_ms);
    free(x);
}

void md_rooms_refresh_floor(md_rooms *rs, const char *room)
{
    if (!hmap_get(rs->rooms, room))
        return;
    refresh_op *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->rs = rs;
    snprintf(x->room, sizeof(x->room), "%s", room);
    if (md_floor_get(rs->c->floor, room, on_refreshed, x) < 0)
        free(x);
}

/* ---- offers ------------------------------------------------------------------------------ */

static void reply_error(offer_op *op, uint32_t code, const char *why)
{
    rpc_reply_error(op->srv, op->ctx, code, why);
    op->ctx = NULL;
}

/* TETHER_MEDIA_TRICKLE: after the answer, each of our candidates, then an
 * empty one (end of candidates), as MediaNotices to the client's gateway
 * (which holds them back until the answer is out). */
static void trickle(offer_op *op)
{
    md_sess *s = hmap_get(op->rs->sess, op->key);
    if (!op->rs->c->cfg.trickle || !s || s->dead)
        return;
    char cands[MD_ICE_MAX_CANDS][MD_ICE_CAND_LEN];
    size_t n = md_ice_candidates(s->ice, cands, MD_ICE_MAX_CANDS);
    const char *mid = op->sdp->m[op->pick.index].mid[0] ? op->sdp->m[op->pick.index].mid : "0";
    for (size_t i = 0; i < n; i++)
        notice(op->rs, s->gw, s->conn, op->room, "candidate", NULL, cands[i], mid);
    notice(op->rs, s->gw, s->conn, op->room, "candidate", NULL, "", mid);
}

static void on_floor_for_answer(int status, const md_floor_state *st, void *arg)
{
    offer_op *op = arg;
    md_room *r = hmap_get(op->rs->rooms, op->room);
    Tether__Bus__MediaRep rep = TETHER__BUS__MEDIA_REP__INIT;
    rep.room = op->room;
    rep.action = (char *)"answer";
    rep.sdp = op->answer;
    rep.floor_state = (char *)"idle";
    if (status == 0 && st) {
        if (r)
            apply_floor(r, st->seq, st->state, st->holder, st->gateway, st->conn, st->max_ms);
        rep.floor_state = (char *)st->state;
        rep.floor_holder = (char *)st->holder;
        rep.floor_max_ms = st->max_ms;
    }
    if (status != -ECANCELED) {
        bus_env env = TETHER__BUS__ENVELOPE__INIT;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REP;
        env.media_rep = &rep;
        rpc_reply(op->srv, op->ctx, &env);
        trickle(op);
    } else {
        rpc_ctx_drop(op->ctx);
    }
    offer_free(op);
}

/* The answer is ready: add the room's floor to it, then reply. */
static void answer_with_floor(offer_op *op)
{
    if (md_floor_get(op->rs->c->floor, op->room, on_floor_for_answer, op) < 0)
        on_floor_for_answer(-ENOTCONN, NULL, op);
}

static void offer_in_room(offer_op *op, md_room *r)
{
    const char *why = "cannot create the media session";
    md_sess *old = hmap_get(op->rs->sess, op->key);
    if (old && !old->dead) {
        if (old->offer && !strcmp(old->offer, op->sdp_text) && old->answer) {
            /* A retried request: the same answer. */
            op->answer = strdup(old->answer);
            if (!op->answer) {
                reply_error(op, 4500, "out of memory");
                offer_free(op);
                return;
            }
            answer_with_floor(op);
            return;
        }
        if (md_sess_same_peer(old, op->sdp, &op->pick)) {
            if (md_sess_reoffer(old, op->sdp, &op->pick, &why) < 0) {
                metrics_inc(md_m.sdp_rejected);
                reply_error(op, 4400, why);
                offer_free(op);
                return;
            }
            op->answer = md_sess_answer(old, op->sdp, &op->pick, op->sdp_text);
            if (!op->answer) {
                reply_error(op, 4500, "cannot write the answer");
                offer_free(op);
                return;
            }
            answer_with_floor(op);
            return;
        }
        /* Another peer behind the same (connection, room): a new
         * PeerConnection. The old session goes. */
        sess_drop(old, 1);
    }
    md_sess *s = md_sess_new(op->rs->c, r, &op->req, op->sdp, &op->pick, &why);
    int client_fault = !s && errno == EINVAL;
    if (!s || hmap_put(op->rs->sess, s->key, s) < 0) {
        if (s)
            md_sess_destroy(s);
        if (r->nmembers == 0)
            room_free(r);
        if (client_fault) {
            metrics_inc(md_m.sdp_rejected);
            LOG_INFO("offer refused", "{s:s,s:s,s:s}", "room", op->room, "user", op->user, "reason", why);
        }
        reply_error(op, client_fault ? 4400 : 4500, why);
        offer_free(op);
        return;
    }
    room_add(r, s);
    op->answer = md_sess_answer(s, op->sdp, &op->pick, op->sdp_text);
    if (!op->answer) {
        sess_remove(s);
        reply_error(op, 4500, "cannot write the answer");
        offer_free(op);
        return;
    }
    LOG_INFO("media session opened", "{s:s,s:s,s:s,s:s,s:s,s:i}", "session", s->key, "room", r->name, "user",
             s->user, "keying", s->keying == MD_KEYING_DTLS ? "dtls" : "sdes", "direction", md_sdp_dir_name(s->dir),
             "port", (int)md_ice_local_port(s->ice));
    answer_with_floor(op);
}

static void on_claim(int status, int mine, const char *owner, void *arg)
{
    offer_op *op = arg;
    if (status == -ECANCELED) {
        rpc_ctx_drop(op->ctx);
        offer_free(op);
        return;
    }
    if (status < 0) {
        reply_error(op, 4500, "media store unavailable");
        offer_free(op);
        return;
    }
    if (!mine) {
        if (op->req.redirected || !owner[0]) {
            reply_error(op, 4500, "the room is moving between media servers: retry");
        } else {
            metrics_inc(md_m.redirects);
            Tether__Bus__MediaRep rep = TETHER__BUS__MEDIA_REP__INIT;
            rep.room = op->room;
            rep.action = (char *)"redirect";
            rep.redirect = (char *)owner;
            bus_env env = TETHER__BUS__ENVELOPE__INIT;
            env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REP;
            env.media_rep = &rep;
            rpc_reply(op->srv, op->ctx, &env);
        }
        offer_free(op);
        return;
    }
    md_room *r = hmap_get(op->rs->rooms, op->room);
    if (!r && !(r = room_new(op->rs, op->room))) {
        reply_error(op, 4500, "out of memory");
        offer_free(op);
        return;
    }
    offer_in_room(op, r);
}

static int valid_req(const Tether__Bus__MediaReq *q)
{
    size_t rl = q->room ? strlen(q->room) : 0, gl = q->gateway ? strlen(q->gateway) : 0;
    size_t ul = q->user ? strlen(q->user) : 0;
    return rl > 0 && rl <= MD_MAX_ROOM && gl > 0 && !strchr(q->gateway, '/') && gl <= MD_MAX_GW && ul > 0 &&
           ul <= MD_MAX_USER && (!q->session || strlen(q->session) <= MD_MAX_SESSION) && q->action;
}

static void handle_offer(md_rooms *rs, rpc_server *srv, rpc_ctx *ctx, const Tether__Bus__MediaReq *req)
{
    const char *why = "malformed SDP";
    metrics_inc(md_m.offers);
    if (rs->c->draining) {
        /* The gateway tries another replica at once (see gw_media.c). */
        rpc_reply_error(srv, ctx, 4500, "media server draining");
        return;
    }
    offer_op *op = calloc(1, sizeof(*op));
    size_t sl = req->sdp ? strlen(req->sdp) : 0;
    if (!op || !(op->sdp = malloc(sizeof(*op->sdp))) || !(op->sdp_text = strdup(req->sdp ? req->sdp : ""))) {
        rpc_reply_error(srv, ctx, 4500, "out of memory");
        offer_free(op);
        return;
    }
    op->rs = rs;
    op->srv = srv;
    op->ctx = ctx;
    if (md_sdp_parse(op->sdp_text, sl, op->sdp, &why) < 0 || md_sdp_select(op->sdp, &op->pick, &why) < 0) {
        metrics_inc(md_m.sdp_rejected);
        LOG_INFO("offer refused", "{s:s,s:s,s:s}", "room", req->room, "user", req->user, "reason", why);
        reply_error(op, 4400, why);
        offer_free(op);
        return;
    }
    snprintf(op->room, sizeof(op->room), "%s", req->room);
    snprintf(op->gw, sizeof(op->gw), "%s", req->gateway);
    snprintf(op->user, sizeof(op->user), "%s", req->user);
    snprintf(op->session, sizeof(op->session), "%s", req->session ? req->session : "");
    snprintf(op->key, sizeof(op->key), "%s/%" PRIu64 "/%s", req->gateway, req->conn, req->room);
    tether__bus__media_req__init(&op->req);
    op->req.room = op->room;
    op->req.gateway = op->gw;
    op->req.user = op->user;
    op->req.session = op->session;
    op->req.conn = req->conn;
    op->req.redirected = req->redirected;
    op->req.take_over = req->take_over;
    op->req.action = (char *)"offer";
    md_room *r = hmap_get(rs->rooms, op->room);
    if (r) {
        offer_in_room(op, r);
        return;
    }
    if (md_host_claim(rs->c->host, op->room, req->take_over, on_claim, op) < 0) {
        reply_error(op, 4500, "media store unavailable");
        offer_free(op);
    }
}

/* ---- other requests --------------------------------------------------------------------- */

static void reply_ok(rpc_server *srv, rpc_ctx *ctx, const char *room)
{
    Tether__Bus__MediaRep rep = TETHER__BUS__MEDIA_REP__INIT;
    rep.room = (char *)room;
    rep.action = (char *)"ok";
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REP;
    env.media_rep = &rep;
    rpc_reply(srv, ctx, &env);
}

void md_rooms_handle(md_rooms *rs, rpc_server *srv, rpc_ctx *ctx, const Tether__Bus__MediaReq *req)
{
    if (!req || !valid_req(req)) {
        rpc_reply_error(srv, ctx, 4400, "media: room, user, gateway and action are required");
        return;
    }
    if (!strcmp(req->action, "offer")) {
        handle_offer(rs, srv, ctx, req);
        return;
    }
    char key[MD_SESS_KEY];
    snprintf(key, sizeof(key), "%s/%" PRIu64 "/%s", req->gateway, req->conn, req->room);
    md_sess *s = hmap_get(rs->sess, key);
    if (!strcmp(req->action, "candidate")) {
        if (!s || s->dead) {
            rpc_reply_error(srv, ctx, 4404, "no media session for this room");
            return;
        }
        if (md_sess_candidate(s, req->candidate) < 0) {
            rpc_reply_error(srv, ctx, 4400, "malformed candidate");
            return;
        }
        reply_ok(srv, ctx, req->room);
    } else if (!strcmp(req->action, "leave")) {
        if (s && !s->dead)
            sess_remove(s);
        reply_ok(srv, ctx, req->room);
    } else if (!strcmp(req->action, "close")) {
        /* Every session of the connection, whatever the room. */
        char prefix[MD_SESS_KEY];
        int pl = snprintf(prefix, sizeof(prefix), "%s/%" PRIu64 "/", req->gateway, req->conn);
        int again = 1;
        while (again) {
            again = 0;
            hmap_iter it = { 0 };
            const char *k;
            void *v;
            while (hmap_next(rs->sess, &it, &k, &v))
                if (!strncmp(k, prefix, (size_t)pl)) {
                    sess_remove(v);
                    again = 1;
                    break;
                }
        }
        reply_ok(srv, ctx, req->room);
    } else {
        rpc_reply_error(srv, ctx, 4400, "media: action must be offer, candidate or leave");
    }
}

/* ---- gateways, hosting, draining ----------------------------------------------------------- */

void md_rooms_gw_touch(md_rooms *rs, const char *gw)
{
    if (!gw || !*gw)
        return;
    gw_seen *g = hmap_get(rs->gws, gw);
    if (!g) {
        if (!(g = calloc(1, sizeof(*g))))
            return;
        if (hmap_put(rs->gws, gw, g) < 0) {
            free(g);
            return;
        }
    }
    g->last_ms = loop_mono_ms();
    g->dead = 0;
}

void md_rooms_on_gw_heartbeat(md_rooms *rs, const bus_env *env)
{
    if (env->source && env->source->instance)
        md_rooms_gw_touch(rs, env->source->instance);
}

/* Removes every session matching pred, with a notice. */
static void drop_where(md_rooms *rs, int (*pred)(md_rooms *, md_sess *, void *), void *arg, const char *action,
                       const char *reason)
{
    int again = 1;
    while (again) {
        again = 0;
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(rs->sess, &it, &k, &v)) {
            md_sess *s = v;
            if (!s->dead && pred(rs, s, arg)) {
                if (action)
                    md_room_notice(s, action, reason);
                metrics_inc(md_m.sessions_dropped);
                sess_remove(s);
                again = 1;
                break;
            }
        }
    }
}

static int gw_dead(md_rooms *rs, md_sess *s, void *arg)
{
    uint64_t now = *(uint64_t *)arg;
    gw_seen *g = hmap_get(rs->gws, s->gw);
    uint64_t last = g ? g->last_ms : s->created_ms;
    return now - last > rs->c->cfg.gw_dead_ms;
}

static int in_room(md_rooms *rs, md_sess *s, void *arg)
{
    (void)rs;
    return !strcmp(s->room->name, arg);
}

static int any(md_rooms *rs, md_sess *s, void *arg)
{
    (void)rs;
    (void)s;
    (void)arg;
    return 1;
}

void md_rooms_lost(md_rooms *rs, const char *room)
{
    char name[MD_MAX_ROOM + 1];
    snprintf(name, sizeof(name), "%s", room);
    drop_where(rs, in_room, name, "restart", "the room moved to another media server");
}

void md_rooms_drain(md_rooms *rs)
{
    drop_where(rs, any, NULL, "restart", "media server shutting down");
    md_host_release_all(rs->c->host);
}

static void tick_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    md_rooms *rs = arg;
    uint64_t now = loop_mono_ms();
    rs->ticks++;
    /* Judge gateways only while the bus demonstrably works (our own probe
     * comes back through busd): a broken bus must not drop every session. */
    int bus_ok = rs->c->last_bus_probe_ms && now - rs->c->last_bus_probe_ms < 3 * TICK_MS;
    if (bus_ok)
        drop_where(rs, gw_dead, &now, NULL, NULL);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(rs->gws, &it, &k, &v)) {
        gw_seen *g = v;
        if (bus_ok && !g->dead && now - g->last_ms > rs->c->cfg.gw_dead_ms) {
            /* Its clients' floors: the grace period starts now. */
            g->dead = 1;
            LOG_WARN("gateway silent: its floor holders get their grace period", "{s:s}", "gateway", k);
            md_floor_gw_dead(rs->c->floor, k);
        }
        if (now - g->last_ms > 60000) {
            hmap_del(rs->gws, k);
            free(g);
        }
    }
    if (rs->ticks % 2 == 0) {
        it = (hmap_iter){ 0 };
        while (hmap_next(rs->rooms, &it, &k, &v))
            md_fwd_reports(v);
    }
}

md_rooms *md_rooms_new(md_ctx *c)
{
    md_rooms *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    rs->c = c;
    rs->rooms = hmap_new();
    rs->sess = hmap_new();
    rs->gws = hmap_new();
    if (!rs->rooms || !rs->sess || !rs->gws || loop_timer_start(c->l, &rs->tick, TICK_MS, TICK_MS, tick_cb, rs) < 0) {
        md_rooms_free(rs);
        return NULL;
    }
    return rs;
}

void md_rooms_free(md_rooms *rs)
{
    if (!rs)
        return;
    loop_timer_stop(rs->c->l, &rs->tick);
    if (rs->sess)
        drop_where(rs, any, NULL, NULL, NULL);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (rs->gws && hmap_next(rs->gws, &it, &k, &v))
        free(v);
    hmap_free(rs->gws);
    hmap_free(rs->sess);
    hmap_free(rs->rooms);
    free(rs);
}

size_t md_rooms_count(const md_rooms *rs) { return hmap_count(rs->rooms); }
size_t md_rooms_sessions(const md_rooms *rs) { return hmap_count(rs->sess); }
