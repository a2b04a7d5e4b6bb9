/* rd_known.h -- what this replayd knows was handed out: per recently
 * appended room, its epoch and the highest seq of an append it made there.
 *
 * These are floors for the append script: within an epoch a room's top
 * never goes down, so a meta whose epoch is the known one but whose top is
 * below the known seq means Redis came back older than what it acknowledged
 * (AOF everysec after a crash, a restored backup, a lagging replica). The
 * script then starts a new epoch instead of handing out those seqs again to
 * other messages: subscribers get `recovered: false`, never a second message
 * at a seq they already have (see rd_store.c). Bounded: past max_rooms the
 * map starts over, which only forgets floors.
 */
#ifndef TETHER_RD_KNOWN_H
#define TETHER_RD_KNOWN_H

#include <stddef.h>
#include <stdint.h>

typedef struct rd_known rd_known;

/* A new, empty map of at most max_rooms rooms; NULL when out of memory. */
rd_known *rd_known_new(size_t max_rooms);
/* NULL is a no-op. */
void rd_known_free(rd_known *k);
/* Records that seq was handed out in epoch for room (NUL-terminated). A
 * different epoch replaces the one known; within one, the highest seq stays. */
void rd_known_note(rd_known *k, const char *room, const char *epoch, uint64_t seq);
/* Raises the room's seq if it is known in that very epoch (a duplicate's
 * answer: a seq handed out, maybe by an attempt whose answer was lost, or of
 * an epoch that is gone, which must not replace the one known). */
void rd_known_raise(rd_known *k, const char *room, const char *epoch, uint64_t seq);
/* Returns 1 and the room's floor (epoch valid until the next note), or 0. */
int rd_known_get(const rd_known *k, const char *room, const char **epoch, uint64_t *seq);
size_t rd_known_count(const rd_known *k);

#endif
