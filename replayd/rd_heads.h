/* rd_heads.h -- replayd's periodic room heads.
 *
 * PUB/SUB can lose a room's last message, and then no later seq reveals the
 * hole. So an interval after a room's last append here, and again after 2,
 * 4, 8... intervals within the window, replayd publishes a RoomHead {epoch,
 * top} on room.<room>; a subscriber whose position is below top repairs
 * from a range read. The head is the highest seq this replica handed out in
 * the room (its RoomMessage is published by then); other replicas announce
 * their own appends, so the highest head heard is the room's. For a room it
 * only answered duplicates for, the head is read from Redis on the append
 * connection, after every append this replica already sent, so it never
 * announces a seq whose RoomMessage this replica has not published yet.
 */
#ifndef TETHER_RD_HEADS_H
#define TETHER_RD_HEADS_H

#include <stdint.h>

#include "bus.h"
#include "loop.h"
#include "rd_store.h"

typedef struct rd_heads rd_heads;

/* Borrows l, st and b (they must outlive it, except that st may be freed
 * first: pending reads then end with -ECANCELED). Returns NULL on ENOMEM. */
rd_heads *rd_heads_new(loop *l, rd_store *st, bus *b, uint32_t interval_ms, uint32_t window_ms);
void rd_heads_free(rd_heads *h);

/* Notes that room (NUL-terminated, valid room name) was appended to now. */
void rd_heads_touch(rd_heads *h, const char *room);
/* Stops announcing (draining). */
void rd_heads_stop(rd_heads *h);

/* Rooms being announced, and heads published so far. */
size_t rd_heads_rooms(const rd_heads *h);
unsigned long long rd_heads_published(const rd_heads *h);

#endif
