/* gw_media_ptt.c -- the gateway's push-to-talk relay: `ptt` frames become
 * PttReq requests to any mediad replica (floors live in Redis) and their
 * answers `granted` / `denied`; floor events on ptt.<room> become `taken`,
 * `idle` and `revoked` frames, older ones (per-room floor sequence) ignored.
 */
#include "gw_media_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

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
        gwm.last_ok_ms = loop_now_ms(G.l);
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PTT_REP && rep->ptt_rep) {
        const Tether__Bus__PttRep *p = rep->ptt_rep;
        const char *state = p->state ? p->state : "";
        if (!c || c->close_code) {
            /* Granted to a connection that is gone: start the grace period
             * as if it had closed after the grant. */
            if (!strcmp(state, "granted") && strcmp(x->action, "request") == 0)
                send_ptt(x->conn, x->room, x->user, "", "disconnect", gwm_ignore_reply, NULL);
            goto out;
        }
        if (!strcmp(state, "granted") || !strcmp(state, "denied"))
            gw_conn_send_take(c, gw_enc_ptt(c->proto, x->room, state, p->holder, p->max_ms, p->reason));
    } else if (c && !c->close_code && strcmp(x->action, "disconnect") != 0) {
        metrics_inc(gwm.m_ptt_fail);
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
    if (!rpc_call(gwm.pool, &req, PTT_TIMEOUT_MS, PTT_ATTEMPTS, cb, x))
        free(x);
}

void gwm_do_ptt(gw_conn *c, const gw_cframe *f)
{
    if (gwm_check_room(c, f->room) < 0)
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
    metrics_inc(gwm.m_ptt);
    send_ptt(c->id, f->room, c->claims.sub, c->session, f->action, ptt_reply, x);
}

/* ---- floor events ---------------------------------------------------------------------------- */

floor_st *gwm_floor_get(const char *room, int create)
{
    floor_st *fl = hmap_get(gwm.floors, room);
    if (fl || !create)
        return fl;
    fl = calloc(1, sizeof(*fl));
    if (fl && hmap_put(gwm.floors, room, fl) < 0) {
        free(fl);
        fl = NULL;
    }
    return fl;
}

void gwm_on_ptt_event(const Tether__Bus__PttEvent *e)
{
    if (!e->room || !e->state)
        return;
    gw_room *r = hmap_get(G.rooms, e->room);
    floor_st *fl = r ? gwm_floor_get(e->room, 1) : NULL;
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

/* Sends `disconnect` for every floor that c holds through this gateway,
 * which starts the floor's grace period instead of releasing it. */
void gwm_ptt_conn_closed(gw_conn *c)
{
    for (uint32_t i = 0; i < c->nsubs; i++) {
        const char *room = c->subs[i]->room->name;
        floor_st *fl = gwm_floor_get(room, 0);
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
}
