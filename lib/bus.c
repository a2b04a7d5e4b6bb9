/* bus.c -- envelope framing and PUB/SUB on the loop (see bus.h). */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "zauth.h"
#include "zsock.h"

#define BUS_MAX_TOPIC 256
#define BUS_PEER_IDLE_MS (10 * 60 * 1000)

typedef struct peer_seq {
    uint64_t incarnation;
    uint64_t last;
    uint64_t seen_ms;
} peer_seq;

struct bus {
    loop *l;
    zsock *pub;
    zsock *sub;
    Tether__Bus__Source src;
    char instance[160];
    hmap *out_seq;    /* topic -> (uintptr) last source_seq sent */
    hmap *in_seq;     /* "instance\ntopic" -> peer_seq* */
    hmap *subs;       /* prefix -> (uintptr) refcount */
    loop_timer sweep;
    bus_event_cb *ev_cb;
    bus_gap_cb *gap_cb;
    void *arg;
    bus_stats st;
};

bus_env *bus_decode(const void *topic, size_t topic_len, const void *data, size_t len)
{
    if (topic_len == 0 || topic_len > BUS_MAX_TOPIC)
        return NULL;
    bus_env *e = tether__bus__envelope__unpack(NULL, len, data);
    if (!e)
        return NULL;
    if (!e->source || !e->source->instance || !e->topic || strlen(e->topic) != topic_len ||
        memcmp(e->topic, topic, topic_len) != 0) {
        tether__bus__envelope__free_unpacked(e, NULL);
        return NULL;
    }
    return e;
}

void bus_env_free(bus_env *env)
{
    if (env)
        tether__bus__envelope__free_unpacked(env, NULL);
}

static void check_seq(bus *b, const bus_env *e)
{
    char key[BUS_MAX_TOPIC + 200];
    snprintf(key, sizeof(key), "%s\n%s", e->source->instance, e->topic);
    peer_seq *p = hmap_get(b->in_seq, key);
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p || hmap_put(b->in_seq, key, p) < 0) {
            free(p);
            return;
        }
        p->incarnation = e->source->incarnation;
        p->last = e->source_seq;
        p->seen_ms = loop_now_ms(b->l);
        return; /* first sight: nothing to compare with */
    }
    p->seen_ms = loop_now_ms(b->l);
    if (p->incarnation != e->source->incarnation) {
        p->incarnation = e->source->incarnation;
        if (e->source_seq != 1 && b->gap_cb) {
            b->st.gaps++;
            b->gap_cb(b, e->topic, e->source, 1, e->source_seq, b->arg);
        }
        p->last = e->source_seq;
        return;
    }
    if (e->source_seq > p->last + 1) {
        b->st.gaps++;
        if (b->gap_cb)
            b->gap_cb(b, e->topic, e->source, p->last + 1, e->source_seq, b->arg);
    }
    if (e->source_seq > p->last)
        p->last = e->source_seq;
}

static void on_sub_msg(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    bus *b = arg;
    if (n != 2) {
        b->st.malformed++;
        return;
    }
    bus_env *e = bus_decode(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                            zmq_msg_size(&parts[1]));
    if (!e) {
        b->st.malformed++;
        LOG_DEBUG("bus: malformed message dropped", "{s:i}", "bytes", (int)zmq_msg_size(&parts[1]));
        return;
    }
    b->st.received++;
    check_seq(b, e);
    if (b->ev_cb)
        b->ev_cb(b, e, b->arg);
    tether__bus__envelope__free_unpacked(e, NULL);
}

static void sweep_cb(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    bus *b = arg;
    uint64_t now = loop_now_ms(l);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(b->in_seq, &it, &k, &v)) {
        peer_seq *p = v;
        if (now - p->seen_ms > BUS_PEER_IDLE_MS) {
            hmap_del(b->in_seq, k);
            free(p);
        }
    }
}

bus *bus_new(loop *l, const char *service, const char *pub_endpoint, const char *sub_endpoint)
{
    bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->l = l;
    tether__bus__source__init(&b->src);
    snprintf(b->instance, sizeof(b->instance), "%s", cfg_instance());
    b->src.service = (char *)service;
    b->src.instance = b->instance;
    b->src.incarnation = cfg_incarnation();
    b->out_seq = hmap_new();
    b->in_seq = hmap_new();
    b->subs = hmap_new();
    if (!b->out_seq || !b->in_seq || !b->subs)
        goto fail;
    if (pub_endpoint) {
        void *s = zsock_socket(ZMQ_PUB);
        /* No queue for a busd that is not there: what is published during a
         * busd outage is lost at once and found by the subscribers' sequence
         * checks. Without it, the queue was flushed into the restarted busd
         * before or after the subscribers were back, depending on how fast
         * each side's (CURVE) handshake went. */
        int one = 1;
        if (s)
            zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one));
        if (!s || zauth_connect(s, pub_endpoint) < 0) {
            if (s)
                zmq_close(s);
            goto fail;
        }
        b->pub = zsock_new(l, s, NULL, b);
        if (!b->pub) {
            zmq_close(s);
            goto fail;
        }
    }
    if (sub_endpoint) {
        void *s = zsock_socket(ZMQ_SUB);
        if (!s || zauth_connect(s, sub_endpoint) < 0) {
            if (s)
                zmq_close(s);
            goto fail;
        }
        b->sub = zsock_new(l, s, on_sub_msg, b);
        if (!b->sub) {
            zmq_close(s);
            goto fail;
        }
        loop_timer_start(l, &b->sweep, 60000, 60000, sweep_cb, b);
    }
    return b;
fail:
    bus_free(b);
    return NULL;
}

void bus_free(bus *b)
{
    if (!b)
        return;
    loop_timer_stop(b->l, &b->sweep);
    zsock_free(b->pub);
    zsock_free(b->sub);
    if (b->in_seq) {
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(b->in_seq, &it, &k, &v))
            free(v);
    }
    hmap_free(b->in_seq);
    hmap_free(b->out_seq);
    hmap_free(b->subs);
    free(b);
}

void bus_on_event(bus *b, bus_event_cb *ev, bus_gap_cb *gap, void *arg)
{
    b->ev_cb = ev;
    b->gap_cb = gap;
    b->arg = arg;
}

const Tether__Bus__Source *bus_source(const bus *b) { return &b->src; }

bus_stats bus_get_stats(const bus *b) { return b->st; }

int bus_publish(bus *b, const char *topic, bus_env *env)
{
    if (!b->pub)
        return -ENOTCONN;
    size_t tlen = strlen(topic);
    if (tlen == 0 || tlen > BUS_MAX_TOPIC)
        return -EINVAL;
    uintptr_t seq = (uintptr_t)hmap_get(b->out_seq, topic) + 1;
    env->topic = (char *)topic;
    env->source = &b->src;
    env->source_seq = seq;
    env->ts = loop_wall_ms();
    size_t len = tether__bus__envelope__get_packed_size(env);
    uint8_t stackbuf[2048];
    uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
    if (!buf)
        return -ENOMEM;
    tether__bus__envelope__pack(env, buf);
    const void *bufs[2] = { topic, buf };
    size_t lens[2] = { tlen, len };
    int r = zsock_send(b->pub, bufs, lens, 2);
    if (buf != stackbuf)
        free(buf);
    if (r < 0) {
        /* The event is lost, but it keeps its number: subscribers will see
         * the hole in source_seq and repair, which is the point. */
        b->st.publish_fail++;
    } else {
        b->st.published++;
    }
    hmap_put(b->out_seq, topic, (void *)seq);
    return r;
}

int bus_subscribe(bus *b, const char *prefix)
{
    if (!b->sub)
        return -ENOTCONN;
    uintptr_t n = (uintptr_t)hmap_get(b->subs, prefix);
    if (n == 0 && zmq_setsockopt(zsock_raw(b->sub), ZMQ_SUBSCRIBE, prefix, strlen(prefix)) < 0)
        return -errno;
    return hmap_put(b->subs, prefix, (void *)(n + 1));
}

int bus_unsubscribe(bus *b, const char *prefix)
{
    if (!b->sub)
        return -ENOTCONN;
    uintptr_t n = (uintptr_t)hmap_get(b->subs, prefix);
    if (n == 0)
        return -ENOENT;
    if (n == 1) {
        hmap_del(b->subs, prefix);
        if (zmq_setsockopt(zsock_raw(b->sub), ZMQ_UNSUBSCRIBE, prefix, strlen(prefix)) < 0)
            return -errno;
        return 0;
    }
    return hmap_put(b->subs, prefix, (void *)(n - 1));
}
