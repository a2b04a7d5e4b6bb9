/* rd_heads.c -- RoomHead announcements after appends (see rd_heads.h).
 *
 * Each room is announced interval_ms after its last append, then after 2, 4,
 * 8... intervals while the window lasts, each at its own time: announcing
 * every recent room on one tick every second sent thousands of heads at
 * once with many active rooms (5,000 rooms: 5,000 heads, Redis reads and bus
 * messages in one burst, ahead of the live messages in every queue): the
 * many-rooms p99 was 121 ms, 1.5 ms without heads. The head comes from what
 * this replayd handed out itself (rd_store_known) when it can, else from a
 * Redis read (a duplicate answered for a room it never appended to).
 */
#include "rd_heads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"

typedef struct head {
    rd_op op;
    rd_heads *h;
    uint64_t last_ms;  /* the last append */
    uint64_t next_ms;  /* the next announcement */
    uint32_t step_ms;  /* doubles after each announcement */
    int reading;  /* a head read is in flight: the entry must stay */
    int dead;     /* forgotten while reading: freed when the read ends */
    char room[RD_MAX_ROOM + 1];
} head;

struct rd_heads {
    loop *l;
    rd_store *st;
    bus *b;
    hmap *rooms; /* room -> head */
    uint32_t interval_ms, window_ms;
    loop_timer t;
    int stopped;
    unsigned long long published;
};

static void announce(rd_heads *h, const char *room, const char *epoch, uint64_t top)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RoomHead rh = TETHER__BUS__ROOM_HEAD__INIT;
    rh.room = (char *)room;
    rh.epoch = (char *)epoch;
    rh.seq = top;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_HEAD;
    env.room_head = &rh;
    char topic[RD_MAX_ROOM + 8];
    snprintf(topic, sizeof(topic), "room.%s", room);
    if (bus_publish(h->b, topic, &env) == 0)
        h->published++;
}

static void on_head(int status, const char *epoch, uint64_t top, void *arg)
{
    head *e = arg;
    rd_heads *h = e->h;
    e->reading = 0;
    if (e->dead) {
        free(e);
        return;
    }
    if (status < 0 || !*epoch || h->stopped)
        return;
    announce(h, e->room, epoch, top);
}

static void on_tick(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    rd_heads *h = arg;
    uint64_t now = loop_now_ms(l);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(h->rooms, &it, &k, &v)) {
        head *e = v;
        if (now - e->last_ms > h->window_ms) {
            hmap_del(h->rooms, k);
            if (e->reading)
                e->dead = 1;
            else
                free(e);
            continue;
        }
        if (now < e->next_ms)
            continue;
        e->step_ms = e->step_ms * 2 < h->window_ms ? e->step_ms * 2 : h->window_ms;
        e->next_ms = now + e->step_ms;
        const char *ep;
        uint64_t seq;
        if (rd_store_known(h->st, e->room, &ep, &seq)) {
            /* Its own appends: their RoomMessages are published already. */
            announce(h, e->room, ep, seq);
            continue;
        }
        /* A read still in flight from the last time means Redis is slow;
         * skip rather than pile up. -ENOTCONN: Redis is down, nothing to say. */
        if (!e->reading && rd_store_head(h->st, &e->op, e->room, on_head, e) == 0)
            e->reading = 1;
    }
}

rd_heads *rd_heads_new(loop *l, rd_store *st, bus *b, uint32_t interval_ms, uint32_t window_ms)
{
    rd_heads *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->l = l;
    h->st = st;
    h->b = b;
    h->interval_ms = interval_ms ? interval_ms : 1;
    h->window_ms = window_ms;
    h->rooms = hmap_new();
    /* Ten ticks per interval: each room is announced near its own due time. */
    uint32_t tick = h->interval_ms / 10 ? h->interval_ms / 10 : 1;
    if (!h->rooms || loop_timer_start(l, &h->t, tick, tick, on_tick, h) < 0) {
        hmap_free(h->rooms);
        free(h);
        return NULL;
    }
    return h;
}

void rd_heads_free(rd_heads *h)
{
    if (!h)
        return;
    loop_timer_stop(h->l, &h->t);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(h->rooms, &it, &k, &v)) {
        head *e = v;
        hmap_del(h->rooms, k);
        /* A read still pending would call back into e: leave it to on_head. */
        if (e->reading)
            e->dead = 1;
        else
            free(e);
    }
    hmap_free(h->rooms);
    free(h);
}

void rd_heads_touch(rd_heads *h, const char *room)
{
    uint64_t now = loop_now_ms(h->l);
    head *e = hmap_get(h->rooms, room);
    if (e) {
        e->last_ms = now;
        e->step_ms = h->interval_ms;
        e->next_ms = now + h->interval_ms;
        return;
    }
    if (h->stopped)
        return;
    size_t n = strlen(room);
    if (n > RD_MAX_ROOM)
        return;
    e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->h = h;
    e->last_ms = now;
    e->step_ms = h->interval_ms;
    e->next_ms = now + h->interval_ms;
    memcpy(e->room, room, n + 1);
    if (hmap_put(h->rooms, room, e) < 0)
        free(e);
}

void rd_heads_stop(rd_heads *h)
{
    h->stopped = 1;
    loop_timer_stop(h->l, &h->t);
}

size_t rd_heads_rooms(const rd_heads *h) { return hmap_count(h->rooms); }

unsigned long long rd_heads_published(const rd_heads *h) { return h->published; }
