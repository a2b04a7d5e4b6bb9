/* zauth.h -- the bus's authentication: ZeroMQ CURVE keys derived from one
 * operator secret, and the process's ZAP handler.
 *
 * TETHER_BUS_SECRET (or TETHER_BUS_SECRET_FILE) is the secret. From it every
 * process derives, deterministically, two CURVE key pairs: the server pair
 * (HMAC-SHA256(secret, "tether-bus-server-v1") is its secret key) and the
 * client pair (HMAC-SHA256(secret, "tether-bus-client-v1")). Every bound
 * socket (busd's XSUB/XPUB, every ROUTER) is a CURVE server with the server
 * pair; every connecting socket is a CURVE client with the client pair and
 * the server's public key. The ZAP handler (a REP socket on
 * inproc://zeromq.zap.01, run on the loop) admits only the derived client
 * public keys and answers 400 to everything else.
 *
 * Rotation: TETHER_BUS_SECRET_PREVIOUS (or _PREVIOUS_FILE) is a second
 * accepted secret. The server pair always comes from TETHER_BUS_SECRET; the
 * ZAP handler admits the client keys of both; a connecting socket connects
 * once per secret, each connection with that secret's server key and client
 * pair (and ZMQ_IMMEDIATE, so only the connection whose handshake succeeds
 * carries messages; the second connection's endpoint has a leading zero on
 * its port, because libzmq ignores a second connect to the same endpoint
 * string). docs/operations.md gives the three rolling restarts.
 *
 * Without a secret the bus runs in the clear, but only on loopback
 * endpoints (127.0.0.0/8, ::1, localhost, inproc, ipc).
 */
#ifndef TETHER_ZAUTH_H
#define TETHER_ZAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#define ZAUTH_KEY_LEN 32
#define ZAUTH_MIN_SECRET 16
#define ZAUTH_ZAP_DOMAIN "tether"

/* Derives a CURVE key pair: sk = HMAC-SHA256(secret, label), pk its public
 * key. Returns 0, or -EINVAL (empty secret or label). */
int zauth_derive(const void *secret, size_t len, const char *label, uint8_t sk[ZAUTH_KEY_LEN],
                 uint8_t pk[ZAUTH_KEY_LEN]);

/* 1 if a ZeroMQ endpoint stays on this host: tcp:// to 127.0.0.0/8, [::1]
 * or localhost (on both sides of a "source;destination" pair), inproc://,
 * ipc://. 0 otherwise (wildcards, other hosts, other transports). */
int zauth_is_loopback(const char *ep);

/* Reads TETHER_BUS_SECRET[_FILE] and TETHER_BUS_SECRET_PREVIOUS[_FILE] once
 * (later calls return the first result) and derives the keys; a bad value
 * (both NAME and NAME_FILE, unreadable or short file, shorter than
 * ZAUTH_MIN_SECRET) exits with status 2. Returns the number of secrets (0:
 * the bus runs in the clear). */
int zauth_config(void);
int zauth_enabled(void);

/* For a daemon's endpoint variable (one endpoint or a comma list; "off"
 * entries skipped): without a secret, a non-loopback endpoint logs an error
 * naming var and TETHER_BUS_SECRET and exits with status 2; a loopback one
 * logs one warning per process that the bus runs in the clear. */
void zauth_require(const char *var, const char *value);

/* Starts the ZAP handler on ctx, driven by l, and registers the metrics
 * tether_bus_curve and tether_bus_auth_{admitted,refused}_total. Without a
 * secret only the metrics. Call before any zauth_bind on ctx, on the loop
 * thread. Returns 0 or -errno. */
int zauth_start(loop *l, void *ctx);
/* Closes the handler's socket (before the context is terminated). */
void zauth_stop(void);

/* Binds sock to endpoint as a CURVE server (with a secret), else only if
 * the endpoint is loopback. Returns 0 or -errno (-EPERM: refused; errno
 * is set too). Safe from any thread once zauth_config ran. */
int zauth_bind(void *sock, const char *endpoint);
/* Connects sock to endpoint as a CURVE client, once per secret (see above);
 * without a secret only a loopback endpoint. Returns 0 or -errno. */
int zauth_connect(void *sock, const char *endpoint);

/* Failed handshakes on a bound socket (wrong or missing keys, another
 * mechanism: peers that never reach the ZAP handler), counted in
 * tether_bus_handshake_failures_total{socket=name} and logged like
 * refusals. zauth_monitor runs in the thread that owns sock (after its
 * bind), zauth_watch on the loop thread, in either order, with the same
 * name (a short literal). Returns 0 or -errno; without a secret, nothing. */
int zauth_monitor(void *sock, const char *name);
int zauth_watch(loop *l, void *ctx, const char *name);

/* Handshakes the ZAP handler admitted and refused, and failed handshakes
 * seen by zauth_watch. */
typedef struct zauth_stats {
    unsigned long long admitted, refused, failed;
} zauth_stats;
zauth_stats zauth_get_stats(void);

#endif
