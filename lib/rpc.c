/* rpc.c -- DEALER/ROUTER requests with ids, timeouts and retries (see rpc.h). */
#include "rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "u64map.h"
#include "log.h"
#include "zauth.h"
#include "zsock.h"

typedef struct pending {
    rpc_client *c;
    uint64_t id;
    uint8_t *buf;
    size_t len;
    uint32_t timeout_ms;
    uint32_t left;
    rpc_reply_cb *cb;
    void *arg;
    loop_timer t;
} pending;

struct rpc_client {
    loop *l;
    zsock *z;
    u64map *calls;   /* request id -> pending */
    uint64_t next_id;
    Tether__Bus__Source src;
    rpc_client_stats st;
};

struct rpc_ctx {
    zmq_msg_t ident;
    uint64_t req_id;
};

struct rpc_server {
    loop *l;
    zsock *z;
    rpc_handler *h;
    void *arg;
    Tether__Bus__Source src;
    char instance[160];
    rpc_server_stats st;
};

/* ---- client ---------------------------------------------------------------------- */

static void finish(pending *p, int status, const bus_env *rep)
{
    rpc_client *c = p->c;
    u64map_del(c->calls, p->id);
    loop_timer_stop(c->l, &p->t);
    rpc_reply_cb *cb = p->cb;
    void *arg = p->arg;
    free(p->buf);
    free(p);
    cb(c, status, rep, arg);
}

static void send_attempt(pending *p)
{
    static const char empty[1];
    const void *bufs[2] = { empty, p->buf };
    size_t lens[2] = { 0, p->len };
    /* -EAGAIN (no replica connected) is not an error here: the timer
     * retries, which is exactly what waiting for a restarting peer needs. */
    zsock_send(p->c->z, bufs, lens, 2);
}

static void on_timeout(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    pending *p = arg;
    if (p->left <= 1) {
        p->c->st.timeouts++;
        finish(p, -ETIMEDOUT, NULL);
        return;
    }
    p->left--;
    p->c->st.retries++;
    send_attempt(p);
    loop_timer_start(l, &p->t, p->timeout_ms, 0, on_timeout, p);
}

static void on_client_msg(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    rpc_client *c = arg;
    if (n != 2 || zmq_msg_size(&parts[0]) != 0)
        return;
    bus_env *e = tether__bus__envelope__unpack(NULL, zmq_msg_size(&parts[1]), zmq_msg_data(&parts[1]));
    if (!e)
        return;
    pending *p = u64map_get(c->calls, e->req_id);
    if (p) {
        c->st.replies++;
        finish(p, 0, e);
    } else {
        c->st.late_replies++;
    }
    tether__bus__envelope__free_unpacked(e, NULL);
}

rpc_client *rpc_client_new(loop *l, const char *endpoints, const char *service)
{
    rpc_client *c = calloc(1, sizeof(*c));
    void *s = NULL;
    char *list = NULL;
    if (!c)
        return NULL;
    c->l = l;
    c->calls = u64map_new();
    /* Request ids are unique per incarnation; mixing in the start time keeps
     * a restarted client from matching a reply meant for its predecessor. */
    c->next_id = (cfg_incarnation() & 0xffffffffu) << 24;
    tether__bus__source__init(&c->src);
    c->src.service = (char *)service;
    c->src.instance = (char *)cfg_instance();
    c->src.incarnation = cfg_incarnation();
    s = zsock_socket(ZMQ_DEALER);
    list = strdup(endpoints ? endpoints : "");
    if (!c->calls || !s || !list)
        goto fail;
    int one = 1;
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one));
    char *save = NULL;
    int nconn = 0;
    for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        while (*ep == ' ')
            ep++;
        if (!*ep)
            continue;
        if (zauth_connect(s, ep) < 0) {
            LOG_ERROR("rpc: cannot connect", "{s:s,s:s}", "endpoint", ep, "error", zmq_strerror(errno));
            goto fail;
        }
        nconn++;
    }
    if (!nconn) {
        errno = EINVAL;
        goto fail;
    }
    c->z = zsock_new(l, s, on_client_msg, c);
    if (!c->z)
        goto fail;
    free(list);
    return c;
fail:
    free(list);
    if (s)
        zmq_close(s);
    u64map_free(c->calls);
    free(c);
    return NULL;
}

void rpc_client_free(rpc_client *c)
{
    if (!c)
        return;
    u64map_iter it = { 0 };
    uint64_t k;
    void *v;
    while (u64map_next(c->calls, &it, &k, &v))
        finish(v, -ECANCELED, NULL);
    u64map_free(c->calls);
    zsock_free(c->z);
    free(c);
}

uint64_t rpc_call(rpc_client *c, bus_env *req, uint32_t timeout_ms, uint32_t attempts, rpc_reply_cb *cb,
                  void *arg)
{
    pending *p = calloc(1, sizeof(*p));
    if (!p)
        return 0;
    p->c = c;
    p->id = ++c->next_id;
    req->req_id = p->id;
    req->source = &c->src;
    req->ts = loop_wall_ms();
    p->len = tether__bus__envelope__get_packed_size(req);
    p->buf = malloc(p->len ? p->len : 1);
    if (!p->buf || u64map_put(c->calls, p->id, p) < 0) {
        free(p->buf);
        free(p);
        return 0;
    }
    tether__bus__envelope__pack(req, p->buf);
    p->timeout_ms = timeout_ms ? timeout_ms : 1000;
    p->left = attempts ? attempts : 1;
    p->cb = cb;
    p->arg = arg;
    c->st.calls++;
    send_attempt(p);
    loop_timer_start(c->l, &p->t, p->timeout_ms, 0, on_timeout, p);
    return p->id;
}

void rpc_cancel(rpc_client *c, uint64_t req_id)
{
    pending *p = u64map_del(c->calls, req_id);
    if (!p)
        return;
    loop_timer_stop(c->l, &p->t);
    free(p->buf);
    free(p);
}

unsigned rpc_pending(const rpc_client *c) { return (unsigned)u64map_count(c->calls); }

rpc_client_stats rpc_client_get_stats(const rpc_client *c) { return c->st; }

/* ---- server ---------------------------------------------------------------------- */

void rpc_ctx_drop(rpc_ctx *ctx)
{
    if (!ctx)
        return;
    zmq_msg_close(&ctx->ident);
    free(ctx);
}

int rpc_reply(rpc_server *s, rpc_ctx *ctx, bus_env *rep)
{
    rep->req_id = ctx->req_id;
    rep->source = &s->src;
    rep->ts = loop_wall_ms();
    size_t len = tether__bus__envelope__get_packed_size(rep);
    uint8_t stackbuf[4096];
    uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
    int r = -ENOMEM;
    if (buf) {
        tether__bus__envelope__pack(rep, buf);
        const void *bufs[3] = { zmq_msg_data(&ctx->ident), "", buf };
        size_t lens[3] = { zmq_msg_size(&ctx->ident), 0, len };
        r = zsock_send(s->z, bufs, lens, 3);
        if (buf != stackbuf)
            free(buf);
    }
    if (r < 0)
        s->st.reply_fail++;
    else
        s->st.replies++;
    rpc_ctx_drop(ctx);
    return r;
}

int rpc_reply_error(rpc_server *s, rpc_ctx *ctx, uint32_t code, const char *reason)
{
    bus_env rep = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__ErrorRep er = TETHER__BUS__ERROR_REP__INIT;
    er.code = code;
    er.reason = (char *)reason;
    rep.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ERROR;
    rep.error = &er;
    return rpc_reply(s, ctx, &rep);
}

static void on_server_msg(zsock *z, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)z;
    rpc_server *s = arg;
    if (n != 3 || zmq_msg_size(&parts[1]) != 0) {
        s->st.malformed++;
        return;
    }
    bus_env *e = tether__bus__envelope__unpack(NULL, zmq_msg_size(&parts[2]), zmq_msg_data(&parts[2]));
    if (!e) {
        s->st.malformed++;
        return;
    }
    rpc_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        tether__bus__envelope__free_unpacked(e, NULL);
        return;
    }
    zmq_msg_init(&ctx->ident);
    zmq_msg_copy(&ctx->ident, &parts[0]);
    ctx->req_id = e->req_id;
    s->st.requests++;
    if (e->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ) {
        bus_env rep = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__PingRep pr = TETHER__BUS__PING_REP__INIT;
        rep.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REP;
        rep.ping_rep = &pr;
        rpc_reply(s, ctx, &rep);
    } else {
        s->h(s, ctx, e, s->arg);
    }
    tether__bus__envelope__free_unpacked(e, NULL);
}

rpc_server *rpc_server_new(loop *l, const char *endpoint, const char *service, rpc_handler *h, void *arg)
{
    rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->l = l;
    s->h = h;
    s->arg = arg;
    tether__bus__source__init(&s->src);
    snprintf(s->instance, sizeof(s->instance), "%s", cfg_instance());
    s->src.service = (char *)service;
    s->src.instance = s->instance;
    s->src.incarnation = cfg_incarnation();
    void *sock = zsock_socket(ZMQ_ROUTER);
    if (!sock || zauth_bind(sock, endpoint) < 0) {
        int e = errno;
        if (sock)
            zmq_close(sock);
        free(s);
        errno = e;
        return NULL;
    }
    s->z = zsock_new(l, sock, on_server_msg, s);
    if (!s->z) {
        zmq_close(sock);
        free(s);
        return NULL;
    }
    /* Failed handshakes (strangers without the keys) show in /metrics. */
    if (zauth_monitor(sock, service) < 0 || zauth_watch(l, zsock_ctx(), service) < 0)
        LOG_WARN("rpc: cannot watch handshakes", "{s:s,s:s}", "service", service, "error", zmq_strerror(errno));
    return s;
}

void rpc_server_free(rpc_server *s)
{
    if (!s)
        return;
    zsock_free(s->z);
    free(s);
}

rpc_server_stats rpc_server_get_stats(const rpc_server *s) { return s->st; }
