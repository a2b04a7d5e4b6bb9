/* gw_media_pool.c -- the gateway's pool of mediad endpoints: the configured
 * ones and those learned from redirects, the choice for a first offer, and
 * liveness (pings; a host lost or restarted sends its sessions' clients
 * `media {action: restart}`).
 */
#include "gw_media_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

/* ---- endpoints --------------------------------------------------------------------------- */

mdc *gwm_ep_add(const char *ep)
{
    for (unsigned i = 0; i < gwm.neps; i++)
        if (!strcmp(gwm.eps[i]->ep, ep))
            return gwm.eps[i];
    if (gwm.neps == MAX_ENDPOINTS || strlen(ep) >= sizeof(gwm.eps[0]->ep))
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
    gwm.eps[gwm.neps++] = m;
    return m;
}

/* A configured endpoint for a first offer: round robin over those that
 * answered lately, any configured one otherwise. */
mdc *gwm_ep_pick(void)
{
    uint64_t now = loop_now_ms(G.l);
    for (unsigned k = 0; k < gwm.nconfigured; k++) {
        mdc *m = gwm.eps[(gwm.rr + k) % gwm.nconfigured];
        if (m->fails < PING_FAILS && m->last_ok_ms && now - m->last_ok_ms < READY_MS && now >= m->shun_until_ms) {
            gwm.rr = (gwm.rr + k + 1) % gwm.nconfigured;
            return m;
        }
    }
    return gwm.nconfigured ? gwm.eps[gwm.rr++ % gwm.nconfigured] : NULL;
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
        while (hmap_next(gwm.sess, &it, &k, &v)) {
            msess *s = v;
            if (s->host != m || (inc && s->incarnation == inc))
                continue;
            gw_conn *c = gw_conn_find(s->conn);
            if (c && !c->close_code)
                gw_conn_send_take(c, gw_enc_media(c->proto, s->room, "restart", NULL, NULL, NULL, reason));
            metrics_inc(gwm.m_restarts);
            gwm_sess_del(s);
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
        m->last_ok_ms = gwm.last_ok_ms = loop_now_ms(G.l);
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

void gwm_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    gwm.ticks++;
    for (unsigned i = 0; i < gwm.neps; i++) {
        mdc *m = gwm.eps[i];
        /* Hosts of our sessions every tick (fast loss detection); the
         * others once a second (readiness, first-offer choice). */
        if (m->pinging || (!m->nsess && gwm.ticks % 3 != 0))
            continue;
        bus_env req = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__PingReq pr = TETHER__BUS__PING_REQ__INIT;
        req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ;
        req.ping_req = &pr;
        if (rpc_call(m->rpc, &req, PING_MS, 1, ping_reply, m))
            m->pinging = 1;
    }
    metrics_set(gwm.m_up, gw_media_ready() && gwm.enabled && gwm.last_ok_ms ? 1 : 0);
}
