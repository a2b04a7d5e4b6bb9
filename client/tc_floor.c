/* tc_floor.c -- push-to-talk floor state per room (see tc_floor.h). A client
 * talks in few rooms at once, so floors are an array searched linearly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_floor.h"
#include "tc_frame.h"

typedef struct floor_room {
    char *room;
    tc_floor_state state;
    int want;               /* the user holds the button */
    int link_sent;          /* a request went out on the current link */
    uint64_t requested_ms;  /* when the current request was made */
    char holder[129];
} floor_room;

struct tc_floor {
    floor_room *v;
    unsigned n, cap;
    uint32_t stale_ms;
};

tc_floor *tc_floor_new(uint32_t stale_ms)
{
    tc_floor *f = calloc(1, sizeof(*f));
    if (f)
        f->stale_ms = stale_ms ? stale_ms : 2000;
    return f;
}

void tc_floor_free(tc_floor *f)
{
    if (!f)
        return;
    for (unsigned i = 0; i < f->n; i++)
        free(f->v[i].room);
    free(f->v);
    free(f);
}

static floor_room *find(const tc_floor *f, const char *room)
{
    for (unsigned i = 0; i < f->n; i++)
        if (strcmp(f->v[i].room, room) == 0)
            return &f->v[i];
    return NULL;
}

static floor_room *get(tc_floor *f, const char *room)
{
    floor_room *r = find(f, room);
    if (r)
        return r;
    if (!tc_valid_room(room))
        return NULL;
    if (f->n == f->cap) {
        unsigned nc = f->cap ? f->cap * 2 : 4;
        floor_room *v = realloc(f->v, nc * sizeof(*v));
        if (!v)
            return NULL;
        f->v = v;
        f->cap = nc;
    }
    r = &f->v[f->n];
    memset(r, 0, sizeof(*r));
    r->room = strdup(room);
    if (!r->room)
        return NULL;
    f->n++;
    return r;
}

tc_floor_state tc_floor_get(const tc_floor *f, const char *room)
{
    floor_room *r = find(f, room);
    return r ? r->state : TC_FLOOR_IDLE;
}

const char *tc_floor_holder(const tc_floor *f, const char *room)
{
    floor_room *r = find(f, room);
    return r ? r->holder : "";
}

unsigned tc_floor_count(const tc_floor *f) { return f->n; }
const char *tc_floor_room_at(const tc_floor *f, unsigned i) { return i < f->n ? f->v[i].room : NULL; }

int tc_floor_request(tc_floor *f, const char *room, uint64_t now_ms, tc_floor_action *act)
{
    *act = TC_FA_NONE;
    if (!room)
        return -EINVAL;
    floor_room *r = find(f, room);
    if (!r && !tc_valid_room(room))
        return -EINVAL;
    if (!r && !(r = get(f, room)))
        return -ENOMEM;
    if (r->state == TC_FLOOR_GRANTED || r->state == TC_FLOOR_REQUESTING || r->state == TC_FLOOR_SUSPENDED) {
        r->want = 1;
        return -EALREADY;
    }
    r->want = 1;
    r->state = TC_FLOOR_REQUESTING;
    r->requested_ms = now_ms;
    r->link_sent = 0;
    *act = TC_FA_SEND_REQUEST;
    return 0;
}

int tc_floor_release(tc_floor *f, const char *room, tc_floor_action *act)
{
    *act = TC_FA_NONE;
    floor_room *r = room ? find(f, room) : NULL;
    if (!r)
        return -EALREADY;
    r->want = 0;
    switch (r->state) {
    case TC_FLOOR_GRANTED:
    case TC_FLOOR_SUSPENDED:
    case TC_FLOOR_REQUESTING:
        r->state = TC_FLOOR_IDLE;
        r->link_sent = 0;
        *act = TC_FA_SEND_RELEASE;
        return 0;
    default:
        return -EALREADY;
    }
}

void tc_floor_sent(tc_floor *f, const char *room)
{
    floor_room *r = find(f, room);
    if (r)
        r->link_sent = 1;
}

void tc_floor_expired(tc_floor *f, const char *room)
{
    floor_room *r = find(f, room);
    if (r && r->state == TC_FLOOR_REQUESTING) {
        r->state = TC_FLOOR_EXPIRED;
        r->want = 0;
    }
}

void tc_floor_link_down(tc_floor *f, void (*changed)(void *arg, const char *room, tc_floor_state st), void *arg)
{
    for (unsigned i = 0; i < f->n; i++) {
        floor_room *r = &f->v[i];
        r->link_sent = 0;
        if (r->state == TC_FLOOR_GRANTED && r->want) {
            r->state = TC_FLOOR_SUSPENDED;
            if (changed)
                changed(arg, r->room, r->state);
        } else if (r->state == TC_FLOOR_TAKEN) {
            /* What others do while we are away is unknown until told again. */
            r->state = TC_FLOOR_IDLE;
            r->holder[0] = 0;
        }
    }
}

tc_floor_action tc_floor_resumed(tc_floor *f, const char *room, uint64_t now_ms, tc_floor_state *st)
{
    floor_room *r = find(f, room);
    if (!r) {
        *st = TC_FLOOR_IDLE;
        return TC_FA_NONE;
    }
    *st = r->state;
    if (r->state == TC_FLOOR_SUSPENDED && r->want) {
        r->state = *st = TC_FLOOR_REQUESTING;
        r->requested_ms = now_ms;
        return TC_FA_SEND_REQUEST;
    }
    if (r->state == TC_FLOOR_REQUESTING && !r->link_sent) {
        if (now_ms >= r->requested_ms && now_ms - r->requested_ms >= f->stale_ms) {
            r->state = *st = TC_FLOOR_EXPIRED;
            r->want = 0;
            return TC_FA_NONE;
        }
        return TC_FA_SEND_REQUEST;
    }
    return TC_FA_NONE;
}

int tc_floor_on_server(tc_floor *f, const char *room, const char *state, const char *holder)
{
    floor_room *r;
    tc_floor_state ns;
    if (!room || !state)
        return -EINVAL;
    if (!strcmp(state, "granted"))
        ns = TC_FLOOR_GRANTED;
    else if (!strcmp(state, "denied"))
        ns = TC_FLOOR_DENIED;
    else if (!strcmp(state, "taken"))
        ns = TC_FLOOR_TAKEN;
    else if (!strcmp(state, "idle"))
        ns = TC_FLOOR_IDLE;
    else if (!strcmp(state, "revoked"))
        ns = TC_FLOOR_REVOKED;
    else
        return -EINVAL;
    if (!(r = get(f, room)))
        return -EINVAL;
    /* `taken` and `idle` describe the others; a request of ours still waits
     * for its own answer (granted or denied). */
    if ((ns == TC_FLOOR_TAKEN || ns == TC_FLOOR_IDLE) && r->state == TC_FLOOR_REQUESTING) {
        snprintf(r->holder, sizeof(r->holder), "%s", ns == TC_FLOOR_TAKEN && holder ? holder : "");
        return TC_FLOOR_REQUESTING;
    }
    if (ns != TC_FLOOR_GRANTED)
        r->want = 0;
    r->state = ns;
    snprintf(r->holder, sizeof(r->holder), "%s", ns == TC_FLOOR_IDLE ? "" : holder ? holder : "");
    return (int)ns;
}
