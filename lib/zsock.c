/* zsock.c -- ZeroMQ sockets on the loop (see zsock.h for the edge rules). */
#include "zsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define ZSOCK_BATCH 512

struct zsock {
    loop *l;
    void *sock;
    int fd;
    zsock_msg_cb *cb;
    void *arg;
    int check_pending;  /* a deferred drain is scheduled */
    int in_cb;          /* inside drain(): defer the free */
    int dead;
    zsock_stats st;
};

static void *g_ctx;

void *zsock_ctx(void)
{
    if (!g_ctx) {
        g_ctx = zmq_ctx_new();
        if (g_ctx)
            zmq_ctx_set(g_ctx, ZMQ_IO_THREADS, 1);
    }
    return g_ctx;
}

void zsock_ctx_term(void)
{
    if (g_ctx) {
        zmq_ctx_term(g_ctx);
        g_ctx = NULL;
    }
}

void *zsock_socket(int type)
{
    void *s = zmq_socket(zsock_ctx(), type);
    if (!s)
        return NULL;
    int zero = 0, hwm = 100000, ivl = 100, ivlmax = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivlmax, sizeof(ivlmax));
    /* ZMTP heartbeats: a peer whose pod vanished without closing its TCP
     * connection is dropped within 6 s, so requests move to a live
     * replica and subscriptions reconnect, instead of waiting on TCP. */
    int hb_ivl = 2000, hb_timeout = 6000;
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof(hb_ivl));
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof(hb_timeout));
    return s;
}

static void drain(zsock *s);

static void deferred_check(loop *l, void *arg)
{
    (void)l;
    zsock *s = arg;
    s->check_pending = 0;
    if (s->dead) {
        if (!s->in_cb)
            free(s);
        return;
    }
    drain(s);
}

static void schedule_check(zsock *s)
{
    if (s->check_pending)
        return;
    if (loop_defer(s->l, deferred_check, s) == 0)
        s->check_pending = 1;
}

static void drain(zsock *s)
{
    zmq_msg_t parts[ZSOCK_MAX_PARTS];
    int budget = ZSOCK_BATCH;
    s->in_cb = 1;
    while (!s->dead && budget-- > 0) {
        int ev = 0;
        size_t evlen = sizeof(ev);
        if (zmq_getsockopt(s->sock, ZMQ_EVENTS, &ev, &evlen) < 0 || !(ev & ZMQ_POLLIN))
            break;
        size_t n = 0;
        int more = 1, failed = 0;
        while (more) {
            zmq_msg_t tmp;
            zmq_msg_t *m = n < ZSOCK_MAX_PARTS ? &parts[n] : &tmp;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, s->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(m);
                failed = 1;
                break;
            }
            more = zmq_msg_more(m);
            if (n < ZSOCK_MAX_PARTS) {
                n++;
            } else {
                zmq_msg_close(m);
                s->st.rx_truncated++;
            }
        }
        if (!failed) {
            s->st.rx++;
            if (s->cb)
                s->cb(s, parts, n, s->arg);
        }
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        if (failed)
            break;
    }
    s->in_cb = 0;
    if (s->dead) {
        if (!s->check_pending)
            free(s);
        return;
    }
    if (budget <= 0)
        schedule_check(s); /* more may be waiting: continue next iteration */
}

static void on_fd(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    drain(arg);
}

zsock *zsock_new(loop *l, void *sock, zsock_msg_cb *cb, void *arg)
{
    zsock *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->l = l;
    s->sock = sock;
    s->cb = cb;
    s->arg = arg;
    size_t len = sizeof(s->fd);
    if (zmq_getsockopt(sock, ZMQ_FD, &s->fd, &len) < 0 || loop_add_fd(l, s->fd, LOOP_READ, on_fd, s) < 0) {
        free(s);
        return NULL;
    }
    schedule_check(s);
    return s;
}

void zsock_free(zsock *s)
{
    if (!s || s->dead)
        return;
    loop_del_fd(s->l, s->fd);
    zmq_close(s->sock);
    s->sock = NULL;
    s->dead = 1;
    if (!s->in_cb && !s->check_pending)
        free(s);
}

void *zsock_raw(const zsock *s) { return s->sock; }

zsock_stats zsock_get_stats(const zsock *s) { return s->st; }

int zsock_send(zsock *s, const void *const *bufs, const size_t *lens, size_t n)
{
    if (s->dead)
        return -EBADF;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (zmq_send(s->sock, bufs[i], lens[i], flags) < 0) {
            /* Only the first frame can fail with EAGAIN: once a multipart
             * message has started, libzmq accepts the rest atomically. */
            r = -errno;
            break;
        }
    }
    if (r == 0)
        s->st.tx++;
    else
        s->st.tx_fail++;
    schedule_check(s);
    return r;
}
