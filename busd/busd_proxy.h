/* busd_proxy.h -- busd's forwarding thread and its control channel.
 *
 * The thread owns the XSUB (publishers connect) and XPUB (subscribers
 * connect) sockets and runs zmq_proxy_steerable between them; the loop thread
 * talks to it only through an inproc PAIR: STATISTICS requests (answered with
 * 8 uint64 frames) and TERMINATE. The proxy's counters become Prometheus
 * series read at render time.
 */
#ifndef TETHER_BUSD_PROXY_H
#define TETHER_BUSD_PROXY_H

#include <stdint.h>

#include "http.h"
#include "loop.h"

typedef struct busd_proxy busd_proxy;

/* Binds in_ep (XSUB) and out_ep (XPUB) in a new proxy thread and waits for it
 * to report. On failure returns NULL with errno set and, when a bind failed,
 * *failed_var set to "TETHER_BUS_IN" or "TETHER_BUS_OUT" (else NULL). Borrows
 * l and the endpoint strings (process lifetime). on_exit(arg) runs on the loop
 * if the proxy stops without being asked to. */
busd_proxy *busd_proxy_start(loop *l, const char *in_ep, const char *out_ep, const char **failed_var,
                             void (*on_exit)(void *arg), void *arg);

/* Sends TERMINATE, joins the thread, closes the control socket and the ZeroMQ
 * context; replies 503 to /readyz requests still waiting. NULL is a no-op. */
void busd_proxy_stop(busd_proxy *p);

/* The /readyz check (an http_ready_fn; arg is the busd_proxy): asks the proxy
 * for STATISTICS and replies 200 when it answers within a second, 503 with a
 * JSON detail otherwise. Takes over req. */
void busd_proxy_readyz(http_req *req, void *arg);

#endif
