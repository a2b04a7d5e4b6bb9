/* ss_health.c -- health, metrics and the operators' session API (see ss_health.h). */
#include "ss_health.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "opkey.h"
#include "ss_gw.h"
#include "ss_record.h"
#include "ss_valid.h"

struct ss_health {
    ss_ctx *c;
    http_server *srv;
};

static double redis_up_fn(void *arg) { return ss_store_ready(((ss_health *)arg)->c->st); }
static double bus_up_fn(void *arg) { return ss_gw_bus_ok(((ss_health *)arg)->c->gw); }
static double heard_fn(void *arg) { return (double)ss_gw_heard(((ss_health *)arg)->c->gw); }
static double inflight_fn(void *arg) { return (double)ss_store_inflight(((ss_health *)arg)->c->st); }

static double redis_stat(void *arg, size_t off)
{
    redis_stats s = redis_get_stats(ss_store_redis(((ss_health *)arg)->c->st));
    return (double)*(const unsigned long long *)((const char *)&s + off);
}
static double redis_errors_fn(void *arg) { return redis_stat(arg, offsetof(redis_stats, errors)); }
static double redis_reconnects_fn(void *arg) { return redis_stat(arg, offsetof(redis_stats, reconnects)); }
static double redis_timeouts_fn(void *arg) { return redis_stat(arg, offsetof(redis_stats, timeouts)); }

static void register_metrics(ss_health *h)
{
    metrics_gauge_fn("tether_sessiond_redis_up", "1 when Redis is connected and answers PING.", NULL, redis_up_fn, h);
    metrics_gauge_fn("tether_sessiond_bus_up", "1 when sessiond's bus probe comes back.", NULL, bus_up_fn, h);
    metrics_gauge_fn("tether_sessiond_gateways_heard",
                     "Gateways this replica heard a heartbeat from in the last 3 s.", NULL, heard_fn, h);
    metrics_gauge_fn("tether_sessiond_redis_inflight", "Script calls waiting for Redis.", NULL, inflight_fn, h);
    metrics_counter_fn("tether_sessiond_redis_errors_total", "Redis commands that failed without a reply.", NULL,
                       redis_errors_fn, h);
    metrics_counter_fn("tether_sessiond_redis_reconnects_total", "Redis reconnections after the first.", NULL,
                       redis_reconnects_fn, h);
    metrics_counter_fn("tether_sessiond_redis_timeouts_total", "Redis connections recycled after a timeout.", NULL,
                       redis_timeouts_fn, h);
}

static void on_ready(http_req *req, void *arg)
{
    ss_health *h = arg;
    int redis_ok = ss_store_ready(h->c->st), bus_ok = ss_gw_bus_ok(h->c->gw);
    int ok = redis_ok && bus_ok && !h->c->draining;
    json_t *o = json_pack("{s:b,s:b,s:{s:s,s:b,s:s},s:{s:b},s:i}", "ready", ok, "draining", h->c->draining, "redis",
                          "state", redis_state(ss_store_redis(h->c->st)), "ping_ok", redis_ok, "error",
                          redis_last_error(ss_store_redis(h->c->st)), "bus", "round_trip_ok", bus_ok,
                          "gateways_heard", (int)ss_gw_heard(h->c->gw));
    http_reply_json(req, ok ? 200 : 503, o);
}

static void on_session(int status, const ss_res *r, void *arg)
{
    http_req *req = arg;
    if (status < 0) {
        http_reply_json(req, 503, json_pack("{s:s}", "error", "redis unavailable"));
        return;
    }
    if (!strcmp(r->code, "notfound")) {
        http_reply_json(req, 404, json_pack("{s:s}", "error", "no such session"));
        return;
    }
    ss_record rec;
    if (ss_record_parse(r, &rec) < 0) {
        http_reply_json(req, 500, json_pack("{s:s}", "error", "bad session record"));
        return;
    }
    http_reply_json(req, 200, ss_record_to_json(&rec));
    ss_record_free(&rec);
}

static void get_session(ss_health *h, http_req *req, const char *sid, const char *user)
{
    ss_args a;
    ss_args_init(&a);
    ss_args_str(&a, sid);
    ss_args_str(&a, user);
    if (ss_store_run(h->c->st, SS_GET, &a, on_session, req) < 0)
        http_reply_json(req, 503, json_pack("{s:s}", "error", "redis unavailable"));
    ss_args_free(&a);
}

static void on_http(http_req *req, void *arg)
{
    ss_health *h = arg;
    if (http_std_route(req, on_ready, h))
        return;
    const char *path = http_req_path(req), *method = http_req_method(req);
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    /* Session records name other users' sessions: operators only, checked
     * before anything about the request is looked at. */
    if (!strncmp(path, "/v1/sessions", 12) && !opkey_allow(req, h->c->cfg.operator_key))
        return;
    if (!strncmp(path, "/v1/sessions", 12) && !is_get) {
        http_reply_ex(req, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", "Method Not Allowed\n", 19);
        return;
    }
    if (!strncmp(path, "/v1/sessions/", 13)) {
        const char *sid = path + 13;
        if (!ss_valid_session(sid)) {
            http_reply_json(req, 400, json_pack("{s:s}", "error", "invalid session id"));
            return;
        }
        get_session(h, req, sid, "");
        return;
    }
    if (!strcmp(path, "/v1/sessions")) {
        char user[SS_MAX_USER + 1];
        int n = http_req_query_param(req, "user", user, sizeof(user));
        if (n <= 0 || !ss_valid_user(user)) {
            http_reply_json(req, 400, json_pack("{s:s}", "error", "?user= is required"));
            return;
        }
        get_session(h, req, "", user);
        return;
    }
    http_reply_status(req, 404);
}

ss_health *ss_health_new(ss_ctx *c, const char *hostport)
{
    ss_health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->c = c;
    h->srv = http_server_new(c->l, hostport, on_http, h);
    if (!h->srv) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    register_metrics(h);
    return h;
}

void ss_health_free(ss_health *h)
{
    if (!h)
        return;
    http_server_free(h->srv);
    free(h);
}

int ss_health_port(const ss_health *h) { return http_server_port(h->srv); }
