/* tc_rooms.h -- the client's rooms and positions (pure logic, no I/O).
 *
 * For every room the application subscribed to: its epoch and the last seq
 * delivered to the application, the position asked for before the first
 * `subscribed`, and whether the current link has subscribed it yet. This is
 * where the delivery guarantee is kept on the client side: a message is
 * delivered only if its seq is above the last one delivered in the same
 * epoch, so a re-sent or replayed message is never delivered twice and never
 * out of order, whatever the server does; a jump the server did not announce
 * is reported as a gap, never silent.
 *
 * After `subscribed {seq: top, missed: m}` the next message is top - m + 1
 * (the missed messages, then live ones); that "baseline" is how positions
 * move across epoch changes and trimmed history.
 */
#ifndef TETHER_TC_ROOMS_H
#define TETHER_TC_ROOMS_H

#include <stddef.h>
#include <stdint.h>

#define TC_MAX_EPOCH 64

typedef enum tc_room_link {
    TC_LINK_PENDING = 0, /* to be subscribed on this link (hello or subscribe) */
    TC_LINK_SENT,        /* subscribe sent, `subscribed` not seen */
    TC_LINK_ACTIVE,      /* `subscribed` seen on this link */
} tc_room_link;

typedef struct tc_room {
    char *name;
    char epoch[TC_MAX_EPOCH + 1]; /* "" until known */
    uint64_t last;       /* last seq delivered (in epoch) */
    int has_pos;         /* epoch/last are a position to resume from */
    int start_oldest;    /* asked from the oldest buffered message, no position yet */
    tc_room_link link;
    int subscribed_once; /* a `subscribed` was seen on some link */
} tc_room;

/* A position as docs/protocol.md writes it: {} (live), {"seq": 0} (oldest),
 * {"epoch": E, "seq": N}. */
typedef struct tc_pos {
    const char *epoch;   /* NULL: none */
    int has_seq;
    uint64_t seq;
} tc_pos;

typedef struct tc_rooms tc_rooms;

tc_rooms *tc_rooms_new(void);
void tc_rooms_free(tc_rooms *rs);

/* Adds room with a starting position (epoch may be NULL; see tc_subscribe).
 * Returns 0, -EALREADY, -EINVAL (bad name or epoch), -ENOMEM. */
int tc_rooms_add(tc_rooms *rs, const char *room, const char *epoch, int has_seq, uint64_t seq);
/* Returns 0 or -ENOENT. */
int tc_rooms_remove(tc_rooms *rs, const char *room);
tc_room *tc_rooms_get(tc_rooms *rs, const char *room);
size_t tc_rooms_count(const tc_rooms *rs);
tc_room *tc_rooms_at(tc_rooms *rs, size_t i);

/* Where to (re)subscribe room from. */
void tc_room_position(const tc_room *r, tc_pos *p);
/* The link dropped: every room must be subscribed again. */
void tc_rooms_link_down(tc_rooms *rs);

typedef struct tc_sub_result {
    int epoch_changed;   /* we had a position in another epoch */
    int resubscribe;     /* a `subscribed` had been seen before for this room */
    int gap_by_client;   /* same epoch, recovered claimed, yet the baseline skips seqs */
    uint64_t gap_from, gap_to;
} tc_sub_result;

/* Applies a `subscribed` frame. Returns 0 or -ENOENT (room not ours: ignore). */
int tc_rooms_on_subscribed(tc_rooms *rs, const char *room, const char *epoch, uint64_t top, uint64_t missed,
                           int recovered, tc_sub_result *out);

typedef enum tc_msg_verdict {
    TC_MSG_DELIVER = 0,
    TC_MSG_DUPLICATE,    /* seq already delivered: drop */
    TC_MSG_UNKNOWN,      /* not one of our rooms: drop */
    TC_MSG_OTHER_EPOCH,  /* not the room's current epoch: drop */
} tc_msg_verdict;

/* Decides about a `message`. On DELIVER the position advances; if seqs were
 * skipped, *gap_from..*gap_to (inclusive) are set, else both are 0. */
tc_msg_verdict tc_rooms_on_message(tc_rooms *rs, const char *room, const char *epoch, uint64_t seq,
                                   uint64_t *gap_from, uint64_t *gap_to);
/* Applies a `gap` frame: seqs from..to will never come; the position moves
 * past them. Returns 0 or -ENOENT. */
int tc_rooms_on_gap(tc_rooms *rs, const char *room, uint64_t from, uint64_t to);

#endif
