/* main.c -- replayd: per-room sequencing, history and dedup in Redis.
 *
 * Stateless: any number of replicas share one Redis (or one shard per room)
 * and the gateway spreads requests over them. Wiring:
 *
 *   ROUTER (TETHER_REPLAYD) -> rd_api -> rd_store -> Redis (TETHER_REDIS)
 *                                 \-> bus PUB (TETHER_BUS_IN): room.<room>
 *   rd_heads: every second, RoomHead for rooms appended to in the last 30 s
 *   rd_health: /healthz /readyz /metrics on TETHER_HTTP
 *
 * SIGTERM: stop announcing heads, leave new requests unanswered (the
 * gateway's rpc retries them elsewhere), finish what is in flight (bounded by
 * DRAIN_MAX_MS), give ZeroMQ a moment to flush replies and publications,
 * exit 0. A second signal exits at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "rd_api.h"
#include "rd_health.h"
#include "rd_heads.h"
#include "rd_store.h"
#include "redis.h"
#include "zauth.h"
#include "zsock.h"

#define DRAIN_MAX_MS 5000
/* Replies and publications sit in ZeroMQ's queues (linger is 0 on every
 * socket); the io thread needs a moment on loopback to send them. */
#define FLUSH_MS 100
#define HEAD_INTERVAL_MS 1000
#define HEAD_WINDOW_MS 30000
#define META_MIN_TTL_S (24 * 3600)

typedef struct app {
    loop *l;
    rd_store *st;
    bus *b;
    rd_heads *heads;
    rd_api *api;
    rd_health *health;
    int draining;
    loop_timer stop_t;
} app;

static void fail(const char *var, const char *value, const char *why)
{
    fprintf(stderr, "replayd: %s='%s': %s\n", var, value, why);
    LOG_ERROR("replayd: cannot start", "{s:s,s:s,s:s}", "variable", var, "value", value, "error", why);
    exit(2);
}

static void on_stop(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    loop_stop(l);
}

static void on_idle(void *arg)
{
    app *a = arg;
    LOG_INFO("replayd: drained", NULL);
    loop_timer_start(a->l, &a->stop_t, FLUSH_MS, 0, on_stop, a);
}

static void on_drain_deadline(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    app *a = arg;
    LOG_WARN("replayd: drain deadline reached", "{s:i}", "inflight", (int)rd_api_inflight(a->api));
    loop_stop(l);
}

static void on_signal(loop *l, int signo, void *arg)
{
    app *a = arg;
    if (a->draining) {
        LOG_WARN("replayd: second signal, exiting now", "{s:i}", "signal", signo);
        loop_stop(l);
        return;
    }
    a->draining = 1;
    LOG_INFO("replayd: draining", "{s:i,s:i}", "signal", signo, "inflight", (int)rd_api_inflight(a->api));
    rd_health_draining(a->health);
    rd_heads_stop(a->heads);
    loop_timer_start(l, &a->stop_t, DRAIN_MAX_MS, 0, on_drain_deadline, a);
    rd_api_drain(a->api, on_idle, a);
}

int main(void)
{
    log_init("replayd");
    signal(SIGPIPE, SIG_IGN); /* a Redis that closes its socket must not kill us */

    const char *redis_url = cfg_str("TETHER_REDIS", "redis://127.0.0.1:6379/0");
    const char *bus_in = cfg_str("TETHER_BUS_IN", "tcp://127.0.0.1:5550");
    const char *endpoint = cfg_str("TETHER_REPLAYD", "tcp://127.0.0.1:5560");
    const char *http = cfg_str("TETHER_HTTP", "127.0.0.1:9101");
    rd_store_cfg scfg = {
        .redis_url = redis_url,
        .history_size = (uint32_t)cfg_int("TETHER_HISTORY_SIZE", 100, 1, 100000),
        .history_burst = (uint32_t)cfg_int("TETHER_HISTORY_BURST", 1000, 1, 1000000),
        .history_min_age_ms = (uint32_t)cfg_int("TETHER_HISTORY_MIN_AGE_MS", 5000, 0, 600000),
        .history_ttl_s = (uint32_t)cfg_int("TETHER_HISTORY_TTL_S", 600, 1, 30 * 86400),
        .dedup_ttl_s = (uint32_t)cfg_int("TETHER_DEDUP_TTL_S", 600, 1, 30 * 86400),
        .cmd_timeout_ms = 1000,
    };
    if (scfg.history_burst < scfg.history_size)
        scfg.history_burst = scfg.history_size;
    scfg.meta_ttl_s = scfg.history_ttl_s > META_MIN_TTL_S ? scfg.history_ttl_s : META_MIN_TTL_S;
    char redis_shown[512], redis_err[256];
    cfg_redact_url(redis_url, redis_shown, sizeof(redis_shown));
    redis_config_note();
    if (redis_check_config(redis_url, redis_err, sizeof(redis_err)) < 0)
        fail("TETHER_REDIS", redis_shown, redis_err);
    if (strchr(endpoint, ','))
        fail("TETHER_REPLAYD", endpoint, "replayd binds one endpoint; the comma list is for clients");
    zauth_require("TETHER_BUS_IN", bus_in);
    zauth_require("TETHER_REPLAYD", endpoint);
    cfg_print();

    app a = { 0 };
    int rc = 1;
    a.l = loop_new();
    if (!a.l) {
        LOG_ERROR("replayd: loop_new failed", "{s:s}", "error", strerror(errno));
        return 1;
    }
    if (zauth_start(a.l, zsock_ctx()) < 0) {
        LOG_ERROR("cannot start the bus authentication handler", "{s:s}", "error", zmq_strerror(errno));
        return 1;
    }
    a.st = rd_store_new(a.l, &scfg);
    if (!a.st) {
        LOG_ERROR("replayd: store init failed", "{s:s}", "error", strerror(errno));
        goto out;
    }
    a.b = bus_new(a.l, "replayd", bus_in, NULL);
    if (!a.b)
        fail("TETHER_BUS_IN", bus_in, strerror(errno));
    a.heads = rd_heads_new(a.l, a.st, a.b, HEAD_INTERVAL_MS, HEAD_WINDOW_MS);
    if (!a.heads) {
        LOG_ERROR("replayd: heads init failed", "{s:s}", "error", strerror(errno));
        goto out;
    }
    a.api = rd_api_new(a.l, endpoint, a.st, a.b, a.heads);
    if (!a.api)
        fail("TETHER_REPLAYD", endpoint, zmq_strerror(errno));
    a.health = rd_health_new(a.l, http, a.st, a.b, a.api, a.heads);
    if (!a.health)
        fail("TETHER_HTTP", http, strerror(errno));
    if (loop_signal(a.l, SIGTERM, on_signal, &a) < 0 || loop_signal(a.l, SIGINT, on_signal, &a) < 0) {
        LOG_ERROR("replayd: cannot watch signals", NULL);
        goto out;
    }
    LOG_INFO("replayd: started", "{s:s,s:s,s:s}", "rpc", endpoint, "bus", bus_in, "http", http);
    loop_run(a.l);
    rc = 0;
out:
    /* Store first: operations still pending fail with -ECANCELED and call
     * back into the api (which drops them), so the api must still exist. */
    rd_store_free(a.st);
    rd_api_free(a.api);
    rd_heads_free(a.heads);
    rd_health_free(a.health);
    bus_free(a.b);
    zauth_stop();
    zsock_ctx_term();
    loop_free(a.l);
    LOG_INFO("replayd: stopped", "{s:i}", "status", rc);
    return rc;
}
