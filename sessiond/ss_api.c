/* ss_api.c -- the gateway's session requests (see ss_api.h for the semantics).
 *
 * Each request is validated, turned into the arguments of one script and
 * answered when Redis answers; the presence changes the script reports are
 * published first, so that a gateway that sees the reply and then asks for
 * presence does not race the event. Nothing is logged per request at info.
 */
#include "ss_api.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "quality.h"
#include "rpc.h"
#include "ss_gw.h"
#include "ss_record.h"
#include "ss_valid.h"

enum { T_OPEN, T_CLOSE, T_ROOM, T_QUALITY, T_PRESENCE, T_GET };

struct ss_api {
    ss_ctx *c;
    rpc_server *srv;
    size_t inflight;
    int draining;
    ss_api_idle_cb *idle;
    void *idle_arg;
};

typedef struct req {
    ss_api *a;
    rpc_ctx *ctx;
    int type;
    int joined;      /* room: join or leave */
    int bye;         /* close */
    uint64_t t0_us;
    char room[SS_MAX_ROOM + 1]; /* presence: the room asked for */
} req;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- bookkeeping ---------------------------------------------------------------------- */

static void request_done(ss_api *a)
{
    a->inflight--;
    if (a->draining && a->inflight == 0 && a->idle) {
        ss_api_idle_cb *cb = a->idle;
        a->idle = NULL;
        cb(a->idle_arg);
    }
}

static void reply_error(ss_api *a, rpc_ctx *ctx, uint32_t code, const char *reason)
{
    metrics_inc(code == 4400   ? ss_m.err_invalid
                : code == 4503 ? ss_m.err_forbidden
                : code == 4404 ? ss_m.err_notfound
                               : ss_m.err_internal);
    rpc_reply_error(a->srv, ctx, code, reason);
}

static void reply_ack(ss_api *a, rpc_ctx *ctx)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessAck ack = TETHER__BUS__SESS_ACK__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ACK;
    env.sess_ack = &ack;
    rpc_reply(a->srv, ctx, &env);
}

/* ---- replies -------------------------------------------------------------------------- */

static void reply_open(req *q, const ss_res *r)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenRep rep = TETHER__BUS__SESS_OPEN_REP__INIT;
    rep.resumed = ss_res_int(r, 0) != 0;
    rep.disconnected_ms = ss_res_int(r, 1);
    rep.user = (char *)(ss_res_str(r, 2) ? ss_res_str(r, 2) : "");
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REP;
    env.sess_open_rep = &rep;
    rpc_reply(q->a->srv, q->ctx, &env);
    metrics_inc(ss_m.opens);
    if (rep.resumed)
        metrics_inc(ss_m.resumes);
}

static void reply_presence(req *q, const ss_res *r)
{
    size_t n = r->data->elements / 2;
    Tether__Bus__PresenceMember *m = calloc(n ? n : 1, sizeof(*m));
    Tether__Bus__PresenceMember **mp = calloc(n ? n : 1, sizeof(*mp));
    if (!m || !mp) {
        reply_error(q->a, q->ctx, 4500, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *u = r->data->element[2 * i], *s = r->data->element[2 * i + 1];
        if (u->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING)
            continue;
        tether__bus__presence_member__init(&m[k]);
        m[k].user = u->str;
        m[k].state = s->str;
        mp[k] = &m[k];
        k++;
    }
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__PresenceRep rep = TETHER__BUS__PRESENCE_REP__INIT;
    rep.room = q->room;
    rep.n_members = k;
    rep.members = mp;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REP;
    env.presence_rep = &rep;
    rpc_reply(q->a->srv, q->ctx, &env);
out:
    free(m);
    free(mp);
}

static void reply_get(req *q, const ss_res *r)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessGetRep rep = TETHER__BUS__SESS_GET_REP__INIT;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REP;
    env.sess_get_rep = &rep;
    if (strcmp(r->code, "ok") != 0) {
        rpc_reply(q->a->srv, q->ctx, &env); /* found = false */
        return;
    }
    ss_record rec;
    if (ss_record_parse(r, &rec) < 0) {
        reply_error(q->a, q->ctx, 4500, "bad session record");
        return;
    }
    Tether__Bus__RoomPos *pos = calloc(rec.nrooms ? rec.nrooms : 1, sizeof(*pos));
    Tether__Bus__RoomPos **posp = calloc(rec.nrooms ? rec.nrooms : 1, sizeof(*posp));
    if (!pos || !posp) {
        reply_error(q->a, q->ctx, 4500, "out of memory");
    } else {
        ss_record_to_pb(&rec, &rep, pos, posp);
        rpc_reply(q->a->srv, q->ctx, &env);
    }
    free(pos);
    free(posp);
    ss_record_free(&rec);
}

static void on_done(int status, const ss_res *r, void *arg)
{
    req *q = arg;
    ss_api *a = q->a;
    if (status < 0) {
        /* The script may or may not have run; the retry will tell (every
         * script is idempotent). */
        metrics_inc(ss_m.drop_store);
        rpc_ctx_drop(q->ctx);
        goto out;
    }
    ss_events_publish(a->c, r);
    if (r->gw_status == 2) {
        metrics_inc(ss_m.gw_resurrected);
        ss_gw_request_snapshot(a->c->gw, "request from a gateway declared dead");
    }
    if (!strcmp(r->code, "forbidden")) {
        reply_error(a, q->ctx, 4503, "session belongs to another user");
        goto out;
    }
    if (!strcmp(r->code, "stale")) {
        reply_error(a, q->ctx, 4500, "superseded gateway incarnation");
        goto out;
    }
    switch (q->type) {
    case T_OPEN:
        reply_open(q, r);
        break;
    case T_CLOSE:
        metrics_inc(q->bye ? ss_m.closes_bye : ss_m.closes_drop);
        reply_ack(a, q->ctx);
        break;
    case T_ROOM:
        if (ss_res_int(r, 0))
            metrics_inc(q->joined ? ss_m.room_joins : ss_m.room_leaves);
        reply_ack(a, q->ctx);
        break;
    case T_QUALITY:
        if (!strcmp(r->code, "notfound")) {
            reply_error(a, q->ctx, 4404, "no such session");
        } else {
            metrics_inc(ss_m.qualities);
            reply_ack(a, q->ctx);
        }
        break;
    case T_PRESENCE:
        reply_presence(q, r);
        break;
    default:
        reply_get(q, r);
        break;
    }
    metrics_observe(ss_m.lat[q->type], (double)(now_us() - q->t0_us) / 1e6);
out:
    free(q);
    request_done(a);
}

/* ---- requests ------------------------------------------------------------------------- */

/* The gateway incarnation that sent env, or NULL when it does not say. */
static const Tether__Bus__Source *gateway_of(const bus_env *env)
{
    const Tether__Bus__Source *s = env->source;
    if (!s || !s->instance || !*s->instance || strchr(s->instance, '|') || strlen(s->instance) > 200 ||
        !s->incarnation)
        return NULL;
    return s;
}

static const char *build_open(const ss_ctx *c, const bus_env *env, ss_args *args)
{
    const Tether__Bus__SessOpenReq *r = env->sess_open_req;
    const Tether__Bus__Source *src = gateway_of(env);
    if (!src)
        return "request without a gateway source";
    if (!ss_valid_session(r->session))
        return "invalid session";
    if (!ss_valid_user(r->user))
        return "invalid user";
    ss_args_str(args, r->session);
    ss_args_str(args, r->user);
    ss_args_u64(args, r->conn);
    /* Cosmetic: never a reason to lose the open. */
    ss_args_str(args, ss_valid_text(r->client, SS_MAX_CLIENT) ? r->client : "");
    ss_args_i64(args, r->at_ms > 0 ? r->at_ms : 0);
    ss_args_str(args, src->instance);
    ss_args_u64(args, src->incarnation);
    ss_args_u64(args, c->cfg.ttl_ms);
    ss_args_u64(args, c->cfg.dead_after_ms);
    ss_args_u64(args, c->cfg.rejoin_grace_ms);
    return NULL;
}

static const char *build_close(const ss_ctx *c, const bus_env *env, ss_args *args)
{
    const Tether__Bus__SessCloseReq *r = env->sess_close_req;
    const Tether__Bus__Source *src = gateway_of(env);
    if (!src)
        return "request without a gateway source";
    if (!ss_valid_session(r->session))
        return "invalid session";
    /* A close is never refused for its positions (a lost close is a ghost):
     * invalid ones are skipped, and at most SS_MAX_POSITIONS are kept. */
    size_t npos = 0;
    for (size_t i = 0; i < r->n_rooms && npos < SS_MAX_POSITIONS; i++)
        npos += r->rooms[i] && ss_valid_room(r->rooms[i]->room) && ss_valid_epoch(r->rooms[i]->epoch);
    ss_args_str(args, r->session);
    ss_args_u64(args, r->conn);
    ss_args_str(args, r->bye ? "1" : "0");
    ss_args_i64(args, r->at_ms > 0 ? r->at_ms : 0);
    ss_args_str(args, src->instance);
    ss_args_u64(args, src->incarnation);
    ss_args_u64(args, c->cfg.ttl_ms);
    ss_args_u64(args, c->cfg.dead_after_ms);
    ss_args_u64(args, npos);
    for (size_t i = 0, k = 0; i < r->n_rooms && k < npos; i++) {
        if (!r->rooms[i] || !ss_valid_room(r->rooms[i]->room) || !ss_valid_epoch(r->rooms[i]->epoch))
            continue;
        ss_args_str(args, r->rooms[i]->room);
        ss_args_str(args, r->rooms[i]->epoch);
        ss_args_u64(args, r->rooms[i]->seq);
        k++;
    }
    return NULL;
}

static const char *build_room(const ss_ctx *c, const bus_env *env, ss_args *args)
{
    const Tether__Bus__SessRoomReq *r = env->sess_room_req;
    const Tether__Bus__Source *src = gateway_of(env);
    if (!src)
        return "request without a gateway source";
    if (!ss_valid_session(r->session))
        return "invalid session";
    if (!ss_valid_room(r->room))
        return "invalid room";
    ss_args_str(args, r->session);
    ss_args_u64(args, r->conn);
    ss_args_str(args, r->room);
    ss_args_str(args, r->joined ? "1" : "0");
    ss_args_i64(args, env->ts > 0 ? env->ts : loop_wall_ms());
    ss_args_u64(args, env->req_id);
    ss_args_str(args, src->instance);
    ss_args_u64(args, src->incarnation);
    ss_args_u64(args, c->cfg.dead_after_ms);
    return NULL;
}

static const char *build_quality(const bus_env *env, ss_args *args, char *recs, size_t recs_len)
{
    const Tether__Bus__SessQualityReq *r = env->sess_quality_req;
    const char *session = r->session ? r->session : "", *user = r->user ? r->user : "";
    if (*session ? !ss_valid_session(session) : !ss_valid_user(user))
        return *session ? "invalid session" : "a session or a user is needed";
    if (*user && !ss_valid_user(user))
        return "invalid user";
    if (!isfinite(r->rtt_ms) || !isfinite(r->loss_pct) || !isfinite(r->jitter_ms) || !isfinite(r->bandwidth_kbps) ||
        r->rtt_ms < 0 || r->loss_pct < 0 || r->loss_pct > 100 || r->jitter_ms < 0 || r->bandwidth_kbps < 0)
        return "invalid metrics";
    if (!ss_valid_quality(r->quality))
        return "invalid quality";
    if (r->n_recommendations > SS_MAX_RECS)
        return "too many recommendations";
    const char *level = r->quality;
    size_t used = 0;
    recs[0] = '\0';
    if (!level || !*level) {
        /* The gateway left the classification to us: the same function it uses. */
        quality_in in = { r->rtt_ms, r->loss_pct, r->jitter_ms, r->bandwidth_kbps };
        quality_out out;
        quality_classify(&in, &out);
        level = quality_name(out.level);
        for (size_t i = 0; i < out.nrecs; i++)
            used += (size_t)snprintf(recs + used, recs_len - used, "%s%s", i ? "\n" : "", out.recs[i]);
    } else {
        for (size_t i = 0; i < r->n_recommendations; i++) {
            if (!ss_valid_text(r->recommendations[i], SS_MAX_REC_LEN))
                return "invalid recommendation";
            used += (size_t)snprintf(recs + used, recs_len - used, "%s%s", i ? "\n" : "", r->recommendations[i]);
        }
    }
    ss_args_str(args, session);
    ss_args_str(args, user);
    ss_args_dbl(args, r->rtt_ms);
    ss_args_dbl(args, r->loss_pct);
    ss_args_dbl(args, r->jitter_ms);
    ss_args_dbl(args, r->bandwidth_kbps);
    ss_args_str(args, level);
    ss_args_i64(args, r->at_ms > 0 ? r->at_ms : loop_wall_ms());
    ss_args_str(args, recs);
    return NULL;
}

static void on_request(rpc_server *s, rpc_ctx *ctx, const bus_env *env, void *arg)
{
    (void)s;
    ss_api *a = arg;
    ss_ctx *c = a->c;
    if (a->draining) {
        metrics_inc(ss_m.drop_draining);
        rpc_ctx_drop(ctx);
        return;
    }
    req *q = calloc(1, sizeof(*q));
    if (!q) {
        reply_error(a, ctx, 4500, "out of memory");
        return;
    }
    q->a = a;
    q->ctx = ctx;
    q->t0_us = now_us();
    ss_args args;
    ss_args_init(&args);
    char recs[SS_MAX_RECS * (SS_MAX_REC_LEN + 1) + 1];
    const char *bad = NULL;
    ss_script sc;
    switch (env->payload_case) {
    case TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ:
        q->type = T_OPEN;
        sc = SS_OPEN;
        bad = build_open(c, env, &args);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_SESS_CLOSE_REQ:
        q->type = T_CLOSE;
        q->bye = env->sess_close_req->bye;
        sc = SS_CLOSE;
        bad = build_close(c, env, &args);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ROOM_REQ:
        q->type = T_ROOM;
        q->joined = env->sess_room_req->joined;
        sc = SS_ROOM;
        bad = build_room(c, env, &args);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_SESS_QUALITY_REQ:
        q->type = T_QUALITY;
        sc = SS_QUALITY;
        bad = build_quality(env, &args, recs, sizeof(recs));
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_REQ:
        q->type = T_PRESENCE;
        sc = SS_PRESENCE;
        if (!ss_valid_room(env->presence_req->room)) {
            bad = "invalid room";
            break;
        }
        snprintf(q->room, sizeof(q->room), "%s", env->presence_req->room);
        ss_args_str(&args, q->room);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REQ: {
        const Tether__Bus__SessGetReq *r = env->sess_get_req;
        q->type = T_GET;
        sc = SS_GET;
        const char *session = r->session ? r->session : "", *user = r->user ? r->user : "";
        if (*session && !ss_valid_session(session))
            bad = "invalid session";
        else if (*user && !ss_valid_user(user))
            bad = "invalid user";
        else if (!*session && !*user)
            bad = "a session or a user is needed";
        ss_args_str(&args, session);
        ss_args_str(&args, user);
        break;
    }
    default:
        bad = "unsupported request";
        sc = SS_NSCRIPTS;
        break;
    }
    if (bad) {
        reply_error(a, ctx, 4400, bad);
        free(q);
        goto out;
    }
    int rc = ss_store_run(c->st, sc, &args, on_done, q);
    if (rc < 0) {
        metrics_inc(ss_m.drop_store);
        rpc_ctx_drop(ctx);
        free(q);
        goto out;
    }
    a->inflight++;
out:
    ss_args_free(&args);
}

ss_api *ss_api_new(ss_ctx *c, const char *endpoint)
{
    ss_api *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->c = c;
    a->srv = rpc_server_new(c->l, endpoint, "sessiond", on_request, a);
    if (!a->srv) {
        int e = errno;
        free(a);
        errno = e;
        return NULL;
    }
    return a;
}

void ss_api_free(ss_api *a)
{
    if (!a)
        return;
    rpc_server_free(a->srv);
    free(a);
}

void ss_api_drain(ss_api *a, ss_api_idle_cb *idle, void *arg)
{
    a->draining = 1;
    a->idle = idle;
    a->idle_arg = arg;
    if (a->inflight == 0 && idle) {
        a->idle = NULL;
        idle(arg);
    }
}

size_t ss_api_inflight(const ss_api *a) { return a->inflight; }
