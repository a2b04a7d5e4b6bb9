/* md_srtp.c -- SRTP contexts over libsrtp2 (see md_srtp.h).
 *
 * Debian's libsrtp2 is built with NSS; that changes nothing here: the AES-CM
 * and AES-GCM policies below are what both backends implement.
 */
#include "md_srtp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <srtp2/srtp.h>

struct md_srtp {
    srtp_t s;
    md_srtp_suite suite;
};

static const struct {
    md_srtp_suite suite;
    const char *name;
    size_t key, salt;
} suites[] = {
    { MD_SRTP_AES_CM_128_SHA1_80, "AES_CM_128_HMAC_SHA1_80", 16, 14 },
    { MD_SRTP_AES_CM_128_SHA1_32, "AES_CM_128_HMAC_SHA1_32", 16, 14 },
    { MD_SRTP_AEAD_AES_128_GCM, "AEAD_AES_128_GCM", 16, 12 },
    { MD_SRTP_AEAD_AES_256_GCM, "AEAD_AES_256_GCM", 32, 12 },
};
#define NSUITES (sizeof(suites) / sizeof(suites[0]))

int md_srtp_init(void) { return srtp_init() == srtp_err_status_ok ? 0 : -EIO; }

md_srtp_suite md_srtp_suite_from_name(const char *name)
{
    for (size_t i = 0; name && i < NSUITES; i++)
        if (!strcmp(name, suites[i].name))
            return suites[i].suite;
    return MD_SRTP_NONE;
}

const char *md_srtp_suite_name(md_srtp_suite s)
{
    for (size_t i = 0; i < NSUITES; i++)
        if (suites[i].suite == s)
            return suites[i].name;
    return "none";
}

size_t md_srtp_key_len(md_srtp_suite s)
{
    for (size_t i = 0; i < NSUITES; i++)
        if (suites[i].suite == s)
            return suites[i].key;
    return 0;
}

size_t md_srtp_salt_len(md_srtp_suite s)
{
    for (size_t i = 0; i < NSUITES; i++)
        if (suites[i].suite == s)
            return suites[i].salt;
    return 0;
}

md_srtp *md_srtp_new(md_srtp_suite suite, const uint8_t *key, int outbound)
{
    srtp_policy_t p;
    uint8_t k[MD_SRTP_MAX_KEY];
    size_t kl = md_srtp_key_len(suite) + md_srtp_salt_len(suite);
    if (kl == 0 || kl > sizeof(k))
        return NULL;
    memset(&p, 0, sizeof(p));
    switch (suite) {
    case MD_SRTP_AES_CM_128_SHA1_80:
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
        break;
    case MD_SRTP_AES_CM_128_SHA1_32:
        /* RFC 5764 4.1.2: SRTCP keeps the 80-bit tag with this profile. */
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
        break;
    case MD_SRTP_AEAD_AES_128_GCM:
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
        break;
    case MD_SRTP_AEAD_AES_256_GCM:
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&p.rtcp);
        break;
    default:
        return NULL;
    }
    md_srtp *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    memcpy(k, key, kl);
    p.key = k;
    p.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    p.window_size = 1024;
    /* The forwarder rewrites sequence numbers; a talker switch never repeats
     * one, but a retransmitted DTLS-era packet must not kill the stream. */
    p.allow_repeat_tx = 1;
    p.next = NULL;
    c->suite = suite;
    if (srtp_create(&c->s, &p) != srtp_err_status_ok) {
        free(c);
        c = NULL;
    }
    memset(k, 0, sizeof(k));
    return c;
}

void md_srtp_free(md_srtp *c)
{
    if (!c)
        return;
    srtp_dealloc(c->s);
    free(c);
}

static int status(srtp_err_status_t st)
{
    switch (st) {
    case srtp_err_status_ok:
        return 0;
    case srtp_err_status_auth_fail:
        return -EBADMSG;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old:
        return -EALREADY;
    default:
        return -EINVAL;
    }
}

int md_srtp_protect(md_srtp *c, uint8_t *buf, int *len) { return status(srtp_protect(c->s, buf, len)); }
int md_srtp_protect_rtcp(md_srtp *c, uint8_t *buf, int *len) { return status(srtp_protect_rtcp(c->s, buf, len)); }
int md_srtp_unprotect(md_srtp *c, uint8_t *buf, int *len) { return status(srtp_unprotect(c->s, buf, len)); }
int md_srtp_unprotect_rtcp(md_srtp *c, uint8_t *buf, int *len)
{
    return status(srtp_unprotect_rtcp(c->s, buf, len));
}
