/* rd_api.h -- replayd's request side: AppendReq and RangeReq on a ROUTER.
 *
 * Semantics (the gateway's contract):
 *
 *   AppendReq {room, user, id, data}
 *     invalid field -> ErrorRep{4400, reason}: final, do not retry.
 *     success       -> AppendRep{room, epoch, seq, duplicate, ts}; then, if
 *                      not a duplicate, the RoomMessage is published on
 *                      room.<room>. Replies and publications of a room leave
 *                      in seq order (one Redis connection for appends, replies
 *                      handled in the order Redis ran the scripts).
 *     Redis down, slow (no answer within 1 s), erroring, or replayd draining
 *                   -> NO reply. The request is dropped and the client's rpc
 *                      timeout retries it (any replica), which is what the
 *                      gateway's rpc_call already does; the client sees a
 *                      stalled ack, not an error, as the failure matrix asks.
 *                      A retry is exact: the append may have run (a timeout
 *                      after Redis executed it), and then the retry gets the
 *                      first seq with duplicate=true.
 *     ErrorRep{4500} only for out-of-memory inside replayd.
 *
 *   RangeReq {items}
 *     one RangeRep with one RangeRoom per item, in item order, after every
 *     room was read (pipelined EVALSHAs); any invalid item -> 4400 for the
 *     request; any store failure -> no reply (retry, as above). A reply holds
 *     at most about RD_API_RANGE_BUDGET bytes of messages (always at least
 *     one message): rooms past the budget come back short with more=true, and
 *     the caller asks again from the last seq it got.
 *
 *   Unknown payloads -> 4400. PingReq is answered by lib/rpc itself.
 */
#ifndef TETHER_RD_API_H
#define TETHER_RD_API_H

#include <stddef.h>

#include "bus.h"
#include "loop.h"
#include "rd_heads.h"
#include "rd_store.h"

#define RD_API_MAX_ITEMS 1024
#define RD_API_RANGE_BUDGET (8u * 1024 * 1024)

typedef struct rd_api rd_api;

/* Binds a ROUTER on endpoint. Borrows l, st, b and h (they must outlive the
 * api, except st: see rd_api_free). Returns NULL (errno set). */
rd_api *rd_api_new(loop *l, const char *endpoint, rd_store *st, bus *b, rd_heads *h);
/* Frees the api and its socket. Free the store first: its pending operations
 * call back here, and their replies still need the socket. NULL is a no-op. */
void rd_api_free(rd_api *a);

/* Drops new requests unanswered (their clients retry elsewhere); idle(arg)
 * runs once no request is in flight (maybe at once). */
typedef void rd_api_idle_cb(void *arg);
void rd_api_drain(rd_api *a, rd_api_idle_cb *idle, void *arg);
/* Requests being served. */
size_t rd_api_inflight(const rd_api *a);

/* Validation of names, shared with tests: room 1..128 of [A-Za-z0-9._:@/-],
 * id 1..64 of [A-Za-z0-9._:-]. Return 1 when valid. */
int rd_valid_room(const char *s, size_t n);
int rd_valid_id(const char *s, size_t n);

#endif
