/* wsframe.h -- RFC 6455 framing, pure functions: no I/O, no allocation
 * except the inflater. One framer for the gateway (server side) and the SDK
 * (client side).
 *
 * A frame header is at most 14 bytes: 2, then 0/2/8 bytes of extended length,
 * then 0/4 bytes of masking key.
 */
#ifndef TETHER_WSFRAME_H
#define TETHER_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA
#define WS_MAX_HDR 14
#define WS_MAX_CONTROL 125

typedef struct ws_hdr {
    unsigned fin, rsv1, rsv2, rsv3, masked;
    unsigned opcode;
    uint64_t len;           /* payload length */
    unsigned char mask[4];  /* valid when masked */
    size_t hlen;            /* header bytes */
} ws_hdr;

/* Parses the frame header at buf[0..n). Returns hlen (> 0) when the header is
 * complete, 0 when more bytes are needed, -EPROTO when it can never be valid:
 * an unknown opcode, a control frame longer than 125 or not final, a length
 * not in its shortest form, a 64-bit length with the top bit set. Checks that
 * depend on the connection (masking, RSV bits, fragment sequencing) are the
 * caller's. */
int ws_parse_hdr(const unsigned char *buf, size_t n, ws_hdr *h);
/* Writes the header of a frame into out (WS_MAX_HDR bytes) and returns its
 * length. mask NULL: unmasked (server to client). */
size_t ws_encode_hdr(unsigned char *out, int fin, unsigned opcode, int rsv1, uint64_t len, const unsigned char *mask);
/* XORs p[0..n) with mask, p[0] being byte `offset` of the payload. */
void ws_mask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset);

/* Incremental UTF-8 validation across fragments: state 0 to start. Returns
 * the new state (0: complete so far, > 0: inside a sequence), or -1 when the
 * bytes are not UTF-8 (overlongs, surrogates and > U+10FFFF included). A
 * message is valid when the final state is 0. */
int ws_utf8_step(int state, const unsigned char *p, size_t n);

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (28 chars + NUL).
 * Returns 0, or -EINVAL for a key that is not 16 bytes in base64. */
int ws_accept_key(const char *key, char out[29]);

/* permessage-deflate (RFC 7692), receive side only: the server never
 * compresses. Given the client's Sec-WebSocket-Extensions header (NULL if
 * none), returns 1 and the extension value to answer with in resp when a
 * permessage-deflate offer can be accepted (the answer always holds
 * client_no_context_takeover, so every message inflates on its own), 0 when
 * there is no acceptable offer, -ENOSPC when resp is too small. */
int ws_pmd_negotiate(const char *offer, char *resp, size_t resplen);

/* One inflater serves every connection (messages are independent). */
typedef struct ws_inflater ws_inflater;
ws_inflater *ws_inflater_new(void);
void ws_inflater_free(ws_inflater *z);
/* Inflates one whole compressed message into out (cap bytes). Returns the
 * inflated length, -EMSGSIZE when it would exceed cap (decompression bombs
 * stop there), -EPROTO for data that is not a deflate stream (or stops
 * inside a block), -ENOMEM when zlib could not have its window. An empty
 * payload is the empty message. */
long ws_inflate(ws_inflater *z, const unsigned char *in, size_t n, unsigned char *out, size_t cap);

#endif
