/* gw_media.c -- push-to-talk and audio signaling relay (see gw_media.h);
 * push-to-talk in gw_media_ptt.c, the mediad pool in gw_media_pool.c.
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
#include "gw_media_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

gwm_state gwm;

static void skey(char *buf, size_t n, uint64_t conn, const char *room)
{
    snprintf(buf, n, "%" PRIx64 "/%s", conn, room);
}

/* ---- sessions ------------------------------------------------------------------------------ */

void gwm_sess_clear_cands(msess *s)
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

msess *gwm_sess_get(uint64_t conn, const char *room, int create)
{
    char k[GW_MAX_ROOM + 24];
    skey(k, sizeof(k), conn, room);
    msess *s = hmap_get(gwm.sess, k);
    if (s || !create)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->conn = conn;
    snprintf(s->room, sizeof(s->room), "%s", room);
    if (hmap_put(gwm.sess, k, s) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

void gwm_sess_del(msess *s)
{
    char k[GW_MAX_ROOM + 24];
    skey(k, sizeof(k), s->conn, s->room);
    hmap_del(gwm.sess, k);
    sess_set_host(s, NULL);
    gwm_sess_clear_cands(s);
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

void gwm_ignore_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
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
    rpc_call(host->rpc, &req, SMALL_TIMEOUT_MS, SMALL_ATTEMPTS, gwm_ignore_reply, NULL);
}

static void send_candidate(msess *s, gw_conn *c, const char *cand, const char *mid)
{
    Tether__Bus__MediaReq q;
    fill_media_req(&q, c, s->conn, s->room, "candidate");
    q.candidate = (char *)(cand ? cand : "");
    q.mid = (char *)(mid ? mid : "");
    send_small(s->host, &q);
}

int gwm_check_room(gw_conn *c, const char *room)
{
    if (!gwm.enabled) {
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
    msess *s = gwm_sess_get(x->conn, x->room, 0);
    if (status == 0 && rep) {
        x->to->last_ok_ms = loop_now_ms(G.l);
        gwm.last_ok_ms = x->to->last_ok_ms;
    }
    if (!c || c->close_code || !s) {
        offer_done(x, s);
        return;
    }
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REP && rep->media_rep) {
        const Tether__Bus__MediaRep *m = rep->media_rep;
        if (m->action && !strcmp(m->action, "redirect") && m->redirect && *m->redirect) {
            mdc *to = x->redirects < MAX_REDIRECTS ? gwm_ep_add(m->redirect) : NULL;
            if (!to) {
                gw_conn_error(c, GW_E_INTERNAL, "media server unavailable: retry", NULL);
                offer_done(x, s);
                return;
            }
            metrics_inc(gwm.m_redirects);
            x->redirects++;
            if (to->fails >= PING_FAILS) {
                /* The room's host does not answer us: the replica that
                 * redirected takes the room over rather than waiting for
                 * the dead host's claim to expire. */
                metrics_inc(gwm.m_takeovers);
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
            gwm_sess_clear_cands(s);
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
    if ((refused || status == -ETIMEDOUT) && !s->host && x->redirects == 0 && gwm.nconfigured > 1) {
        /* A replica that cannot take the offer now (draining, gone, its
         * store down): another one can, once. */
        x->to->shun_until_ms = loop_now_ms(G.l) + SHUN_MS;
        mdc *to = gwm_ep_pick();
        if (to && to != x->to) {
            x->to = to;
            x->redirects = MAX_REDIRECTS;
            offer_send(x, c, 0, 0);
            return;
        }
    }
    metrics_inc(gwm.m_fail);
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR && rep->error)
        gw_conn_error(c, (int)rep->error->code, rep->error->reason ? rep->error->reason : "offer refused", NULL);
    else
        gw_conn_error(c, GW_E_INTERNAL, "media server unavailable: retry the offer", NULL);
    if (s->offering <= 1 && !s->host) {
        offer_done(x, s);
        gwm_sess_del(s);
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
    uint32_t attempts = gwm.nconfigured > 1 && !x->redirects && !redirected ? OFFER_ATTEMPTS_MANY : OFFER_ATTEMPTS;
    if (!rpc_call(x->to->rpc, &req, OFFER_TIMEOUT_MS, attempts, offer_reply, x)) {
        gw_conn_error(c, GW_E_INTERNAL, "out of memory", NULL);
        offer_done(x, gwm_sess_get(x->conn, x->room, 0));
    }
}

static void do_offer(gw_conn *c, const gw_cframe *f)
{
    msess *s = gwm_sess_get(c->id, f->room, 1);
    offer_ctx *x = calloc(1, sizeof(*x));
    char *sdp = f->sdp ? strdup(f->sdp) : NULL;
    mdc *to = s && s->host ? s->host : gwm_ep_pick();
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
    metrics_inc(gwm.m_offers);
    offer_send(x, c, 0, 0);
}

static void do_candidate(gw_conn *c, const gw_cframe *f)
{
    msess *s = gwm_sess_get(c->id, f->room, 0);
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
    gwm_sess_del(s);
}

static void do_media(gw_conn *c, const gw_cframe *f)
{
    if (gwm_check_room(c, f->room) < 0)
        return;
    if (!strcmp(f->action, "offer")) {
        do_offer(c, f);
    } else if (!strcmp(f->action, "candidate")) {
        do_candidate(c, f);
    } else {
        msess *s = gwm_sess_get(c->id, f->room, 0);
        if (s)
            leave(c, s);
    }
}

void gw_media_frame(gw_conn *c, const gw_cframe *f)
{
    if (f->type == GW_C_PTT)
        gwm_do_ptt(c, f);
    else
        do_media(c, f);
}

static void on_notice(const Tether__Bus__MediaNotice *n)
{
    if (!n->room || !n->action)
        return;
    gw_conn *c = gw_conn_find(n->conn);
    msess *s = gwm_sess_get(n->conn, n->room, 0);
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
        metrics_inc(gwm.m_restarts);
        gw_conn_send_take(c, gw_enc_media(c->proto, n->room, "restart", NULL, NULL, NULL, n->reason));
        gwm_sess_del(s);
    } else if (!strcmp(n->action, "error")) {
        gw_conn_error(c, GW_E_INVALID, n->reason && *n->reason ? n->reason : "media session refused", NULL);
        gwm_sess_del(s);
    }
}

void gw_media_on_bus(const bus_env *env)
{
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PTT_EVENT && env->ptt_event)
        gwm_on_ptt_event(env->ptt_event);
    else if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_NOTICE && env->media_notice &&
             !strcmp(env->topic, gwm.notice_topic))
        on_notice(env->media_notice);
}

/* ---- connections and rooms ------------------------------------------------------------------ */

void gw_media_conn_closed(gw_conn *c)
{
    if (!gwm.enabled)
        return;
    gwm_ptt_conn_closed(c);
    /* Every audio session of the connection, including rooms it has left
     * since it joined their audio. */
    int again = 1;
    while (again) {
        again = 0;
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(gwm.sess, &it, &k, &v))
            if (((msess *)v)->conn == c->id) {
                leave(c, v);
                again = 1;
                break;
            }
    }
}

void gw_media_room_open(gw_room *r)
{
    if (!gwm.enabled)
        return;
    char topic[GW_MAX_ROOM + 8];
    snprintf(topic, sizeof(topic), "ptt.%s", r->name);
    bus_subscribe(G.bus, topic);
}

void gw_media_room_close(gw_room *r)
{
    if (!gwm.enabled)
        return;
    char topic[GW_MAX_ROOM + 8];
    snprintf(topic, sizeof(topic), "ptt.%s", r->name);
    bus_unsubscribe(G.bus, topic);
    free(hmap_del(gwm.floors, r->name));
}

/* ---- life cycle ------------------------------------------------------------------------------- */

static double sessions_fn(void *arg)
{
    (void)arg;
    return gwm.sess ? (double)hmap_count(gwm.sess) : 0;
}

void gw_media_init(void)
{
    const char *eps = G.cfg.mediad;
    gwm.enabled = eps && *eps && strcmp(eps, "off") != 0;
    gwm.sess = hmap_new();
    gwm.floors = hmap_new();
    if (!gwm.sess || !gwm.floors) {
        LOG_ERROR("out of memory at start", NULL);
        exit(1);
    }
    gwm.m_ptt = metrics_counter("tether_gateway_ptt_requests_total", "ptt frames relayed to mediad.", NULL);
    gwm.m_ptt_fail = metrics_counter("tether_gateway_ptt_failures_total",
                                   "ptt requests answered with an error (mediad unreachable or refusing).", NULL);
    gwm.m_offers = metrics_counter("tether_gateway_media_offers_total", "media offers relayed to mediad.", NULL);
    gwm.m_redirects = metrics_counter("tether_gateway_media_redirects_total",
                                    "Offers redirected to the mediad hosting the room.", NULL);
    gwm.m_takeovers = metrics_counter("tether_gateway_media_takeovers_total",
                                    "Offers redirected to an unreachable host, sent back with take_over.", NULL);
    gwm.m_restarts = metrics_counter("tether_gateway_media_restarts_total",
                                   "media restart frames sent (a mediad lost a session or died).", NULL);
    gwm.m_fail = metrics_counter("tether_gateway_media_failures_total", "Offers answered with an error.", NULL);
    gwm.m_up = metrics_gauge("tether_gateway_mediad_up", "1 when a mediad answered within 3 s.", NULL);
    metrics_gauge_fn("tether_gateway_media_sessions", "Client audio sessions relayed by this gateway.", NULL,
                     sessions_fn, NULL);
    if (!gwm.enabled || !eps)
        return;
    gwm.pool = rpc_client_new(G.l, eps, "gateway");
    if (!gwm.pool) {
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
            if (!gwm_ep_add(one)) {
                fprintf(stderr, "TETHER_MEDIAD: '%s' is not a usable endpoint\n", one);
                exit(2);
            }
        }
        if (!e)
            break;
        p = e + 1;
    }
    gwm.nconfigured = gwm.neps;
    snprintf(gwm.notice_topic, sizeof(gwm.notice_topic), "media.gw.%s", cfg_instance());
    bus_subscribe(G.bus, gwm.notice_topic);
    loop_timer_start(G.l, &gwm.tick, 0, PING_MS, gwm_tick, NULL);
}

int gw_media_ready(void)
{
    if (!gwm.enabled)
        return 1;
    return gwm.last_ok_ms && loop_now_ms(G.l) - gwm.last_ok_ms < READY_MS;
}

void gw_media_shutdown(void)
{
    loop_timer_stop(G.l, &gwm.tick);
    /* Every ZeroMQ socket must be closed before the context terminates.
     * Pending calls fail with -ECANCELED into callbacks that still find
     * the sessions and endpoints, freed afterwards. */
    rpc_client_free(gwm.pool);
    gwm.pool = NULL;
    for (unsigned i = 0; i < gwm.neps; i++) {
        rpc_client_free(gwm.eps[i]->rpc);
        gwm.eps[i]->rpc = NULL;
    }
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (gwm.sess && hmap_next(gwm.sess, &it, &k, &v)) {
        msess *s = v;
        gwm_sess_clear_cands(s);
        free(s);
    }
    hmap_free(gwm.sess);
    gwm.sess = NULL;
    it = (hmap_iter){ 0 };
    while (gwm.floors && hmap_next(gwm.floors, &it, &k, &v))
        free(v);
    hmap_free(gwm.floors);
    gwm.floors = NULL;
    for (unsigned i = 0; i < gwm.neps; i++)
        free(gwm.eps[i]);
    gwm.neps = 0;
}
