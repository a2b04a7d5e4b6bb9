/* md_floor.c -- push-to-talk floors in Redis (see md_floor.h).
 *
 * The keys (tether:ptt:<room>, tether:ptt:due, tether:pttgw:<gw>):
 * docs/architecture.md, "Redis key layout"; the script: mediad/lua/floor.lua.
 * Time is Redis's TIME, one clock for every replica.
 */
#include "md_floor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "md_room.h"

#define SWEEP_MS 100
#define SWEEP_LIMIT "64"
#define KEY_PREFIX "tether:ptt:"
#define DUE_KEY "tether:ptt:due"
#define MAX_ROOM 128
#define MAX_USER 128

/* The floor script: mediad/lua/floor.lua says its operations, KEYS, ARGV and
 * reply (it keeps a floor a day after its last change). */
static const char lua[] = {
#include "mediad/lua/floor.lua.h"
    0
};

const char *md_floor_lua(void) { return lua; }

struct md_floor {
    md_ctx *c;
    redis_script *sc;
    loop_timer sweep;
    int sweeping;
};

typedef enum { OP_REQUEST, OP_RELEASE, OP_DISCONNECT, OP_GET, OP_SWEEP, OP_GW_DEAD } floor_op;

typedef struct floor_call {
    md_floor *f;
    floor_op op;
    rpc_server *srv;
    rpc_ctx *ctx;
    md_floor_cb *cb;
    void *arg;
    char room[MAX_ROOM + 1];
} floor_call;

/* ---- replies ---------------------------------------------------------------------- */

static const char *rstr(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING ? r->str : ""; }

static long long rnum(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static int shape_ok(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 7 && rep->element[6]->type == REDIS_REPLY_ARRAY &&
           rep->element[6]->elements % 8 == 0;
}

/* Publishes the events of a script reply and applies them to the rooms
 * hosted here at once (the bus brings them back too; seq makes that a no-op). */
static void publish_events(md_floor *f, const redisReply *evs)
{
    for (size_t i = 0; i + 8 <= evs->elements; i += 8) {
        const redisReply *const *e = (const redisReply *const *)evs->element + i;
        Tether__Bus__PttEvent pe = TETHER__BUS__PTT_EVENT__INIT;
        pe.room = (char *)rstr(e[0]);
        pe.state = (char *)rstr(e[1]);
        pe.holder = (char *)rstr(e[2]);
        pe.gateway = (char *)rstr(e[3]);
        pe.conn = (uint64_t)rnum(e[4]);
        pe.max_ms = (uint32_t)rnum(e[5]);
        pe.reason = (char *)rstr(e[6]);
        pe.seq = (uint64_t)rnum(e[7]);
        if (!strcmp(pe.state, "revoked"))
            metrics_inc(md_m.floor_revokes);
        else if (!strcmp(pe.state, "idle") && !strcmp(pe.reason, "holder disconnected"))
            metrics_inc(md_m.floor_grace_expired);
        else if (!strcmp(pe.state, "idle"))
            metrics_inc(md_m.floor_releases);
        LOG_INFO("floor", "{s:s,s:s,s:s,s:s,s:I}", "room", pe.room, "state", pe.state, "holder", pe.holder,
                 "reason", pe.reason, "seq", (json_int_t)pe.seq);
        char topic[MAX_ROOM + 8];
        snprintf(topic, sizeof(topic), "ptt.%s", pe.room);
        bus_env ev = TETHER__BUS__ENVELOPE__INIT;
        ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PTT_EVENT;
        ev.ptt_event = &pe;
        if (bus_publish(f->c->b, topic, &ev) < 0)
            LOG_WARN("floor event not published", "{s:s,s:s}", "room", pe.room, "state", pe.state);
        md_rooms_on_floor(f->c->rooms, &pe);
    }
}

static void reply_rpc(floor_call *x, const redisReply *rep)
{
    const char *state = rstr(rep->element[0]);
    Tether__Bus__PttRep pr = TETHER__BUS__PTT_REP__INIT;
    pr.room = x->room;
    pr.state = (char *)state;
    pr.holder = (char *)rstr(rep->element[1]);
    pr.max_ms = (uint32_t)rnum(rep->element[2]);
    pr.seq = (uint64_t)rnum(rep->element[3]);
    if (!strcmp(state, "suspended"))
        pr.state = (char *)"none";
    if (!strcmp(state, "granted"))
        metrics_inc(md_m.floor_grants);
    else if (!strcmp(state, "denied"))
        metrics_inc(md_m.floor_denials);
    else if (!strcmp(state, "suspended"))
        metrics_inc(md_m.floor_suspends);
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PTT_REP;
    env.ptt_rep = &pr;
    rpc_reply(x->srv, x->ctx, &env);
}

static void on_reply(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    floor_call *x = arg;
    md_floor *f = x->f;
    int ok = status == 0 && shape_ok(rep);
    if (!ok) {
        metrics_inc(md_m.floor_errors);
        if (status == 0 && rep && rep->type == REDIS_REPLY_ERROR)
            LOG_WARN("floor script error", "{s:s}", "error", rep->str);
        status = status ? status : -EPROTO;
    }
    if (x->op == OP_SWEEP)
        f->sweeping = 0;
    if (x->op == OP_GW_DEAD && ok)
        LOG_INFO("floors of a dead gateway in grace", "{s:s}", "gateway", x->room);
    if (ok && status != -ECANCELED)
        publish_events(f, rep->element[6]);
    switch (x->op) {
    case OP_SWEEP:
    case OP_GW_DEAD:
        break;
    case OP_GET: {
        if (x->ctx) {
            /* A gateway asking (PttReq "state"): answered like the others. */
            if (ok)
                reply_rpc(x, rep);
            else if (status == -ECANCELED)
                rpc_ctx_drop(x->ctx);
            else
                rpc_reply_error(x->srv, x->ctx, 4500, "floor store unavailable");
            break;
        }
        if (!ok) {
            x->cb(status, NULL, x->arg);
            break;
        }
        md_floor_state st = {
            .state = rstr(rep->element[0]),
            .holder = rstr(rep->element[1]),
            .max_ms = (uint32_t)rnum(rep->element[2]),
            .seq = (uint64_t)rnum(rep->element[3]),
            .gateway = rstr(rep->element[4]),
            .conn = (uint64_t)rnum(rep->element[5]),
        };
        x->cb(0, &st, x->arg);
        break;
    }
    default:
        if (ok)
            reply_rpc(x, rep);
        else if (status == -ECANCELED)
            rpc_ctx_drop(x->ctx);
        else
            rpc_reply_error(x->srv, x->ctx, 4500, "floor store unavailable");
        break;
    }
    free(x);
}

/* ---- calls ------------------------------------------------------------------------- */

static int run(md_floor *f, floor_call *x, const char *key, int nargs, const char *const *args)
{
    const char *argv[12];
    argv[0] = key;
    argv[1] = DUE_KEY;
    for (int i = 0; i < nargs; i++)
        argv[2 + i] = args[i];
    int rc = redis_evalsha(f->c->r, f->sc, on_reply, x, 2, nargs, argv, NULL);
    if (rc < 0)
        free(x);
    return rc;
}

static int valid_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= max;
}

void md_floor_handle(md_floor *f, rpc_server *srv, rpc_ctx *ctx, const Tether__Bus__PttReq *req)
{
    floor_op op;
    if (!req || !valid_name(req->room, MAX_ROOM) || !valid_name(req->user, MAX_USER) || !req->action) {
        rpc_reply_error(srv, ctx, 4400, "ptt: room, user and action are required");
        return;
    }
    if (!strcmp(req->action, "request"))
        op = OP_REQUEST;
    else if (!strcmp(req->action, "release"))
        op = OP_RELEASE;
    else if (!strcmp(req->action, "disconnect"))
        op = OP_DISCONNECT;
    else if (!strcmp(req->action, "state"))
        op = OP_GET;
    else {
        rpc_reply_error(srv, ctx, 4400, "ptt: action must be request or release");
        return;
    }
    floor_call *x = calloc(1, sizeof(*x));
    if (!x) {
        rpc_reply_error(srv, ctx, 4500, "out of memory");
        return;
    }
    x->f = f;
    x->op = op;
    x->srv = srv;
    x->ctx = ctx;
    snprintf(x->room, sizeof(x->room), "%s", req->room);
    char key[sizeof(KEY_PREFIX) + MAX_ROOM], conn[24], num[24];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", req->room);
    snprintf(conn, sizeof(conn), "%" PRIu64, req->conn);
    const char *gw = req->gateway ? req->gateway : "";
    const char *session = req->session ? req->session : "";
    int rc;
    if (op == OP_REQUEST) {
        snprintf(num, sizeof(num), "%u", f->c->cfg.ptt_max_ms);
        const char *a[] = { "request", req->room, req->user, session, gw, conn, num };
        rc = run(f, x, key, 7, a);
    } else if (op == OP_RELEASE) {
        const char *a[] = { "release", req->room, req->user };
        rc = run(f, x, key, 3, a);
    } else if (op == OP_GET) {
        const char *a[] = { "get", req->room };
        rc = run(f, x, key, 2, a);
    } else {
        snprintf(num, sizeof(num), "%u", f->c->cfg.ptt_grace_ms);
        const char *a[] = { "disconnect", req->room, req->user, gw, conn, num };
        rc = run(f, x, key, 6, a);
    }
    if (rc < 0) {
        metrics_inc(md_m.floor_errors);
        rpc_reply_error(srv, ctx, 4500, "floor store unavailable");
    }
}

int md_floor_get(md_floor *f, const char *room, md_floor_cb *cb, void *arg)
{
    if (!valid_name(room, MAX_ROOM))
        return -EINVAL;
    floor_call *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->f = f;
    x->op = OP_GET;
    x->cb = cb;
    x->arg = arg;
    snprintf(x->room, sizeof(x->room), "%s", room);
    char key[sizeof(KEY_PREFIX) + MAX_ROOM];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", room);
    const char *a[] = { "get", room };
    return run(f, x, key, 2, a);
}

static void sweep_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    md_floor *f = arg;
    if (f->sweeping || !redis_up(f->c->r))
        return;
    floor_call *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->f = f;
    x->op = OP_SWEEP;
    const char *a[] = { "sweep", KEY_PREFIX, SWEEP_LIMIT };
    /* KEYS[1] is not used by sweep (nor gw_dead), but it is checked against
     * an ACL user's key patterns (~tether:*): the prefix always matches. */
    if (run(f, x, KEY_PREFIX, 3, a) == 0)
        f->sweeping = 1;
}

void md_floor_gw_dead(md_floor *f, const char *gw)
{
    floor_call *x = calloc(1, sizeof(*x));
    char grace[24];
    if (!x)
        return;
    x->f = f;
    x->op = OP_GW_DEAD;
    snprintf(x->room, sizeof(x->room), "%s", gw);   /* for the log line */
    snprintf(grace, sizeof(grace), "%u", f->c->cfg.ptt_grace_ms);
    const char *a[] = { "gw_dead", gw, grace, KEY_PREFIX };
    if (run(f, x, KEY_PREFIX, 4, a) < 0)
        metrics_inc(md_m.floor_errors);
}

md_floor *md_floor_new(md_ctx *c)
{
    md_floor *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->c = c;
    f->sc = redis_script_new(c->r, lua);
    if (!f->sc || loop_timer_start(c->l, &f->sweep, SWEEP_MS, SWEEP_MS, sweep_cb, f) < 0) {
        free(f);
        return NULL;
    }
    return f;
}

void md_floor_free(md_floor *f)
{
    if (!f)
        return;
    loop_timer_stop(f->c->l, &f->sweep);
    free(f);
}
