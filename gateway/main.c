/* main.c -- the gateway: configuration, the public port, bus and replayd wiring.
 *
 * Startup: read and validate the TETHER_* configuration, load the JWT keys,
 * create the loop, connect the bus (publish to busd's XSUB, subscribe from its
 * XPUB) and the replayd request client, listen on TETHER_HTTP (gw_listen.c)
 * and on TETHER_ADMIN_HTTP if set, then run lib/loop: one epoll loop for
 * every socket and timer of the process. SIGTERM drains:
 * upgrades are refused, every client gets a `reconnect` hint and a 4000 close,
 * and the process exits when they are gone or the drain window is over.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gw.h"
#include "gw_http.h"
#include "gw_media.h"
#include "gw_session.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "zauth.h"
#include "zsock.h"

gw G;
static int g_stop;

/* TETHER_ALLOWED_ORIGINS: "*" (any), or origins separated by commas. */
static void load_origins(gw_config *c, const char *v)
{
    c->origins = NULL;
    c->norigins = 0;
    char *dup = strdup(v), *save = NULL;
    if (!dup) {
        fprintf(stderr, "TETHER_ALLOWED_ORIGINS: out of memory\n");
        exit(2);
    }
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    char **list = calloc(cap, sizeof(*list));
    int any = 0;
    for (char *t = strtok_r(dup, ",", &save); list && t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            t[--n] = 0;
        if (!n)
            continue;
        if (!strcmp(t, "*"))
            any = 1;
        /* Each origin its own copy, kept for the process's life in list. */
        if (!(list[c->norigins++] = strdup(t))) {
            fprintf(stderr, "TETHER_ALLOWED_ORIGINS: out of memory\n");
            exit(2);
        }
    }
    free(dup);
    if (!list || (!any && !c->norigins)) {
        fprintf(stderr, "TETHER_ALLOWED_ORIGINS: '%s' names no origin (use * for any)\n", v);
        exit(2);
    }
    if (any) {
        for (size_t i = 0; i < c->norigins; i++)
            free(list[i]);
        free(list);
        c->norigins = 0;
        return;
    }
    c->origins = list;
}

static void load_config(void)
{
    gw_config *c = &G.cfg;
    const char *http = cfg_str("TETHER_HTTP", "127.0.0.1:8080");
    if (cfg_parse_hostport(http, c->http_host, sizeof(c->http_host), &c->http_port) < 0) {
        fprintf(stderr, "TETHER_HTTP: '%s' is not host:port\n", http);
        exit(2);
    }
    c->bus_in = cfg_str("TETHER_BUS_IN", "tcp://127.0.0.1:5550");
    c->bus_out = cfg_str("TETHER_BUS_OUT", "tcp://127.0.0.1:5551");
    c->replayd = cfg_str("TETHER_REPLAYD", "tcp://127.0.0.1:5560");
    c->sessiond = cfg_str("TETHER_SESSIOND", "tcp://127.0.0.1:5570");
    /* "off" runs the gateway without sessiond (no presence, resumed: false). */
    c->sessiond_enabled = strcmp(c->sessiond, "off") != 0;
    c->mediad = cfg_str("TETHER_MEDIAD", "tcp://127.0.0.1:5580");
    c->heartbeat_ms = (uint32_t)cfg_int("TETHER_HEARTBEAT_MS", 25000, 1000, 600000);
    c->session_ttl_ms = (uint32_t)cfg_int("TETHER_SESSION_TTL_S", 120, 1, 86400) * 1000u;
    c->hello_timeout_ms = (uint32_t)cfg_int("TETHER_HELLO_TIMEOUT_MS", 10000, 100, 600000);
    c->drain_ms = (uint32_t)cfg_int("TETHER_DRAIN_MS", 5000, 0, 600000);
    c->outq_max_bytes = (size_t)cfg_int("TETHER_OUTQ_MAX_BYTES", 8 << 20, 64 << 10, 1LL << 32);
    c->ring_size = (uint32_t)cfg_int("TETHER_GW_RING", 256, 8, 65536);
    c->max_conns = (uint32_t)cfg_int("TETHER_MAX_CONNS", 100000, 1, 10000000);
    c->max_inflight_publish = (uint32_t)cfg_int("TETHER_MAX_INFLIGHT_PUBLISH", 1000, 1, 1000000);
    c->publish_timeout_ms = (uint32_t)cfg_int("TETHER_PUBLISH_TIMEOUT_MS", 1000, 50, 60000);
    c->publish_attempts = (uint32_t)cfg_int("TETHER_PUBLISH_ATTEMPTS", 10, 1, 1000);
    c->lim.max_frame = (size_t)cfg_int("TETHER_MAX_FRAME", 65536, 1024, 16 << 20);
    c->admin_http = cfg_str("TETHER_ADMIN_HTTP", "");
    if (!*c->admin_http)
        c->admin_http = NULL;
    c->per_ip_conns = (uint32_t)cfg_int("TETHER_PER_IP_CONNS", 256, 1, 10000000);
    c->per_ip_rate = (uint32_t)cfg_int("TETHER_PER_IP_RATE", 100, 1, 1000000);
    c->max_preauth = (uint32_t)cfg_int("TETHER_MAX_PREAUTH", 4096, 1, 10000000);
    c->head_timeout_ms = (uint32_t)cfg_int("TETHER_HEAD_TIMEOUT_MS", 5000, 100, 600000);
    load_origins(c, cfg_str("TETHER_ALLOWED_ORIGINS", "*"));
    c->web_root = cfg_str("TETHER_WEB_ROOT", "web");
    c->dev_tokens = cfg_bool("TETHER_DEV_TOKENS", 0);
    c->lim.max_rooms = (size_t)cfg_int("TETHER_MAX_ROOMS", 256, 1, 100000);
}

static void load_jwt(void)
{
    const char *secret = cfg_secret("TETHER_JWT_SECRET", "");
    const char *keys = cfg_str("TETHER_JWT_KEYS", "");
    const char *iss = cfg_str("TETHER_JWT_ISS", "");
    const char *aud = cfg_str("TETHER_JWT_AUD", "");
    char err[256] = "";
    G.jwt = jwtv_new(*secret ? secret : NULL, *keys ? keys : NULL, *iss ? iss : NULL, *aud ? aud : NULL, err,
                     sizeof(err));
    if (!G.jwt) {
        fprintf(stderr, "TETHER_JWT_SECRET / TETHER_JWT_KEYS: %s\n", err[0] ? err : "no key configured");
        LOG_ERROR("no usable JWT key", "{s:s}", "error", err);
        exit(2);
    }
}

/* ---- readiness probes ---------------------------------------------------------------- */

static void ping_reply(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    (void)arg;
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PING_REP)
        G.last_replayd_ok_ms = loop_now_ms(G.l);
}

static char probe_topic[200];

static void probe_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__PingReq pr = TETHER__BUS__PING_REQ__INIT;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ;
    req.ping_req = &pr;
    rpc_call(G.replayd, &req, 1000, 1, ping_reply, NULL);
    /* A round trip through busd: what a dead pub/sub path would break. */
    bus_env ev = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = 1000;
    hb.connections = G.nconns;
    ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    ev.heartbeat = &hb;
    bus_publish(G.bus, probe_topic, &ev);
}

static void on_bus(bus *b, const bus_env *env, void *arg)
{
    (void)b;
    (void)arg;
    if (!strncmp(env->topic, "room.", 5)) {
        gw_room_on_bus(env);
    } else if (!strncmp(env->topic, "presence.", 9) || !strcmp(env->topic, "sess.snapshot")) {
        gw_sess_on_bus(env);
    } else if (!strncmp(env->topic, "ptt.", 4) || !strncmp(env->topic, "media.", 6)) {
        gw_media_on_bus(env);
    } else if (!strcmp(env->topic, probe_topic)) {
        if (env->source && env->source->incarnation == cfg_incarnation())
            G.last_bus_probe_ms = loop_now_ms(G.l);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void on_bus_gap(bus *b, const char *topic, const Tether__Bus__Source *src, uint64_t expected, uint64_t got,
                       void *arg)
{
    (void)b;
    (void)src;
    (void)arg;
    LOG_DEBUG("bus events lost", "{s:s,s:I,s:I}", "topic", topic, "expected", (json_int_t)expected, "got",
              (json_int_t)got);
    gw_sess_on_gap(topic);
}

static void sweep_cb(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    gw_conn_sweep();
    gw_listen_sweep();
    if (G.draining && (G.nconns == 0 || loop_now_ms(l) >= G.drain_deadline)) {
        LOG_INFO("drained", "{s:i}", "remaining", (int)G.nconns);
        g_stop = 1;
        loop_stop(l);
    }
}

static void on_signal(loop *l, int signo, void *arg)
{
    (void)arg;
    if (G.draining) {
        if (signo == SIGINT) {
            g_stop = 1;
            loop_stop(l);
        }
        return;
    }
    LOG_INFO("draining", "{s:i,s:i,s:i}", "signal", signo, "connections", (int)G.nconns, "window_ms",
             (int)G.cfg.drain_ms);
    G.draining = 1;
    G.drain_deadline = loop_now_ms(l) + G.cfg.drain_ms + 2000;
    gw_conn_drain_all();
}

/* Rooms and subscriptions tell media and sessions through these. */
static const gw_room_hooks room_hooks = {
    .room_open = gw_media_room_open,
    .room_close = gw_media_room_close,
    .sub_created = gw_sess_sub_created,
    .sub_announced = gw_sess_after_subscribed,
    .sub_stopping = gw_sess_sub_stopping,
};

int main(void)
{
    log_init("gateway");
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(time(NULL) ^ getpid()));
    load_config();
    load_jwt();
    zauth_require("TETHER_BUS_IN", G.cfg.bus_in);
    zauth_require("TETHER_BUS_OUT", G.cfg.bus_out);
    zauth_require("TETHER_REPLAYD", G.cfg.replayd);
    zauth_require("TETHER_SESSIOND", G.cfg.sessiond);
    zauth_require("TETHER_MEDIAD", G.cfg.mediad);
    cfg_print();

    list_init(&G.conn_list);
    list_init(&G.dirty);
    gw_room_set_hooks(&room_hooks);
    G.l = loop_new();
    G.rooms = hmap_new();
    G.conns = u64map_new();
    G.sessions = hmap_new();
    if (!G.l || !G.rooms || !G.conns || !G.sessions) {
        LOG_ERROR("out of memory at start", NULL);
        return 1;
    }
    if (zauth_start(G.l, zsock_ctx()) < 0) {
        LOG_ERROR("cannot start the bus authentication handler", "{s:s}", "error", zmq_strerror(errno));
        return 1;
    }
    G.bus = bus_new(G.l, "gateway", G.cfg.bus_in, G.cfg.bus_out);
    if (!G.bus) {
        LOG_ERROR("bus connect failed", "{s:s,s:s,s:s}", "bus_in", G.cfg.bus_in, "bus_out", G.cfg.bus_out, "error",
                  strerror(errno));
        fprintf(stderr, "TETHER_BUS_IN / TETHER_BUS_OUT: cannot connect (%s)\n", strerror(errno));
        return 1;
    }
    bus_on_event(G.bus, on_bus, on_bus_gap, NULL);
    snprintf(probe_topic, sizeof(probe_topic), "gw.probe.%s", cfg_instance());
    bus_subscribe(G.bus, probe_topic);
    G.replayd = rpc_client_new(G.l, G.cfg.replayd, "gateway");
    if (!G.replayd) {
        fprintf(stderr, "TETHER_REPLAYD: '%s' is not a usable endpoint list\n", G.cfg.replayd);
        return 1;
    }
    gw_sess_init();
    gw_media_init();
    gw_metrics_init();

    http_opts ho;
    memset(&ho, 0, sizeof(ho));
    ho.max_conns = G.cfg.max_preauth;
    ho.per_ip_conns = G.cfg.per_ip_conns;
    ho.max_body = G.cfg.lim.max_frame;
    ho.timeout_ms = G.cfg.head_timeout_ms;
    G.http = http_server_new_opts(G.l, NULL, &ho, gw_http_handler, NULL);
    if (!G.http) {
        LOG_ERROR("out of memory at start", NULL);
        return 1;
    }
    if (G.cfg.admin_http) {
        G.admin = http_server_new_opts(G.l, G.cfg.admin_http, NULL, gw_http_admin_handler, NULL);
        if (!G.admin) {
            LOG_ERROR("cannot listen", "{s:s,s:s}", "admin_http", G.cfg.admin_http, "error", strerror(errno));
            fprintf(stderr, "TETHER_ADMIN_HTTP: cannot listen on %s (%s)\n", G.cfg.admin_http, strerror(errno));
            return 1;
        }
    }
    int lr = gw_listen_start();
    if (lr < 0) {
        LOG_ERROR("cannot listen", "{s:s,s:s}", "http", cfg_str("TETHER_HTTP", ""), "error", strerror(-lr));
        fprintf(stderr, "TETHER_HTTP: cannot listen on %s:%d (%s)\n", G.cfg.http_host, G.cfg.http_port,
                strerror(-lr));
        return 1;
    }
    loop_signal(G.l, SIGTERM, on_signal, NULL);
    loop_signal(G.l, SIGINT, on_signal, NULL);
    loop_timer_start(G.l, &G.sweep, 1000, 1000, sweep_cb, NULL);
    loop_timer_start(G.l, &G.probe, 10, 1000, probe_cb, NULL);
    LOG_INFO("gateway listening", "{s:s,s:i}", "host", G.cfg.http_host, "port", G.cfg.http_port);

    /* Deferred work (frame flushes, append batches, ZeroMQ re-checks) runs
     * at the end of every iteration. */
    while (!g_stop)
        loop_run(G.l);
    gw_listen_stop();
    list_node *n, *nx;
    list_foreach_safe(n, nx, &G.conn_list) {
        gw_conn *c = list_entry(n, gw_conn, link);
        loop_timer_stop(G.l, &c->close_timer);
        loop_del_fd(G.l, c->fd);
        close(c->fd);
        gw_conn_closed(c);
    }
    http_server_free(G.http);
    http_server_free(G.admin);
    ws_inflater_free(G.inflater);
    /* Every ZeroMQ socket must be closed before zsock_ctx_term(), which
     * otherwise waits for them forever. */
    rpc_client_free(G.replayd);
    rpc_client_free(G.sessiond);
    gw_media_shutdown();
    bus_free(G.bus);
    jwtv_free(G.jwt);
    zauth_stop();
    loop_free(G.l);
    zsock_ctx_term();
    LOG_INFO("gateway stopped", NULL);
    return 0;
}
