/* rd_api.h -- replayd's request side: AppendReq and RangeReq on a ROUTER.
 *
 * Semantics (the gateway's contract):
 *
 *   AppendReq {room, user, id, data}
 *     invalid field     -> ErrorRep{4400, reason}; never retry.
 *     Redis unavailable, error or timeout, or replayd draining
 *                       -> ErrorRep{4500, reason}, at once: retry (any
 *                          replica) with the same request. The append may
 *                          have happened (a timeout after Redis ran it); the
 *                          retry then gets the first seq with duplicate=true.
 *     success           -> AppendRep{room, epoch, seq, duplicate, ts}; then,
 *                          if not a duplicate, the RoomMessage is published
 *                          on room.<room>. Replies and publications of a room
 *                          leave in seq order (one Redis connection, replies
 *                          handled in the order Redis ran the scripts).
 *     No reply at all only when replayd dies: the client's timeout covers it.
 *
 *   RangeReq {items}
 *     one RangeRep with one RangeRoom per item, in item order, after every
 *     room was read (pipelined); any invalid item -> 4400 for the request;
 *     any Redis failure -> 4500 for the request (ranges are reads: retry).
 *     A reply carries at most RD_API_RANGE_BUDGET bytes of messages: rooms
 *     past the budget come back with fewer messages and more=true, and the
 *     gateway asks again from the last seq it got.
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

/* Refuses new requests with 4500 "draining"; idle(arg) runs once no request
 * is in flight (maybe at once). */
typedef void rd_api_idle_cb(void *arg);
void rd_api_drain(rd_api *a, rd_api_idle_cb *idle, void *arg);
/* Requests being served. */
size_t rd_api_inflight(const rd_api *a);

/* Validation of names, shared with tests: room 1..128 of [A-Za-z0-9._:@/-],
 * id 1..64 of [A-Za-z0-9._:-]. Return 1 when valid. */
int rd_valid_room(const char *s, size_t n);
int rd_valid_id(const char *s, size_t n);

#endif
