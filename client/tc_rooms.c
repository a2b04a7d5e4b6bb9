/* tc_rooms.c -- the client's rooms and positions (see tc_rooms.h). A room
 * list is short (the gateway allows 256 per connection), so it is an array
 * searched linearly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "tc_frame.h"
#include "tc_rooms.h"

struct tc_rooms {
    tc_room **v;
    size_t n, cap;
};

tc_rooms *tc_rooms_new(void)
{
    return calloc(1, sizeof(tc_rooms));
}

void tc_rooms_free(tc_rooms *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->v[i]->name);
        free(rs->v[i]);
    }
    free(rs->v);
    free(rs);
}

static ssize_t find(const tc_rooms *rs, const char *room)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i]->name, room) == 0)
            return (ssize_t)i;
    return -1;
}

tc_room *tc_rooms_get(tc_rooms *rs, const char *room)
{
    ssize_t i = room ? find(rs, room) : -1;
    return i < 0 ? NULL : rs->v[i];
}

size_t tc_rooms_count(const tc_rooms *rs) { return rs->n; }
tc_room *tc_rooms_at(tc_rooms *rs, size_t i) { return i < rs->n ? rs->v[i] : NULL; }

int tc_rooms_add(tc_rooms *rs, const char *room, const char *epoch, int has_seq, uint64_t seq)
{
    if (!room || !tc_valid_room(room))
        return -EINVAL;
    if (epoch && (!*epoch || strlen(epoch) > TC_MAX_EPOCH || !has_seq))
        return -EINVAL;
    if (find(rs, room) >= 0)
        return -EALREADY;
    if (rs->n == rs->cap) {
        size_t nc = rs->cap ? rs->cap * 2 : 4;
        tc_room **v = realloc(rs->v, nc * sizeof(*v));
        if (!v)
            return -ENOMEM;
        rs->v = v;
        rs->cap = nc;
    }
    tc_room *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->name = strdup(room);
    if (!r->name) {
        free(r);
        return -ENOMEM;
    }
    if (epoch) {
        strcpy(r->epoch, epoch);
        r->last = seq;
        r->has_pos = 1;
    } else if (has_seq) {
        r->start_oldest = 1;
    }
    rs->v[rs->n++] = r;
    return 0;
}

int tc_rooms_remove(tc_rooms *rs, const char *room)
{
    ssize_t i = find(rs, room);
    if (i < 0)
        return -ENOENT;
    free(rs->v[i]->name);
    free(rs->v[i]);
    memmove(&rs->v[i], &rs->v[i + 1], (rs->n - (size_t)i - 1) * sizeof(*rs->v));
    rs->n--;
    return 0;
}

void tc_room_position(const tc_room *r, tc_pos *p)
{
    memset(p, 0, sizeof(*p));
    if (r->has_pos && r->epoch[0]) {
        p->epoch = r->epoch;
        p->has_seq = 1;
        p->seq = r->last;
    } else if (r->start_oldest || r->has_pos) {
        /* has_pos without an epoch: the room was empty when we subscribed
         * (the server names no epoch yet), so everything it has since is
         * new to us: from the oldest, not live, or an outage would skip it. */
        p->has_seq = 1;
        p->seq = 0;
    }
}

void tc_rooms_link_down(tc_rooms *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        rs->v[i]->link = TC_LINK_PENDING;
}

int tc_rooms_on_subscribed(tc_rooms *rs, const char *room, const char *epoch, uint64_t top, uint64_t missed,
                           int recovered, tc_sub_result *out)
{
    tc_room *r = tc_rooms_get(rs, room);
    memset(out, 0, sizeof(*out));
    if (!r)
        return -ENOENT;
    if (!epoch)
        epoch = "";
    uint64_t base = top >= missed ? top - missed : 0;
    out->resubscribe = r->subscribed_once;
    if (!r->epoch[0] || strcmp(r->epoch, epoch) != 0) {
        /* New numbering: whatever we had delivered belongs to the old epoch. */
        out->epoch_changed = r->epoch[0] != 0;
        snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
        r->last = base;
    } else if (base > r->last) {
        /* History we had not seen is gone. The server says so with
         * recovered: false and a gap; if it claims recovery anyway, we say it. */
        if (recovered) {
            out->gap_by_client = 1;
            out->gap_from = r->last + 1;
            out->gap_to = base;
        }
        r->last = base;
    }
    /* base < last: the server replays what we have; duplicates are dropped. */
    r->has_pos = 1;
    r->start_oldest = 0;
    r->link = TC_LINK_ACTIVE;
    r->subscribed_once = 1;
    return 0;
}

tc_msg_verdict tc_rooms_on_message(tc_rooms *rs, const char *room, const char *epoch, uint64_t seq,
                                   uint64_t *gap_from, uint64_t *gap_to)
{
    tc_room *r = tc_rooms_get(rs, room);
    *gap_from = *gap_to = 0;
    if (!r)
        return TC_MSG_UNKNOWN;
    if (r->epoch[0] && epoch && strcmp(r->epoch, epoch) != 0)
        return TC_MSG_OTHER_EPOCH;
    if (seq == 0)
        return TC_MSG_DUPLICATE;
    if (!r->epoch[0]) {
        /* The first epoch we hear of: the room was empty at `subscribed`
         * (our position stands), or no `subscribed` came yet (start here). */
        if (!epoch || strlen(epoch) > TC_MAX_EPOCH)
            return TC_MSG_OTHER_EPOCH;
        strcpy(r->epoch, epoch);
        if (!r->has_pos)
            r->last = seq - 1;
        r->has_pos = 1;
    }
    if (seq <= r->last)
        return TC_MSG_DUPLICATE;
    if (seq > r->last + 1) {
        *gap_from = r->last + 1;
        *gap_to = seq - 1;
    }
    r->last = seq;
    return TC_MSG_DELIVER;
}

int tc_rooms_on_gap(tc_rooms *rs, const char *room, uint64_t from, uint64_t to)
{
    tc_room *r = tc_rooms_get(rs, room);
    (void)from;
    if (!r)
        return -ENOENT;
    if (to > r->last)
        r->last = to;
    return 0;
}
