/* zsock.h -- a ZeroMQ socket driven by the process's loop.
 *
 * libzmq's ZMQ_FD is edge-triggered: it signals that ZMQ_EVENTS changed, not
 * that a message is waiting. So on every wake-up we read ZMQ_EVENTS and drain
 * with ZMQ_DONTWAIT until EAGAIN (in bounded batches, so one busy socket cannot
 * starve the loop), and after every send we schedule one more check, because a
 * send can consume the edge that announced incoming messages.
 */
#ifndef TETHER_ZSOCK_H
#define TETHER_ZSOCK_H

#include <stddef.h>
#include <zmq.h>

#include "loop.h"

typedef struct zsock zsock;

/* A received message: nparts frames (at most ZSOCK_MAX_PARTS; extra frames
 * of a longer message are dropped and counted). Borrowed during the call. */
#define ZSOCK_MAX_PARTS 8
typedef void zsock_msg_cb(zsock *s, zmq_msg_t *parts, size_t nparts, void *arg);

/* The process-wide ZeroMQ context (created on first use). */
void *zsock_ctx(void);
/* Terminates the context at exit (after every zsock is freed). */
void zsock_ctx_term(void);

/* Creates a socket of the given type with Tether's defaults (linger 0,
 * high-water marks 100000, reconnect 100 ms..2 s). Returns NULL with errno. */
void *zsock_socket(int type);

/* Attaches sock to the loop. Takes over sock (zsock_free closes it).
 * cb may be NULL for send-only sockets. Returns NULL on failure (sock untouched). */
zsock *zsock_new(loop *l, void *sock, zsock_msg_cb *cb, void *arg);
/* Detaches and closes. Safe inside the socket's own callback. NULL is a no-op. */
void zsock_free(zsock *s);
void *zsock_raw(const zsock *s);

/* Sends n frames without blocking. Returns 0, -EAGAIN (high-water mark or,
 * with ZMQ_IMMEDIATE, no connected peer), or another -errno. On failure
 * nothing is sent. */
int zsock_send(zsock *s, const void *const *bufs, const size_t *lens, size_t n);

/* Counters: messages received/sent/dropped (send failures), oversize parts. */
typedef struct zsock_stats {
    unsigned long long rx, tx, tx_fail, rx_truncated;
} zsock_stats;
zsock_stats zsock_get_stats(const zsock *s);

#endif
