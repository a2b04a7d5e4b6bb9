/* gw_sub.h -- between the room module and subscriber catch-up (gw_sub.c).
 *
 * gw_room.c turns the ordering core's actions into these calls; gw_sub.c
 * hands each subscriber what it is owed (live messages, `gap`, a new
 * `subscribed` on an epoch change) and catches it up from the ring or by
 * range reads. The public subscription API is in gw.h.
 */
#ifndef TETHER_GW_SUB_H
#define TETHER_GW_SUB_H

#include "gw.h"

/* Actions of r's ordering core, for r's subscribers. */
void gw_sub_on_deliver(gw_room *r, gw_msg *g);
void gw_sub_on_gap(gw_room *r, uint64_t from, uint64_t to);
void gw_sub_on_epoch(gw_room *r, uint64_t first_available, uint64_t top);
/* r's bus subscription is confirmed: first reads may go. */
void gw_sub_on_bus_ready(gw_room *r);

/* The room module, for gw_sub.c. */
gw_room *gw_room_get(const char *name, int create);
void gw_room_free(gw_room *r);
const gw_room_hooks *gw_room_hooks_get(void);

#endif
