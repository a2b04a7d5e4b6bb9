/* md_dtls.h -- DTLS-SRTP key agreement (RFC 5763, RFC 5764) with OpenSSL.
 *
 * One md_dtls_ctx per process holds the certificate: an ECDSA P-256 key and
 * a self-signed certificate persisted at TETHER_MEDIA_CERT, so the
 * fingerprint mediad puts in its answers is the same after a restart (a
 * browser that kept an answer's fingerprint still recognises us). A missing
 * file is created (mode 0600, written to a temporary name then renamed).
 *
 * One md_dtls per media session runs the handshake over the session's ICE
 * transport: datagrams from the peer go in through md_dtls_input, datagrams
 * to it go out through the send callback (a BIO that writes one datagram per
 * record flight, as Janus does), and retransmissions run on loop timers.
 * When the handshake ends, the peer certificate's digest is compared with the
 * a=fingerprint of its offer, the SRTP profile is read, and the keys are
 * exported with the label "EXTRACTOR-dtls_srtp" and split as client key,
 * server key, client salt, server salt (RFC 5764 4.2).
 */
#ifndef TETHER_MD_DTLS_H
#define TETHER_MD_DTLS_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "md_srtp.h"

typedef struct md_dtls_ctx md_dtls_ctx;
typedef struct md_dtls md_dtls;

typedef struct md_dtls_keys {
    md_srtp_suite suite;
    uint8_t local[MD_SRTP_MAX_KEY];   /* key || salt we protect with */
    uint8_t remote[MD_SRTP_MAX_KEY];  /* key || salt the peer protects with */
} md_dtls_keys;

/* Loads the certificate at cert_path, or creates and persists one there.
 * cert_path NULL: an ephemeral certificate (test peers). On failure returns
 * NULL and writes a reason into err. */
md_dtls_ctx *md_dtls_ctx_new(const char *cert_path, char *err, size_t errlen);
void md_dtls_ctx_free(md_dtls_ctx *x);
/* Our certificate's SHA-256 fingerprint, "AB:CD:..." (borrowed). */
const char *md_dtls_ctx_fingerprint(const md_dtls_ctx *x);

/* Sends one datagram to the peer (borrowed buffer). */
typedef void md_dtls_send_cb(const uint8_t *buf, size_t len, void *arg);
/* The handshake ended: status 0 with keys (borrowed for the call), or
 * -EPERM (the peer certificate does not match the offer's fingerprint) or
 * -EPROTO (handshake failed or timed out). After keys, it runs once more
 * with -ECONNRESET if the peer closes (close_notify). The callee may free
 * the md_dtls only outside the call (defer it). */
typedef void md_dtls_done_cb(int status, const md_dtls_keys *keys, void *arg);

/* A handshake as client (active != 0) or server. fp_alg/fp: the peer's
 * a=fingerprint (copied). Returns NULL on failure. */
md_dtls *md_dtls_new(md_dtls_ctx *x, loop *l, int active, const char *fp_alg, const char *fp,
                     md_dtls_send_cb *send, md_dtls_done_cb *done, void *arg);
/* Client: sends the first flight (call once the transport is up). Server: no-op. */
void md_dtls_start(md_dtls *d);
/* A datagram from the peer (first byte 20..63). */
void md_dtls_input(md_dtls *d, const uint8_t *buf, size_t len);
/* 1 once keys were delivered. */
int md_dtls_done(const md_dtls *d);
void md_dtls_free(md_dtls *d);

/* Why the handshake failed ("" if it did not), for logs. */
const char *md_dtls_last_error(const md_dtls *d);

#endif
