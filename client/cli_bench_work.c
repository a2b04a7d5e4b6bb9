/* cli_bench_work.c -- one `tether bench` worker process: its share of the
 * connections as tc_clients on one loop, and the workload of the mode.
 *
 *   publish    every connection publishes: at a total --rate (spread over
 *              connections), or as fast as acks come back with --window
 *              publishes in flight per connection; ack latency is measured
 *              from tc_publish() to the ack.
 *   fanout     worker 0 adds one publisher that publishes --rate msg/s into
 *              --room; every other connection subscribes to it. Latency is
 *              delivery time minus the send time embedded in the message
 *              ("t", CLOCK_MONOTONIC us: the same clock in every process).
 *   idle       connections authenticate (hello/welcome) and stay open.
 *   reconnect  connections subscribe to --room and wait for their link to
 *              drop (the runner kills and restarts the gateway); the worker
 *              records when the port listens again, when each client's
 *              reconnection attempts are scheduled and when each resumed.
 *
 * Connections are opened at --ramp per second (spread over workers) so that
 * the gateway's listen backlog is not what is being measured.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli_bench.h"
#include "jwtcheck.h"

typedef struct worker worker;

typedef struct bconn {
    worker *w;
    tc_client *c;
    uint64_t idx;
    int is_pub;
    int ready, failed, dropped, resumed;
    uint32_t inflight, attempts;
    char room[160];
} bconn;

struct worker {
    const bench_cfg *cfg;
    int index, nworkers, to_parent, from_parent;
    tc_loop *loop;
    bconn *conns;
    uint64_t n, first, created, ready, failed;
    int sent_ready, have_go, finished;
    bench_go go;
    unsigned char gobuf[sizeof(bench_go)];
    size_t golen;
    tc_timer *ramp_t, *tick_t, *end_t, *probe_t, *deadline_t, *settle_t;
    uint64_t last_presence_us, all_subscribed_us;
    double rate;                 /* this worker's publishes per second */
    uint64_t rate_sent, rr, seq;
    char host[256];
    int port;
    bench_result *res;
};

static int in_window(const worker *w, uint64_t t)
{
    return w->have_go && t >= w->go.start_us && t < w->go.end_us;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t m = write(fd, b, n);
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0)
            return;
        b += m;
        n -= (size_t)m;
    }
}

static void finish(worker *w)
{
    if (w->finished)
        return;
    w->finished = 1;
    tc_loop_stop(w->loop);
}

/* Message data of about cfg->size bytes carrying its send time. */
static void make_data(const worker *w, char *buf, size_t cap, uint64_t t, uint64_t n)
{
    int off = snprintf(buf, cap, "{\"t\":%llu,\"n\":%llu,\"p\":\"", (unsigned long long)t, (unsigned long long)n);
    size_t want = w->cfg->size > (size_t)off + 2 ? w->cfg->size - 2 : (size_t)off;
    if (want >= cap - 3)
        want = cap - 3;
    while ((size_t)off < want)
        buf[off++] = 'x';
    strcpy(buf + off, "\"}");
}

static int publish_one(worker *w, bconn *b)
{
    char data[70000];
    uint64_t now = tc_now_us();
    make_data(w, data, sizeof(data), now, ++w->seq);
    int r = tc_publish(b->c, b->room, data, NULL, NULL, 0);
    if (r < 0) {
        w->res->rejected++;
        return r;
    }
    b->inflight++;
    if (in_window(w, now)) {
        w->res->sent++;
        if (b->is_pub)
            w->res->pub_sent_window++;
    }
    return 0;
}

/* ---- readiness ---------------------------------------------------------------------- */

/* Presence must be quiet this long before a subscriber workload is ready:
 * 1,000 members joining one room cause a storm of presence frames (each
 * join is told to every member), which is not what fanout measures. */
#define SETTLE_US 1000000

static void check_ready(worker *w)
{
    if (w->sent_ready || w->created < w->n || w->ready + w->failed < w->n)
        return;
    uint64_t now = tc_now_us();
    if (!w->all_subscribed_us)
        w->all_subscribed_us = now;
    if ((w->cfg->mode == BENCH_FANOUT || w->cfg->mode == BENCH_RECONNECT) && w->last_presence_us &&
        now - w->last_presence_us < SETTLE_US) {
        tc_timer_start(w->settle_t, (SETTLE_US - (now - w->last_presence_us)) / 1000 + 1);
        return;
    }
    w->res->settle_us = now - w->all_subscribed_us;
    w->sent_ready = 1;
    w->res->ready_us = tc_now_us();
    write_all(w->to_parent, "R", 1);
}

static void on_settle(tc_timer *t, void *arg)
{
    (void)t;
    check_ready(arg);
}

static void on_frame(tc_client *c, const char *type, const char *json, void *arg)
{
    bconn *b = arg;
    (void)c;
    (void)json;
    if (strcmp(type, "presence") == 0) {
        uint64_t now = tc_now_us();
        b->w->last_presence_us = now;
        b->w->res->presence++;
        if (in_window(b->w, now))
            b->w->res->presence_window++;
    }
}

static void on_deadline(tc_timer *t, void *arg)
{
    worker *w = arg;
    (void)t;
    if (!w->sent_ready) {
        fprintf(stderr, "tether bench: worker %d: %llu of %llu connections ready after %llu s; going on\n",
                w->index, (unsigned long long)w->ready, (unsigned long long)w->n,
                (unsigned long long)w->cfg->timeout_s);
        w->created = w->n;
        w->failed = w->n - w->ready;
        check_ready(w);
    } else if (w->cfg->mode == BENCH_RECONNECT) {
        finish(w); /* not everyone came back in time: report what we have */
    }
}

static void set_ready(bconn *b)
{
    if (b->ready)
        return;
    b->ready = 1;
    b->w->ready++;
    check_ready(b->w);
}

/* ---- callbacks ------------------------------------------------------------------------ */

static void tl_add(uint32_t *tl, const worker *w, uint64_t t_us)
{
    if (!w->have_go || t_us < w->go.go_us)
        return;
    uint64_t i = (t_us - w->go.go_us) / 1000 / BT_BUCKET_MS;
    tl[i < BT_BUCKETS ? i : BT_BUCKETS - 1]++;
}

static void on_probe(tc_timer *t, void *arg)
{
    worker *w = arg;
    if (w->res->back_us)
        return;
    if (bench_probe(w->host, w->port)) {
        w->res->back_us = tc_now_us();
        return;
    }
    tc_timer_start(t, 5);
}

static void on_state(tc_client *c, const tc_state_info *si, void *arg)
{
    bconn *b = arg;
    worker *w = b->w;
    uint64_t now = tc_now_us();
    (void)c;
    if (si->state == TC_CONNECTED) {
        w->res->connects++;
        if (!b->ready && !b->is_pub && (w->cfg->mode == BENCH_FANOUT || w->cfg->mode == BENCH_RECONNECT))
            return; /* ready at `subscribed` */
        set_ready(b);
        return;
    }
    if (si->state == TC_FAILED) {
        if (!b->failed && !b->ready) {
            b->failed = 1;
            w->failed++;
            check_ready(w);
        }
        return;
    }
    if (si->state != TC_RECONNECTING)
        return;
    if (si->prev == TC_CONNECTED && b->ready && w->have_go) {
        w->res->drops++;
        if (!b->dropped) {
            b->dropped = 1;
            if (!w->res->first_down_us || now < w->res->first_down_us)
                w->res->first_down_us = now;
            if (w->cfg->mode == BENCH_RECONNECT && !w->res->back_us && w->probe_t)
                tc_timer_start(w->probe_t, 0);
        }
    }
    if (b->dropped && !b->resumed && si->next_delay_ms != UINT32_MAX) {
        b->attempts++;
        if (b->attempts > w->res->max_attempts_one)
            w->res->max_attempts_one = b->attempts;
        w->res->attempts++;
        tl_add(w->res->attempt_tl, w, now + (uint64_t)si->next_delay_ms * 1000);
    }
}

static void on_subscribed(tc_client *c, const tc_subscribed *s, void *arg)
{
    bconn *b = arg;
    worker *w = b->w;
    (void)c;
    if (!b->ready) {
        set_ready(b);
        return;
    }
    if (w->cfg->mode != BENCH_RECONNECT || !b->dropped || b->resumed || !s->resubscribe)
        return;
    uint64_t now = tc_now_us();
    b->resumed = 1;
    w->res->resumed++;
    if (now > w->res->last_resumed_us)
        w->res->last_resumed_us = now;
    if (!w->res->back_us)
        w->res->back_us = now; /* the port was faster than the probe */
    tl_add(w->res->resume_tl, w, now);
    bh_add(&w->res->resume, now - w->go.go_us);
    if (w->res->resumed >= w->ready)
        finish(w);
}

static void on_message(tc_client *c, const tc_message *m, void *arg)
{
    bconn *b = arg;
    worker *w = b->w;
    (void)c;
    const char *p = strstr(m->data, "\"t\":");
    if (!p)
        return;
    uint64_t t = strtoull(p + 4, NULL, 10), now = tc_now_us();
    if (in_window(w, t) && now >= t) {
        w->res->delivered++;
        bh_add(&w->res->lat, now - t);
    }
}

static void on_gap(tc_client *c, const tc_gap *g, void *arg)
{
    bconn *b = arg;
    (void)c;
    b->w->res->gaps += g->to - g->from + 1;
}

static void on_ack(tc_client *c, const tc_ack *a, void *arg)
{
    bconn *b = arg;
    worker *w = b->w;
    uint64_t now = tc_now_us();
    (void)c;
    if (b->inflight)
        b->inflight--;
    if (a->error) {
        w->res->errors++;
    } else if (in_window(w, now)) {
        w->res->acks++;
        bh_add(&w->res->ack, a->latency_us);
    }
    /* Closed loop: keep --window in flight until the window ends. */
    if (w->cfg->mode == BENCH_PUBLISH && !w->cfg->rate && w->have_go && now < w->go.end_us)
        publish_one(w, b);
}

static void on_error(tc_client *c, int code, const char *reason, void *arg)
{
    bconn *b = arg;
    (void)c;
    (void)reason;
    (void)code;
    b->w->res->errors++;
}

static const tc_callbacks g_cbs = { on_state, on_message, on_subscribed, on_gap, on_ack, on_error, NULL, NULL, on_frame };

/* ---- connections ------------------------------------------------------------------------- */

static int open_conn(worker *w, bconn *b)
{
    const bench_cfg *cfg = w->cfg;
    char user[48];
    char *tok = NULL;
    tc_options o;
    if (cfg->secret) {
        snprintf(user, sizeof(user), "bench-%llu", (unsigned long long)b->idx);
        tok = jwt_mint_hs256(cfg->secret, user, NULL, 0, (int64_t)time(NULL) + 86400, NULL, NULL, NULL);
        if (!tok)
            return -ENOMEM;
    }
    cli_conn_options(&cfg->conn, &o, tok ? tok : cfg->conn.token);
    o.url = cfg->urls[b->idx % (uint64_t)cfg->nurls];
    o.client_name = "tether-bench/1";
    o.outbox_max = cfg->mode == BENCH_PUBLISH || b->is_pub ? 100000 : 100;
    o.no_refresh = 1;
    o.cb = &g_cbs;
    o.arg = b;
    b->c = tc_client_new(w->loop, &o);
    free(tok);
    if (!b->c)
        return -EINVAL;
    if (cfg->mode == BENCH_PUBLISH)
        snprintf(b->room, sizeof(b->room), "%s-%llu", cfg->room, (unsigned long long)(b->idx % cfg->rooms));
    else
        snprintf(b->room, sizeof(b->room), "%s", cfg->room);
    if ((cfg->mode == BENCH_FANOUT && !b->is_pub) || cfg->mode == BENCH_RECONNECT)
        tc_subscribe(b->c, b->room, NULL, 0, 0);
    return tc_connect(b->c);
}

static void on_ramp(tc_timer *t, void *arg)
{
    worker *w = arg;
    uint64_t per_tick = w->cfg->ramp / (uint64_t)w->nworkers / 100;
    if (per_tick < 1)
        per_tick = 1;
    for (uint64_t k = 0; k < per_tick && w->created < w->n; k++) {
        bconn *b = &w->conns[w->created++];
        if (open_conn(w, b) < 0) {
            b->failed = 1;
            w->failed++;
        }
    }
    if (w->created < w->n)
        tc_timer_start(t, 10);
    else
        check_ready(w);
}

/* ---- the workload ---------------------------------------------------------------------------- */

/* Open loop: publish what the rate says is due, round robin over ready
 * connections; a connection with too much in flight is skipped. */
static void on_tick(tc_timer *t, void *arg)
{
    worker *w = arg;
    uint64_t now = tc_now_us();
    if (now >= w->go.end_us)
        return;
    double due_f = (double)(now - w->go.go_us) * w->rate / 1e6;
    uint64_t due = (uint64_t)due_f;
    if (w->cfg->mode == BENCH_FANOUT) {
        bconn *b = &w->conns[w->n - 1]; /* the publisher */
        while (w->rate_sent < due && b->ready && tc_get_state(b->c) == TC_CONNECTED && publish_one(w, b) == 0)
            w->rate_sent++;
    } else {
        for (uint64_t tries = 0; w->rate_sent < due && tries < w->n; tries++) {
            bconn *b = &w->conns[w->rr++ % w->n];
            if (!b->ready || b->inflight >= 10000 || tc_get_state(b->c) != TC_CONNECTED)
                continue;
            if (publish_one(w, b) == 0) {
                w->rate_sent++;
                tries = 0;
            }
        }
    }
    if (w->rate_sent < due)
        w->rate_sent = due; /* could not keep up: do not burst later */
    tc_timer_start(t, 1);
}

static void on_end(tc_timer *t, void *arg)
{
    (void)t;
    finish(arg);
}

static void on_go(worker *w)
{
    const bench_cfg *cfg = w->cfg;
    w->have_go = 1;
    uint64_t now = tc_now_us();
    uint64_t end_ms = w->go.end_us > now ? (w->go.end_us - now) / 1000 : 0;
    switch (cfg->mode) {
    case BENCH_PUBLISH:
        if (cfg->rate) {
            w->rate = (double)cfg->rate * (double)w->n / (double)cfg->conns;
            tc_timer_start(w->tick_t, 0);
        } else {
            for (uint64_t i = 0; i < w->n; i++)
                for (uint64_t k = 0; w->conns[i].ready && k < cfg->window; k++)
                    publish_one(w, &w->conns[i]);
        }
        tc_timer_start(w->end_t, end_ms + cfg->drain_ms);
        break;
    case BENCH_FANOUT:
        if (w->index == 0) {
            w->rate = (double)cfg->rate;
            tc_timer_start(w->tick_t, 0);
        }
        tc_timer_start(w->end_t, end_ms + cfg->drain_ms);
        break;
    case BENCH_IDLE:
        tc_timer_start(w->end_t, end_ms);
        break;
    case BENCH_RECONNECT:
        tc_timer_start(w->deadline_t, cfg->timeout_s * 1000);
        break;
    }
}

static int on_parent(void *arg, int fd)
{
    worker *w = arg;
    ssize_t m = read(fd, w->gobuf + w->golen, sizeof(w->gobuf) - w->golen);
    if (m <= 0) {
        if (m < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        finish(w); /* the parent went away */
        return -1;
    }
    w->golen += (size_t)m;
    if (w->golen == sizeof(w->gobuf) && !w->have_go) {
        memcpy(&w->go, w->gobuf, sizeof(w->go));
        on_go(w);
    }
    return 0;
}

void bench_worker(const bench_cfg *cfg, int index, int nworkers, int to_parent, int from_parent)
{
    worker wk, *w = &wk;
    struct rlimit rl;
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->index = index;
    w->nworkers = nworkers;
    w->to_parent = to_parent;
    w->from_parent = from_parent;
    w->res = calloc(1, sizeof(*w->res));
    /* Use every descriptor we may have; lws sizes its tables from this. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t total = cfg->conns;
    w->first = total * (uint64_t)index / (uint64_t)nworkers;
    uint64_t last = total * (uint64_t)(index + 1) / (uint64_t)nworkers;
    w->n = last - w->first + (cfg->mode == BENCH_FANOUT && index == 0 ? 1 : 0);
    w->conns = calloc(w->n ? w->n : 1, sizeof(*w->conns));
    w->loop = tc_loop_new();
    if (!w->res || !w->conns || !w->loop) {
        fprintf(stderr, "tether bench: worker %d: cannot start (memory or lws context)\n", index);
        _exit(CLI_ERR);
    }
    w->res->conns = w->n;
    for (uint64_t i = 0; i < w->n; i++) {
        bconn *b = &w->conns[i];
        b->w = w;
        b->idx = w->first + i;
        if (cfg->mode == BENCH_FANOUT && index == 0 && i == w->n - 1) {
            b->is_pub = 1;
            b->idx = total; /* its own user */
        }
    }
    bench_url_hostport(cfg->urls[0], w->host, sizeof(w->host), &w->port);
    w->ramp_t = tc_timer_new(w->loop, on_ramp, w);
    w->tick_t = tc_timer_new(w->loop, on_tick, w);
    w->end_t = tc_timer_new(w->loop, on_end, w);
    w->probe_t = tc_timer_new(w->loop, on_probe, w);
    w->deadline_t = tc_timer_new(w->loop, on_deadline, w);
    w->settle_t = tc_timer_new(w->loop, on_settle, w);
    if (!w->ramp_t || !w->tick_t || !w->end_t || !w->probe_t || !w->deadline_t || !w->settle_t ||
        tc_loop_watch_fd(w->loop, from_parent, on_parent, w) < 0)
        _exit(CLI_ERR);
    tc_timer_start(w->deadline_t, cfg->timeout_s * 1000);
    tc_timer_start(w->ramp_t, 0);
    tc_loop_run(w->loop);

    for (uint64_t i = 0; i < w->n; i++) {
        tc_stats st;
        if (!w->conns[i].c)
            continue;
        tc_get_stats(w->conns[i].c, &st);
        w->res->dups += st.duplicates_dropped;
    }
    w->res->failed = w->failed;
    w->res->cpu_s = bench_self_cpu();
    write_all(to_parent, "D", 1);
    write_all(to_parent, w->res, sizeof(*w->res));
    /* Exit without closing each socket politely: the gateway sees the drops,
     * which is cheaper for it than thousands of close handshakes. */
    _exit(CLI_OK);
}
