/* md_dtls.c -- DTLS-SRTP handshakes and the persisted certificate (see md_dtls.h). */
#include "md_dtls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "md_sdp.h"

#define MTU 1200
#define HANDSHAKE_MAX_MS 30000
#define SRTP_PROFILES "SRTP_AEAD_AES_128_GCM:SRTP_AEAD_AES_256_GCM:SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32"

struct md_dtls_ctx {
    SSL_CTX *ssl;
    BIO_METHOD *bio;
    char fp[MD_SDP_MAX_FP + 1];
};

struct md_dtls {
    md_dtls_ctx *x;
    loop *l;
    SSL *ssl;
    int active;
    int state;          /* 0 handshaking, 1 done, -1 failed/closed */
    char fp_alg[16];
    char fp[MD_SDP_MAX_FP + 1];
    md_dtls_send_cb *send;
    md_dtls_done_cb *done;
    void *arg;
    loop_timer retx;
    loop_timer deadline;
    const char *err;
};

/* ---- certificate -------------------------------------------------------------------- */

static int make_cert(EVP_PKEY **pkey, X509 **cert)
{
    int rc = -1;
    X509_NAME *name = NULL;
    *cert = NULL;
    *pkey = EVP_EC_gen("P-256");
    if (!*pkey)
        goto out;
    *cert = X509_new();
    if (!*cert)
        goto out;
    unsigned char serial[8];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(*cert))) {
        BN_free(bn);
        goto out;
    }
    BN_free(bn);
    X509_set_version(*cert, 2);
    /* Peers check the fingerprint, never the validity; a long one avoids
     * ever having to rotate a fingerprint browsers may have cached. */
    X509_gmtime_adj(X509_getm_notBefore(*cert), -86400);
    X509_gmtime_adj(X509_getm_notAfter(*cert), 10L * 365 * 86400);
    if (!X509_set_pubkey(*cert, *pkey))
        goto out;
    name = X509_NAME_new();
    if (!name || !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tether-mediad", -1,
                                             -1, 0))
        goto out;
    if (!X509_set_subject_name(*cert, name) || !X509_set_issuer_name(*cert, name))
        goto out;
    if (!X509_sign(*cert, *pkey, EVP_sha256()))
        goto out;
    rc = 0;
out:
    X509_NAME_free(name);
    if (rc < 0) {
        X509_free(*cert);
        EVP_PKEY_free(*pkey);
        *cert = NULL;
        *pkey = NULL;
    }
    return rc;
}

static int load_cert(const char *path, EVP_PKEY **pkey, X509 **cert)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    rewind(f);
    *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!*cert || !*pkey || X509_check_private_key(*cert, *pkey) != 1) {
        X509_free(*cert);
        EVP_PKEY_free(*pkey);
        *cert = NULL;
        *pkey = NULL;
        return -EINVAL;
    }
    return 0;
}

static void mkdir_parent(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = 0;
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
}

static int save_cert(const char *path, EVP_PKEY *pkey, X509 *cert)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    mkdir_parent(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -EIO;
    }
    int ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) && PEM_write_X509(f, cert);
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    fclose(f);
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -EIO;
    }
    return 0;
}

static void hex_fp(const unsigned char *md, unsigned n, char *out, size_t cap)
{
    size_t o = 0;
    for (unsigned i = 0; i < n && o + 3 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ":%02X" : "%02X", md[i]);
}

/* ---- the BIO that sends through the session --------------------------------------------- */

static int bio_write(BIO *b, const char *data, int len)
{
    md_dtls *d = BIO_get_data(b);
    if (d && len > 0)
        d->send((const uint8_t *)data, (size_t)len, d->arg);
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return MTU;
    default:
        /* BIO_CTRL_(W)PENDING included: nothing is ever buffered here. */
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    BIO_set_data(b, NULL);
    return 1;
}

static int verify_any(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    /* Self-signed by design: trust comes from the signalled fingerprint,
     * checked when the handshake completes. */
    return 1;
}

md_dtls_ctx *md_dtls_ctx_new(const char *path, char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    md_dtls_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = path ? load_cert(path, &pkey, &cert) : -ENOENT;
    if (rc == -EINVAL) {
        snprintf(err, errlen, "%s: not a PEM certificate and matching private key", path);
        goto fail;
    }
    if (rc < 0 && rc != -ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    if (rc < 0) {
        if (make_cert(&pkey, &cert) < 0) {
            snprintf(err, errlen, "cannot generate a certificate");
            goto fail;
        }
        if (path && (rc = save_cert(path, pkey, cert)) < 0) {
            snprintf(err, errlen, "%s: cannot write the certificate (%s)", path, strerror(-rc));
            goto fail;
        }
        if (path)
            LOG_INFO("DTLS certificate created", "{s:s}", "path", path);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (!X509_digest(cert, EVP_sha256(), md, &n)) {
        snprintf(err, errlen, "cannot digest the certificate");
        goto fail;
    }
    hex_fp(md, n, x->fp, sizeof(x->fp));
    x->ssl = SSL_CTX_new(DTLS_method());
    x->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether-ice");
    if (!x->ssl || !x->bio || !SSL_CTX_use_certificate(x->ssl, cert) || !SSL_CTX_use_PrivateKey(x->ssl, pkey) ||
        !SSL_CTX_check_private_key(x->ssl)) {
        snprintf(err, errlen, "cannot set up the DTLS context");
        goto fail;
    }
    BIO_meth_set_write(x->bio, bio_write);
    BIO_meth_set_ctrl(x->bio, bio_ctrl);
    BIO_meth_set_create(x->bio, bio_create);
    SSL_CTX_set_min_proto_version(x->ssl, DTLS1_2_VERSION);
    SSL_CTX_set_verify(x->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_any);
    SSL_CTX_set_read_ahead(x->ssl, 1);
    /* Returns 0 on success, unlike most of OpenSSL. */
    if (SSL_CTX_set_tlsext_use_srtp(x->ssl, SRTP_PROFILES) != 0) {
        snprintf(err, errlen, "this OpenSSL lacks DTLS-SRTP profiles");
        goto fail;
    }
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return x;
fail:
    X509_free(cert);
    EVP_PKEY_free(pkey);
    md_dtls_ctx_free(x);
    return NULL;
}

void md_dtls_ctx_free(md_dtls_ctx *x)
{
    if (!x)
        return;
    SSL_CTX_free(x->ssl);
    BIO_meth_free(x->bio);
    free(x);
}

const char *md_dtls_ctx_fingerprint(const md_dtls_ctx *x) { return x->fp; }

/* ---- handshakes ----------------------------------------------------------------------- */

static void fail(md_dtls *d, int status, const char *why)
{
    if (d->state != 0)
        return;
    d->state = -1;
    d->err = why;
    loop_timer_stop(d->l, &d->retx);
    loop_timer_stop(d->l, &d->deadline);
    ERR_clear_error();
    d->done(status, NULL, d->arg);
}

static void arm_retx(md_dtls *d);

static void on_retx(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    md_dtls *d = arg;
    if (d->state != 0)
        return;
    if (DTLSv1_handle_timeout(d->ssl) < 0) {
        fail(d, -EPROTO, "DTLS retransmission failed");
        return;
    }
    arm_retx(d);
}

static void arm_retx(md_dtls *d)
{
    struct timeval tv;
    if (d->state == 0 && DTLSv1_get_timeout(d->ssl, &tv) == 1) {
        uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
        loop_now_update(d->l);
        loop_timer_start(d->l, &d->retx, ms ? ms : 1, 0, on_retx, d);
    }
}

static void on_deadline(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    fail(arg, -EPROTO, "DTLS handshake timed out");
}

static const EVP_MD *digest_of(const char *alg)
{
    if (!strcasecmp(alg, "sha-1"))
        return EVP_sha1();
    if (!strcasecmp(alg, "sha-256"))
        return EVP_sha256();
    if (!strcasecmp(alg, "sha-384"))
        return EVP_sha384();
    if (!strcasecmp(alg, "sha-512"))
        return EVP_sha512();
    return NULL;
}

static void finished(md_dtls *d)
{
    X509 *peer = SSL_get1_peer_certificate(d->ssl);
    const EVP_MD *md = digest_of(d->fp_alg);
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char fp[MD_SDP_MAX_FP + 1] = "";
    if (peer && md && X509_digest(peer, md, dg, &n))
        hex_fp(dg, n, fp, sizeof(fp));
    X509_free(peer);
    if (!fp[0] || strcmp(fp, d->fp) != 0) {
        fail(d, -EPERM, "the peer certificate does not match the offer's fingerprint");
        return;
    }
    SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(d->ssl);
    md_dtls_keys k;
    memset(&k, 0, sizeof(k));
    switch (p ? p->id : 0) {
    case SRTP_AES128_CM_SHA1_80:
        k.suite = MD_SRTP_AES_CM_128_SHA1_80;
        break;
    case SRTP_AES128_CM_SHA1_32:
        k.suite = MD_SRTP_AES_CM_128_SHA1_32;
        break;
    case SRTP_AEAD_AES_128_GCM:
        k.suite = MD_SRTP_AEAD_AES_128_GCM;
        break;
    case SRTP_AEAD_AES_256_GCM:
        k.suite = MD_SRTP_AEAD_AES_256_GCM;
        break;
    default:
        fail(d, -EPROTO, "no DTLS-SRTP profile was negotiated");
        return;
    }
    size_t kl = md_srtp_key_len(k.suite), sl = md_srtp_salt_len(k.suite);
    uint8_t km[2 * MD_SRTP_MAX_KEY];
    static const char label[] = "EXTRACTOR-dtls_srtp";
    if (SSL_export_keying_material(d->ssl, km, 2 * (kl + sl), label, sizeof(label) - 1, NULL, 0, 0) != 1) {
        fail(d, -EPROTO, "DTLS key export failed");
        return;
    }
    /* client key | server key | client salt | server salt */
    const uint8_t *ck = km, *sk = km + kl, *cs = km + 2 * kl, *ss = km + 2 * kl + sl;
    uint8_t *mine = k.local, *theirs = k.remote;
    memcpy(mine, d->active ? ck : sk, kl);
    memcpy(mine + kl, d->active ? cs : ss, sl);
    memcpy(theirs, d->active ? sk : ck, kl);
    memcpy(theirs + kl, d->active ? ss : cs, sl);
    memset(km, 0, sizeof(km));
    d->state = 1;
    loop_timer_stop(d->l, &d->retx);
    loop_timer_stop(d->l, &d->deadline);
    d->done(0, &k, d->arg);
    memset(&k, 0, sizeof(k));
}

static void step(md_dtls *d)
{
    int r = SSL_do_handshake(d->ssl);
    if (r == 1) {
        finished(d);
        return;
    }
    int e = SSL_get_error(d->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        arm_retx(d);
        return;
    }
    unsigned long code = ERR_peek_last_error();
    LOG_DEBUG("DTLS handshake failed", "{s:s}", "error", code ? ERR_reason_error_string(code) : "?");
    fail(d, -EPROTO, "DTLS handshake failed");
}

md_dtls *md_dtls_new(md_dtls_ctx *x, loop *l, int active, const char *fp_alg, const char *fp,
                     md_dtls_send_cb *send, md_dtls_done_cb *done, void *arg)
{
    md_dtls *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->x = x;
    d->l = l;
    d->active = active;
    d->send = send;
    d->done = done;
    d->arg = arg;
    snprintf(d->fp_alg, sizeof(d->fp_alg), "%s", fp_alg);
    snprintf(d->fp, sizeof(d->fp), "%s", fp);
    d->ssl = SSL_new(x->ssl);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(x->bio);
    if (!d->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(d->ssl);
        free(d);
        return NULL;
    }
    BIO_set_mem_eof_return(rb, -1);
    BIO_set_data(wb, d);
    SSL_set_bio(d->ssl, rb, wb);
    SSL_set_options(d->ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(d->ssl, MTU);
    DTLS_set_link_mtu(d->ssl, MTU);
    if (active)
        SSL_set_connect_state(d->ssl);
    else
        SSL_set_accept_state(d->ssl);
    loop_now_update(l);
    loop_timer_start(l, &d->deadline, HANDSHAKE_MAX_MS, 0, on_deadline, d);
    return d;
}

void md_dtls_start(md_dtls *d)
{
    if (d->active && d->state == 0)
        step(d);
}

void md_dtls_input(md_dtls *d, const uint8_t *buf, size_t len)
{
    if (d->state < 0 || len == 0 || len > 16384)
        return;
    BIO_write(SSL_get_rbio(d->ssl), buf, (int)len);
    if (d->state == 0) {
        step(d);
        return;
    }
    /* After the handshake: retransmitted flights, alerts, close_notify. */
    unsigned char junk[2048];
    int r = SSL_read(d->ssl, junk, sizeof(junk));
    if (r <= 0) {
        int e = SSL_get_error(d->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN) {
            d->state = -1;
            d->err = "DTLS closed by the peer";
            d->done(-ECONNRESET, NULL, d->arg);
        }
        ERR_clear_error();
    }
}

int md_dtls_done(const md_dtls *d) { return d->state == 1; }

const char *md_dtls_last_error(const md_dtls *d) { return d->err ? d->err : ""; }

void md_dtls_free(md_dtls *d)
{
    if (!d)
        return;
    loop_timer_stop(d->l, &d->retx);
    loop_timer_stop(d->l, &d->deadline);
    BIO *wb = SSL_get_wbio(d->ssl);
    if (wb)
        BIO_set_data(wb, NULL);
    SSL_free(d->ssl);
    free(d);
}
