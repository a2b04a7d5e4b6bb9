/* md_host.c -- room affinity claims in Redis (see md_host.h). */
#include "md_host.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "md_room.h"

#define KEY_PREFIX "tether:media:host:"
#define REFRESH_BATCH 200

/* The claim scripts: mediad/lua/host_{claim,refresh,release}.lua say their
 * KEYS, ARGV and replies. */
static const char claim_lua[] = {
#include "mediad/lua/host_claim.lua.h"
    0
};
static const char refresh_lua[] = {
#include "mediad/lua/host_refresh.lua.h"
    0
};
static const char release_lua[] = {
#include "mediad/lua/host_release.lua.h"
    0
};

struct md_host {
    md_ctx *c;
    redis_script *claim, *refresh, *release;
    hmap *rooms;                /* rooms claimed: name -> (void *)1 */
    char me[512];
    char ttl[16];
    loop_timer tick;
    unsigned refreshing;
};

typedef struct claim_call {
    md_host *h;
    md_host_cb *cb;
    void *arg;
    char room[MD_MAX_ROOM + 1];
} claim_call;

typedef struct refresh_call {
    md_host *h;
    size_t n;
    char **rooms;
} refresh_call;

static void on_claim(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    claim_call *x = arg;
    if (status == 0 && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[1]->type == REDIS_REPLY_STRING) {
        int mine = rep->element[0]->integer == 1;
        if (mine)
            hmap_put(x->h->rooms, x->room, (void *)1);
        x->cb(0, mine, rep->element[1]->str, x->arg);
    } else {
        if (status == 0 && rep && rep->type == REDIS_REPLY_ERROR)
            LOG_WARN("host claim failed", "{s:s,s:s}", "room", x->room, "error", rep->str);
        x->cb(status ? status : -EPROTO, 0, "", x->arg);
    }
    free(x);
}

int md_host_claim(md_host *h, const char *room, int take_over, md_host_cb *cb, void *arg)
{
    claim_call *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    snprintf(x->room, sizeof(x->room), "%s", room);
    char key[sizeof(KEY_PREFIX) + MD_MAX_ROOM];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", room);
    const char *argv[] = { key, h->me, h->c->cfg.advertise, h->ttl, take_over ? "1" : "0" };
    int rc = redis_evalsha(h->c->r, h->claim, on_claim, x, 1, 4, argv, NULL);
    if (rc < 0)
        free(x);
    return rc;
}

static void on_release(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    (void)status;
    (void)rep;
    (void)arg;
}

void md_host_release(md_host *h, const char *room)
{
    if (!hmap_del(h->rooms, room))
        return;
    char key[sizeof(KEY_PREFIX) + MD_MAX_ROOM];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", room);
    const char *argv[] = { key, h->me };
    /* Best effort: an unreleased claim expires within its TTL anyway. */
    redis_evalsha(h->c->r, h->release, on_release, NULL, 1, 1, argv, NULL);
}

void md_host_release_all(md_host *h)
{
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    char **names = calloc(hmap_count(h->rooms) + 1, sizeof(*names));
    size_t n = 0;
    while (names && hmap_next(h->rooms, &it, &k, &v))
        names[n++] = strdup(k);
    for (size_t i = 0; i < n; i++) {
        if (names[i])
            md_host_release(h, names[i]);
        free(names[i]);
    }
    free(names);
}

static void on_refresh(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    refresh_call *x = arg;
    md_host *h = x->h;
    h->refreshing--;
    if (status == 0 && rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            if (rep->element[i]->type != REDIS_REPLY_INTEGER)
                continue;
            long long idx = rep->element[i]->integer;
            if (idx < 1 || (size_t)idx > x->n || !hmap_get(h->rooms, x->rooms[idx - 1]))
                continue;
            LOG_WARN("room hosting lost to another replica", "{s:s}", "room", x->rooms[idx - 1]);
            hmap_del(h->rooms, x->rooms[idx - 1]);
            if (status != -ECANCELED)
                md_rooms_lost(h->c->rooms, x->rooms[idx - 1]);
        }
    }
    for (size_t i = 0; i < x->n; i++)
        free(x->rooms[i]);
    free(x->rooms);
    free(x);
}

static void refresh_batch(md_host *h, char **rooms, size_t n)
{
    refresh_call *x = calloc(1, sizeof(*x));
    const char **argv = calloc(n + 2, sizeof(*argv));
    char (*keys)[sizeof(KEY_PREFIX) + MD_MAX_ROOM] = calloc(n, sizeof(*keys));
    if (!x || !argv || !keys)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof(keys[i]), KEY_PREFIX "%s", rooms[i]);
        argv[i] = keys[i];
    }
    argv[n] = h->me;
    argv[n + 1] = h->ttl;
    x->h = h;
    x->n = n;
    x->rooms = rooms;
    if (redis_evalsha(h->c->r, h->refresh, on_refresh, x, (int)n, 2, argv, NULL) < 0)
        goto fail;
    h->refreshing++;
    free(argv);
    free(keys);
    return;
fail:
    for (size_t i = 0; i < n; i++)
        free(rooms[i]);
    free(rooms);
    free(x);
    free(argv);
    free(keys);
}

static void tick_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    md_host *h = arg;
    if (h->refreshing || !redis_up(h->c->r) || hmap_count(h->rooms) == 0)
        return;
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    char **batch = NULL;
    size_t n = 0;
    while (hmap_next(h->rooms, &it, &k, &v)) {
        if (!batch && !(batch = calloc(REFRESH_BATCH, sizeof(*batch))))
            return;
        if (!(batch[n] = strdup(k)))
            continue;
        if (++n == REFRESH_BATCH) {
            refresh_batch(h, batch, n);
            batch = NULL;
            n = 0;
        }
    }
    if (n)
        refresh_batch(h, batch, n);
    else
        free(batch);
}

md_host *md_host_new(md_ctx *c)
{
    md_host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->c = c;
    snprintf(h->me, sizeof(h->me), "%s|%s|%" PRIu64, c->cfg.advertise, cfg_instance(), cfg_incarnation());
    snprintf(h->ttl, sizeof(h->ttl), "%u", c->cfg.host_ttl_ms);
    h->rooms = hmap_new();
    h->claim = redis_script_new(c->r, claim_lua);
    h->refresh = redis_script_new(c->r, refresh_lua);
    h->release = redis_script_new(c->r, release_lua);
    uint32_t every = c->cfg.host_ttl_ms / 3 ? c->cfg.host_ttl_ms / 3 : 1;
    if (!h->rooms || !h->claim || !h->refresh || !h->release ||
        loop_timer_start(c->l, &h->tick, every, every, tick_cb, h) < 0) {
        hmap_free(h->rooms);
        free(h);
        return NULL;
    }
    return h;
}

void md_host_free(md_host *h)
{
    if (!h)
        return;
    loop_timer_stop(h->c->l, &h->tick);
    hmap_free(h->rooms);
    free(h);
}
