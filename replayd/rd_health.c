/* rd_health.c -- /healthz, /readyz and /metrics for replayd (see rd_health.h). */
#include "rd_health.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "http.h"
#include "metrics.h"

struct rd_health {
    http_server *srv;
    http_std std;
    rd_store *st;
    bus *b;
    rd_api *api;
    rd_heads *heads;
    int draining;
};

/* One callback series per (connection, counter): the arg says which. */
typedef struct redis_stat_ref {
    rd_health *h;
    int conn;
    size_t off;
} redis_stat_ref;

static redis_stat_ref g_refs[2][5];

static double redis_stat(void *arg)
{
    const redis_stat_ref *r = arg;
    redis_stats s = redis_get_stats(rd_store_conn(r->h->st, r->conn));
    return (double)*(const unsigned long long *)((const char *)&s + r->off);
}

static double conn_up(void *arg)
{
    const redis_stat_ref *r = arg;
    return redis_ready(rd_store_conn(r->h->st, r->conn));
}

static double bus_fail(void *arg) { return (double)bus_get_stats(((rd_health *)arg)->b).publish_fail; }
static double bus_published(void *arg) { return (double)bus_get_stats(((rd_health *)arg)->b).published; }
static double inflight(void *arg) { return (double)rd_api_inflight(((rd_health *)arg)->api); }
static double heads_rooms(void *arg) { return (double)rd_heads_rooms(((rd_health *)arg)->heads); }
static double batches(void *arg) { return (double)rd_store_batches(((rd_health *)arg)->st); }
static double heads_published(void *arg) { return (double)rd_heads_published(((rd_health *)arg)->heads); }
static double epoch_restarts(void *arg) { return (double)rd_store_epoch_restarts(((rd_health *)arg)->st); }
static double known_rooms(void *arg) { return (double)rd_store_known_rooms(((rd_health *)arg)->st); }

static void register_metrics(rd_health *h)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } rs[5] = {
        { "tether_replayd_redis_errors_total", "Redis commands that failed without a reply, or were refused.",
          offsetof(redis_stats, errors) },
        { "tether_replayd_redis_timeouts_total", "Redis connections recycled because a command timed out.",
          offsetof(redis_stats, timeouts) },
        { "tether_replayd_redis_reconnects_total", "Redis reconnections after the first connection.",
          offsetof(redis_stats, reconnects) },
        { "tether_replayd_redis_disconnects_total", "Redis connections lost or failed to connect.",
          offsetof(redis_stats, disconnects) },
        { "tether_replayd_redis_script_reloads_total", "NOSCRIPT replies answered by reloading the script.",
          offsetof(redis_stats, script_reloads) },
    };
    static const char *const labels[2] = { "conn=\"append\"", "conn=\"read\"" };
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < 5; i++) {
            g_refs[c][i] = (redis_stat_ref){ h, c, rs[i].off };
            metrics_counter_fn(rs[i].name, rs[i].help, labels[c], redis_stat, &g_refs[c][i]);
        }
        metrics_gauge_fn("tether_replayd_redis_up", "1 when the connection is up and answers PING.", labels[c],
                         conn_up, &g_refs[c][0]);
    }
    metrics_counter_fn("tether_replayd_bus_publish_failures_total",
                       "Bus publications dropped (high-water mark); subscribers repair from heads.", NULL, bus_fail,
                       h);
    metrics_counter_fn("tether_replayd_bus_published_total", "Bus publications (messages and heads).", NULL,
                       bus_published, h);
    metrics_counter_fn("tether_replayd_append_batches_total",
                       "Append script calls; appends of one room in one loop iteration share one.", NULL, batches, h);
    metrics_gauge_fn("tether_replayd_inflight_requests", "Requests being served.", NULL, inflight, h);
    metrics_gauge_fn("tether_replayd_head_rooms", "Rooms whose heads are being announced.", NULL, heads_rooms, h);
    metrics_counter_fn("tether_replayd_heads_published_total", "RoomHead announcements published.", NULL,
                       heads_published, h);
    metrics_counter_fn("tether_replayd_epoch_restarts_total",
                       "Appends that found a room in a new epoch although a seq of its previous one was known "
                       "(meta lost, or Redis came back older than it acknowledged).",
                       NULL, epoch_restarts, h);
    metrics_gauge_fn("tether_replayd_floor_rooms", "Rooms whose highest handed-out seq this replayd remembers.", NULL,
                     known_rooms, h);
}

static json_t *conn_json(const redis *r)
{
    return json_pack("{s:s,s:b,s:s}", "state", redis_state(r), "ping_ok", redis_ready(r), "error",
                     redis_last_error(r));
}

static void on_ready(http_req *req, void *arg)
{
    rd_health *h = arg;
    int ok = rd_store_ready(h->st) && !h->draining;
    json_t *o = json_pack("{s:b,s:b,s:{s:o,s:o}}", "ready", ok, "draining", h->draining, "redis", "append",
                          conn_json(rd_store_conn(h->st, 0)), "read", conn_json(rd_store_conn(h->st, 1)));
    http_reply_json(req, ok ? 200 : 503, o);
}

rd_health *rd_health_new(loop *l, const char *hostport, rd_store *st, bus *b, rd_api *api, rd_heads *heads)
{
    rd_health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->st = st;
    h->b = b;
    h->api = api;
    h->heads = heads;
    h->std.ready = on_ready;
    h->std.ready_arg = h;
    h->srv = http_server_new(l, hostport, http_std_handler, &h->std);
    if (!h->srv) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    register_metrics(h);
    return h;
}

void rd_health_free(rd_health *h)
{
    if (!h)
        return;
    http_server_free(h->srv);
    free(h);
}

void rd_health_draining(rd_health *h) { h->draining = 1; }
