/* ss_gw.c -- gateways seen from the bus: heartbeats, snapshots, loss and the
 * bus's own health (see ss_gw.h). */
#include "ss_gw.h"

#include <errno.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "ss_snap.h"
#include "ss_valid.h"

#define PROBE_MS 250
#define PROBE_OK_MS 1000      /* the probe came back this recently: the bus works */
#define HEARD_MS 3000         /* a gateway heard this recently counts as alive here */
#define ROUND_CHECK_MS 2000   /* a live gateway's snapshot must be whole by then */
#define ROUND_MIN_GAP_MS 1000 /* requests closer than this are folded together */
#define ROUND_ATTEMPTS 5
#define ASSEMBLY_MAX_MS 10000
#define PART_ARGS_MAX 900     /* lib/redis takes at most 1024 arguments per command */

typedef struct heard_gw {
    uint64_t incarnation;
    uint64_t last_ms;
    uint64_t complete_id; /* the last snapshot round it answered whole */
} heard_gw;

struct ss_gw {
    ss_ctx *c;
    ss_snaps *snaps;
    hmap *heard; /* instance -> heard_gw */
    char probe_topic[220];
    uint64_t probe_last_ms, bus_ok_since;
    int bus_ok_logged;
    loop_timer probe_t;
    /* Snapshot rounds. */
    uint64_t round_id, round_sent_ms;
    unsigned round_attempts;
    char **round_gws;
    size_t round_ngws;
    int want;            /* a round is wanted but not sent yet */
    const char *want_reason;
    loop_timer round_t;
    char token[200];     /* this replica's claim on a reconcile */
    size_t busy;
};

typedef struct reconcile {
    ss_gw *g;
    ss_snap *sn;
    char key[300];
    size_t calls, left;
    int failed, claimed;
    long long made, revived, taken, gone;
} reconcile;

static uint64_t random_id(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = cfg_incarnation() ^ (uint64_t)loop_wall_ms() << 20;
    v &= INT64_MAX; /* logged as a JSON integer */
    return v ? v : 1;
}

/* ---- bus health -------------------------------------------------------------------------- */

int ss_gw_bus_ok(const ss_gw *g)
{
    uint64_t now = loop_now_ms(g->c->l);
    return g->probe_last_ms && now - g->probe_last_ms <= PROBE_OK_MS;
}

int ss_gw_bus_stable(const ss_gw *g)
{
    return ss_gw_bus_ok(g) && g->bus_ok_since && loop_now_ms(g->c->l) - g->bus_ok_since >= g->c->cfg.bus_stable_ms;
}

size_t ss_gw_heard(const ss_gw *g)
{
    uint64_t now = loop_now_ms(g->c->l);
    size_t n = 0;
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(g->heard, &it, &k, &v))
        if (now - ((heard_gw *)v)->last_ms <= HEARD_MS)
            n++;
    return n;
}

size_t ss_gw_busy(const ss_gw *g) { return g->busy + ss_snaps_pending(g->snaps); }

static void send_round(ss_gw *g, int again);

static void probe_tick(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    ss_gw *g = arg;
    uint64_t now = loop_now_ms(l);
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = PROBE_MS;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    env.heartbeat = &hb;
    bus_publish(g->c->b, g->probe_topic, &env);
    if (ss_gw_bus_ok(g)) {
        if (!g->bus_ok_since) {
            g->bus_ok_since = now;
            LOG_INFO("bus: round trip ok", "{s:s}", "topic", g->probe_topic);
        }
        if (g->want && !loop_timer_active(&g->round_t))
            send_round(g, 0);
    } else if (g->bus_ok_since) {
        g->bus_ok_since = 0;
        LOG_WARN("bus: probe lost; gateways are not judged until it is back", "{s:I}", "silent_ms",
                 (json_int_t)(now - g->probe_last_ms));
    }
    ss_snaps_expire(g->snaps, now, ASSEMBLY_MAX_MS);
    /* Forget gateways long gone, so the map stays small. */
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(g->heard, &it, &k, &v)) {
        if (now - ((heard_gw *)v)->last_ms > 60000) {
            hmap_del(g->heard, k);
            free(v);
        }
    }
}

/* ---- snapshot rounds --------------------------------------------------------------------- */

static void round_forget(ss_gw *g)
{
    for (size_t i = 0; i < g->round_ngws; i++)
        free(g->round_gws[i]);
    free(g->round_gws);
    g->round_gws = NULL;
    g->round_ngws = 0;
}

static void round_check(loop *l, loop_timer *t, void *arg);

/* Publishes a SnapshotReq. again: a re-request within the same round. */
static void send_round(ss_gw *g, int again)
{
    uint64_t now = loop_now_ms(g->c->l);
    if (!ss_gw_bus_ok(g)) {
        g->want = 1; /* sent by probe_tick once the bus works */
        return;
    }
    if (!again) {
        g->round_attempts = 0;
        round_forget(g);
        /* The gateways alive now are the ones expected to answer. */
        size_t n = hmap_count(g->heard);
        g->round_gws = calloc(n ? n : 1, sizeof(char *));
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (g->round_gws && hmap_next(g->heard, &it, &k, &v))
            if (now - ((heard_gw *)v)->last_ms <= HEARD_MS && (g->round_gws[g->round_ngws] = strdup(k)))
                g->round_ngws++;
    }
    g->want = 0;
    g->round_attempts++;
    g->round_id = random_id();
    g->round_sent_ms = now;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SnapshotReq sr = TETHER__BUS__SNAPSHOT_REQ__INIT;
    sr.snapshot_id = g->round_id;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SNAPSHOT_REQ;
    env.snapshot_req = &sr;
    bus_publish(g->c->b, "sess.snapshot", &env);
    metrics_inc(ss_m.snap_requests);
    LOG_INFO("snapshot requested", "{s:I,s:i,s:i,s:s}", "snapshot_id", (json_int_t)g->round_id, "attempt",
             (int)g->round_attempts, "gateways", (int)g->round_ngws, "reason",
             g->want_reason ? g->want_reason : "");
    g->want_reason = NULL;
    loop_timer_start(g->c->l, &g->round_t, ROUND_CHECK_MS, 0, round_check, g);
}

static void round_check(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    ss_gw *g = arg;
    uint64_t now = loop_now_ms(l);
    size_t missing = 0;
    for (size_t i = 0; i < g->round_ngws; i++) {
        heard_gw *h = hmap_get(g->heard, g->round_gws[i]);
        if (h && now - h->last_ms <= HEARD_MS && h->complete_id != g->round_id) {
            missing++;
            LOG_WARN("snapshot incomplete", "{s:s,s:I}", "gateway", g->round_gws[i], "snapshot_id",
                     (json_int_t)g->round_id);
        }
    }
    if (g->want) {
        send_round(g, 0); /* a newer reason to ask: a fresh round */
    } else if (missing && g->round_attempts < ROUND_ATTEMPTS) {
        g->want_reason = "incomplete answer";
        send_round(g, 1);
    } else if (missing) {
        LOG_ERROR("snapshot: gateways did not answer whole; giving up until the next trigger", "{s:i}",
                  "gateways", (int)missing);
    }
}

void ss_gw_request_snapshot(ss_gw *g, const char *reason)
{
    if (!g->want_reason)
        g->want_reason = reason;
    /* A round in progress (or just sent) gets a fresh one when its check
     * fires, which also spaces rounds by ROUND_CHECK_MS under a storm. */
    if (loop_timer_active(&g->round_t) || !ss_gw_bus_ok(g)) {
        g->want = 1;
        return;
    }
    if (g->round_sent_ms && loop_now_ms(g->c->l) - g->round_sent_ms < ROUND_MIN_GAP_MS) {
        g->want = 1;
        loop_timer_start(g->c->l, &g->round_t, ROUND_MIN_GAP_MS, 0, round_check, g);
        return;
    }
    send_round(g, 0);
}

/* ---- reconcile --------------------------------------------------------------------------- */

static void reconcile_end(reconcile *rc)
{
    ss_gw *g = rc->g;
    if (!rc->failed && !rc->claimed) {
        metrics_inc(ss_m.snap_reconciled);
        metrics_add(ss_m.snap_revived, (double)(rc->made + rc->revived + rc->taken));
        metrics_add(ss_m.snap_disconnected, (double)rc->gone);
        LOG_INFO("snapshot reconciled", "{s:s,s:I,s:I,s:i,s:I,s:I,s:I,s:I}", "gateway", rc->sn->instance,
                 "incarnation", (json_int_t)rc->sn->incarnation, "snapshot_id", (json_int_t)rc->sn->snapshot_id,
                 "conns", (int)ss_snap_conns(rc->sn), "created", (json_int_t)rc->made, "revived",
                 (json_int_t)rc->revived, "moved", (json_int_t)rc->taken, "disconnected", (json_int_t)rc->gone);
    } else if (rc->failed) {
        LOG_WARN("snapshot reconcile failed; asking again", "{s:s}", "gateway", rc->sn->instance);
        ss_gw_request_snapshot(g, "reconcile failed");
    }
    ss_snap_free(rc->sn);
    free(rc);
    g->busy--;
}

static void on_reconciled(int status, const ss_res *r, void *arg)
{
    reconcile *rc = arg;
    if (status < 0) {
        rc->failed = 1;
    } else {
        ss_events_publish(rc->g->c, r);
        if (!strcmp(r->code, "claimed"))
            rc->claimed = 1;
        else if (!strcmp(r->code, "incomplete") || !strcmp(r->code, "stale"))
            rc->failed = strcmp(r->code, "stale") != 0;
        else if (r->data->elements == 3) {
            rc->made += ss_res_int(r, 0);
            rc->revived += ss_res_int(r, 1);
            rc->taken += ss_res_int(r, 2);
        } else {
            rc->gone += ss_res_int(r, 0);
        }
    }
    if (--rc->left == 0)
        reconcile_end(rc);
}

static void part_head(reconcile *rc, ss_args *a)
{
    const ss_ctx *c = rc->g->c;
    ss_args_str(a, rc->sn->instance);
    ss_args_u64(a, rc->sn->incarnation);
    ss_args_i64(a, rc->sn->ts);
    ss_args_str(a, rc->key);
    ss_args_str(a, rc->g->token);
    ss_args_u64(a, c->cfg.dead_after_ms);
    ss_args_u64(a, c->cfg.ttl_ms);
}

static int valid_conn(const Tether__Bus__GwConn *gc)
{
    return gc && ss_valid_session(gc->session) && ss_valid_user(gc->user);
}

/* The rooms of gc that are sent: valid ones, at most SS_MAX_POSITIONS. */
static size_t conn_rooms(const Tether__Bus__GwConn *gc)
{
    size_t n = 0;
    for (size_t j = 0; j < gc->n_rooms && n < SS_MAX_POSITIONS; j++)
        n += ss_valid_room(gc->rooms[j]);
    return n;
}

/* Sends one part call with the conns in [from, to) of the flattened list. */
static int send_part(reconcile *rc, const Tether__Bus__GwConn *const *conns, size_t n)
{
    ss_args a;
    ss_args_init(&a);
    part_head(rc, &a);
    ss_args_u64(&a, n);
    for (size_t i = 0; i < n; i++) {
        const Tether__Bus__GwConn *gc = conns[i];
        size_t nr = conn_rooms(gc);
        ss_args_u64(&a, gc->conn);
        ss_args_str(&a, gc->session);
        ss_args_str(&a, gc->user);
        ss_args_str(&a, ss_valid_text(gc->client, SS_MAX_CLIENT) ? gc->client : "");
        ss_args_u64(&a, nr);
        for (size_t j = 0, k = 0; j < gc->n_rooms && k < nr; j++)
            if (ss_valid_room(gc->rooms[j])) {
                ss_args_str(&a, gc->rooms[j]);
                k++;
            }
    }
    int r = ss_store_run(rc->g->c->st, SS_SNAP_PART, &a, on_reconciled, rc);
    ss_args_free(&a);
    return r;
}

/* Pipelines the part calls and the finish; Redis runs them in order, and
 * the finish checks that every part ran to its end. */
static void reconcile_start(ss_gw *g, ss_snap *sn)
{
    reconcile *rc = calloc(1, sizeof(*rc));
    const Tether__Bus__GwConn **batch = calloc(PART_ARGS_MAX, sizeof(*batch));
    if (!rc || !batch) {
        free(rc);
        free(batch);
        ss_snap_free(sn);
        ss_gw_request_snapshot(g, "out of memory");
        return;
    }
    rc->g = g;
    rc->sn = sn;
    rc->left = 1; /* held until every call is issued */
    snprintf(rc->key, sizeof(rc->key), "%s|%" PRIu64 ":%" PRIu64 ":%" PRId64, sn->instance, sn->incarnation,
             sn->snapshot_id, sn->ts);
    g->busy++;
    size_t nb = 0, args = 8, skipped = 0;
    int err = 0;
    for (uint32_t p = 0; p < sn->nparts && !err; p++) {
        for (size_t i = 0; i < sn->parts[p]->n_conns && !err; i++) {
            const Tether__Bus__GwConn *gc = sn->parts[p]->conns[i];
            if (!valid_conn(gc)) {
                skipped++;
                continue;
            }
            size_t need = 5 + conn_rooms(gc);
            if (nb && args + need > PART_ARGS_MAX) {
                err = send_part(rc, batch, nb);
                rc->calls++, rc->left++;
                nb = 0;
                args = 8;
            }
            batch[nb++] = gc;
            args += need;
        }
    }
    if (!err) {
        err = send_part(rc, batch, nb);
        rc->calls++, rc->left++;
    }
    if (!err) {
        ss_args a;
        ss_args_init(&a);
        ss_args_str(&a, sn->instance);
        ss_args_u64(&a, sn->incarnation);
        ss_args_i64(&a, sn->ts);
        ss_args_str(&a, rc->key);
        ss_args_str(&a, g->token);
        ss_args_u64(&a, g->c->cfg.ttl_ms);
        ss_args_u64(&a, rc->calls);
        err = ss_store_run(g->c->st, SS_SNAP_FINISH, &a, on_reconciled, rc);
        ss_args_free(&a);
        if (!err)
            rc->left++;
    }
    if (err) {
        /* A call that was not issued never calls back: count it done. */
        rc->left--;
        rc->failed = 1;
    }
    if (skipped)
        LOG_WARN("snapshot: invalid connections skipped", "{s:s,s:i}", "gateway", sn->instance, "skipped",
                 (int)skipped);
    free(batch);
    if (--rc->left == 0)
        reconcile_end(rc);
}

/* ---- bus events -------------------------------------------------------------------------- */

typedef struct hb_op {
    ss_gw *g;
    char instance[200];
    uint32_t connections;
} hb_op;

static void on_heartbeat_done(int status, const ss_res *r, void *arg)
{
    hb_op *op = arg;
    ss_gw *g = op->g;
    if (status == 0) {
        if (r->gw_status == 1 && op->connections > 0) {
            LOG_INFO("gateway unknown to Redis holds connections", "{s:s,s:i}", "gateway", op->instance,
                     "connections", (int)op->connections);
            ss_gw_request_snapshot(g, "unknown gateway with connections");
        } else if (r->gw_status == 2) {
            metrics_inc(ss_m.gw_resurrected);
            LOG_WARN("gateway declared dead is alive", "{s:s}", "gateway", op->instance);
            ss_gw_request_snapshot(g, "gateway declared dead is alive");
        }
    }
    free(op);
}

static void on_heartbeat(ss_gw *g, const bus_env *env)
{
    const Tether__Bus__Source *src = env->source;
    if (!src->instance[0] || strchr(src->instance, '|') || strlen(src->instance) >= sizeof(((hb_op *)0)->instance) ||
        !src->incarnation)
        return;
    uint64_t now = loop_now_ms(g->c->l);
    heard_gw *h = hmap_get(g->heard, src->instance);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h || hmap_put(g->heard, src->instance, h) < 0) {
            free(h);
            return;
        }
    }
    if (h->incarnation != src->incarnation) {
        h->incarnation = src->incarnation;
        h->complete_id = 0;
    }
    h->last_ms = now;
    hb_op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->g = g;
    snprintf(op->instance, sizeof(op->instance), "%s", src->instance);
    op->connections = env->heartbeat->connections;
    /* At least 2.5 of the gateway's own intervals, so one lost heartbeat is
     * never a death. */
    uint64_t dead = (uint64_t)env->heartbeat->interval_ms * 5 / 2;
    if (dead < g->c->cfg.dead_after_ms)
        dead = g->c->cfg.dead_after_ms;
    ss_args a;
    ss_args_init(&a);
    ss_args_str(&a, src->instance);
    ss_args_u64(&a, src->incarnation);
    ss_args_u64(&a, dead);
    if (ss_store_run(g->c->st, SS_HEARTBEAT, &a, on_heartbeat_done, op) < 0)
        free(op);
    ss_args_free(&a);
}

static void on_snapshot(ss_gw *g, const bus_env *env)
{
    const Tether__Bus__Source *src = env->source;
    if (!src->instance[0] || strchr(src->instance, '|') || strlen(src->instance) > 200 || !src->incarnation)
        return;
    ss_snap *sn = NULL;
    int r = ss_snaps_add(g->snaps, src->instance, src->incarnation, env->ts, env->gw_snapshot,
                         loop_now_ms(g->c->l), &sn);
    if (r < 0) {
        LOG_WARN("snapshot part refused", "{s:s,s:s}", "gateway", src->instance, "error", strerror(-r));
        return;
    }
    if (r == 0)
        return;
    heard_gw *h = hmap_get(g->heard, src->instance);
    if (h && h->incarnation == src->incarnation)
        h->complete_id = sn->snapshot_id;
    if (!ss_store_up(g->c->st)) {
        ss_snap_free(sn);
        ss_gw_request_snapshot(g, "redis down during a snapshot");
        return;
    }
    reconcile_start(g, sn);
}

static void on_bus(bus *b, const bus_env *env, void *arg)
{
    (void)b;
    ss_gw *g = arg;
    if (!strcmp(env->topic, g->probe_topic)) {
        if (env->source->incarnation == cfg_incarnation())
            g->probe_last_ms = loop_now_ms(g->c->l);
        return;
    }
    if (g->c->draining)
        return;
    if (!strcmp(env->topic, "gw.heartbeat") && env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT)
        on_heartbeat(g, env);
    else if (!strcmp(env->topic, "gw.snapshot") && env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_GW_SNAPSHOT)
        on_snapshot(g, env);
}

static void on_gap(bus *b, const char *topic, const Tether__Bus__Source *src, uint64_t expected, uint64_t got,
                   void *arg)
{
    (void)b;
    ss_gw *g = arg;
    /* The gateways' readiness probes (gw.probe.*) and ours carry no state. */
    if (strncmp(topic, "gw.", 3) != 0 || !strncmp(topic, "gw.probe.", 9))
        return;
    metrics_inc(ss_m.bus_gaps);
    LOG_WARN("bus: gw events lost", "{s:s,s:s,s:I,s:I}", "topic", topic, "gateway", src->instance, "expected",
             (json_int_t)expected, "got", (json_int_t)got);
    ss_gw_request_snapshot(g, "bus gap");
}

/* ---- lifecycle --------------------------------------------------------------------------- */

ss_gw *ss_gw_new(ss_ctx *c)
{
    ss_gw *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->c = c;
    g->snaps = ss_snaps_new();
    g->heard = hmap_new();
    if (!g->snaps || !g->heard)
        goto fail;
    snprintf(g->probe_topic, sizeof(g->probe_topic), "sess.probe.%s", cfg_instance());
    snprintf(g->token, sizeof(g->token), "%s|%" PRIu64, cfg_instance(), cfg_incarnation());
    if (bus_subscribe(c->b, "gw.") < 0 || bus_subscribe(c->b, g->probe_topic) < 0)
        goto fail;
    bus_on_event(c->b, on_bus, on_gap, g);
    loop_timer_start(c->l, &g->probe_t, 10, PROBE_MS, probe_tick, g);
    /* On start: every live gateway tells what it holds. */
    g->want = 1;
    g->want_reason = "start";
    return g;
fail:
    ss_snaps_free(g->snaps);
    hmap_free(g->heard);
    free(g);
    errno = ENOMEM;
    return NULL;
}

void ss_gw_free(ss_gw *g)
{
    if (!g)
        return;
    loop_timer_stop(g->c->l, &g->probe_t);
    loop_timer_stop(g->c->l, &g->round_t);
    bus_on_event(g->c->b, NULL, NULL, NULL);
    round_forget(g);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(g->heard, &it, &k, &v))
        free(v);
    hmap_free(g->heard);
    ss_snaps_free(g->snaps);
    free(g);
}
