/* ss_api.h -- sessiond's request side: the gateway's session requests on a
 * ROUTER (TETHER_SESSIOND).
 *
 * Semantics (the gateway's contract, protos/bus.proto; details in
 * sessiond/README.md). The gateway is the envelope's source (instance,
 * incarnation); every request is idempotent and may be retried, to any
 * replica, with the same req_id:
 *
 *   SessOpenReq   -> SessOpenRep{resumed, disconnected_ms, user}. Unknown,
 *                    expired or ended session: created, resumed=false. A
 *                    disconnected one: resumed=true, disconnected_ms = at_ms
 *                    - the moment its drop was noticed. One still held by
 *                    another connection: taken over, resumed=true. Owned by
 *                    another user: ErrorRep 4503, untouched. A retry is
 *                    answered from the first result.
 *   SessCloseReq  -> SessAck. From the session's current holder only (else a
 *                    no-op): stores the positions; bye ends the session (its
 *                    rooms see offline unless the user is there otherwise);
 *                    otherwise disconnected at at_ms, TTL running, presence
 *                    reconnecting.
 *   SessRoomReq   -> SessAck. Join/leave of the holder's connection; joins
 *                    and leaves are ordered by req_id.
 *   SessQualityReq-> SessAck, 4404 no such session, 4503 another user's.
 *                    An empty quality is classified here (lib/quality).
 *   PresenceReq   -> PresenceRep{members: online/reconnecting}.
 *   SessGetReq    -> SessGetRep (found=false when unknown), 4503 when both
 *                    session and user are given and do not match.
 *
 *   Invalid fields -> ErrorRep 4400 (final). Redis down, slow or erroring,
 *   or sessiond draining -> no reply: the rpc client retries (any replica).
 */
#ifndef TETHER_SS_API_H
#define TETHER_SS_API_H

#include <stddef.h>

#include "ss.h"

/* Binds a ROUTER on endpoint. Borrows c. Returns NULL (errno set). */
ss_api *ss_api_new(ss_ctx *c, const char *endpoint);
/* Free the store first: its pending calls answer here. NULL: no-op. */
void ss_api_free(ss_api *a);

/* Leaves new requests unanswered; idle(arg) runs once none is in flight. */
typedef void ss_api_idle_cb(void *arg);
void ss_api_drain(ss_api *a, ss_api_idle_cb *idle, void *arg);
size_t ss_api_inflight(const ss_api *a);

#endif
