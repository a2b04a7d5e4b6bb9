/* main.c -- the gateway: configuration, libwebsockets, bus and replayd wiring.
 *
 * Startup: read and validate the TETHER_* configuration, load the JWT keys,
 * create the loop, connect the bus (publish to busd's XSUB, subscribe from its
 * XPUB) and the replayd request client, then run libwebsockets' service loop
 * with the process loop embedded as a raw file descriptor. SIGTERM drains:
 * upgrades are refused, every client gets a `reconnect` hint and a 4000 close,
 * and the process exits when they are gone or the drain window is over.
 */
#include <errno.h>
#include <ev.h>
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
#include "log.h"
#include "metrics.h"
#include "zauth.h"
#include "zsock.h"

gw G;
static int g_stop;

static const struct lws_extension exts[] = {
    { "permessage-deflate", lws_extension_callback_pm_deflate, "permessage-deflate; client_no_context_takeover" },
    { NULL, NULL, NULL },
};

/* rx_buffer_size is allocated per connection: keep it small and reassemble
 * larger frames ourselves (gw_conn_rx). */
#define RX_CHUNK 2048

static struct lws_protocols protocols[] = {
    { "http", gw_lws_cb, sizeof(gw_pss), RX_CHUNK, 0, NULL, 0 },
    { "tether.v1.json", gw_lws_cb, sizeof(gw_pss), RX_CHUNK, 0, NULL, 0 },
    { "tether.v1.proto", gw_lws_cb, sizeof(gw_pss), RX_CHUNK, 0, NULL, 0 },
    { "tether-loop", gw_lws_cb, sizeof(gw_pss), 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

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
    if (G.draining && (G.nconns == 0 || loop_now_ms(l) >= G.drain_deadline)) {
        LOG_INFO("drained", "{s:i}", "remaining", (int)G.nconns);
        g_stop = 1;
        lws_cancel_service(G.ctx);
    }
}

static void on_signal(loop *l, int signo, void *arg)
{
    (void)arg;
    if (G.draining) {
        if (signo == SIGINT) {
            g_stop = 1;
            lws_cancel_service(G.ctx);
        }
        return;
    }
    LOG_INFO("draining", "{s:i,s:i,s:i}", "signal", signo, "connections", (int)G.nconns, "window_ms",
             (int)G.cfg.drain_ms);
    G.draining = 1;
    G.drain_deadline = loop_now_ms(l) + G.cfg.drain_ms + 2000;
    gw_conn_drain_all();
}

static void on_prepare(struct ev_loop *evl, ev_prepare *w, int revents)
{
    (void)evl;
    (void)w;
    (void)revents;
    loop_prepare(G.l);
    gw_conn_flush_all();
}

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

    G.l = loop_new();
    G.rooms = hmap_new();
    G.conns = hmap_new();
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

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = G.cfg.http_port;
    info.protocols = protocols;
    info.extensions = exts;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    /* LIBNOTES: an IPv4 literal as iface silently binds every interface
     * unless IPv6 is off; loopback must really mean loopback. */
    if (strcmp(G.cfg.http_host, "0.0.0.0") == 0 || strcmp(G.cfg.http_host, "*") == 0) {
        info.iface = NULL;
    } else {
        info.iface = G.cfg.http_host;
        if (!strchr(G.cfg.http_host, ':'))
            info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
    info.timeout_secs = 10;
    info.ka_time = 0;
    info.max_http_header_data = 8192 + 1024;
    info.pt_serv_buf_size = 16384;
    /* lws on libev (epoll), on a loop we own: lws's default poll() loop
     * scans every connection on every wake-up, which at 10,000 connections
     * was 61 % of the gateway's CPU (bench/compare). The process loop's fd
     * is still adopted below, so it stays one loop per process. */
    struct ev_loop *evl = ev_loop_new(EVBACKEND_EPOLL);
    void *foreign[1] = { evl };
    if (!evl) {
        LOG_ERROR("cannot create the event loop", NULL);
        return 1;
    }
    info.options |= LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign;
    G.ctx = lws_create_context(&info);
    if (!G.ctx) {
        LOG_ERROR("cannot listen", "{s:s}", "http", cfg_str("TETHER_HTTP", ""));
        fprintf(stderr, "TETHER_HTTP: cannot listen on %s:%d\n", G.cfg.http_host, G.cfg.http_port);
        return 1;
    }
    G.vh = lws_get_vhost_by_name(G.ctx, "default");
    lws_sock_file_fd_type fd;
    fd.filefd = loop_fd(G.l);
    if (!lws_adopt_descriptor_vhost(G.vh, LWS_ADOPT_RAW_FILE_DESC, fd, "tether-loop", NULL)) {
        LOG_ERROR("cannot embed the process loop", NULL);
        return 1;
    }
    loop_signal(G.l, SIGTERM, on_signal, NULL);
    loop_signal(G.l, SIGINT, on_signal, NULL);
    loop_timer_start(G.l, &G.sweep, 1000, 1000, sweep_cb, NULL);
    loop_timer_start(G.l, &G.probe, 10, 1000, probe_cb, NULL);
    LOG_INFO("gateway listening", "{s:s,s:i}", "host", G.cfg.http_host, "port", G.cfg.http_port);

    /* Deferred work (frame flushes, append batches, ZeroMQ re-checks) runs
     * right before libev waits, instead of waking it through loop_fd(). */
    ev_prepare prep;
    ev_prepare_init(&prep, on_prepare);
    ev_prepare_start(evl, &prep);
    loop_embed_prepared(G.l);
    while (!g_stop)
        ev_run(evl, EVRUN_ONCE);
    ev_prepare_stop(evl, &prep);
    lws_context_destroy(G.ctx);
    ev_loop_destroy(evl);
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
