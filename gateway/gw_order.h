/* gw_order.h -- the gateway's per-room ordering core (pure logic, no I/O).
 *
 * One gw_order per room this gateway follows. It knows the room's epoch and
 * 'head', the highest seq delivered contiguously, keeps the last ring_size
 * messages, holds early messages in a pending list and finds holes. It uses
 * no globals, no bus, no rpc and no sockets: the room module feeds it events
 * (a live message, a head announcement, a range reply, the repair timer) and
 * it answers with actions through one emit callback, synchronously and in
 * order:
 *
 *   GW_OA_DELIVER  msg is now at head, in the ring: hand it to subscribers
 *   GW_OA_GAP      [from, to] is lost for good: tell subscribers (a `gap`)
 *   GW_OA_EPOCH    the history has a new epoch: top and first_available
 *   GW_OA_REPAIR   arm the repair timer (delay_ms) unless it is armed
 *
 * The ordering rules themselves (held messages before the first read, the
 * first-message race, stale and newer epochs) are described in gw_order.c;
 * docs/architecture.md tells the whole path.
 */
#ifndef TETHER_GW_ORDER_H
#define TETHER_GW_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "gw_frame.h"

typedef struct gw_msg {
    unsigned refs;
    uint64_t seq;
    int64_t ts;
    char *id, *from, *data;
    gw_buf *enc[2]; /* lazily encoded by the room module: [0] JSON, [1] proto */
} gw_msg;

/* A message as it comes in (from the bus or a range reply); copied. */
typedef struct gw_order_in {
    uint64_t seq;
    int64_t ts;
    const char *id, *from, *data;
} gw_order_in;

/* What a range reply says about one room. */
typedef struct gw_order_range {
    const char *epoch;
    uint64_t top;
    uint64_t first_available;
    int more;
    size_t n;
    const gw_order_in *msgs;
} gw_order_range;

/* What the repair read asks replayd. */
typedef struct gw_order_read {
    int from_oldest;
    const char *epoch; /* NULL with from_oldest */
    uint64_t after_seq;
    uint32_t limit;
} gw_order_read;

enum { GW_OA_DELIVER = 1, GW_OA_GAP, GW_OA_EPOCH, GW_OA_REPAIR };

typedef struct gw_order_act {
    int kind;
    gw_msg *msg;        /* DELIVER: owned by the ring; take a ref to keep it */
    int repaired;       /* DELIVER: it came from a repair read */
    uint64_t from, to;  /* GAP: the lost range; EPOCH: first_available, top */
    const char *old_epoch; /* EPOCH: the epoch left behind */
    uint64_t delay_ms;  /* REPAIR */
} gw_order_act;

typedef void gw_order_emit(void *arg, const gw_order_act *a);

/* Results of gw_order_learn. */
enum { GW_LEARN_OK = 0, GW_LEARN_RESET = 1, GW_LEARN_STALE = 2 };

typedef struct gw_order gw_order;

/* release (may be NULL) drops what the caller hung on a message (its
 * encodings) before the message is freed. Returns NULL when out of memory. */
gw_order *gw_order_new(uint32_t ring_size, uint32_t pend_max, uint32_t page, void (*release)(gw_msg *),
                       gw_order_emit *emit, void *arg);
void gw_order_free(gw_order *o);

/* Events. */
void gw_order_on_live(gw_order *o, const char *epoch, const gw_order_in *m);
void gw_order_on_head(gw_order *o, const char *epoch, uint64_t seq);
/* A subscriber's range reply: learns the room from it. GW_LEARN_STALE: the
 * reply is from before what is known (read again); GW_LEARN_RESET: it
 * brought a new epoch (GW_OA_EPOCH was emitted). */
int gw_order_learn(gw_order *o, const gw_order_range *rr);
/* The repair timer fired: 1 and *rd when a read is to be sent (the core is
 * then 'repairing' until gw_order_on_repair), 0 when nothing is needed. */
int gw_order_repair_next(gw_order *o, gw_order_read *rd);
/* The read could not be sent: not repairing any more, nothing scheduled. */
void gw_order_repair_abort(gw_order *o);
/* The repair read's reply, or NULL when it failed. */
void gw_order_on_repair(gw_order *o, const gw_order_range *rr);

/* Queries. */
int gw_order_known(const gw_order *o);
const char *gw_order_epoch(const gw_order *o);
uint64_t gw_order_head(const gw_order *o);
uint64_t gw_order_max_seen(const gw_order *o);
int gw_order_repairing(const gw_order *o);
uint32_t gw_order_npend(const gw_order *o);
/* The ring's message seq, or NULL. */
gw_msg *gw_order_ring(const gw_order *o, uint64_t seq);

gw_msg *gw_msg_new(const gw_order_in *m);
void gw_msg_unref(gw_order *o, gw_msg *g);

#endif
