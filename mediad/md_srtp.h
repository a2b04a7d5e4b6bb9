/* md_srtp.h -- SRTP/SRTCP contexts over libsrtp2.
 *
 * One direction per context: an inbound context (the peer's key, any SSRC)
 * unprotects what a peer sends, an outbound one (our key, any SSRC) protects
 * what we send it. Keys come from DTLS (RFC 5764 key export) or from SDES
 * (a=crypto inline keys); either way a master key followed by its salt.
 *
 * The suites are named as in SDES; DTLS-SRTP profiles map onto them.
 */
#ifndef TETHER_MD_SRTP_H
#define TETHER_MD_SRTP_H

#include <stddef.h>
#include <stdint.h>

typedef enum md_srtp_suite {
    MD_SRTP_NONE = 0,
    MD_SRTP_AES_CM_128_SHA1_80,
    MD_SRTP_AES_CM_128_SHA1_32,
    MD_SRTP_AEAD_AES_128_GCM,
    MD_SRTP_AEAD_AES_256_GCM,
} md_srtp_suite;

/* Bytes an outbound packet may grow by (the auth tag): buffers passed to
 * protect need this much room after the packet. */
#define MD_SRTP_TRAILER 32
/* The longest master key + salt of any suite (AES-256 key + 12-byte salt). */
#define MD_SRTP_MAX_KEY 46

typedef struct md_srtp md_srtp;

/* libsrtp's global init; once per process. Returns 0 or -EIO. */
int md_srtp_init(void);

/* Suite names: SDES ("AES_CM_128_HMAC_SHA1_80"...) both ways; NONE if unknown. */
md_srtp_suite md_srtp_suite_from_name(const char *sdes_name);
const char *md_srtp_suite_name(md_srtp_suite s);
/* Master key and salt lengths of a suite (0 for NONE). */
size_t md_srtp_key_len(md_srtp_suite s);
size_t md_srtp_salt_len(md_srtp_suite s);

/* A context for suite with key (key_len(s) + salt_len(s) bytes: key then
 * salt; copied). outbound: protect, else unprotect. NULL on failure. */
md_srtp *md_srtp_new(md_srtp_suite s, const uint8_t *key, int outbound);
void md_srtp_free(md_srtp *c);

/* In-place operations on buf (len bytes in, *len out). protect needs
 * MD_SRTP_TRAILER spare bytes after the packet. Return 0 or a negative
 * code: -EBADMSG authentication failed, -EALREADY replayed (or too old),
 * -EINVAL anything else libsrtp refused. */
int md_srtp_protect(md_srtp *c, uint8_t *buf, int *len);
int md_srtp_protect_rtcp(md_srtp *c, uint8_t *buf, int *len);
int md_srtp_unprotect(md_srtp *c, uint8_t *buf, int *len);
int md_srtp_unprotect_rtcp(md_srtp *c, uint8_t *buf, int *len);

#endif
