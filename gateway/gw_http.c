/* gw_http.c -- plain HTTP on the gateway port.
 *
 * /healthz, /readyz and /metrics for probes and Prometheus, and the REST
 * publish API. A request's state lives in a gw_hreq owned by its lws session;
 * replies that wait for replayd find it again by id, so a client that hangs
 * up early only makes the late reply vanish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gw_http.h"
#include "gw_media.h"
#include "gw_session.h"
#include "log.h"
#include "metrics.h"
#include "quality.h"

typedef struct gw_hreq {
    uint64_t id;
    struct lws *wsi;
    int route;
    char room[GW_MAX_ROOM + 1];
    char idem[GW_MAX_ID + 1];
    char user[GW_MAX_USER + 1];
    char *body;
    size_t blen;
    int too_large;
    int status;
    const char *ctype;
    char *out;          /* LWS_PRE headroom + outlen bytes */
    size_t outlen;
    int stage;          /* 0 building, 1 headers to write, 2 body to write */
    char retry_after;
} gw_hreq;

enum { R_NONE, R_PUBLISH, R_QUALITY, R_STATE };

static hmap *hreqs;
static uint64_t next_hreq;

static void hkey(char *b, size_t n, uint64_t id) { snprintf(b, n, "h%llx", (unsigned long long)id); }

static void hreq_free(gw_pss *pss)
{
    /* lws calls CLOSED_HTTP without session data for a connection that
     * never sent a request (a bare TCP connect, a port scan). */
    if (!pss)
        return;
    gw_hreq *r = pss->req;
    if (!r)
        return;
    char k[24];
    hkey(k, sizeof(k), r->id);
    hmap_del(hreqs, k);
    free(r->body);
    free(r->out);
    free(r);
    pss->req = NULL;
}

static void respond(gw_hreq *r, int status, const char *ctype, const char *body, size_t len)
{
    free(r->out);
    r->out = malloc(LWS_PRE + len + 1);
    if (!r->out) {
        r->outlen = 0;
        status = 500;
    } else {
        memcpy(r->out + LWS_PRE, body, len);
        r->outlen = len;
    }
    r->status = status;
    r->ctype = ctype;
    r->stage = 1;
    lws_callback_on_writable(r->wsi);
}

static void respond_json(gw_hreq *r, int status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s) {
        respond(r, 500, "application/json", "{\"error\":\"internal\"}", 20);
        return;
    }
    respond(r, status, "application/json", s, strlen(s));
    free(s);
}

static void respond_error(gw_hreq *r, int status, const char *why)
{
    respond_json(r, status, json_pack("{s:s,s:i}", "error", why, "status", status));
}

int gw_http_reject(struct lws *wsi, int status, const char *why)
{
    /* Written by hand: at CONFIRM_UPGRADE lws has not recorded the request's
     * HTTP version yet and lws_return_http_status() answers "HTTP/1.0",
     * which strict WebSocket clients refuse to parse. */
    char body[256], buf[LWS_PRE + 768];
    int bl = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", why, status);
    if (bl < 0 || bl >= (int)sizeof(body))
        return -1;
    int n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
                     "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     "%sconnection: close\r\n\r\n%s",
                     status, status == 401 ? "Unauthorized" : status == 503 ? "Service Unavailable" : "Error", bl,
                     status == 401 ? "www-authenticate: Bearer\r\n" : "", body);
    if (n < 0 || n >= (int)(sizeof(buf) - LWS_PRE))
        return -1;
    lws_write(wsi, (unsigned char *)buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return 1;
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

static int percent_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            char hx[3] = { in[i + 1], in[i + 2], 0 };
            char *end;
            long v = strtol(hx, &end, 16);
            if (*end || v <= 0)
                return -1;
            ch = (char)v;
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = 0;
    return 0;
}

static void http_pub_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    uint64_t id = (uint64_t)(uintptr_t)arg;
    char k[24];
    hkey(k, sizeof(k), id);
    gw_hreq *r = hmap_get(hreqs, k);
    if (!r)
        return;
    if (status < 0 || !rep) {
        G.st.publish_errors++;
        r->retry_after = 1;
        respond_error(r, 503, "publish not acknowledged in time; retrying with the same Idempotency-Key is safe");
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP) {
        G.st.acks++;
        respond_json(r, 200, json_pack("{s:I,s:b,s:s,s:s,s:s}", "seq", (json_int_t)rep->append_rep->seq,
                                       "duplicate", rep->append_rep->duplicate, "room", r->room, "id", r->idem,
                                       "epoch", rep->append_rep->epoch ? rep->append_rep->epoch : ""));
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR) {
        G.st.publish_errors++;
        int code = (int)rep->error->code;
        respond_error(r, code == GW_E_INVALID ? 400 : code == GW_E_TOO_LARGE ? 413 : 503,
                      rep->error->reason ? rep->error->reason : "publish failed");
    } else {
        respond_error(r, 502, "unexpected reply from replayd");
    }
}

static void publish_complete(gw_hreq *r)
{
    if (r->too_large) {
        respond_error(r, 413, "body too large");
        return;
    }
    json_error_t err;
    json_t *v = json_loadb(r->body ? r->body : "", r->blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v) {
        respond_error(r, 400, "body must be a JSON value");
        return;
    }
    char *data = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!data) {
        respond_error(r, 500, "out of memory");
        return;
    }
    if (!gw_append(r->user, r->room, r->idem, data, http_pub_reply, (void *)(uintptr_t)r->id))
        respond_error(r, 500, "out of memory");
    free(data);
}

static void state_reply(rpc_client *rc, int status, const bus_env *rep, void *arg);

/* Routes /v1/rooms/{room}/{publish,connection-quality,reconnection-state}:
 * checks the method, the room, the token and the rights. Returns 0 to wait
 * for the body, or 1 when a reply is prepared or on its way. */
static int room_route(gw_hreq *r, struct lws *wsi, const char *uri, int post)
{
    static const char pre[] = "/v1/rooms/";
    static const struct {
        const char *suffix;
        int route, post;
    } routes[] = {
        { "/publish", R_PUBLISH, 1 },
        { "/connection-quality", R_QUALITY, 1 },
        { "/reconnection-state", R_STATE, 0 },
    };
    size_t ul = strlen(uri), pl = strlen(pre);
    int route = R_NONE, want_post = 0;
    size_t sl = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t l = strlen(routes[i].suffix);
        if (ul > pl + l && !strncmp(uri, pre, pl) && !strcmp(uri + ul - l, routes[i].suffix)) {
            route = routes[i].route;
            want_post = routes[i].post;
            sl = l;
        }
    }
    if (route == R_NONE) {
        respond_error(r, 404, "not found");
        return 1;
    }
    if (post != want_post) {
        respond_error(r, 405, want_post ? "use POST" : "use GET");
        return 1;
    }
    if (percent_decode(uri + pl, ul - pl - sl, r->room, sizeof(r->room)) < 0 || !gw_valid_room(r->room)) {
        respond_error(r, 400, "invalid room name");
        return 1;
    }
    char tok[8192];
    int b = gw_bearer(wsi, tok, sizeof(tok));
    if (b <= 0) {
        respond_error(r, 401, "missing or malformed Authorization: Bearer token");
        return 1;
    }
    jwt_claims cl;
    const char *why = "invalid token";
    memset(&cl, 0, sizeof(cl));
    int v = jwtv_verify(G.jwt, tok, (int64_t)time(NULL), &cl, &why);
    if (v < 0) {
        G.st.auth_failures++;
        jwt_claims_clear(&cl);
        respond_error(r, 401, why);
        return 1;
    }
    int allowed = jwt_claims_room_allowed(&cl, r->room);
    snprintf(r->user, sizeof(r->user), "%s", cl.sub);
    jwt_claims_clear(&cl);
    if (!allowed) {
        respond_error(r, 403, "forbidden: this room is not in your token");
        return 1;
    }
    /* A user reads and writes only their own state. */
    char otherbuf[GW_MAX_USER + 16];
    const char *other = lws_get_urlarg_by_name(wsi, "user_id=", otherbuf, sizeof(otherbuf));
    if (other && strcmp(other, r->user) != 0) {
        respond_error(r, 403, "forbidden: a user reads only their own state");
        return 1;
    }
    r->route = route;
    if (route == R_QUALITY)
        return 0;
    if (route == R_STATE) {
        if (!gw_sess_call_get(r->user, state_reply, (void *)(uintptr_t)r->id))
            respond_error(r, 503, "session service not configured");
        return 1;
    }
    char idem[GW_MAX_ID + 2];
    int n = lws_hdr_custom_length(wsi, "idempotency-key:", 16);
    if (n > 0) {
        if (n > GW_MAX_ID || lws_hdr_custom_copy(wsi, idem, sizeof(idem), "idempotency-key:", 16) < 0 ||
            !gw_valid_id(idem)) {
            respond_error(r, 400, "invalid Idempotency-Key (1..64 of [A-Za-z0-9._:-])");
            return 1;
        }
        memcpy(r->idem, idem, strlen(idem) + 1);
    } else {
        /* No key: not retry-safe, so give it a unique one. */
        char gen[80];
        int gl = snprintf(gen, sizeof(gen), "http-%llx-%llx", (unsigned long long)loop_wall_ms(),
                          (unsigned long long)r->id);
        memcpy(r->idem, gen, (size_t)gl < sizeof(r->idem) ? (size_t)gl + 1 : sizeof(r->idem));
        r->idem[sizeof(r->idem) - 1] = 0;
    }
    return 0;
}

/* ---- connection quality and reconnection state ----------------------------------------- */

typedef struct quality_ctx {
    uint64_t hreq;
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
    char k[24];
    hkey(k, sizeof(k), q->hreq);
    gw_hreq *r = hmap_get(hreqs, k);
    if (r)
        respond_json(r, 200, quality_json(q, status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_SESS_ACK));
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

static void quality_complete(gw_hreq *r)
{
    if (r->too_large) {
        respond_error(r, 413, "body too large");
        return;
    }
    json_error_t err;
    json_t *o = json_loadb(r->body ? r->body : "", r->blen, 0, &err);
    quality_ctx *q = calloc(1, sizeof(*q));
    if (!o || !json_is_object(o) || !q || num_field(o, "rtt_ms", &q->in.rtt_ms, 600000) < 0 ||
        num_field(o, "loss_pct", &q->in.loss_pct, 100) < 0 || num_field(o, "jitter_ms", &q->in.jitter_ms, 600000) < 0 ||
        num_field(o, "bandwidth_kbps", &q->in.bandwidth_kbps, 1e9) < 0) {
        json_decref(o);
        free(q);
        respond_error(r, 400, "body must be an object of non-negative numbers: rtt_ms, loss_pct (<= 100), jitter_ms, bandwidth_kbps");
        return;
    }
    json_decref(o);
    quality_classify(&q->in, &q->out);
    q->ts = loop_wall_ms();
    q->hreq = r->id;
    if (!gw_sess_call_quality(r->user, &q->in, &q->out, quality_reply, q)) {
        respond_json(r, 200, quality_json(q, 0));
        free(q);
    }
}

static void state_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    char k[24];
    hkey(k, sizeof(k), (uint64_t)(uintptr_t)arg);
    gw_hreq *r = hmap_get(hreqs, k);
    if (!r)
        return;
    if (status < 0 || !rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_SESS_GET_REP) {
        r->retry_after = 1;
        respond_error(r, 503, "session service did not answer; retry");
        return;
    }
    const Tether__Bus__SessGetRep *g = rep->sess_get_rep;
    if (!g->found) {
        respond_error(r, 404, "no session for this user");
        return;
    }
    uint64_t seq = 0;
    for (size_t i = 0; i < g->n_rooms; i++)
        if (g->rooms[i]->room && !strcmp(g->rooms[i]->room, r->room))
            seq = g->rooms[i]->seq;
    /* A live connection on this gateway knows a fresher position. */
    int connected = g->connected;
    for (gw_conn *c = G.conn_list; c; c = c->next) {
        if (!c->ready || c->close_code || strcmp(c->claims.sub, r->user) != 0)
            continue;
        gw_sub *s = gw_conn_find_sub(c, r->room);
        if (s && s->pos > seq)
            seq = s->pos;
        connected = 1;
    }
    respond_json(r, 200,
                 json_pack("{s:s,s:s,s:{s:I,s:I,s:b,s:s},s:s}", "room_id", r->room, "user_id", r->user, "state",
                           "last_sequence", (json_int_t)seq, "last_seen", (json_int_t)g->last_seen_ms,
                           "is_connected", connected, "connection_quality",
                           g->quality && *g->quality ? g->quality : "unknown", "session", g->session ? g->session : ""));
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

/* Serves GET uri from the web root. Returns 0 when lws took the request,
 * 1 when a reply was prepared (404), -1 to close. */
static int serve_static(gw_hreq *r, struct lws *wsi, const char *uri)
{
    const char *rel = strcmp(uri, "/") == 0 ? "/index.html" : uri;
    /* A strict whitelist: no '..', no hidden files, no odd bytes. */
    for (const char *p = rel; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '/' ||
                 ch == '-' || ch == '_' || ch == '.';
        if (!ok || (ch == '.' && p[-1] == '/') || (ch == '.' && p[1] == '.')) {
            respond_error(r, 404, "not found");
            return 1;
        }
    }
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s%s", G.cfg.web_root, rel);
    struct stat st;
    if (n < 0 || n >= (int)sizeof(path) || stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        respond_error(r, 404, "not found");
        return 1;
    }
    int rc = lws_serve_http_file(wsi, path, mime_of(path),
                                 "cache-control: no-cache\r\nx-content-type-options: nosniff\r\n",
                                 (int)strlen("cache-control: no-cache\r\nx-content-type-options: nosniff\r\n"));
    if (rc < 0)
        return -1;
    /* lws now owns the response; forget our request state. */
    r->stage = 3;
    if (rc > 0 && lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static void dev_token(gw_hreq *r, struct lws *wsi)
{
    const char *secret = getenv("TETHER_JWT_SECRET");
    if (!G.cfg.dev_tokens || !secret || !*secret) {
        respond_error(r, 404, "not found");
        return;
    }
    char ubuf[GW_MAX_USER + 16] = "";
    /* lws returns a pointer to the value inside ubuf ("user=<value>"). */
    const char *user = lws_get_urlarg_by_name(wsi, "user=", ubuf, sizeof(ubuf));
    if (!user || !gw_valid_id(user)) {
        respond_error(r, 400, "user=<1..64 of [A-Za-z0-9._:-]> is required");
        return;
    }
    char *tok = jwt_mint_hs256(secret, user, NULL, 0, (int64_t)time(NULL) + 3600, NULL, NULL, NULL);
    if (!tok) {
        respond_error(r, 500, "cannot mint");
        return;
    }
    respond_json(r, 200, json_pack("{s:s,s:s,s:i}", "token", tok, "user", user, "expires_in_s", 3600));
    free(tok);
}

/* ---- lws callback --------------------------------------------------------------------------- */

static int write_stage(gw_hreq *r)
{
    struct lws *wsi = r->wsi;
    if (r->stage == 1) {
        unsigned char hb[LWS_PRE + 512], *start = hb + LWS_PRE, *p = start, *end = hb + sizeof(hb) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->ctype, r->outlen, &p, end))
            return -1;
        if (r->retry_after &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"1", 1, &p, end))
            return -1;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end))
            return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        r->stage = 2;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (r->stage == 2) {
        r->stage = 3;
        if (lws_write(wsi, (unsigned char *)r->out + LWS_PRE, r->outlen, LWS_WRITE_HTTP_FINAL) < (int)r->outlen)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    return 0;
}

int gw_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    gw_pss *pss = user;
    if (!pss) {
        if (reason == LWS_CALLBACK_HTTP || reason == LWS_CALLBACK_HTTP_BODY ||
            reason == LWS_CALLBACK_HTTP_BODY_COMPLETION || reason == LWS_CALLBACK_HTTP_WRITEABLE)
            return -1;
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (!hreqs && !(hreqs = hmap_new()))
            return -1;
        hreq_free(pss);
        gw_hreq *r = calloc(1, sizeof(*r));
        if (!r)
            return -1;
        r->id = ++next_hreq;
        r->wsi = wsi;
        char k[24];
        hkey(k, sizeof(k), r->id);
        hmap_put(hreqs, k, r);
        pss->req = r;
        const char *uri = in ? (const char *)in : "/";
        int post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        int get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
        if (get && !strcmp(uri, "/healthz")) {
            respond(r, 200, "text/plain", "ok\n", 3);
        } else if (get && !strcmp(uri, "/readyz")) {
            json_t *d = NULL;
            int ok = gw_ready(&d);
            respond_json(r, ok ? 200 : 503, d);
        } else if (get && !strcmp(uri, "/metrics")) {
            size_t n = 0;
            char *m = metrics_render_len(&n);
            if (m)
                respond(r, 200, METRICS_CONTENT_TYPE, m, n);
            else
                respond_error(r, 500, "metrics unavailable");
            free(m);
        } else if (get && !strcmp(uri, "/dev/token")) {
            dev_token(r, wsi);
        } else if ((post || get) && !strncmp(uri, "/v1/rooms/", 10)) {
            if (room_route(r, wsi, uri, post) == 0)
                return 0; /* wait for the body */
        } else if (!strncmp(uri, "/v1/", 4) || !strcmp(uri, "/healthz") || !strcmp(uri, "/readyz") ||
                   !strcmp(uri, "/metrics")) {
            respond_error(r, post || get ? 404 : 405, post || get ? "not found" : "method not allowed");
        } else if (get) {
            int rc = serve_static(r, wsi, uri);
            if (rc < 0)
                return -1;
            if (rc == 0) {
                hreq_free(pss);
                return 0;
            }
        } else {
            respond_error(r, 405, "method not allowed");
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY: {
        gw_hreq *r = pss->req;
        if (!r || (r->route != R_PUBLISH && r->route != R_QUALITY) || r->too_large)
            return 0;
        if (r->blen + len > G.cfg.lim.max_frame) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            return 0;
        }
        char *b = realloc(r->body, r->blen + len + 1);
        if (!b)
            return -1;
        memcpy(b + r->blen, in, len);
        r->body = b;
        r->blen += len;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss->req && pss->req->route == R_PUBLISH && pss->req->stage == 0)
            publish_complete(pss->req);
        else if (pss->req && pss->req->route == R_QUALITY && pss->req->stage == 0)
            quality_complete(pss->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!pss->req)
            return 0;
        return write_stage(pss->req);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        hreq_free(pss);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- metrics ---------------------------------------------------------------------------- */

static double stat_fn(void *arg) { return (double)*(unsigned long long *)arg; }
static double conns_fn(void *arg)
{
    (void)arg;
    return G.nconns;
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
#undef C
    metrics_gauge_fn("tether_gateway_connections", "Open WebSocket connections", NULL, conns_fn, NULL);
    metrics_gauge_fn("tether_gateway_rooms", "Rooms with local subscribers", NULL, rooms_fn, NULL);
    metrics_gauge_fn("tether_gateway_ready", "1 when /readyz answers 200", NULL, ready_fn, NULL);
}
