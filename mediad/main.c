/* main.c -- mediad: push-to-talk floors and Opus forwarding over ICE + SRTP.
 *
 * Wiring (one thread; GLib's main loop with lib/loop embedded):
 *
 *   ROUTER (TETHER_MEDIAD) -> md_api -> md_floor (Redis) / md_room (sessions)
 *   SUB (TETHER_BUS_OUT): ptt.* floor events, gw.heartbeat, our own probe
 *   PUB (TETHER_BUS_IN): ptt.<room>, media.gw.<gateway>, media.probe.<us>
 *   UDP (TETHER_MEDIA_IFACES, TETHER_MEDIA_PORTS): libnice agents, one per
 *   session, ICE-lite
 *   HTTP (TETHER_HTTP): /healthz /readyz /metrics
 *
 * `mediad probe` runs the synthetic peer of md_probe.c instead.
 *
 * SIGTERM: every session gets a `restart` notice (its client renegotiates
 * with another replica), hosting claims are released, the notices are
 * flushed, and the process exits. Floors live in Redis and are untouched.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>

#include "config.h"
#include "redis.h"
#include "log.h"
#include "md.h"
#include "md_api.h"
#include "md_dtls.h"
#include "md_floor.h"
#include "md_health.h"
#include "md_host.h"
#include "md_ice.h"
#include "md_room.h"
#include "md_srtp.h"
#include "zauth.h"
#include "zsock.h"

#define FLUSH_MS 300

typedef struct app {
    md_ctx c;
    GMainLoop *ml;
    md_health *health;
    loop_timer probe, stop_t;
    char probe_topic[200];
    char advertise[256];
} app;

static void fail(const char *var, const char *value, const char *why)
{
    fprintf(stderr, "mediad: %s='%s': %s\n", var, value, why);
    LOG_ERROR("mediad: cannot start", "{s:s,s:s,s:s}", "variable", var, "value", value, "error", why);
    exit(2);
}

/* ---- GLib <-> lib/loop -------------------------------------------------------------- */

static gboolean on_loop_fd(gint fd, GIOCondition cond, gpointer arg)
{
    (void)fd;
    (void)cond;
    loop *l = arg;
    loop_now_update(l);
    loop_run_once(l, 0);
    return G_SOURCE_CONTINUE;
}

unsigned md_glib_attach(loop *l) { return g_unix_fd_add(loop_fd(l), G_IO_IN, on_loop_fd, l); }

/* ---- bus --------------------------------------------------------------------------- */

static void on_bus(bus *b, const bus_env *env, void *arg)
{
    (void)b;
    app *a = arg;
    if (!strncmp(env->topic, "ptt.", 4)) {
        if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PTT_EVENT && env->ptt_event)
            md_rooms_on_floor(a->c.rooms, env->ptt_event);
    } else if (!strcmp(env->topic, "gw.heartbeat")) {
        md_rooms_on_gw_heartbeat(a->c.rooms, env);
    } else if (!strcmp(env->topic, a->probe_topic)) {
        if (env->source && env->source->incarnation == cfg_incarnation())
            a->c.last_bus_probe_ms = loop_mono_ms();
    }
}

static void on_bus_gap(bus *b, const char *topic, const Tether__Bus__Source *src, uint64_t expected, uint64_t got,
                       void *arg)
{
    (void)b;
    (void)src;
    app *a = arg;
    /* A lost floor event would leave a hosted room forwarding the wrong
     * talker: read the floor again (sequence numbers make it safe). */
    if (!strncmp(topic, "ptt.", 4)) {
        LOG_INFO("floor events lost, re-reading the floor", "{s:s,s:I,s:I}", "topic", topic, "expected",
                 (json_int_t)expected, "got", (json_int_t)got);
        md_rooms_refresh_floor(a->c.rooms, topic + 4);
    }
}

static void probe_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    app *a = arg;
    bus_env ev = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = 1000;
    hb.connections = (uint32_t)md_rooms_sessions(a->c.rooms);
    ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    ev.heartbeat = &hb;
    bus_publish(a->c.b, a->probe_topic, &ev);
}

/* ---- signals ---------------------------------------------------------------------- */

static void on_stop(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    app *a = arg;
    g_main_loop_quit(a->ml);
}

static void on_signal(loop *l, int signo, void *arg)
{
    app *a = arg;
    if (a->c.draining) {
        LOG_WARN("mediad: second signal, exiting now", "{s:i}", "signal", signo);
        g_main_loop_quit(a->ml);
        return;
    }
    a->c.draining = 1;
    LOG_INFO("mediad: draining", "{s:i,s:i}", "signal", signo, "sessions", (int)md_rooms_sessions(a->c.rooms));
    md_rooms_drain(a->c.rooms);
    loop_timer_start(l, &a->stop_t, FLUSH_MS, 0, on_stop, a);
}

/* ---- configuration ---------------------------------------------------------------- */

static void load_config(app *a)
{
    md_cfg *c = &a->c.cfg;
    c->endpoint = cfg_str("TETHER_MEDIAD", "tcp://127.0.0.1:5580");
    if (strchr(c->endpoint, ','))
        fail("TETHER_MEDIAD", c->endpoint, "mediad binds one endpoint; the comma list is for gateways");
    const char *adv = cfg_str("TETHER_MEDIAD_ADVERTISE", "");
    if (*adv) {
        snprintf(a->advertise, sizeof(a->advertise), "%s", adv);
    } else {
        /* A wildcard bind is not an address gateways can be sent to: use
         * the host name (a pod's name resolves to its IP in Kubernetes). */
        const char *star = strstr(c->endpoint, "://*:");
        const char *any = strstr(c->endpoint, "://0.0.0.0:");
        if (star || any) {
            char host[128] = "localhost";
            gethostname(host, sizeof(host) - 1);
            const char *port = strrchr(c->endpoint, ':');
            snprintf(a->advertise, sizeof(a->advertise), "tcp://%s%s", host, port);
        } else {
            snprintf(a->advertise, sizeof(a->advertise), "%s", c->endpoint);
        }
    }
    c->advertise = a->advertise;
    c->ifaces = cfg_str("TETHER_MEDIA_IFACES", "all");
    const char *ports = cfg_str("TETHER_MEDIA_PORTS", "10000-10999");
    unsigned lo, hi;
    char extra;
    if (sscanf(ports, "%u-%u%c", &lo, &hi, &extra) != 2 || lo < 1024 || hi > 65535 || lo > hi)
        fail("TETHER_MEDIA_PORTS", ports, "expected a UDP port range like 10000-10999 (1024..65535)");
    c->port_min = lo;
    c->port_max = hi;
    const char *state = getenv("XDG_STATE_HOME");
    static char def_cert[512];
    if (state && *state)
        snprintf(def_cert, sizeof(def_cert), "%s/tether/mediad-dtls.pem", state);
    else
        snprintf(def_cert, sizeof(def_cert), "run/mediad-dtls.pem");
    c->cert_path = cfg_str("TETHER_MEDIA_CERT", def_cert);
    c->ptt_max_ms = (uint32_t)cfg_int("TETHER_PTT_MAX_MS", 60000, 100, 3600000);
    c->ptt_grace_ms = (uint32_t)cfg_int("TETHER_PTT_GRACE_MS", 3000, 0, 600000);
    c->host_ttl_ms = (uint32_t)cfg_int("TETHER_MEDIA_HOST_TTL_MS", 3000, 300, 600000);
    c->gw_dead_ms = (uint32_t)cfg_int("TETHER_MEDIA_GW_DEAD_MS", 5000, 1000, 600000);
    /* Off by default: host candidates are known when the answer is written,
     * so putting them in it saves the client a round of signaling. */
    c->trickle = cfg_bool("TETHER_MEDIA_TRICKLE", 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "probe"))
        return md_probe_main(argc, argv);
    log_init("mediad");
    signal(SIGPIPE, SIG_IGN);
    app a;
    memset(&a, 0, sizeof(a));
    load_config(&a);
    const char *redis_url = cfg_str("TETHER_REDIS", "redis://127.0.0.1:6379/0");
    const char *bus_in = cfg_str("TETHER_BUS_IN", "tcp://127.0.0.1:5550");
    const char *bus_out = cfg_str("TETHER_BUS_OUT", "tcp://127.0.0.1:5551");
    const char *http = cfg_str("TETHER_HTTP", "127.0.0.1:9103");
    char err[256];
    char redis_shown[512], redis_err[256];
    cfg_redact_url(redis_url, redis_shown, sizeof(redis_shown));
    redis_config_note();
    if (redis_check_config(redis_url, redis_err, sizeof(redis_err)) < 0)
        fail("TETHER_REDIS", redis_shown, redis_err);
    if (md_ice_init(a.c.cfg.ifaces, err, sizeof(err)) < 0)
        fail("TETHER_MEDIA_IFACES", a.c.cfg.ifaces, err);
    if (md_srtp_init() < 0)
        fail("libsrtp2", "srtp_init", "initialisation failed");
    a.c.dtls = md_dtls_ctx_new(a.c.cfg.cert_path, err, sizeof(err));
    if (!a.c.dtls)
        fail("TETHER_MEDIA_CERT", a.c.cfg.cert_path, err);
    zauth_require("TETHER_BUS_IN", bus_in);
    zauth_require("TETHER_BUS_OUT", bus_out);
    zauth_require("TETHER_MEDIAD", a.c.cfg.endpoint);
    cfg_print();

    int rc = 1;
    a.c.gctx = g_main_context_default();
    a.ml = g_main_loop_new(NULL, FALSE);
    a.c.l = loop_new();
    if (!a.ml || !a.c.l || !md_glib_attach(a.c.l)) {
        LOG_ERROR("mediad: cannot create the event loop", NULL);
        return 1;
    }
    if (zauth_start(a.c.l, zsock_ctx()) < 0) {
        LOG_ERROR("cannot start the bus authentication handler", "{s:s}", "error", zmq_strerror(errno));
        return 1;
    }
    md_metrics_register();
    redis_opts ro = { .name = "mediad", .cmd_timeout_ms = 1000, .ping_ms = 1000 };
    a.c.r = redis_new(a.c.l, redis_url, &ro);
    if (!a.c.r)
        fail("TETHER_REDIS", redis_shown, strerror(errno));
    a.c.floor = md_floor_new(&a.c);
    a.c.host = md_host_new(&a.c);
    a.c.rooms = md_rooms_new(&a.c);
    if (!a.c.floor || !a.c.host || !a.c.rooms) {
        LOG_ERROR("mediad: out of memory at start", NULL);
        goto out;
    }
    a.c.b = bus_new(a.c.l, "mediad", bus_in, bus_out);
    if (!a.c.b)
        fail("TETHER_BUS_IN/TETHER_BUS_OUT", bus_in, zmq_strerror(errno));
    bus_on_event(a.c.b, on_bus, on_bus_gap, &a);
    snprintf(a.probe_topic, sizeof(a.probe_topic), "media.probe.%s", cfg_instance());
    if (bus_subscribe(a.c.b, "ptt.") < 0 || bus_subscribe(a.c.b, "gw.heartbeat") < 0 ||
        bus_subscribe(a.c.b, a.probe_topic) < 0) {
        LOG_ERROR("mediad: bus subscriptions failed", NULL);
        goto out;
    }
    a.c.api = md_api_new(&a.c, a.c.cfg.endpoint);
    if (!a.c.api)
        fail("TETHER_MEDIAD", a.c.cfg.endpoint, zmq_strerror(errno));
    a.health = md_health_new(&a.c, http);
    if (!a.health)
        fail("TETHER_HTTP", http, strerror(errno));
    if (loop_signal(a.c.l, SIGTERM, on_signal, &a) < 0 || loop_signal(a.c.l, SIGINT, on_signal, &a) < 0) {
        LOG_ERROR("mediad: cannot watch signals", NULL);
        goto out;
    }
    loop_timer_start(a.c.l, &a.probe, 10, 1000, probe_cb, &a);
    LOG_INFO("mediad: started", "{s:s,s:s,s:s,s:s,s:i,s:i,s:s}", "rpc", a.c.cfg.endpoint, "advertise",
             a.c.cfg.advertise, "http", http, "media_addresses", md_ice_addresses(), "port_min",
             (int)a.c.cfg.port_min, "port_max", (int)a.c.cfg.port_max, "fingerprint",
             md_dtls_ctx_fingerprint(a.c.dtls));
    g_main_loop_run(a.ml);
    rc = 0;
out:
    loop_timer_stop(a.c.l, &a.probe);
    /* Sessions first (they use the loop and GLib), then Redis, whose
     * cancelled callbacks still reach floor, host and rooms. */
    md_rooms_free(a.c.rooms);
    a.c.rooms = NULL;
    redis_free(a.c.r);
    md_api_free(a.c.api);
    md_health_free(a.health);
    md_host_free(a.c.host);
    md_floor_free(a.c.floor);
    bus_free(a.c.b);
    zauth_stop();
    zsock_ctx_term();
    /* Deferred session releases run before the loop goes. */
    loop_run_once(a.c.l, 0);
    loop_free(a.c.l);
    md_dtls_ctx_free(a.c.dtls);
    if (a.ml)
        g_main_loop_unref(a.ml);
    LOG_INFO("mediad: stopped", "{s:i}", "status", rc);
    return rc;
}
