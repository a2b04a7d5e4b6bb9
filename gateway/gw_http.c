/* gw_http.c -- plain HTTP on the gateway port, served by lib/http.
 *
 * gw_listen.c hands every socket that is not a WebSocket upgrade to a
 * listener-less lib/http server (http_server_adopt), whose handler is here:
 * /healthz, /readyz and /metrics for probes and Prometheus, the REST API
 * (publish, connection quality, reconnection state), dev tokens and the web
 * console's static files. lib/http reads each body whole, once, before the
 * handler runs; a request waiting for replayd or sessiond is owned by its
 * callback, which replies exactly once (a client that hung up meanwhile
 * only makes the reply vanish).
 *
 * /metrics: when TETHER_ADMIN_HTTP is set, the standard routes are served
 * there too and /metrics is 404 on the public port; otherwise the public
 * port answers /metrics to loopback peers only (403 to the others).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gw_http.h"
#include "gw_media.h"
#include "gw_route.h"
#include "gw_session.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "quality.h"

#define STATIC_MAX (8u << 20) /* the largest file served from the web root */

static const char no_store[] = "cache-control: no-store\r\n";
static const char no_store_retry[] = "cache-control: no-store\r\nretry-after: 1\r\n";

static void reply_json(http_req *req, int status, json_t *o, int retry_after)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s) {
        static const char oom[] = "{\"error\":\"internal\"}";
        http_reply_ex(req, 500, "application/json", no_store, oom, sizeof(oom) - 1);
        return;
    }
    http_reply_ex(req, status, "application/json", retry_after ? no_store_retry : no_store, s, strlen(s));
    free(s);
}

static void reply_error(http_req *req, int status, const char *why)
{
    reply_json(req, status, json_pack("{s:s,s:i}", "error", why, "status", status), 0);
}

static void reply_error_retry(http_req *req, int status, const char *why)
{
    reply_json(req, status, json_pack("{s:s,s:i}", "error", why, "status", status), 1);
}

/* ---- readiness -------------------------------------------------------------------------- */

int gw_ready(json_t **detail)
{
    uint64_t now = loop_now_ms(G.l);
    int replayd_ok = G.last_replayd_ok_ms && now - G.last_replayd_ok_ms < 3000;
    int bus_ok = G.last_bus_probe_ms && now - G.last_bus_probe_ms < 3000;
    int sessiond_ok = gw_sess_ready();
    int mediad_ok = gw_media_ready();
    /* Ready means the message path works: replayd and the bus. sessiond and
     * mediad are reported but do not gate readiness: if every replica of
     * either were down, gating on it would take every gateway out of
     * service and messaging down with presence or audio, the opposite of
     * "presence pauses, messages flow". */
    int ready = replayd_ok && bus_ok && !G.draining;
    if (detail)
        *detail = json_pack("{s:b,s:b,s:b,s:b,s:b,s:b,s:i}", "ready", ready, "replayd", replayd_ok, "bus", bus_ok,
                            "sessiond", sessiond_ok, "mediad", mediad_ok, "draining", G.draining, "connections",
                            (int)G.nconns);
    return ready;
}

/* ---- publish API ------------------------------------------------------------------------- */

/* A request waiting for replayd or sessiond. */
typedef struct hwait {
    http_req *req;
    char room[GW_MAX_ROOM + 1];
    char idem[GW_MAX_ID + 1];
    char user[GW_MAX_USER + 1];
} hwait;

static void http_pub_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    hwait *w = arg;
    http_req *r = w->req;
    if (status < 0 || !rep) {
        G.st.publish_errors++;
        reply_error_retry(r, 503, "publish not acknowledged in time; retrying with the same Idempotency-Key is safe");
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP) {
        G.st.acks++;
        reply_json(r, 200,
                   json_pack("{s:I,s:b,s:s,s:s,s:s}", "seq", (json_int_t)rep->append_rep->seq, "duplicate",
                             rep->append_rep->duplicate, "room", w->room, "id", w->idem, "epoch",
                             rep->append_rep->epoch ? rep->append_rep->epoch : ""),
                   0);
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR) {
        G.st.publish_errors++;
        int code = (int)rep->error->code;
        reply_error(r, code == GW_E_INVALID ? 400 : code == GW_E_TOO_LARGE ? 413 : 503,
                    rep->error->reason ? rep->error->reason : "publish failed");
    } else {
        reply_error(r, 502, "unexpected reply from replayd");
    }
    free(w);
}

static void publish(hwait *w)
{
    size_t blen;
    const char *body = http_req_body(w->req, &blen);
    if (blen > G.cfg.lim.max_frame) {
        reply_error(w->req, 413, "body too large");
        free(w);
        return;
    }
    json_error_t err;
    json_t *v = json_loadb(body, blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v) {
        reply_error(w->req, 400, "body must be a JSON value");
        free(w);
        return;
    }
    char *data = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!data || !gw_append(w->user, w->room, w->idem, data, http_pub_reply, w)) {
        reply_error(w->req, 500, "out of memory");
        free(w);
    }
    free(data);
}

/* ---- connection quality and reconnection state ----------------------------------------- */

typedef struct quality_ctx {
    http_req *req;
    quality_in in;
    quality_out out;
    int64_t ts;
} quality_ctx;

static json_t *quality_json(const quality_ctx *q, int stored)
{
    json_t *recs = json_array();
    for (size_t i = 0; i < q->out.nrecs; i++)
        json_array_append_new(recs, json_string(q->out.recs[i]));
    return json_pack("{s:s,s:{s:f,s:f,s:f,s:f},s:o,s:I,s:b}", "quality", quality_name(q->out.level), "metrics",
                     "rtt_ms", q->in.rtt_ms, "loss_pct", q->in.loss_pct, "jitter_ms", q->in.jitter_ms,
                     "bandwidth_kbps", q->in.bandwidth_kbps, "recommendations", recs, "timestamp",
                     (json_int_t)q->ts, "stored", stored);
}

static void quality_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    quality_ctx *q = arg;
    reply_json(q->req, 200,
               quality_json(q, status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ACK), 0);
    free(q);
}

static int num_field(json_t *o, const char *k, double *out, double max)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > max)
        return -1;
    *out = json_number_value(v);
    return 0;
}

static void quality(hwait *w)
{
    size_t blen;
    const char *body = http_req_body(w->req, &blen);
    json_error_t err;
    json_t *o = blen > G.cfg.lim.max_frame ? NULL : json_loadb(body, blen, 0, &err);
    quality_ctx *q = calloc(1, sizeof(*q));
    if (!o || !json_is_object(o) || !q || num_field(o, "rtt_ms", &q->in.rtt_ms, 600000) < 0 ||
        num_field(o, "loss_pct", &q->in.loss_pct, 100) < 0 || num_field(o, "jitter_ms", &q->in.jitter_ms, 600000) < 0 ||
        num_field(o, "bandwidth_kbps", &q->in.bandwidth_kbps, 1e9) < 0) {
        json_decref(o);
        free(q);
        reply_error(w->req, 400, "body must be an object of non-negative numbers: rtt_ms, loss_pct (<= 100), jitter_ms, bandwidth_kbps");
        free(w);
        return;
    }
    json_decref(o);
    quality_classify(&q->in, &q->out);
    q->ts = loop_wall_ms();
    q->req = w->req;
    if (!gw_sess_call_quality(w->user, &q->in, &q->out, quality_reply, q)) {
        reply_json(w->req, 200, quality_json(q, 0), 0);
        free(q);
    }
    free(w);
}

static void state_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    hwait *w = arg;
    http_req *req = w->req;
    if (status < 0 || !rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REP) {
        reply_error_retry(req, 503, "session service did not answer; retry");
        free(w);
        return;
    }
    const Tether__Bus__SessGetRep *g = rep->sess_get_rep;
    if (!g->found) {
        reply_error(req, 404, "no session for this user");
        free(w);
        return;
    }
    uint64_t seq = 0;
    for (size_t i = 0; i < g->n_rooms; i++)
        if (g->rooms[i]->room && !strcmp(g->rooms[i]->room, w->room))
            seq = g->rooms[i]->seq;
    /* A live connection on this gateway knows a fresher position. */
    int connected = g->connected;
    list_node *n;
    list_foreach(n, &G.conn_list) {
        gw_conn *c = list_entry(n, gw_conn, link);
        if (!c->ready || c->close_code || strcmp(c->claims.sub, w->user) != 0)
            continue;
        gw_sub *s = gw_conn_find_sub(c, w->room);
        if (s && s->pos > seq)
            seq = s->pos;
        connected = 1;
    }
    reply_json(req, 200,
                 json_pack("{s:s,s:s,s:{s:I,s:I,s:b,s:s},s:s}", "room_id", w->room, "user_id", w->user, "state",
                           "last_sequence", (json_int_t)seq, "last_seen", (json_int_t)g->last_seen_ms,
                           "is_connected", connected, "connection_quality",
                           g->quality && *g->quality ? g->quality : "unknown", "session", g->session ? g->session : ""),
               0);
    free(w);
}

/* ---- the room routes ------------------------------------------------------------------------ */

/* The bearer token of the request: 1 and *tok, 0 when absent, -1 when malformed. */
static int bearer(http_req *req, const char **tok)
{
    const char *v = http_req_header(req, "Authorization");
    if (!v)
        return 0;
    if (strncasecmp(v, "Bearer ", 7) != 0)
        return -1;
    v += 7;
    while (*v == ' ')
        v++;
    *tok = v;
    return *v ? 1 : -1;
}

/* /v1/rooms/{room}/{publish,connection-quality,reconnection-state}: the
 * token and the rights, then the route's own work. */
static void room_route(http_req *req, const gw_route *rt)
{
    const char *tok = NULL;
    if (bearer(req, &tok) <= 0) {
        reply_error(req, 401, "missing or malformed Authorization: Bearer token");
        return;
    }
    jwt_claims cl;
    const char *why = "invalid token";
    memset(&cl, 0, sizeof(cl));
    if (jwtv_verify(G.jwt, tok, (int64_t)time(NULL), &cl, &why) < 0) {
        G.st.auth_failures++;
        jwt_claims_clear(&cl);
        reply_error(req, 401, why);
        return;
    }
    hwait *w = calloc(1, sizeof(*w));
    if (!w) {
        jwt_claims_clear(&cl);
        reply_error(req, 500, "out of memory");
        return;
    }
    w->req = req;
    snprintf(w->room, sizeof(w->room), "%s", rt->room);
    snprintf(w->user, sizeof(w->user), "%s", cl.sub);
    int allowed = jwt_claims_room_allowed(&cl, w->room);
    jwt_claims_clear(&cl);
    if (!allowed) {
        reply_error(req, 403, "forbidden: this room is not in your token");
        free(w);
        return;
    }
    /* A user reads and writes only their own state. */
    char other[GW_MAX_USER + 16];
    int ol = http_req_query_param(req, "user_id", other, sizeof(other));
    if ((ol >= 0 && strcmp(other, w->user) != 0) || ol == -ENOSPC || ol == -EINVAL) {
        reply_error(req, 403, "forbidden: a user reads only their own state");
        free(w);
        return;
    }
    if (rt->kind == GW_RT_QUALITY) {
        quality(w);
        return;
    }
    if (rt->kind == GW_RT_STATE) {
        if (!gw_sess_call_get(w->user, state_reply, w)) {
            reply_error(req, 503, "session service not configured");
            free(w);
        }
        return;
    }
    const char *idem = http_req_header(req, "Idempotency-Key");
    if (idem) {
        if (strlen(idem) > GW_MAX_ID || !gw_valid_id(idem)) {
            reply_error(req, 400, "invalid Idempotency-Key (1..64 of [A-Za-z0-9._:-])");
            free(w);
            return;
        }
        snprintf(w->idem, sizeof(w->idem), "%s", idem);
    } else {
        /* No key: not retry-safe, so give it a unique one. */
        static uint64_t next_gen;
        snprintf(w->idem, sizeof(w->idem), "http-%llx-%llx", (unsigned long long)loop_wall_ms(),
                 (unsigned long long)++next_gen);
    }
    publish(w);
}

/* ---- static files (the web console) and dev tokens ------------------------------------------ */

static const char *mime_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    static const struct {
        const char *ext, *mime;
    } m[] = {
        { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
        { ".json", "application/json" }, { ".svg", "image/svg+xml" }, { ".png", "image/png" },
        { ".ico", "image/x-icon" }, { ".txt", "text/plain; charset=utf-8" }, { ".wav", "audio/wav" },
    };
    for (size_t i = 0; dot && i < sizeof(m) / sizeof(m[0]); i++)
        if (!strcmp(dot, m[i].ext))
            return m[i].mime;
    return "application/octet-stream";
}

static void serve_static(http_req *req, const char *rel)
{
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s%s", G.cfg.web_root, rel);
    struct stat st;
    FILE *f = NULL;
    char *buf = NULL;
    if (n < 0 || n >= (int)sizeof(path) || stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
        (size_t)st.st_size > STATIC_MAX || !(f = fopen(path, "rb"))) {
        reply_error(req, 404, "not found");
        return;
    }
    size_t len = (size_t)st.st_size;
    buf = malloc(len ? len : 1);
    if (!buf || fread(buf, 1, len, f) != len) {
        fclose(f);
        free(buf);
        reply_error(req, 500, "cannot read the file");
        return;
    }
    fclose(f);
    http_reply_ex(req, 200, mime_of(path), "cache-control: no-cache\r\nx-content-type-options: nosniff\r\n", buf, len);
    free(buf);
}

static void dev_token(http_req *req)
{
    const char *secret = getenv("TETHER_JWT_SECRET");
    if (!G.cfg.dev_tokens || !secret || !*secret) {
        reply_error(req, 404, "not found");
        return;
    }
    char user[GW_MAX_USER + 16];
    if (http_req_query_param(req, "user", user, sizeof(user)) < 0 || !gw_valid_id(user)) {
        reply_error(req, 400, "user=<1..64 of [A-Za-z0-9._:-]> is required");
        return;
    }
    char *tok = jwt_mint_hs256(secret, user, NULL, 0, (int64_t)time(NULL) + 3600, NULL, NULL, NULL);
    if (!tok) {
        reply_error(req, 500, "cannot mint");
        return;
    }
    reply_json(req, 200, json_pack("{s:s,s:s,s:i}", "token", tok, "user", user, "expires_in_s", 3600), 0);
    free(tok);
}

/* ---- the handlers -------------------------------------------------------------------------- */

static int is_loopback(const char *peer)
{
    return !strncmp(peer, "127.", 4) || !strcmp(peer, "::1") || !strncmp(peer, "::ffff:127.", 11);
}

static void handle(http_req *req, int admin)
{
    gw_route rt;
    int kind = gw_route_match(http_req_method(req), http_req_path(req), &rt);
    if (admin && kind != GW_RT_HEALTHZ && kind != GW_RT_READYZ && kind != GW_RT_METRICS) {
        reply_error(req, 404, "not found");
        return;
    }
    switch (kind) {
    case GW_RT_HEALTHZ:
        http_reply_ex(req, 200, "text/plain", no_store, "ok\n", 3);
        return;
    case GW_RT_READYZ: {
        json_t *d = NULL;
        int ok = gw_ready(&d);
        reply_json(req, ok ? 200 : 503, d, 0);
        return;
    }
    case GW_RT_METRICS: {
        if (!admin && G.admin) {
            reply_error(req, 404, "not found");
            return;
        }
        if (!admin && !is_loopback(http_req_peer(req))) {
            reply_error(req, 403, "forbidden: /metrics answers loopback only (or set TETHER_ADMIN_HTTP)");
            return;
        }
        size_t n = 0;
        char *m = metrics_render_len(&n);
        if (m)
            http_reply_ex(req, 200, METRICS_CONTENT_TYPE, no_store, m, n);
        else
            reply_error(req, 500, "metrics unavailable");
        free(m);
        return;
    }
    case GW_RT_DEV_TOKEN:
        dev_token(req);
        return;
    case GW_RT_PUBLISH:
    case GW_RT_QUALITY:
    case GW_RT_STATE:
        room_route(req, &rt);
        return;
    case GW_RT_BAD_ROOM:
        reply_error(req, 400, rt.why);
        return;
    case GW_RT_BAD_METHOD:
        reply_error(req, 405, rt.why);
        return;
    case GW_RT_STATIC:
        serve_static(req, rt.file);
        return;
    default:
        reply_error(req, 404, rt.why ? rt.why : "not found");
        return;
    }
}

void gw_http_handler(http_req *req, void *arg)
{
    (void)arg;
    handle(req, 0);
}

void gw_http_admin_handler(http_req *req, void *arg)
{
    (void)arg;
    handle(req, 1);
}

/* ---- metrics ---------------------------------------------------------------------------- */

static double stat_fn(void *arg) { return (double)*(unsigned long long *)arg; }
static double conns_fn(void *arg)
{
    (void)arg;
    return G.nconns;
}
static double preauth_fn(void *arg)
{
    (void)arg;
    return G.npreauth;
}
static double rooms_fn(void *arg)
{
    (void)arg;
    return gw_room_count();
}
static double ready_fn(void *arg)
{
    (void)arg;
    return gw_ready(NULL);
}

void gw_metrics_init(void)
{
#define C(field, name, help) metrics_counter_fn("tether_gateway_" name, help, NULL, stat_fn, &G.st.field)
    C(conns_opened, "connections_opened_total", "WebSocket connections accepted");
    C(conns_closed, "connections_closed_total", "WebSocket connections closed");
    C(frames_in, "frames_in_total", "Client frames received");
    C(frames_out, "frames_out_total", "Server frames written");
    C(writes, "ws_writes_total", "WebSocket writes (one carries every frame queued for a connection)");
    C(bytes_out, "bytes_out_total", "Server frame payload bytes written");
    C(malformed, "malformed_frames_total", "Malformed client frames");
    C(publishes, "publishes_total", "Publish requests sent to replayd");
    C(acks, "acks_total", "Publishes acknowledged");
    C(publish_errors, "publish_errors_total", "Publishes answered with an error");
    C(delivered, "messages_delivered_total", "Room messages queued to connections");
    C(gaps_repaired, "gap_messages_repaired_total", "Messages recovered from replayd to fill live gaps");
    C(gaps_unrepaired, "gaps_unrepairable_total", "Live gaps replayd could no longer fill (sent as gap frames)");
    C(resumes, "resumes_total", "Subscriptions resumed from an exact position");
    C(slow_closes, "slow_consumer_closes_total", "Connections closed with 4002");
    C(auth_failures, "auth_failures_total", "Rejected tokens");
    C(range_requests, "range_requests_total", "Range reads sent to replayd");
    C(epoch_changes, "epoch_changes_total", "Room epoch changes observed");
    C(refused_per_ip, "sockets_refused_per_address_total", "Sockets closed at accept: TETHER_PER_IP_CONNS reached");
    C(refused_rate, "sockets_refused_rate_total", "Sockets closed at accept: TETHER_PER_IP_RATE exceeded");
    C(refused_preauth, "sockets_refused_preauth_total", "Sockets closed at accept: TETHER_MAX_PREAUTH reached");
    C(head_timeouts, "head_timeouts_total", "Sockets closed without a complete request head in time");
    C(upgrades_refused, "upgrades_refused_total", "WebSocket upgrades answered with an error status");
    C(protocol_closes, "ws_protocol_closes_total", "WebSocket connections failed for a framing violation");
#undef C
    metrics_gauge_fn("tether_gateway_connections", "Open WebSocket connections", NULL, conns_fn, NULL);
    metrics_gauge_fn("tether_gateway_preauth", "Sockets before their request head plus connections before hello",
                     NULL, preauth_fn, NULL);
    metrics_gauge_fn("tether_gateway_rooms", "Rooms with local subscribers", NULL, rooms_fn, NULL);
    metrics_gauge_fn("tether_gateway_ready", "1 when /readyz answers 200", NULL, ready_fn, NULL);
}
