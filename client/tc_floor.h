/* tc_floor.h -- push-to-talk floor state per room (pure logic, no I/O).
 *
 * Tracks what the client knows of each room's floor (docs/protocol.md `ptt`:
 * request/release; granted, denied, taken, idle, revoked) and what the user
 * wants, and decides what to send: a request or a release now, or a new
 * request after a reconnection. The two resilience rules live here:
 *   - a floor we held when the link dropped is SUSPENDED and requested again
 *     once the room is resumed (the server keeps it for a grace period);
 *   - a request that was not answered before the drop is sent again after
 *     resume only while it is fresh (ptt_stale_ms); later it is EXPIRED,
 *     because the user has most likely let go of the button.
 */
#ifndef TETHER_TC_FLOOR_H
#define TETHER_TC_FLOOR_H

#include <stdint.h>

#include "tether_client.h"

typedef enum tc_floor_action {
    TC_FA_NONE = 0,
    TC_FA_SEND_REQUEST,
    TC_FA_SEND_RELEASE,
} tc_floor_action;

typedef struct tc_floor tc_floor;

tc_floor *tc_floor_new(uint32_t stale_ms);
void tc_floor_free(tc_floor *f);

/* The state of room's floor (IDLE when unknown). */
tc_floor_state tc_floor_get(const tc_floor *f, const char *room);
/* The holder last announced for room ("" when none); valid until the next call. */
const char *tc_floor_holder(const tc_floor *f, const char *room);

/* The user presses the button. *act: what to send. Returns 0, -EALREADY
 * (already requesting or holding: nothing to send), -EINVAL, -ENOMEM. */
int tc_floor_request(tc_floor *f, const char *room, uint64_t now_ms, tc_floor_action *act);
/* The user lets go. Sends a release when we hold, are owed, or asked for the
 * floor. Returns 0 or -EALREADY (nothing to release). */
int tc_floor_release(tc_floor *f, const char *room, tc_floor_action *act);

/* A request for room went out on the current link. */
void tc_floor_sent(tc_floor *f, const char *room);
/* A queued request for room was dropped as stale: state EXPIRED. */
void tc_floor_expired(tc_floor *f, const char *room);
/* The link dropped. Calls changed(arg, room, state) for each floor that
 * changes state (GRANTED -> SUSPENDED). */
void tc_floor_link_down(tc_floor *f, void (*changed)(void *arg, const char *room, tc_floor_state st), void *arg);
/* room was resumed on a new link at now_ms. Returns the action, and the new
 * state in *st (unchanged when no action and not expired). */
tc_floor_action tc_floor_resumed(tc_floor *f, const char *room, uint64_t now_ms, tc_floor_state *st);
/* Number of rooms with floor state, and the i-th room's name. */
unsigned tc_floor_count(const tc_floor *f);
const char *tc_floor_room_at(const tc_floor *f, unsigned i);

/* A `ptt` frame from the server: state is "granted", "denied", "taken",
 * "idle" or "revoked"; holder may be NULL. Returns the new state, or -EINVAL
 * for an unknown state word (ignored). */
int tc_floor_on_server(tc_floor *f, const char *room, const char *state, const char *holder);

#endif
