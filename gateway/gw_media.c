/* gw_media.c -- push-to-talk and audio signaling relay (see gw_media.h).
 *
 * ptt frames become PttReq requests to mediad (any replica: floors live in
 * Redis) and their answers `granted` / `denied` frames; floor changes reach
 * every gateway on ptt.<room> (PttEvent) and become `taken`, `idle` and
 * `revoked` frames for the room's local subscribers. A floor event older
 * than one already applied (per-room floor sequence) is ignored, because
 * events of different mediad replicas are not ordered on the bus.
 *
 * media frames become MediaReq requests. A room's audio lives on one mediad
 * replica (room affinity): the first offer goes to any configured replica,
 * and a replica that does not host the room answers with a redirect to the
 * one that does, which the gateway follows (creating a request client for an
 * endpoint it did not know). Each client's (connection, room) session
 * remembers its host, so candidates and re-offers go straight there;
 * candidates that arrive while the offer is in flight wait for its answer.
 *
 * mediad loss: every mediad hosting sessions of ours is pinged every 300 ms.
 * Three missed pings, or a ping answered by a new incarnation (a restart),
 * and its sessions' clients get `media {action: restart}`: they offer again,
 * and the floor they held is still theirs in Redis (grace period). Notices
 * from mediad (server candidates, a session it lost or refused) arrive on
 * media.gw.<our instance>.
 *
 * A connection that closes while holding a floor sends `disconnect`, which
 * starts the floor's grace period instead of releasing it, so a holder whose
 * network blinked resumes its floor by requesting it again.
 */
#include "gw_media.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

#define PTT_TIMEOUT_MS 500
#define PTT_ATTEMPTS 4
#define OFFER_TIMEOUT_MS 1000
#define OFFER_ATTEMPTS 8
#define OFFER_ATTEMPTS_MANY 2
#define SMALL_TIMEOUT_MS 1000
#define SMALL_ATTEMPTS 3
#define PING_MS 300
#define PING_FAILS 3
#define READY_MS 3000
#define MAX_ENDPOINTS 32
#define MAX_PENDING_CANDS 32
#define MAX_REDIRECTS 2
#define SHUN_MS 5000

/* One mediad endpoint (configured, or learned from a redirect). */
typedef struct mdc {
    char ep[256];
    rpc_client *rpc;
    uint64_t incarnation;   /* of the process that answered last (0: none yet) */
    uint64_t last_ok_ms;
    uint64_t shun_until_ms; /* refused an offer (draining): not chosen until then */
    unsigned fails;
    int pinging;
    unsigned nsess;         /* sessions of ours it hosts */
} mdc;

/* A client's audio session in one room. */
typedef struct msess {
    uint64_t conn;
    char room[GW_MAX_ROOM + 1];
    mdc *host;              /* NULL until an answer came */
    uint64_t incarnation;   /* the host's incarnation when it answered */
    unsigned offering;      /* offers in flight */
    char *cands[MAX_PENDING_CANDS];
    char *mids[MAX_PENDING_CANDS];
    unsigned ncands;
    gw_buf *scands[MAX_PENDING_CANDS]; /* mediad's candidates that overtook the answer */
    unsigned nscands;
} msess;

/* What this gateway knows of a room's floor. */
typedef struct floor_st {
    uint64_t seq;
    int taken;
    char holder[GW_MAX_USER + 1];
    char gw[160];
    uint64_t conn;
} floor_st;

static struct {
    int enabled;
    rpc_client *pool;       /* every configured endpoint: floor requests */
    mdc *eps[MAX_ENDPOINTS];
    unsigned neps, nconfigured, rr;
    hmap *sess;             /* "<conn>/<room>" -> msess */
    hmap *floors;           /* room -> floor_st */
    char notice_topic[200];
    loop_timer tick;
    uint64_t last_ok_ms;
    unsigned ticks;
    metrics_series *m_ptt, *m_ptt_fail, *m_offers, *m_redirects, *m_takeovers, *m_restarts, *m_fail, *m_up;
} M;

static void skey(char *buf, size_t n, uint64_t conn, const char *room)
{
    snprintf(buf, n, "%" PRIx64 "/%s", conn, room);
}

/* ---- endpoints --------------------------------------------------------------------------- */

static mdc *ep_add(const char *ep)
{
    for (unsigned i = 0; i < M.neps; i++)
        if (!strcmp(M.eps[i]->ep, ep))
            return M.eps[i];
    if (M.neps == MAX_ENDPOINTS || strlen(ep) >= sizeof(M.eps[0]->ep))
        return NULL;
    mdc *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    snprintf(m->ep, sizeof(m->ep), "%s", ep);
    m->rpc = rpc_client_new(G.l, ep, "gateway");
    if (!m->rpc) {
        free(m);
        return NULL;
    }
    M.eps[M.neps++] = m;
    return m;
}

/* A configured endpoint for a first offer: round robin over those that
 * answered lately, any configured one otherwise. */
static mdc *ep_pick(void)
{
    uint64_t now = loop_now_ms(G.l);
    for (unsigned k = 0; k < M.nconfigured; k++) {
        mdc *m = M.eps[(M.rr + k) % M.nconfigured];
        if (m->fails < PING_FAILS && m->last_ok_ms && now - m->last_ok_ms < READY_MS && now >= m->shun_until_ms) {
            M.rr = (M.rr + k + 1) % M.nconfigured;
            return m;
        }
    }
    return M.nconfigured ? M.eps[M.rr++ % M.nconfigured] : NULL;
}

/* ---- sessions ------------------------------------------------------------------------------ */

static void sess_clear_cands(msess *s)
{
    for (unsigned i = 0; i < s->ncands; i++) {
        free(s->cands[i]);
        free(s->mids[i]);
    }
    s->ncands = 0;
    for (unsigned i = 0; i < s->nscands; i++)
        gw_buf_unref(s->scands[i]);
    s->nscands = 0;
}

static void sess_set_host(msess *s, mdc *host)
{
    if (s->host)
        s->host->nsess--;
    s->host = host;
    if (host)
        host->nsess++;
}

static msess *sess_get(uint64_t conn, const char *room, int create)
{
    char k[GW_MAX_ROOM + 24];
    skey(k, sizeof(k), conn, room);
    msess *s = hmap_get(M.sess, k);
    if (s || !create)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->conn = conn;
    snprintf(s->room, sizeof(s->room), "%s", room);
    if (hmap_put(M.sess, k, s) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void sess_del(msess *s)
{
    char k[GW_MAX_ROOM + 24];
    skey(k, sizeof(k), s->conn, s->room);
    hmap_del(M.sess, k);
    sess_set_host(s, NULL);
    sess_clear_cands(s);
    free(s);
}

/* ---- requests ------------------------------------------------------------------------------ */

static void fill_media_req(Tether__Bus__MediaReq *q, gw_conn *c, uint64_t conn, const char *room,
                           const char *action)
{
    tether__bus__media_req__init(q);
    q->room = (char *)room;
    q->user = c ? c->claims.sub : (char *)"-";
    q->session = c ? c->session : (char *)"";
    q->conn = conn;
    q->gateway = (char *)cfg_instance();
    q->action = (char *)action;
}

static void ignore_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    (void)status;
    (void)rep;
    (void)arg;
}

/* Sends a request whose answer nobody waits for (leave, candidate). */
static void send_small(mdc *host, Tether__Bus__MediaReq *q)
{
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REQ;
    req.media_req = q;
    rpc_call(host->rpc, &req, SMALL_TIMEOUT_MS, SMALL_ATTEMPTS, ignore_reply, NULL);
}

static void send_candidate(msess *s, gw_conn *c, const char *cand, const char *mid)
{
    Tether__Bus__MediaReq q;
    fill_media_req(&q, c, s->conn, s->room, "candidate");
    q.candidate = (char *)(cand ? cand : "");
    q.mid = (char *)(mid ? mid : "");
    send_small(s->host, &q);
}

/* ---- ptt ------------------------------------------------------------------------------------ */

typedef struct ptt_ctx {
    uint64_t conn;
    char room[GW_MAX_ROOM + 1];
    char user[GW_MAX_USER + 1];
    char action[16];
} ptt_ctx;

static void send_ptt(uint64_t conn, const char *room, const char *user, const char *session, const char *action,
                     rpc_reply_cb *cb, ptt_ctx *x);

static void ptt_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    ptt_ctx *x = arg;
    gw_conn *c = gw_conn_find(x->conn);
    if (status == 0 && rep)
        M.last_ok_ms = loop_now_ms(G.l);
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PTT_REP && rep->ptt_rep) {
        const Tether__Bus__PttRep *p = rep->ptt_rep;
        const char *state = p->state ? p->state : "";
        if (!c || c->close_code) {
            /* Granted to a connection that is gone: start the grace period
             * as if it had closed after the grant. */
            if (!strcmp(state, "granted") && strcmp(x->action, "request") == 0)
                send_ptt(x->conn, x->room, x->user, "", "disconnect", ignore_reply, NULL);
            goto out;
        }
        if (!strcmp(state, "granted") || !strcmp(state, "denied"))
            gw_conn_send_take(c, gw_enc_ptt(c->proto, x->room, state, p->holder, p->max_ms, p->reason));
    } else if (c && !c->close_code && strcmp(x->action, "disconnect") != 0) {
        metrics_inc(M.m_ptt_fail);
        if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR && rep->error)
            gw_conn_error(c, (int)rep->error->code, rep->error->reason ? rep->error->reason : "ptt failed", NULL);
        else
            gw_conn_error(c, GW_E_INTERNAL, "push-to-talk service unavailable: retry", NULL);
    }
out:
    free(x);
}

static void send_ptt(uint64_t conn, const char *room, const char *user, const char *session, const char *action,
                     rpc_reply_cb *cb, ptt_ctx *x)
{
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__PttReq p = TETHER__BUS__PTT_REQ__INIT;
    p.room = (char *)room;
    p.user = (char *)user;
    p.session = (char *)session;
    p.conn = conn;
    p.gateway = (char *)cfg_instance();
    p.action = (char *)action;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PTT_REQ;
    req.ptt_req = &p;
    if (!rpc_call(M.pool, &req, PTT_TIMEOUT_MS, PTT_ATTEMPTS, cb, x))
        free(x);
}

/* Checks what every ptt/media frame needs; sends the error and returns -1. */
static int check_room(gw_conn *c, const char *room)
{
    if (!M.enabled) {
        gw_conn_error(c, GW_E_INTERNAL, "push-to-talk media is not configured on this gateway", NULL);
        return -1;
    }
    if (!jwt_claims_room_allowed(&c->claims, room)) {
        gw_conn_error(c, GW_E_FORBIDDEN, "forbidden: this room is not in your token", NULL);
        return -1;
    }
    /* Floor and media events go to a room's subscribers: a client that is
     * not one would never hear `taken` or `idle`. */
    if (!gw_conn_find_sub(c, room)) {
        gw_conn_error(c, GW_E_NOT_FOUND, "subscribe to the room before push-to-talk or media", NULL);
        return -1;
    }
    return 0;
}

static void do_ptt(gw_conn *c, const gw_cframe *f)
{
    if (check_room(c, f->room) < 0)
        return;
    ptt_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        gw_conn_error(c, GW_E_INTERNAL, "out of memory", NULL);
        return;
    }
    x->conn = c->id;
    snprintf(x->room, sizeof(x->room), "%s", f->room);
    snprintf(x->user, sizeof(x->user), "%s", c->claims.sub);
    snprintf(x->action, sizeof(x->action), "%s", f->action);
    metrics_inc(M.m_ptt);
    send_ptt(c->id, f->room, c->claims.sub, c->session, f->action, ptt_reply, x);
}

/* ---- media ---------------------------------------------------------------------------------- */

typedef struct offer_ctx {
    uint64_t conn;
    char room[GW_MAX_ROOM + 1];
    char *sdp;
    mdc *to;
    unsigned redirects;
} offer_ctx;

static void offer_send(offer_ctx *x, gw_conn *c, int redirected, int take_over);

static void offer_done(offer_ctx *x, msess *s)
{
    if (s && s->offering)
        s->offering--;
    free(x->sdp);
    free(x);
}

static void offer_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    offer_ctx *x = arg;
    gw_conn *c = gw_conn_find(x->conn);
    msess *s = sess_get(x->conn, x->room, 0);
    if (status == 0 && rep) {
        x->to->last_ok_ms = loop_now_ms(G.l);
        M.last_ok_ms = x->to->last_ok_ms;
    }
    if (!c || c->close_code || !s) {
        offer_done(x, s);
        return;
    }
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REP && rep->media_rep) {
        const Tether__Bus__MediaRep *m = rep->media_rep;
        if (m->action && !strcmp(m->action, "redirect") && m->redirect && *m->redirect) {
            mdc *to = x->redirects < MAX_REDIRECTS ? ep_add(m->redirect) : NULL;
            if (!to) {
                gw_conn_error(c, GW_E_INTERNAL, "media server unavailable: retry", NULL);
                offer_done(x, s);
                return;
            }
            metrics_inc(M.m_redirects);
            x->redirects++;
            if (to->fails >= PING_FAILS) {
                /* The room's host does not answer us: the replica that
                 * redirected takes the room over rather than waiting for
                 * the dead host's claim to expire. */
                metrics_inc(M.m_takeovers);
                offer_send(x, c, 0, 1);
                return;
            }
            x->to = to;
            offer_send(x, c, 1, 0);
            return;
        }
        if (m->action && !strcmp(m->action, "answer")) {
            sess_set_host(s, x->to);
            s->incarnation = rep->source ? rep->source->incarnation : 0;
            if (!x->to->incarnation)
                x->to->incarnation = s->incarnation;
            gw_conn_send_take(c, gw_enc_media(c->proto, x->room, "answer", m->sdp ? m->sdp : "", NULL, NULL, NULL));
            for (unsigned i = 0; i < s->nscands; i++)
                gw_conn_send(c, s->scands[i]);
            for (unsigned i = 0; i < s->ncands; i++)
                send_candidate(s, c, s->cands[i], s->mids[i]);
            sess_clear_cands(s);
            /* Joining during a talk burst: say who talks (the holder knows). */
            if (m->floor_state && !strcmp(m->floor_state, "taken") && m->floor_holder &&
                strcmp(m->floor_holder, c->claims.sub) != 0)
                gw_conn_send_take(c, gw_enc_ptt(c->proto, x->room, "taken", m->floor_holder, m->floor_max_ms, NULL));
            offer_done(x, s);
            return;
        }
    }
    int refused = status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR && rep->error &&
                  rep->error->code == GW_E_INTERNAL;
    if ((refused || status == -ETIMEDOUT) && !s->host && x->redirects == 0 && M.nconfigured > 1) {
        /* A replica that cannot take the offer now (draining, gone, its
         * store down): another one can, once. */
        x->to->shun_until_ms = loop_now_ms(G.l) + SHUN_MS;
        mdc *to = ep_pick();
        if (to && to != x->to) {
            x->to = to;
            x->redirects = MAX_REDIRECTS;
            offer_send(x, c, 0, 0);
            return;
        }
    }
    metrics_inc(M.m_fail);
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR && rep->error)
        gw_conn_error(c, (int)rep->error->code, rep->error->reason ? rep->error->reason : "offer refused", NULL);
    else
        gw_conn_error(c, GW_E_INTERNAL, "media server unavailable: retry the offer", NULL);
    if (s->offering <= 1 && !s->host) {
        offer_done(x, s);
        sess_del(s);
        return;
    }
    offer_done(x, s);
}

static void offer_send(offer_ctx *x, gw_conn *c, int redirected, int take_over)
{
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__MediaReq q;
    fill_media_req(&q, c, x->conn, x->room, "offer");
    q.sdp = x->sdp;
    q.redirected = redirected;
    q.take_over = take_over;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REQ;
    req.media_req = &q;
    /* With several replicas a first offer waits less for one: another
     * replica is tried next (offer_reply). */
    uint32_t attempts = M.nconfigured > 1 && !x->redirects && !redirected ? OFFER_ATTEMPTS_MANY : OFFER_ATTEMPTS;
    if (!rpc_call(x->to->rpc, &req, OFFER_TIMEOUT_MS, attempts, offer_reply, x)) {
        gw_conn_error(c, GW_E_INTERNAL, "out of memory", NULL);
        offer_done(x, sess_get(x->conn, x->room, 0));
    }
}

static void do_offer(gw_conn *c, const gw_cframe *f)
{
    msess *s = sess_get(c->id, f->room, 1);
    offer_ctx *x = calloc(1, sizeof(*x));
    char *sdp = f->sdp ? strdup(f->sdp) : NULL;
    mdc *to = s && s->host ? s->host : ep_pick();
    if (!s || !x || !sdp || !to) {
        free(x);
        free(sdp);
        gw_conn_error(c, GW_E_INTERNAL, to ? "out of memory" : "no media server configured", NULL);
        return;
    }
    x->conn = c->id;
    snprintf(x->room, sizeof(x->room), "%s", f->room);
    x->sdp = sdp;
    x->to = to;
    s->offering++;
    metrics_inc(M.m_offers);
    offer_send(x, c, 0, 0);
}

static void do_candidate(gw_conn *c, const gw_cframe *f)
{
    msess *s = sess_get(c->id, f->room, 0);
    if (!s) {
        gw_conn_error(c, GW_E_NOT_FOUND, "send an offer before candidates", NULL);
        return;
    }
    if (s->host && !s->offering) {
        send_candidate(s, c, f->candidate, f->mid);
        return;
    }
    if (s->ncands == MAX_PENDING_CANDS) {
        gw_conn_error(c, GW_E_RATE, "too many candidates before the answer", NULL);
        return;
    }
    s->cands[s->ncands] = strdup(f->candidate ? f->candidate : "");
    s->mids[s->ncands] = strdup(f->mid);
    if (s->cands[s->ncands] && s->mids[s->ncands])
        s->ncands++;
    else {
        free(s->cands[s->ncands]);
        free(s->mids[s->ncands]);
    }
}

static void leave(gw_conn *c, msess *s)
{
    if (s->host) {
        Tether__Bus__MediaReq q;
        fill_media_req(&q, c, s->conn, s->room, "leave");
        send_small(s->host, &q);
    }
    sess_del(s);
}

static void do_media(gw_conn *c, const gw_cframe *f)
{
    if (check_room(c, f->room) < 0)
        return;
    if (!strcmp(f->action, "offer")) {
        do_offer(c, f);
    } else if (!strcmp(f->action, "candidate")) {
        do_candidate(c, f);
    } else {
        msess *s = sess_get(c->id, f->room, 0);
        if (s)
            leave(c, s);
    }
}

void gw_media_frame(gw_conn *c, const gw_cframe *f)
{
    if (f->type == GW_C_PTT)
        do_ptt(c, f);
    else
        do_media(c, f);
}

/* ---- floor events ---------------------------------------------------------------------------- */

static floor_st *floor_get(const char *room, int create)
{
    floor_st *fl = hmap_get(M.floors, room);
    if (fl || !create)
        return fl;
    fl = calloc(1, sizeof(*fl));
    if (fl && hmap_put(M.floors, room, fl) < 0) {
        free(fl);
        fl = NULL;
    }
    return fl;
}

static void on_ptt_event(const Tether__Bus__PttEvent *e)
{
    if (!e->room || !e->state)
        return;
    gw_room *r = hmap_get(G.rooms, e->room);
    floor_st *fl = r ? floor_get(e->room, 1) : NULL;
    if (!r || !fl || e->seq <= fl->seq)
        return;
    fl->seq = e->seq;
    const char *holder = e->holder ? e->holder : "";
    const char *hgw = e->gateway ? e->gateway : "";
    int taken = !strcmp(e->state, "taken");
    int revoked = !strcmp(e->state, "revoked");
    fl->taken = taken;
    snprintf(fl->holder, sizeof(fl->holder), "%s", taken ? holder : "");
    snprintf(fl->gw, sizeof(fl->gw), "%s", taken ? hgw : "");
    fl->conn = taken ? e->conn : 0;
    int mine = !strcmp(hgw, cfg_instance());
    for (gw_sub *s = r->subs; s; s = s->rnext) {
        gw_conn *c = s->conn;
        if (c->close_code)
            continue;
        if (taken) {
            if (mine && c->id == e->conn)
                continue;   /* the holder got `granted` */
            gw_conn_send_take(c, gw_enc_ptt(c->proto, r->name, "taken", holder, e->max_ms, NULL));
            continue;
        }
        if (revoked && !strcmp(c->claims.sub, holder))
            gw_conn_send_take(c, gw_enc_ptt(c->proto, r->name, "revoked", holder, 0, e->reason));
        gw_conn_send_take(c, gw_enc_ptt(c->proto, r->name, "idle", NULL, 0, e->reason));
    }
}

static void on_notice(const Tether__Bus__MediaNotice *n)
{
    if (!n->room || !n->action)
        return;
    gw_conn *c = gw_conn_find(n->conn);
    msess *s = sess_get(n->conn, n->room, 0);
    if (!c || c->close_code || !s)
        return;
    if (!strcmp(n->action, "candidate")) {
        gw_buf *b = gw_enc_media(c->proto, n->room, "candidate", NULL, n->candidate, n->mid, NULL);
        /* The bus can overtake the answer's reply: a candidate never
         * reaches a client before the answer it belongs to. */
        if (s->offering && b && s->nscands < MAX_PENDING_CANDS)
            s->scands[s->nscands++] = b;
        else
            gw_conn_send_take(c, b);
    } else if (!strcmp(n->action, "restart")) {
        metrics_inc(M.m_restarts);
        gw_conn_send_take(c, gw_enc_media(c->proto, n->room, "restart", NULL, NULL, NULL, n->reason));
        sess_del(s);
    } else if (!strcmp(n->action, "error")) {
        gw_conn_error(c, GW_E_INVALID, n->reason && *n->reason ? n->reason : "media session refused", NULL);
        sess_del(s);
    }
}

void gw_media_on_bus(const bus_env *env)
{
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PTT_EVENT && env->ptt_event)
        on_ptt_event(env->ptt_event);
    else if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_NOTICE && env->media_notice &&
             !strcmp(env->topic, M.notice_topic))
        on_notice(env->media_notice);
}

/* ---- connections and rooms ------------------------------------------------------------------ */

void gw_media_conn_closed(gw_conn *c)
{
    if (!M.enabled)
        return;
    for (uint32_t i = 0; i < c->nsubs; i++) {
        const char *room = c->subs[i]->room->name;
        floor_st *fl = floor_get(room, 0);
        if (fl && fl->taken && fl->conn == c->id && !strcmp(fl->gw, cfg_instance())) {
            ptt_ctx *x = calloc(1, sizeof(*x));
            if (x) {
                x->conn = c->id;
                snprintf(x->room, sizeof(x->room), "%s", room);
                snprintf(x->action, sizeof(x->action), "disconnect");
                send_ptt(c->id, room, c->claims.sub, c->session, "disconnect", ptt_reply, x);
            }
        }
    }
    /* Every audio session of the connection, including rooms it has left
     * since it joined their audio. */
    int again = 1;
    while (again) {
        again = 0;
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(M.sess, &it, &k, &v))
            if (((msess *)v)->conn == c->id) {
                leave(c, v);
                again = 1;
                break;
            }
    }
}

void gw_media_room_open(gw_room *r)
{
    if (!M.enabled)
        return;
    char topic[GW_MAX_ROOM + 8];
    snprintf(topic, sizeof(topic), "ptt.%s", r->name);
    bus_subscribe(G.bus, topic);
}

void gw_media_room_close(gw_room *r)
{
    if (!M.enabled)
        return;
    char topic[GW_MAX_ROOM + 8];
    snprintf(topic, sizeof(topic), "ptt.%s", r->name);
    bus_unsubscribe(G.bus, topic);
    free(hmap_del(M.floors, r->name));
}

/* ---- mediad liveness ------------------------------------------------------------------------- */

/* Every session hosted by m (or, with inc != 0, by an incarnation of m
 * other than inc) is lost: its client renegotiates. */
static void host_lost(mdc *m, uint64_t inc, const char *reason)
{
    int again = 1;
    unsigned n = 0;
    while (again) {
        again = 0;
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(M.sess, &it, &k, &v)) {
            msess *s = v;
            if (s->host != m || (inc && s->incarnation == inc))
                continue;
            gw_conn *c = gw_conn_find(s->conn);
            if (c && !c->close_code)
                gw_conn_send_take(c, gw_enc_media(c->proto, s->room, "restart", NULL, NULL, NULL, reason));
            metrics_inc(M.m_restarts);
            sess_del(s);
            n++;
            again = 1;
            break;
        }
    }
    if (n)
        LOG_WARN("media sessions lost", "{s:s,s:s,s:i}", "mediad", m->ep, "reason", reason, "sessions", (int)n);
}

static void ping_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    mdc *m = arg;
    m->pinging = 0;
    if (status == -ECANCELED)
        return;
    if (status == 0 && rep) {
        uint64_t inc = rep->source ? rep->source->incarnation : 0;
        m->fails = 0;
        m->last_ok_ms = M.last_ok_ms = loop_now_ms(G.l);
        if (inc && m->incarnation && inc != m->incarnation) {
            m->incarnation = inc;
            host_lost(m, inc, "media server restarted");
        }
        m->incarnation = inc;
        return;
    }
    if (++m->fails == PING_FAILS && m->nsess)
        host_lost(m, 0, "media server unreachable");
}

static void tick_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    M.ticks++;
    for (unsigned i = 0; i < M.neps; i++) {
        mdc *m = M.eps[i];
        /* Hosts of our sessions every tick (fast loss detection); the
         * others once a second (readiness, first-offer choice). */
        if (m->pinging || (!m->nsess && M.ticks % 3 != 0))
            continue;
        bus_env req = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__PingReq pr = TETHER__BUS__PING_REQ__INIT;
        req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ;
        req.ping_req = &pr;
        if (rpc_call(m->rpc, &req, PING_MS, 1, ping_reply, m))
            m->pinging = 1;
    }
    metrics_set(M.m_up, gw_media_ready() && M.enabled && M.last_ok_ms ? 1 : 0);
}

/* ---- life cycle ------------------------------------------------------------------------------- */

static double sessions_fn(void *arg)
{
    (void)arg;
    return M.sess ? (double)hmap_count(M.sess) : 0;
}

void gw_media_init(void)
{
    const char *eps = G.cfg.mediad;
    M.enabled = eps && *eps && strcmp(eps, "off") != 0;
    M.sess = hmap_new();
    M.floors = hmap_new();
    if (!M.sess || !M.floors) {
        LOG_ERROR("out of memory at start", NULL);
        exit(1);
    }
    M.m_ptt = metrics_counter("tether_gateway_ptt_requests_total", "ptt frames relayed to mediad.", NULL);
    M.m_ptt_fail = metrics_counter("tether_gateway_ptt_failures_total",
                                   "ptt requests answered with an error (mediad unreachable or refusing).", NULL);
    M.m_offers = metrics_counter("tether_gateway_media_offers_total", "media offers relayed to mediad.", NULL);
    M.m_redirects = metrics_counter("tether_gateway_media_redirects_total",
                                    "Offers redirected to the mediad hosting the room.", NULL);
    M.m_takeovers = metrics_counter("tether_gateway_media_takeovers_total",
                                    "Offers redirected to an unreachable host, sent back with take_over.", NULL);
    M.m_restarts = metrics_counter("tether_gateway_media_restarts_total",
                                   "media restart frames sent (a mediad lost a session or died).", NULL);
    M.m_fail = metrics_counter("tether_gateway_media_failures_total", "Offers answered with an error.", NULL);
    M.m_up = metrics_gauge("tether_gateway_mediad_up", "1 when a mediad answered within 3 s.", NULL);
    metrics_gauge_fn("tether_gateway_media_sessions", "Client audio sessions relayed by this gateway.", NULL,
                     sessions_fn, NULL);
    if (!M.enabled || !eps)
        return;
    M.pool = rpc_client_new(G.l, eps, "gateway");
    if (!M.pool) {
        fprintf(stderr, "TETHER_MEDIAD: '%s' is not a usable endpoint list\n", eps);
        exit(2);
    }
    char one[256];
    for (const char *p = eps; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && n < sizeof(one)) {
            memcpy(one, p, n);
            one[n] = 0;
            if (!ep_add(one)) {
                fprintf(stderr, "TETHER_MEDIAD: '%s' is not a usable endpoint\n", one);
                exit(2);
            }
        }
        if (!e)
            break;
        p = e + 1;
    }
    M.nconfigured = M.neps;
    snprintf(M.notice_topic, sizeof(M.notice_topic), "media.gw.%s", cfg_instance());
    bus_subscribe(G.bus, M.notice_topic);
    loop_timer_start(G.l, &M.tick, 0, PING_MS, tick_cb, NULL);
}

int gw_media_ready(void)
{
    if (!M.enabled)
        return 1;
    return M.last_ok_ms && loop_now_ms(G.l) - M.last_ok_ms < READY_MS;
}

void gw_media_shutdown(void)
{
    loop_timer_stop(G.l, &M.tick);
    /* Every ZeroMQ socket must be closed before the context terminates.
     * Pending calls fail with -ECANCELED into callbacks that still find
     * the sessions and endpoints, freed afterwards. */
    rpc_client_free(M.pool);
    M.pool = NULL;
    for (unsigned i = 0; i < M.neps; i++) {
        rpc_client_free(M.eps[i]->rpc);
        M.eps[i]->rpc = NULL;
    }
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (M.sess && hmap_next(M.sess, &it, &k, &v)) {
        msess *s = v;
        sess_clear_cands(s);
        free(s);
    }
    hmap_free(M.sess);
    M.sess = NULL;
    it = (hmap_iter){ 0 };
    while (M.floors && hmap_next(M.floors, &it, &k, &v))
        free(v);
    hmap_free(M.floors);
    M.floors = NULL;
    for (unsigned i = 0; i < M.neps; i++)
        free(M.eps[i]);
    M.neps = 0;
}
