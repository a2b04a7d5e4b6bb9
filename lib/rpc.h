/* rpc.h -- requests that must not be lost: DEALER to ROUTER with request ids,
 * timeouts and retries.
 *
 * Every Tether request is idempotent (publish carries its idempotency key,
 * range reads are reads), so a request that times out is simply sent again
 * with the same req_id; the DEALER socket round-robins across every replica
 * the client is connected to, so a retry reaches another replica when one is
 * dead. ZMQ_IMMEDIATE keeps messages off connections that are not up, so a
 * request waits (and is retried) rather than being queued to a dead peer.
 *
 * Frames: client sends [empty][Envelope]; the server's ROUTER sees
 * [identity][empty][Envelope] and answers the same way. A reply carries the
 * request's req_id; late replies to finished requests are dropped.
 */
#ifndef TETHER_RPC_H
#define TETHER_RPC_H

#include <stdint.h>

#include "bus.h"
#include "loop.h"

typedef struct rpc_client rpc_client;
typedef struct rpc_server rpc_server;
typedef struct rpc_ctx rpc_ctx;

/* status: 0 with rep (borrowed for the call), or -ETIMEDOUT (rep NULL) when
 * every attempt timed out, or -ECANCELED when the client is freed. */
typedef void rpc_reply_cb(rpc_client *c, int status, const bus_env *rep, void *arg);

/* endpoints: comma-separated list to connect to (TETHER_REPLAYD style).
 * service is borrowed (a literal). Returns NULL on failure. */
rpc_client *rpc_client_new(loop *l, const char *endpoints, const char *service);
/* Fails every pending call with -ECANCELED, then frees. NULL is a no-op. */
void rpc_client_free(rpc_client *c);

/* Sends req (borrowed; packed now) and calls cb exactly once. Each attempt
 * waits timeout_ms; attempts >= 1. Returns the request id (> 0), or 0 on
 * out-of-memory (then cb is never called). */
uint64_t rpc_call(rpc_client *c, bus_env *req, uint32_t timeout_ms, uint32_t attempts, rpc_reply_cb *cb,
                  void *arg);
/* Forgets a pending call; its callback will not run. Unknown ids are ignored. */
void rpc_cancel(rpc_client *c, uint64_t req_id);
/* Number of calls in flight. */
unsigned rpc_pending(const rpc_client *c);

typedef struct rpc_client_stats {
    unsigned long long calls, retries, timeouts, replies, late_replies;
} rpc_client_stats;
rpc_client_stats rpc_client_get_stats(const rpc_client *c);

/* Server side. The handler gets the request (borrowed for the call) and a
 * ctx it must pass to rpc_reply exactly once, now or later (or rpc_ctx_drop).
 * PingReq is answered by the server itself. */
typedef void rpc_handler(rpc_server *s, rpc_ctx *ctx, const bus_env *req, void *arg);

/* Binds a ROUTER on endpoint. Returns NULL (errno set) on failure. */
rpc_server *rpc_server_new(loop *l, const char *endpoint, const char *service, rpc_handler *h, void *arg);
void rpc_server_free(rpc_server *s);
/* Sends rep (borrowed) for ctx, and frees ctx. Fills req_id, source, ts.
 * Returns 0 or -errno (the reply is lost; the client will retry). */
int rpc_reply(rpc_server *s, rpc_ctx *ctx, bus_env *rep);
/* Replies with an ErrorRep {code, reason} and frees ctx. */
int rpc_reply_error(rpc_server *s, rpc_ctx *ctx, uint32_t code, const char *reason);
/* Frees ctx without replying. */
void rpc_ctx_drop(rpc_ctx *ctx);

typedef struct rpc_server_stats {
    unsigned long long requests, malformed, replies, reply_fail;
} rpc_server_stats;
rpc_server_stats rpc_server_get_stats(const rpc_server *s);

#endif
