/* busd_proxy.c -- the bus itself: zmq_proxy_steerable in its own thread.
 *
 * zmq_proxy_steerable blocks, so it gets a thread, and everything ZeroMQ it
 * touches (XSUB, XPUB, its end of the control PAIR) is created, used and
 * closed in that thread. The loop thread holds the other end of the PAIR:
 *
 *   start    the thread binds both sides and reports "OK" or
 *            "ERR <variable> <errno>" (the only blocking wait, at startup)
 *   running  the loop sends STATISTICS every second and for each /readyz;
 *            the 8-frame reply refreshes the counters /metrics shows and
 *            proves the proxy is alive; "EXIT <errno>" means it died
 *   stop     TERMINATE, then join
 *
 * Its statistics are eight cumulative values (frontend, backend) x
 * (received, sent) x (count, bytes), the frontend being the XSUB side. In
 * libzmq 4.3.4 a multipart message counts once and its bytes are those of
 * all its parts (measured: 50,000 two-part [topic][payload] events gave a
 * count of 50,000), so the counters are bus events and their bytes.
 *
 * There is one bus per process, so its state is a file-level singleton; that
 * also keeps the metrics callbacks (which point into it) valid until exit.
 */
#include "busd_proxy.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "metrics.h"
#include "zauth.h"

#define CTL_ENDPOINT "inproc://busd-control"
#define BUS_HWM 100000
#define BUS_MAX_MSG (1024 * 1024)     /* per frame; client frames are <= 64 KiB */
#define BUS_HEARTBEAT_MS 5000         /* finds peers that vanished without a FIN */
#define BUS_HEARTBEAT_TIMEOUT_MS 15000
#define STATS_EVERY_MS 1000
#define STATS_FRESH_MS 3000           /* a reply this recent means "up" */
#define READY_WAIT_MS 1000
#define START_WAIT_MS 10000
#define MAX_WAITING 64

/* Indices into the STATISTICS reply (zmq_proxy_steerable(3), libzmq 4.3). */
enum { ST_FE_RECV_N, ST_FE_RECV_B, ST_FE_SENT_N, ST_FE_SENT_B,
       ST_BE_RECV_N, ST_BE_RECV_B, ST_BE_SENT_N, ST_BE_SENT_B, ST_COUNT };

struct busd_proxy {
    loop *l;
    void *ctx;
    void *ctl;              /* loop thread's end of the control PAIR */
    int ctl_fd;
    pthread_t th;
    int started;            /* the thread exists and has not been joined */
    int alive;              /* the proxy runs (no EXIT seen) */
    const char *in_ep, *out_ep;
    uint64_t stats[ST_COUNT];
    uint64_t last_reply_ms; /* loop_mono_ms of the last STATISTICS reply, 0: never */
    uint64_t last_request_ms;
    int inflight;
    loop_timer poll_timer;
    loop_timer ready_timer;
    http_req *waiting[MAX_WAITING]; /* /readyz requests awaiting a reply */
    size_t nwaiting;
    void (*on_exit)(void *arg);
    void *exit_arg;
};

static busd_proxy g_proxy;

/* ---- the proxy thread ---------------------------------------------------------------- */

static int set_int(void *s, int opt, int v) { return zmq_setsockopt(s, opt, &v, sizeof(v)); }

static void bus_socket_opts(void *s)
{
    int64_t maxmsg = BUS_MAX_MSG;
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDHWM, BUS_HWM);
    set_int(s, ZMQ_RCVHWM, BUS_HWM);
    set_int(s, ZMQ_HEARTBEAT_IVL, BUS_HEARTBEAT_MS);
    set_int(s, ZMQ_HEARTBEAT_TIMEOUT, BUS_HEARTBEAT_TIMEOUT_MS);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
}

static void *proxy_main(void *arg)
{
    busd_proxy *p = arg;
    void *ctl = zmq_socket(p->ctx, ZMQ_PAIR);
    void *xsub = zmq_socket(p->ctx, ZMQ_XSUB);
    void *xpub = zmq_socket(p->ctx, ZMQ_XPUB);
    char msg[64] = "OK";
    if (!ctl || zmq_connect(ctl, CTL_ENDPOINT) < 0) {
        /* Nobody to tell: the loop thread's start wait times out. */
        goto out;
    }
    set_int(ctl, ZMQ_LINGER, 0);
    if (!xsub || !xpub) {
        snprintf(msg, sizeof(msg), "ERR - %d", zmq_errno());
    } else {
        bus_socket_opts(xsub);
        bus_socket_opts(xpub);
        /* Drops must stay possible: a slow subscriber loses messages (and
         * repairs from replayd) instead of stalling the whole bus. */
        set_int(xpub, ZMQ_XPUB_NODROP, 0);
        if (zauth_bind(xsub, p->in_ep) < 0)
            snprintf(msg, sizeof(msg), "ERR TETHER_BUS_IN %d", zmq_errno());
        else if (zauth_bind(xpub, p->out_ep) < 0)
            snprintf(msg, sizeof(msg), "ERR TETHER_BUS_OUT %d", zmq_errno());
        /* Subscribe the XSUB side to everything. Publishers then never
         * filter (a PUB drops topics nobody has subscribed to yet, and a
         * subscription needs two hops to reach it); busd's XPUB does the
         * filtering, one local hop from each subscriber, which is what lets
         * a gateway confirm its subscription before it reads history. */
        else if (zmq_send(xsub, "\x01", 1, 0) < 0)
            snprintf(msg, sizeof(msg), "ERR TETHER_BUS_IN subscribe %d", zmq_errno());
        else if (zauth_monitor(xsub, "bus_in") < 0 || zauth_monitor(xpub, "bus_out") < 0)
            snprintf(msg, sizeof(msg), "ERR - %d", zmq_errno());
    }
    zmq_send(ctl, msg, strlen(msg), 0);
    if (strcmp(msg, "OK") == 0 && zmq_proxy_steerable(xsub, xpub, NULL, ctl) != 0) {
        /* Not a TERMINATE: the loop thread must learn that the bus is down. */
        snprintf(msg, sizeof(msg), "EXIT %d", zmq_errno());
        zmq_send(ctl, msg, strlen(msg), ZMQ_DONTWAIT);
    }
out:
    if (xpub)
        zmq_close(xpub);
    if (xsub)
        zmq_close(xsub);
    if (ctl)
        zmq_close(ctl);
    return NULL;
}

/* ---- the loop side ------------------------------------------------------------------------- */

static int proxy_up(const busd_proxy *p)
{
    return p->alive && p->last_reply_ms && loop_mono_ms() - p->last_reply_ms <= STATS_FRESH_MS;
}

static json_t *status_json(const busd_proxy *p, int ready, const char *why)
{
    json_t *o = json_pack("{s:b,s:s}", "ready", ready, "proxy", p->alive ? "running" : "stopped");
    if (!o)
        return NULL;
    if (why)
        json_object_set_new(o, "why", json_string(why));
    if (p->last_reply_ms)
        json_object_set_new(o, "last_stats_ms_ago", json_integer((json_int_t)(loop_mono_ms() - p->last_reply_ms)));
    else
        json_object_set_new(o, "last_stats_ms_ago", json_null());
    json_object_set_new(o, "messages_published", json_integer((json_int_t)p->stats[ST_BE_SENT_N]));
    return o;
}

static void answer_waiting(busd_proxy *p, int ready, const char *why)
{
    size_t n = p->nwaiting;
    p->nwaiting = 0;
    loop_timer_stop(p->l, &p->ready_timer);
    for (size_t i = 0; i < n; i++)
        http_reply_json(p->waiting[i], ready ? 200 : 503, status_json(p, ready, why));
}

static void on_stats(busd_proxy *p, zmq_msg_t *parts)
{
    for (int i = 0; i < ST_COUNT; i++)
        memcpy(&p->stats[i], zmq_msg_data(&parts[i]), sizeof(uint64_t));
    p->last_reply_ms = loop_mono_ms();
    p->inflight = 0;
    answer_waiting(p, 1, NULL);
}

static void on_text(busd_proxy *p, const char *s, size_t n)
{
    if (n >= 5 && memcmp(s, "EXIT ", 5) == 0) {
        p->alive = 0;
        LOG_ERROR("bus proxy stopped", "{s:s%}", "error", s + 5, (size_t)(n - 5));
        answer_waiting(p, 0, "proxy stopped");
        if (p->on_exit)
            p->on_exit(p->exit_arg);
        return;
    }
    LOG_WARN("unexpected control message", "{s:s%}", "msg", s, n);
}

/* Drains the control socket. ZMQ_FD is edge-triggered, so read until
 * ZMQ_EVENTS says nothing is left: one readiness edge may stand for
 * several queued messages. */
static void ctl_drain(busd_proxy *p)
{
    for (;;) {
        int ev = 0;
        size_t evlen = sizeof(ev);
        if (zmq_getsockopt(p->ctl, ZMQ_EVENTS, &ev, &evlen) < 0 || !(ev & ZMQ_POLLIN))
            return;
        zmq_msg_t parts[ST_COUNT];
        size_t n = 0, extra = 0;
        int more = 1, ok = 1;
        while (more) {
            zmq_msg_t tmp;
            zmq_msg_t *m = n < ST_COUNT ? &parts[n] : &tmp;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, p->ctl, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(m);
                ok = 0;
                break;
            }
            more = zmq_msg_more(m);
            if (m == &tmp) {
                zmq_msg_close(m);
                extra++;
            } else {
                n++;
            }
        }
        if (ok) {
            int is_stats = n == ST_COUNT && !extra;
            for (size_t i = 0; is_stats && i < n; i++)
                is_stats = zmq_msg_size(&parts[i]) == sizeof(uint64_t);
            if (is_stats)
                on_stats(p, parts);
            else if (n >= 1)
                on_text(p, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]));
        }
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        if (!ok)
            return;
    }
}

static void on_ctl(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    ctl_drain(arg);
}

/* Asks for STATISTICS unless a request is already on its way. */
static void request_stats(busd_proxy *p)
{
    uint64_t now = loop_mono_ms();
    if (!p->alive || (p->inflight && now - p->last_request_ms < READY_WAIT_MS))
        return;
    if (zmq_send(p->ctl, "STATISTICS", 10, ZMQ_DONTWAIT) == 10) {
        p->inflight = 1;
        p->last_request_ms = now;
    }
    /* A send can swallow the edge that announced an incoming reply. */
    ctl_drain(p);
}

static void on_poll(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    request_stats(arg);
}

static void on_ready_timeout(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    answer_waiting(arg, 0, "proxy did not answer STATISTICS within 1 s");
}

void busd_proxy_readyz(http_req *req, void *arg)
{
    busd_proxy *p = arg;
    if (!p->alive) {
        http_reply_json(req, 503, status_json(p, 0, "proxy stopped"));
        return;
    }
    if (p->nwaiting == MAX_WAITING) {
        /* A probe storm: answer from the last reply rather than queue more. */
        int up = proxy_up(p);
        http_reply_json(req, up ? 200 : 503, status_json(p, up, up ? NULL : "no recent STATISTICS reply"));
        return;
    }
    p->waiting[p->nwaiting++] = req;
    if (!loop_timer_active(&p->ready_timer))
        loop_timer_start(p->l, &p->ready_timer, READY_WAIT_MS, 0, on_ready_timeout, p);
    request_stats(p);
}

/* ---- metrics ------------------------------------------------------------------------------- */

static double stat_fn(void *arg) { return (double)*(const uint64_t *)arg; }
static double up_fn(void *arg) { return proxy_up(arg); }

static double age_fn(void *arg)
{
    const busd_proxy *p = arg;
    return p->last_reply_ms ? (double)(loop_mono_ms() - p->last_reply_ms) / 1000.0 : NAN;
}

static void register_metrics(busd_proxy *p)
{
    static const char msgs_help[] =
        "Messages forwarded by the proxy (a multipart message counts once). "
        "publish: publishers to subscribers; subscribe: subscription changes, subscribers to publishers.";
    static const char bytes_help[] = "Bytes of the forwarded messages (all parts, without framing).";
    metrics_counter_fn("tether_busd_forwarded_messages_total", msgs_help, "direction=\"publish\"", stat_fn,
                       &p->stats[ST_BE_SENT_N]);
    metrics_counter_fn("tether_busd_forwarded_messages_total", msgs_help, "direction=\"subscribe\"", stat_fn,
                       &p->stats[ST_FE_SENT_N]);
    metrics_counter_fn("tether_busd_forwarded_bytes_total", bytes_help, "direction=\"publish\"", stat_fn,
                       &p->stats[ST_BE_SENT_B]);
    metrics_counter_fn("tether_busd_forwarded_bytes_total", bytes_help, "direction=\"subscribe\"", stat_fn,
                       &p->stats[ST_FE_SENT_B]);
    metrics_gauge_fn("tether_busd_proxy_up", "1 if the proxy thread answered STATISTICS within the last 3 s.",
                     NULL, up_fn, p);
    metrics_gauge_fn("tether_busd_stats_age_seconds",
                     "Seconds since the proxy last answered STATISTICS (refreshed every second).", NULL, age_fn,
                     p);
}

/* ---- start and stop ------------------------------------------------------------------------ */

busd_proxy *busd_proxy_start(loop *l, const char *in_ep, const char *out_ep, const char **failed_var,
                             void (*on_exit)(void *arg), void *arg)
{
    busd_proxy *p = &g_proxy;
    int err = 0;
    *failed_var = NULL;
    if (p->ctx) {
        errno = EBUSY; /* one bus per process */
        return NULL;
    }
    memset(p, 0, sizeof(*p));
    p->l = l;
    p->in_ep = in_ep;
    p->out_ep = out_ep;
    p->on_exit = on_exit;
    p->exit_arg = arg;
    p->ctx = zmq_ctx_new();
    if (!p->ctx)
        return NULL;
    /* The ZAP handler lives in the proxy's context (ZAP is per context)
     * and runs on the loop, before the proxy binds anything. */
    int zr = zauth_start(l, p->ctx);
    if (zr == 0)
        zr = zauth_watch(l, p->ctx, "bus_in");
    if (zr == 0)
        zr = zauth_watch(l, p->ctx, "bus_out");
    if (zr < 0) {
        err = -zr;
        goto out;
    }
    p->ctl = zmq_socket(p->ctx, ZMQ_PAIR);
    if (!p->ctl || set_int(p->ctl, ZMQ_LINGER, 0) < 0 || zmq_bind(p->ctl, CTL_ENDPOINT) < 0 ||
        set_int(p->ctl, ZMQ_RCVTIMEO, START_WAIT_MS) < 0) {
        err = zmq_errno();
        goto out;
    }
    err = pthread_create(&p->th, NULL, proxy_main, p);
    if (err)
        goto out;
    p->started = 1;
    char msg[64];
    int n = zmq_recv(p->ctl, msg, sizeof(msg) - 1, 0);
    if (n < 0) {
        err = zmq_errno() == EAGAIN ? ETIMEDOUT : zmq_errno();
        /* The thread is stuck somewhere in libzmq: it cannot be joined, and
         * the caller exits anyway. */
        p->started = 0;
        goto out;
    }
    msg[n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1] = 0;
    if (strcmp(msg, "OK") != 0) {
        static char var[32];
        int e = 0;
        if (sscanf(msg, "ERR %31s %d", var, &e) == 2) {
            if (strcmp(var, "-") != 0)
                *failed_var = var;
            err = e ? e : EINVAL;
        } else {
            err = EPROTO;
        }
        goto out;
    }
    p->alive = 1;
    size_t fdlen = sizeof(p->ctl_fd);
    if (set_int(p->ctl, ZMQ_RCVTIMEO, -1) < 0 || zmq_getsockopt(p->ctl, ZMQ_FD, &p->ctl_fd, &fdlen) < 0) {
        err = zmq_errno();
        goto out;
    }
    int r = loop_add_fd(l, p->ctl_fd, LOOP_READ, on_ctl, p);
    if (r < 0) {
        err = -r;
        goto out;
    }
    register_metrics(p);
    loop_timer_start(l, &p->poll_timer, 0, STATS_EVERY_MS, on_poll, p);
    LOG_INFO("bus bound", "{s:s,s:s,s:i}", "in", in_ep, "out", out_ep, "hwm", BUS_HWM);
out:
    if (err) {
        if (p->started) {
            zmq_send(p->ctl, "TERMINATE", 9, ZMQ_DONTWAIT);
            pthread_join(p->th, NULL);
            p->started = 0;
            if (p->ctl)
                zmq_close(p->ctl);
            zauth_stop();
            zmq_ctx_term(p->ctx);
        }
        /* Without a join the context cannot be terminated; leave it. */
        p->ctl = NULL;
        p->ctx = NULL;
        errno = err;
        return NULL;
    }
    return p;
}

void busd_proxy_stop(busd_proxy *p)
{
    if (!p || !p->ctx)
        return;
    loop_timer_stop(p->l, &p->poll_timer);
    loop_del_fd(p->l, p->ctl_fd);
    answer_waiting(p, 0, "shutting down");
    if (p->started) {
        /* If the proxy already died the send finds no peer; it cannot block. */
        zmq_send(p->ctl, "TERMINATE", 9, ZMQ_DONTWAIT);
        pthread_join(p->th, NULL);
        p->started = 0;
    }
    p->alive = 0;
    zmq_close(p->ctl);
    p->ctl = NULL;
    zauth_stop();
    zmq_ctx_term(p->ctx);
    p->ctx = NULL;
    LOG_INFO("bus proxy joined", "{s:I,s:I}", "messages_published", (json_int_t)p->stats[ST_BE_SENT_N],
             "bytes_published", (json_int_t)p->stats[ST_BE_SENT_B]);
}
