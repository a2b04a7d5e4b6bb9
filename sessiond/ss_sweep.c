/* ss_sweep.c -- periodic sweep and gauges (see ss_sweep.h). */
#include "ss_sweep.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ss_gw.h"

#define STATS_MS 1000

struct ss_sweep {
    ss_ctx *c;
    loop_timer t, stats_t;
    int running, stats_running, stopped;
    unsigned long long count;
};

static void sweep_tick(loop *l, loop_timer *t, void *arg);

static void on_swept(int status, const ss_res *r, void *arg)
{
    ss_sweep *s = arg;
    s->running = 0;
    if (status < 0 || s->stopped)
        return;
    ss_events_publish(s->c, r);
    s->count++;
    long long deaths = ss_res_int(r, 0), marked = ss_res_int(r, 1), expired = ss_res_int(r, 2),
              dropped = ss_res_int(r, 3), more = ss_res_int(r, 4);
    metrics_add(ss_m.gw_deaths, (double)deaths);
    metrics_add(ss_m.gw_marked, (double)marked);
    metrics_add(ss_m.expiries, (double)expired);
    metrics_add(ss_m.rejoin_drops, (double)dropped);
    if (deaths && r->data->elements > 5 && r->data->element[5]->type == REDIS_REPLY_ARRAY) {
        const redisReply *k = r->data->element[5];
        for (size_t i = 0; i < k->elements; i++)
            if (k->element[i]->type == REDIS_REPLY_STRING)
                LOG_WARN("gateway dead: silent past its deadline", "{s:s}", "gateway", k->element[i]->str);
    }
    if (marked)
        LOG_INFO("sessions of dead gateways marked disconnected", "{s:I}", "sessions", (json_int_t)marked);
    if (expired)
        LOG_DEBUG("sessions expired", "{s:I}", "sessions", (json_int_t)expired);
    /* More work waiting: go on at once rather than at the next tick. */
    if (more)
        loop_timer_start(s->c->l, &s->t, 0, s->c->cfg.sweep_ms, sweep_tick, s);
}

static void sweep_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    ss_sweep *s = arg;
    ss_ctx *c = s->c;
    if (s->running || s->stopped || !ss_store_up(c->st) || !ss_gw_bus_stable(c->gw))
        return;
    ss_args a;
    ss_args_init(&a);
    ss_args_str(&a, "1");
    ss_args_u64(&a, c->cfg.batch);
    ss_args_u64(&a, c->cfg.ttl_ms);
    if (ss_store_run(c->st, SS_SWEEP, &a, on_swept, s) == 0)
        s->running = 1;
    ss_args_free(&a);
}

static void on_stats(int status, const ss_res *r, void *arg)
{
    ss_sweep *s = arg;
    s->stats_running = 0;
    if (status < 0)
        return;
    metrics_set(ss_m.sessions_connected, (double)ss_res_int(r, 0));
    metrics_set(ss_m.sessions_disconnected, (double)ss_res_int(r, 1));
    metrics_set(ss_m.gateways_alive, (double)ss_res_int(r, 2));
    metrics_set(ss_m.gateways_dying, (double)ss_res_int(r, 3));
}

static void stats_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    ss_sweep *s = arg;
    if (s->stats_running || !ss_store_up(s->c->st))
        return;
    ss_args a;
    ss_args_init(&a);
    if (ss_store_run(s->c->st, SS_STATS, &a, on_stats, s) == 0)
        s->stats_running = 1;
    ss_args_free(&a);
}

ss_sweep *ss_sweep_new(ss_ctx *c)
{
    ss_sweep *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c = c;
    loop_timer_start(c->l, &s->t, c->cfg.sweep_ms, c->cfg.sweep_ms, sweep_tick, s);
    loop_timer_start(c->l, &s->stats_t, 100, STATS_MS, stats_tick, s);
    return s;
}

void ss_sweep_stop(ss_sweep *s)
{
    s->stopped = 1;
    loop_timer_stop(s->c->l, &s->t);
    loop_timer_stop(s->c->l, &s->stats_t);
}

void ss_sweep_free(ss_sweep *s)
{
    if (!s)
        return;
    ss_sweep_stop(s);
    free(s);
}

unsigned long long ss_sweep_count(const ss_sweep *s) { return s->count; }
