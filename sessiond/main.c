/* main.c -- sessiond: sessions, presence and connection quality in Redis.
 *
 * Stateless: any number of replicas share one Redis; every change is one
 * atomic script (ss_lua.c), so replicas never talk to each other. Wiring:
 *
 *   ROUTER (TETHER_SESSIOND) -> ss_api -> ss_store -> Redis (TETHER_REDIS)
 *   SUB "gw." (TETHER_BUS_OUT) -> ss_gw: heartbeats, snapshots, bus loss
 *   ss_sweep: dead gateways, session expiry, rejoin grace, gauges
 *   PUB (TETHER_BUS_IN): presence.<room>, sess.snapshot, sess.probe.<instance>
 *   ss_health: /healthz /readyz /metrics /v1/sessions on TETHER_HTTP
 *
 * SIGTERM: stop sweeping, leave new requests unanswered (the gateway's rpc
 * retries them on another replica, or on this one's successor), finish what
 * is in flight (bounded), flush, exit 0. A second signal exits at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "config.h"
#include "redis.h"
#include "log.h"
#include "loop.h"
#include "opkey.h"
#include "ss.h"
#include "ss_api.h"
#include "ss_gw.h"
#include "ss_health.h"
#include "ss_store.h"
#include "ss_sweep.h"
#include "zauth.h"
#include "zsock.h"

#define DRAIN_MAX_MS 5000
#define FLUSH_MS 100

typedef struct app {
    ss_ctx c;
    ss_health *health;
    loop_timer stop_t;
} app;

static void fail(const char *var, const char *value, const char *why)
{
    fprintf(stderr, "sessiond: %s='%s': %s\n", var, value, why);
    LOG_ERROR("sessiond: cannot start", "{s:s,s:s,s:s}", "variable", var, "value", value, "error", why);
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
    LOG_INFO("sessiond: drained", NULL);
    loop_timer_start(a->c.l, &a->stop_t, FLUSH_MS, 0, on_stop, a);
}

static void on_drain_deadline(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    app *a = arg;
    LOG_WARN("sessiond: drain deadline reached", "{s:i}", "inflight", (int)ss_api_inflight(a->c.api));
    loop_stop(l);
}

static void on_signal(loop *l, int signo, void *arg)
{
    app *a = arg;
    if (a->c.draining) {
        LOG_WARN("sessiond: second signal, exiting now", "{s:i}", "signal", signo);
        loop_stop(l);
        return;
    }
    a->c.draining = 1;
    LOG_INFO("sessiond: draining", "{s:i,s:i}", "signal", signo, "inflight", (int)ss_api_inflight(a->c.api));
    ss_sweep_stop(a->c.sweep);
    loop_timer_start(l, &a->stop_t, DRAIN_MAX_MS, 0, on_drain_deadline, a);
    ss_api_drain(a->c.api, on_idle, a);
}

int main(void)
{
    log_init("sessiond");
    signal(SIGPIPE, SIG_IGN);

    const char *redis_url = cfg_str("TETHER_REDIS", "redis://127.0.0.1:6379/0");
    const char *bus_in = cfg_str("TETHER_BUS_IN", "tcp://127.0.0.1:5550");
    const char *bus_out = cfg_str("TETHER_BUS_OUT", "tcp://127.0.0.1:5551");
    const char *endpoint = cfg_str("TETHER_SESSIOND", "tcp://127.0.0.1:5570");
    const char *http = cfg_str("TETHER_HTTP", "127.0.0.1:9102");
    app a = { 0 };
    a.c.cfg.ttl_ms = (uint32_t)cfg_int("TETHER_SESSION_TTL_S", 120, 1, 7 * 86400) * 1000u;
    /* 2.5 heartbeat intervals: one lost heartbeat is never a death, and with
     * the 250 ms sweep every session of a dead gateway is marked within 3 s
     * of its death. */
    a.c.cfg.dead_after_ms = 2500;
    /* A resumed client re-subscribes its rooms at once (hello rooms); a room
     * still not re-joined after this grace was left while it was away. */
    a.c.cfg.rejoin_grace_ms = a.c.cfg.ttl_ms < 10000 ? a.c.cfg.ttl_ms : 10000;
    a.c.cfg.sweep_ms = 250;
    a.c.cfg.batch = 200; /* ~10 ms of Redis per sweep call at most */
    a.c.cfg.bus_stable_ms = 3000;
    a.c.cfg.operator_key = opkey_load();
    char redis_shown[512], redis_err[256];
    cfg_redact_url(redis_url, redis_shown, sizeof(redis_shown));
    redis_config_note();
    if (redis_check_config(redis_url, redis_err, sizeof(redis_err)) < 0)
        fail("TETHER_REDIS", redis_shown, redis_err);
    if (strchr(endpoint, ','))
        fail("TETHER_SESSIOND", endpoint, "sessiond binds one endpoint; the comma list is for clients");
    zauth_require("TETHER_BUS_IN", bus_in);
    zauth_require("TETHER_BUS_OUT", bus_out);
    zauth_require("TETHER_SESSIOND", endpoint);
    cfg_print();

    int rc = 1;
    a.c.l = loop_new();
    if (!a.c.l) {
        LOG_ERROR("sessiond: loop_new failed", "{s:s}", "error", strerror(errno));
        return 1;
    }
    if (zauth_start(a.c.l, zsock_ctx()) < 0) {
        LOG_ERROR("cannot start the bus authentication handler", "{s:s}", "error", zmq_strerror(errno));
        return 1;
    }
    ss_metrics_register();
    a.c.st = ss_store_new(a.c.l, redis_url, 1000);
    if (!a.c.st) {
        LOG_ERROR("sessiond: store init failed", "{s:s}", "error", strerror(errno));
        goto out;
    }
    a.c.b = bus_new(a.c.l, "sessiond", bus_in, bus_out);
    if (!a.c.b)
        fail("TETHER_BUS_IN/TETHER_BUS_OUT", bus_in, zmq_strerror(errno));
    a.c.gw = ss_gw_new(&a.c);
    if (!a.c.gw) {
        LOG_ERROR("sessiond: bus subscriptions failed", "{s:s}", "error", strerror(errno));
        goto out;
    }
    a.c.api = ss_api_new(&a.c, endpoint);
    if (!a.c.api)
        fail("TETHER_SESSIOND", endpoint, zmq_strerror(errno));
    a.c.sweep = ss_sweep_new(&a.c);
    if (!a.c.sweep) {
        LOG_ERROR("sessiond: sweep init failed", NULL);
        goto out;
    }
    a.health = ss_health_new(&a.c, http);
    if (!a.health)
        fail("TETHER_HTTP", http, strerror(errno));
    if (loop_signal(a.c.l, SIGTERM, on_signal, &a) < 0 || loop_signal(a.c.l, SIGINT, on_signal, &a) < 0) {
        LOG_ERROR("sessiond: cannot watch signals", NULL);
        goto out;
    }
    LOG_INFO("sessiond: started", "{s:s,s:s,s:s,s:s,s:I}", "rpc", endpoint, "bus_in", bus_in, "bus_out", bus_out,
             "http", http, "session_ttl_ms", (json_int_t)a.c.cfg.ttl_ms);
    loop_run(a.c.l);
    rc = 0;
out:
    /* Store first: calls still pending fail with -ECANCELED and call back
     * into the api, gw and sweep, which must still exist. */
    ss_store_free(a.c.st);
    ss_api_free(a.c.api);
    ss_sweep_free(a.c.sweep);
    ss_health_free(a.health);
    ss_gw_free(a.c.gw);
    bus_free(a.c.b);
    zauth_stop();
    zsock_ctx_term();
    loop_free(a.c.l);
    LOG_INFO("sessiond: stopped", "{s:i}", "status", rc);
    return rc;
}
