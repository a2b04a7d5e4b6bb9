/* md_floor.h -- push-to-talk floors, one per room, kept in Redis.
 *
 * Every decision is one Lua script run atomically in Redis, so any number of
 * mediad replicas share the floors without talking to each other, and a
 * floor survives the death of the replica that granted it:
 *
 *   request     free floor: granted (taken for the others); held by the same
 *               user (a retry, a resume within the grace, another device):
 *               granted again with the talk time left; held by someone else:
 *               denied with the holder.
 *   release     by the holder: idle.
 *   disconnect  the holder's connection ended: the floor is kept for the
 *               grace period (TETHER_PTT_GRACE_MS); a request by the same
 *               user before it ends keeps it, otherwise it becomes idle.
 *               A gateway that dies (no heartbeat) does the same for every
 *               holder connected through it.
 *   sweep       every replica, every 100 ms: floors past their max talk time
 *               (TETHER_PTT_MAX_MS) are revoked, floors whose grace ended
 *               become idle. A due-time sorted set makes it O(due floors).
 *
 * Each change increments the room's floor sequence and is published as a
 * PttEvent on ptt.<room>; the scripts return the events so the replica that
 * ran them publishes them (one publisher per change).
 */
#ifndef TETHER_MD_FLOOR_H
#define TETHER_MD_FLOOR_H

#include <stdint.h>

#include "md.h"

typedef struct md_floor_state {
    const char *state;   /* "idle" or "taken" */
    const char *holder;  /* "" when idle */
    const char *gateway; /* the holder's gateway instance */
    uint64_t conn;       /* the holder's connection there */
    uint32_t max_ms;     /* talk time left */
    uint64_t seq;
} md_floor_state;

/* Registers the scripts on c->r and starts the sweep timer. NULL on ENOMEM. */
md_floor *md_floor_new(md_ctx *c);
/* Stops the sweep; calls in flight finish with -ECANCELED when c->r is freed.
 * NULL is a no-op. */
void md_floor_free(md_floor *f);

/* Handles a PttReq (borrowed): answers ctx on srv with a PttRep, or an
 * ErrorRep 4400 (bad request) / 4500 (Redis unavailable: retry is safe). */
void md_floor_handle(md_floor *f, rpc_server *srv, rpc_ctx *ctx, const Tether__Bus__PttReq *req);

/* Reads room's floor (expiring it first if it is overdue). status 0 with st
 * (borrowed for the call), or a negative errno. Returns 0 (cb runs later) or
 * -errno (cb never runs). */
typedef void md_floor_cb(int status, const md_floor_state *st, void *arg);
int md_floor_get(md_floor *f, const char *room, md_floor_cb *cb, void *arg);

/* Gateway instance gw is gone (no heartbeat): the floors of holders
 * connected through it enter their grace period. Idempotent. */
void md_floor_gw_dead(md_floor *f, const char *gw);

/* The Lua source of the scripts (for tests and review). */
const char *md_floor_lua(void);

#endif
