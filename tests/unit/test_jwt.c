/* test_jwt.c -- the JWT attack matrix for lib/jwtcheck (cmocka).
 *
 * Every rejection test asserts the exact reason string as well as the return
 * code, so a test fails if the check it targets is removed even when a later
 * check would also have refused the token. Where a test relies on a libjwt
 * trap (alg none, algorithm confusion) it first shows that bare libjwt really
 * falls into it, so the token under test is a working attack.
 *
 * Keys are generated here with OpenSSL's EVP API and written to a temporary
 * directory; RS/ES tokens are signed with libjwt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jwtcheck.h"

#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SECRET "test-secret-0123456789abcdef-0123456789"

/* Fixtures shared by all tests (built once in group_setup). */
static char tmpdir[64];
static int64_t now;
static char *rsa_priv, *rsa2_priv, *ec_priv, *ec384_priv;  /* PEM text */
static char *rsa_pub_text;                                  /* as published */

/* ---- helpers ------------------------------------------------------------------ */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    assert_true(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    return s;
}

static char *tmp_path(const char *name)
{
    return xasprintf("%s/%s", tmpdir, name);
}

static void write_file(const char *name, const char *text)
{
    char *p = tmp_path(name);
    FILE *f = fopen(p, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    free(p);
}

static char *pem_private(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    char *out;

    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &data);
    out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

static char *pem_public(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    char *out;

    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

static void write_cert(const char *name, EVP_PKEY *k)
{
    X509 *x = X509_new();
    X509_NAME *n;
    char *p = tmp_path(name);
    FILE *f;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"tether-test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    free(p);
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i;

    for (i = 0; i + 2 < n; i += 3) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[o++] = a[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        out[o++] = a[in[i + 2] & 63];
    }
    if (n - i == 1) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[o++] = a[(in[i + 1] & 15) << 2];
    }
    out[o] = '\0';
}

/* A hand-built token: header and payload JSON text as given (so duplicate
 * members or odd algs survive), MACed with HMAC-SHA256 under hs_key (any
 * bytes, e.g. a PEM), or with sig_text appended verbatim when hs_key is NULL. */
static char *raw_token(const char *header, const char *payload, const char *hs_key, const char *sig_text)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *out = malloc(hl * 2 + pl * 2 + 200 + (sig_text ? strlen(sig_text) : 0));
    size_t n;

    assert_non_null(out);
    b64url((const unsigned char *)header, hl, out);
    n = strlen(out);
    out[n++] = '.';
    b64url((const unsigned char *)payload, pl, out + n);
    n = strlen(out);
    if (hs_key) {
        unsigned char md[64];
        unsigned int mdlen = 0;
        assert_non_null(HMAC(EVP_sha256(), hs_key, (int)strlen(hs_key), (const unsigned char *)out, n, md, &mdlen));
        out[n++] = '.';
        b64url(md, mdlen, out + n);
    } else {
        out[n++] = '.';
        strcpy(out + n, sig_text ? sig_text : "");
    }
    return out;
}

/* A token signed by libjwt with alg and key (secret or private PEM). */
static char *lib_token(jwt_alg_t alg, const char *key, const char *kid, const char *claims)
{
    jwt_t *j = NULL;
    char *tok;

    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    tok = jwt_encode_str(j);
    assert_non_null(tok);
    jwt_free(j);
    return tok;
}

static char *hs_token(const char *claims)
{
    return lib_token(JWT_ALG_HS256, SECRET, NULL, claims);
}

static char *good_claims(void)
{
    return xasprintf("{\"sub\":\"alice\",\"exp\":%lld,\"iat\":%lld}", (long long)now + 600, (long long)now);
}

static jwtv *hs_verifier(const char *iss, const char *aud)
{
    char err[256];
    jwtv *v = jwtv_new(SECRET, NULL, iss, aud, err, sizeof err);

    assert_non_null(v);
    return v;
}

/* A verifier over a key file with the given contents (written to keys.txt). */
static jwtv *file_verifier(const char *hs, const char *contents, const char *iss, const char *aud)
{
    char err[512];
    char *p;
    jwtv *v;

    write_file("keys.txt", contents);
    p = tmp_path("keys.txt");
    v = jwtv_new(hs, p, iss, aud, err, sizeof err);
    if (!v)
        fail_msg("jwtv_new: %s", err);
    free(p);
    return v;
}

/* Asserts verify gives rc and the reason why. */
static void expect(const jwtv *v, const char *tok, int rc, const char *why)
{
    const char *got = NULL;
    jwt_claims c;
    int r = jwtv_verify(v, tok, now, &c, &got);

    if (r != rc || strcmp(got, why) != 0)
        fail_msg("token %.80s: got %d '%s', want %d '%s'", tok ? tok : "(null)", r, got, rc, why);
    jwt_claims_clear(&c);
}

/* Verifies a token built from claims (HS256, SECRET) against v. */
static void expect_claims(const jwtv *v, const char *claims, int rc, const char *why)
{
    char *tok = hs_token(claims);
    expect(v, tok, rc, why);
    free(tok);
}

static void expect_fmt(const jwtv *v, int rc, const char *why, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like expect_claims with the claims formatted from fmt. */
static void expect_fmt(const jwtv *v, int rc, const char *why, const char *fmt, ...)
{
    va_list ap;
    char *claims = NULL;

    va_start(ap, fmt);
    assert_true(vasprintf(&claims, fmt, ap) >= 0);
    va_end(ap);
    expect_claims(v, claims, rc, why);
    free(claims);
}

/* Verifies a libjwt-signed token (see lib_token) against v. */
static void expect_lib(const jwtv *v, int rc, const char *why, jwt_alg_t alg, const char *key,
                       const char *kid, const char *claims)
{
    char *tok = lib_token(alg, key, kid, claims);
    expect(v, tok, rc, why);
    free(tok);
}

/* Verifies a hand-built token (see raw_token) against v. */
static void expect_raw(const jwtv *v, int rc, const char *why, const char *header, const char *payload,
                       const char *hs_key, const char *sig_text)
{
    char *tok = raw_token(header, payload, hs_key, sig_text);
    expect(v, tok, rc, why);
    free(tok);
}

/* ---- fixtures ----------------------------------------------------------------- */

static int group_setup(void **state)
{
    EVP_PKEY *rsa, *rsa2, *rsa1024, *ec, *ec384;
    char *pub;

    (void)state;
    now = (int64_t)time(NULL);
    strcpy(tmpdir, "/tmp/tether-test-jwt-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    if (!rsa || !rsa2 || !rsa1024 || !ec || !ec384)
        return -1;
    rsa_priv = pem_private(rsa);
    rsa2_priv = pem_private(rsa2);
    ec_priv = pem_private(ec);
    ec384_priv = pem_private(ec384);
    rsa_pub_text = pem_public(rsa);
    write_file("rsa.pem", rsa_pub_text);
    write_file("ec.pem", pub = pem_public(ec));
    free(pub);
    write_file("ec384.pem", pub = pem_public(ec384));
    free(pub);
    write_file("rsa1024.pem", pub = pem_public(rsa1024));
    free(pub);
    write_file("rsa_private.pem", rsa_priv);
    write_cert("rsa_cert.pem", rsa);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec384);
    return 0;
}

static int group_teardown(void **state)
{
    static const char *const files[] = { "rsa.pem", "ec.pem", "ec384.pem", "rsa1024.pem",
                                         "rsa_private.pem", "rsa_cert.pem", "keys.txt" };
    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = tmp_path(files[i]);
        unlink(p);
        free(p);
    }
    rmdir(tmpdir);
    free(rsa_priv);
    free(rsa2_priv);
    free(ec_priv);
    free(ec384_priv);
    free(rsa_pub_text);
    return 0;
}

/* ---- HS256 basics --------------------------------------------------------------- */

static void test_hs256_valid(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    char *claims = good_claims(), *tok = hs_token(claims);
    const char *why = NULL;
    jwt_claims c;

    (void)state;
    assert_int_equal(jwtv_key_count(v), 1);
    assert_int_equal(jwtv_verify(v, tok, now, &c, &why), 0);
    assert_string_equal(why, "ok");
    assert_string_equal(c.sub, "alice");
    assert_int_equal(c.exp, now + 600);
    assert_int_equal(c.iat, now);
    assert_int_equal(c.nbf, 0);
    assert_int_equal(c.rooms_present, 0);
    assert_true(jwt_claims_room_allowed(&c, "any-room"));
    jwt_claims_clear(&c);
    jwt_claims_clear(&c);
    assert_int_equal(jwtv_verify(v, tok, now, NULL, NULL), 0);
    free(tok);
    free(claims);
    jwtv_free(v);
    jwtv_free(NULL);
}

static void test_expired(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    char *cl, *tok;
    jwt_claims c;
    const char *why;

    (void)state;
    expect_fmt(v, -EKEYEXPIRED, "expired", "{\"sub\":\"a\",\"exp\":%lld}", (long long)now - 3600);
    /* The 30 s leeway, exactly at its edge. */
    expect_fmt(v, -EKEYEXPIRED, "expired", "{\"sub\":\"a\",\"exp\":%lld}", (long long)now - JWTV_LEEWAY_S);
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld}", (long long)now - JWTV_LEEWAY_S + 1);
    /* Claims are not handed out for an expired token. */
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"rooms\":[\"r\"]}", (long long)now - 3600);
    tok = hs_token(cl);
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(jwtv_verify(v, tok, now, &c, &why), -EKEYEXPIRED);
    assert_string_equal(c.sub, "");
    assert_null(c.rooms);
    free(tok);
    free(cl);
    jwtv_free(v);
}

/* "Expired" must only be said of a token that is otherwise good: a client
 * told 4502 fetches a new token and comes back, which is wrong for a forgery. */
static void test_expired_but_otherwise_invalid(void **state)
{
    jwtv *v = hs_verifier("tether", NULL);
    char *cl;

    (void)state;
    cl = xasprintf("{\"sub\":\"a\",\"iss\":\"tether\",\"exp\":%lld}", (long long)now - 3600);
    expect_lib(v, -EACCES, "bad signature", JWT_ALG_HS256, "some-other-secret", NULL, cl);
    free(cl);
    expect_fmt(v, -EACCES, "iss mismatch", "{\"sub\":\"a\",\"iss\":\"evil\",\"exp\":%lld}", (long long)now - 3600);
    expect_fmt(v, -EACCES, "sub missing", "{\"iss\":\"tether\",\"exp\":%lld}", (long long)now - 3600);
    jwtv_free(v);
}

static void test_exp_missing_or_bad(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);

    (void)state;
    expect_claims(v, "{\"sub\":\"a\"}", -EACCES, "exp missing");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":\"9999999999\"}", -EACCES, "bad exp");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":null}", -EACCES, "bad exp");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":true}", -EACCES, "bad exp");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":-5}", -EACCES, "bad exp");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":9223372036854775807}", -EACCES, "bad exp");
    expect_claims(v, "{\"sub\":\"a\",\"exp\":1e300}", -EACCES, "bad exp");
    /* A fractional NumericDate is legal (RFC 7519 2). */
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld.5}", (long long)now + 100);
    jwtv_free(v);
}

static void test_nbf_and_iat(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);

    (void)state;
    expect_fmt(v, -EACCES, "not yet valid", "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", (long long)now + 600, (long long)now + 120);
    expect_fmt(v, -EACCES, "not yet valid", "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", (long long)now + 600,
                   (long long)now + JWTV_LEEWAY_S + 1);
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", (long long)now + 600, (long long)now + 20);
    expect_fmt(v, -EACCES, "bad nbf", "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":\"soon\"}", (long long)now + 600);
    expect_fmt(v, -EACCES, "issued in the future", "{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}", (long long)now + 600, (long long)now + 120);
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}", (long long)now + 600, (long long)now + 20);
    expect_fmt(v, -EACCES, "bad iat", "{\"sub\":\"a\",\"exp\":%lld,\"iat\":[]}", (long long)now + 600);
    jwtv_free(v);
}

static void test_wrong_secret_and_tampering(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    char *cl = good_claims(), *tok, *forged, *evil;
    char *dot1, *dot2;

    (void)state;
    expect_lib(v, -EACCES, "bad signature", JWT_ALG_HS256, "not-the-secret", NULL, cl);
    /* Swap the payload of a good token for another one, keep the MAC. */
    tok = hs_token(cl);
    evil = raw_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"mallory\",\"exp\":9999999999}", "x", NULL);
    dot1 = strchr(tok, '.');
    dot2 = strchr(dot1 + 1, '.');
    *dot1 = '\0';
    {
        char *ep = strchr(evil, '.') + 1;
        *strchr(ep, '.') = '\0';
        forged = xasprintf("%s.%s.%s", tok, ep, dot2 + 1);
    }
    expect(v, forged, -EACCES, "bad signature");
    free(forged);
    free(evil);
    free(tok);
    /* A signature that is not base64url at all, and an empty one. */
    tok = hs_token(cl);
    dot2 = strrchr(tok, '.');
    strcpy(dot2 + 1, "AAAA+/==");
    expect(v, tok, -EACCES, "bad signature");
    dot2[1] = '\0';
    expect(v, tok, -EACCES, "bad signature");
    free(tok);
    free(cl);
    jwtv_free(v);
}

/* ---- algorithm attacks -------------------------------------------------------- */

static void test_alg_none(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    jwtv *vf = file_verifier(NULL, "only RS256 rsa.pem\n", NULL, NULL);
    char *cl = good_claims();
    static const char *const heads[] = { "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}",
                                         "{\"alg\":\"None\"}", "{\"alg\":\"NONE\",\"kid\":\"only\"}" };
    jwt_t *j = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        char *tok = raw_token(heads[i], cl, NULL, "");
        char *tok2 = raw_token(heads[i], cl, NULL, "c2lnbmF0dXJl");
        if (i == 0) {
            /* The trap is real: bare libjwt takes this token with a NULL key. */
            assert_int_equal(jwt_decode(&j, tok, NULL, 0), 0);
            assert_string_equal(jwt_get_grant(j, "sub"), "alice");
            jwt_free(j);
        }
        expect(v, tok, -EACCES, "alg none");
        expect(vf, tok, -EACCES, "alg none");
        expect(v, tok2, -EACCES, "alg none");
        free(tok);
        free(tok2);
    }
    free(cl);
    jwtv_free(vf);
    jwtv_free(v);
}

/* HS256 MACed with the RSA public key's PEM text, which anyone can read. */
static void test_alg_confusion(void **state)
{
    jwtv *v = file_verifier(NULL, "rsa RS256 rsa.pem\n", NULL, NULL);
    jwtv *v2 = file_verifier(NULL, "rsa RS256 rsa.pem\nec ES256 ec.pem\n", NULL, NULL);
    char *cl = good_claims(), *tok, *tok_kid, *tok_raw;
    jwt_t *j = NULL;

    (void)state;
    tok = lib_token(JWT_ALG_HS256, rsa_pub_text, NULL, cl);
    tok_kid = lib_token(JWT_ALG_HS256, rsa_pub_text, "rsa", cl);
    tok_raw = raw_token("{\"alg\":\"HS256\",\"kid\":\"rsa\"}", cl, rsa_pub_text, NULL);
    /* The trap is real: bare libjwt accepts it when given the PEM as key. */
    assert_int_equal(jwt_decode(&j, tok, (const unsigned char *)rsa_pub_text, (int)strlen(rsa_pub_text)), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_HS256);
    jwt_free(j);
    expect(v, tok, -EACCES, "alg mismatch");
    expect(v, tok_kid, -EACCES, "alg mismatch");
    expect(v, tok_raw, -EACCES, "alg mismatch");
    expect(v2, tok_kid, -EACCES, "alg mismatch");
    free(tok);
    free(tok_kid);
    free(tok_raw);
    /* Another RSA alg with the same key: still not the configured one. */
    expect_lib(v2, -EACCES, "alg mismatch", JWT_ALG_RS384, rsa_priv, "rsa", cl);
    /* A lower-case alg name is not the configured name. */
    expect_raw(v2, -EACCES, "alg mismatch", "{\"alg\":\"rs256\",\"kid\":\"rsa\"}", cl, NULL, "AAAA");
    free(cl);
    jwtv_free(v2);
    jwtv_free(v);
}

/* ---- RS / ES ---------------------------------------------------------------- */

static void test_rs256(void **state)
{
    char *abs = tmp_path("rsa.pem");
    char *contents = xasprintf("# absolute path\nabs RS256 %s\n", abs);
    jwtv *v = file_verifier(NULL, "rsa RS256 rsa.pem\n", NULL, NULL);
    jwtv *va = file_verifier(NULL, contents, NULL, NULL);
    jwtv *vc = file_verifier(NULL, "cert RS256 rsa_cert.pem\n", NULL, NULL);
    char *cl = good_claims(), *tok;
    jwt_claims c;

    (void)state;
    tok = lib_token(JWT_ALG_RS256, rsa_priv, NULL, cl);
    assert_int_equal(jwtv_verify(v, tok, now, &c, NULL), 0);
    assert_string_equal(c.sub, "alice");
    jwt_claims_clear(&c);
    expect(va, tok, 0, "ok");
    expect(vc, tok, 0, "ok");
    /* Flip one signature character (to another valid one). */
    {
        char *s = strrchr(tok, '.') + 5;
        *s = *s == 'A' ? 'B' : 'A';
    }
    expect(v, tok, -EACCES, "bad signature");
    free(tok);
    /* A second spelling of the same signature (stray bits in the last
     * character) decodes to the same bytes in libjwt; a token has one
     * spelling only. 2048 bits leave 4 unused bits in the last character. */
    tok = lib_token(JWT_ALG_RS256, rsa_priv, NULL, cl);
    {
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *last = tok + strlen(tok) - 1;
        jwt_t *j = NULL;
        assert_int_equal(strrchr(tok, '.') + 1 + 342, last + 1);
        *last = a[(strchr(a, *last) - a) | 1];
        assert_int_equal(jwt_decode(&j, tok, (const unsigned char *)rsa_pub_text, (int)strlen(rsa_pub_text)), 0);
        jwt_free(j);
    }
    expect(v, tok, -EACCES, "bad signature");
    free(tok);
    expect_lib(v, -EACCES, "bad signature", JWT_ALG_RS256, rsa2_priv, NULL, cl);
    free(cl);
    free(contents);
    free(abs);
    jwtv_free(vc);
    jwtv_free(va);
    jwtv_free(v);
}

static void test_es256_es384(void **state)
{
    jwtv *v = file_verifier(NULL, "ec ES256 ec.pem\nec384 ES384 ec384.pem\n", NULL, NULL);
    char *cl = good_claims(), *tok;

    (void)state;
    tok = lib_token(JWT_ALG_ES256, ec_priv, "ec", cl);
    expect(v, tok, 0, "ok");
    {
        char *s = strrchr(tok, '.') + 3;
        *s = *s == 'A' ? 'B' : 'A';
    }
    expect(v, tok, -EACCES, "bad signature");
    free(tok);
    expect_lib(v, 0, "ok", JWT_ALG_ES384, ec384_priv, "ec384", cl);
    /* Signed by the P-384 key but claiming the P-256 key's kid. */
    expect_lib(v, -EACCES, "bad signature", JWT_ALG_ES256, ec384_priv, "ec", cl);
    free(cl);
    jwtv_free(v);
}

static void test_kid_selection(void **state)
{
    jwtv *v = file_verifier(NULL,
                            "k1 HS256 first-secret-aaaaaaaaaaaaaaaaaaaaaa\n"
                            "k2 HS512 second secret with spaces   \n"
                            "k3 RS256 rsa.pem\n"
                            "k4 ES256 ec.pem\n",
                            NULL, NULL);
    jwtv *vh = file_verifier(SECRET, "k1 HS256 first-secret-aaaaaaaaaaaaaaaaaaaaaa\n", NULL, NULL);
    char *cl = good_claims(), *tok;

    (void)state;
    assert_int_equal(jwtv_key_count(v), 4);
    assert_int_equal(jwtv_key_count(vh), 2);
    tok = lib_token(JWT_ALG_HS256, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", "k1", cl);
    expect(v, tok, 0, "ok");
    expect(vh, tok, 0, "ok");
    free(tok);
    expect_lib(v, 0, "ok", JWT_ALG_HS512, "second secret with spaces", "k2", cl);
    expect_lib(v, 0, "ok", JWT_ALG_RS256, rsa_priv, "k3", cl);
    expect_lib(v, 0, "ok", JWT_ALG_ES256, ec_priv, "k4", cl);
    /* Right alg, right secret, kid of another key. */
    expect_lib(v, -EACCES, "unknown kid", JWT_ALG_HS256, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", "k5", cl);
    expect_lib(v, -EACCES, "bad signature", JWT_ALG_HS512, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", "k2", cl);
    /* The RS key's kid on an HS token. */
    expect_lib(v, -EACCES, "alg mismatch", JWT_ALG_HS256, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", "k3", cl);
    /* Several keys, no HS secret, no kid: no way to choose. */
    expect_lib(v, -EACCES, "kid required", JWT_ALG_RS256, rsa_priv, NULL, cl);
    /* No kid with an HS secret configured: the secret. */
    tok = hs_token(cl);
    expect(vh, tok, 0, "ok");
    expect(v, tok, -EACCES, "kid required");
    free(tok);
    /* kid of the wrong type, empty, or too long. */
    expect_raw(v, -EACCES, "bad kid", "{\"alg\":\"HS256\",\"kid\":1}", cl, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", NULL);
    expect_raw(v, -EACCES, "bad kid", "{\"alg\":\"HS256\",\"kid\":\"\"}", cl, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", NULL);
    {
        char head[300];
        snprintf(head, sizeof head, "{\"alg\":\"HS256\",\"kid\":\"%0*d\"}", JWTV_MAX_KID + 1, 0);
        expect_raw(v, -EACCES, "bad kid", head, cl, "first-secret-aaaaaaaaaaaaaaaaaaaaaa", NULL);
    }
    free(cl);
    jwtv_free(vh);
    jwtv_free(v);
}

/* ---- iss / aud / sub ---------------------------------------------------------- */

static void test_iss(void **state)
{
    jwtv *v = hs_verifier("https://auth.example", NULL);
    jwtv *open = hs_verifier(NULL, NULL);
    char *cl;

    (void)state;
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld,\"iss\":\"https://auth.example\"}", (long long)now + 60);
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"iss\":\"https://evil.example\"}", (long long)now + 60);
    expect_claims(v, cl, -EACCES, "iss mismatch");
    expect_claims(open, cl, 0, "ok");
    free(cl);
    expect_fmt(v, -EACCES, "iss mismatch", "{\"sub\":\"a\",\"exp\":%lld}", (long long)now + 60);
    expect_fmt(v, -EACCES, "iss mismatch", "{\"sub\":\"a\",\"exp\":%lld,\"iss\":[\"https://auth.example\"]}", (long long)now + 60);
    jwtv_free(open);
    jwtv_free(v);
}

static void test_aud(void **state)
{
    jwtv *v = hs_verifier(NULL, "tether-gw");
    char big[2048];
    size_t n;

    (void)state;
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":\"tether-gw\"}", (long long)now + 60);
    expect_fmt(v, -EACCES, "aud mismatch", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":\"other\"}", (long long)now + 60);
    expect_fmt(v, 0, "ok", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":[\"other\",\"tether-gw\"]}", (long long)now + 60);
    expect_fmt(v, -EACCES, "aud mismatch", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":[\"other\",7]}", (long long)now + 60);
    expect_fmt(v, -EACCES, "aud mismatch", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":[]}", (long long)now + 60);
    expect_fmt(v, -EACCES, "aud mismatch", "{\"sub\":\"a\",\"exp\":%lld}", (long long)now + 60);
    expect_fmt(v, -EACCES, "aud mismatch", "{\"sub\":\"a\",\"exp\":%lld,\"aud\":{\"tether-gw\":1}}", (long long)now + 60);
    /* An audience list past the bound is refused even if it names us. */
    n = (size_t)snprintf(big, sizeof big, "{\"sub\":\"a\",\"exp\":%lld,\"aud\":[", (long long)now + 60);
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "\"x%d\",", i);
    snprintf(big + n, sizeof big - n, "\"tether-gw\"]}");
    expect_claims(v, big, -EACCES, "aud mismatch");
    jwtv_free(v);
}

static void test_sub(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    char name[JWTV_MAX_SUB + 2];

    (void)state;
    expect_fmt(v, -EACCES, "sub missing", "{\"exp\":%lld}", (long long)now + 60);
    expect_fmt(v, -EACCES, "bad sub", "{\"sub\":\"\",\"exp\":%lld}", (long long)now + 60);
    expect_fmt(v, -EACCES, "bad sub", "{\"sub\":42,\"exp\":%lld}", (long long)now + 60);
    expect_fmt(v, -EACCES, "bad sub", "{\"sub\":\"a\\nb\",\"exp\":%lld}", (long long)now + 60);
    memset(name, 'u', JWTV_MAX_SUB);
    name[JWTV_MAX_SUB] = '\0';
    expect_fmt(v, 0, "ok", "{\"sub\":\"%s\",\"exp\":%lld}", name, (long long)now + 60);
    name[JWTV_MAX_SUB] = 'u';
    name[JWTV_MAX_SUB + 1] = '\0';
    expect_fmt(v, -EACCES, "bad sub", "{\"sub\":\"%s\",\"exp\":%lld}", name, (long long)now + 60);
    expect_fmt(v, 0, "ok", "{\"sub\":\"j\\u00fcrgen\",\"exp\":%lld}", (long long)now + 60);
    /* lib/names.h: DEL, C1, bidirectional controls. */
    static const char *bad[] = { "a\\u007fb", "a\\u0085b", "\\u202enimda", "a\\u061cb", "a\\u200eb",
                                 "a\\u200fb", "a\\u2066b", "a\\u2069b" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_fmt(v, -EACCES, "bad sub", "{\"sub\":\"%s\",\"exp\":%lld}", bad[i], (long long)now + 60);
    expect_fmt(v, 0, "ok", "{\"sub\":\"\\u0639\\u0644\\u064a \\u4e2d \\ud83d\\ude00\",\"exp\":%lld}",
               (long long)now + 60);
    jwtv_free(v);
}

/* ---- rooms ------------------------------------------------------------------- */

static void verify_ok(const jwtv *v, const char *claims, jwt_claims *c)
{
    char *tok = hs_token(claims);
    const char *why = NULL;
    int rc = jwtv_verify(v, tok, now, c, &why);

    if (rc != 0)
        fail_msg("verify failed: %s", why);
    free(tok);
}

static void test_rooms(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    jwt_claims c;
    char *cl;

    (void)state;
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"rooms\":[\"lobby\",\"team-*\"]}", (long long)now + 60);
    verify_ok(v, cl, &c);
    free(cl);
    assert_int_equal(c.rooms_present, 1);
    assert_int_equal(c.nrooms, 2);
    assert_string_equal(c.rooms[0], "lobby");
    assert_string_equal(c.rooms[1], "team-*");
    assert_true(jwt_claims_room_allowed(&c, "lobby"));
    assert_false(jwt_claims_room_allowed(&c, "lobby2"));
    assert_false(jwt_claims_room_allowed(&c, "lobb"));
    assert_true(jwt_claims_room_allowed(&c, "team-"));
    assert_true(jwt_claims_room_allowed(&c, "team-red"));
    assert_false(jwt_claims_room_allowed(&c, "team"));
    assert_false(jwt_claims_room_allowed(&c, "other"));
    assert_false(jwt_claims_room_allowed(&c, NULL));
    jwt_claims_clear(&c);
    assert_null(c.rooms);

    /* Absent: every room. Empty list: none. "*": every room. */
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld}", (long long)now + 60);
    verify_ok(v, cl, &c);
    free(cl);
    assert_int_equal(c.rooms_present, 0);
    assert_true(jwt_claims_room_allowed(&c, "anything"));
    jwt_claims_clear(&c);
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"rooms\":[]}", (long long)now + 60);
    verify_ok(v, cl, &c);
    free(cl);
    assert_int_equal(c.rooms_present, 1);
    assert_int_equal(c.nrooms, 0);
    assert_false(jwt_claims_room_allowed(&c, "lobby"));
    jwt_claims_clear(&c);
    cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"rooms\":[\"*\"]}", (long long)now + 60);
    verify_ok(v, cl, &c);
    free(cl);
    assert_true(jwt_claims_room_allowed(&c, "x"));
    jwt_claims_clear(&c);

    /* Malformed claims refuse the token rather than guess. */
    static const char *const bad[] = { "\"lobby\"", "null", "{}", "[1]", "[\"\"]", "[\"a*b\"]",
                                       "[\"a**\"]", "[\"sp ace\"]", "[[\"a\"]]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cl = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"rooms\":%s}", (long long)now + 60, bad[i]);
        expect_claims(v, cl, -EACCES, "bad rooms");
        free(cl);
    }

    /* The bound: 1024 entries pass, 1025 do not. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t cap = 16 * (JWTV_MAX_ROOMS + 2), n;
        char *buf = malloc(cap);
        assert_non_null(buf);
        n = (size_t)snprintf(buf, cap, "{\"sub\":\"a\",\"exp\":%lld,\"rooms\":[", (long long)now + 60);
        for (int i = 0; i < JWTV_MAX_ROOMS + extra; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s\"r\"", i ? "," : "");
        snprintf(buf + n, cap - n, "]}");
        if (extra) {
            expect_claims(v, buf, -EACCES, "bad rooms");
        } else {
            verify_ok(v, buf, &c);
            assert_int_equal(c.nrooms, JWTV_MAX_ROOMS);
            assert_true(jwt_claims_room_allowed(&c, "r"));
            jwt_claims_clear(&c);
        }
        free(buf);
    }

    assert_true(jwt_claims_pattern_valid("a.b_c:d@e/f-g"));
    assert_true(jwt_claims_pattern_valid("*"));
    assert_false(jwt_claims_pattern_valid(""));
    assert_false(jwt_claims_pattern_valid(NULL));
    jwtv_free(v);
}

/* ---- hostile input ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_garbage(void **state)
{
    jwtv *v = hs_verifier(NULL, NULL);
    char *cl = good_claims(), *good = hs_token(cl), *tok;
    static const struct { const char *tok, *why; } cases[] = {
        { "", "empty token" },
        { ".", "malformed token" },
        { "..", "malformed token" },
        { "...", "malformed token" },
        { "a.b", "malformed token" },
        { "a.b.c.d", "malformed token" },
        { "abc", "malformed token" },
        { ".eyJ9.", "malformed token" },
        { "eyJhbGciOiJIUzI1NiJ9..sig", "malformed token" },
        { "e.e.e", "bad header" },                      /* impossible base64 length */
        { "eyJ+.e30.AAAA", "bad header" },              /* standard-alphabet char */
        { "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA", "bad header" }, /* padding */
        { "W10.e30.AAAA", "bad header" },               /* [] */
        { "bnVsbA.e30.AAAA", "bad header" },            /* null */
        { "e30.e30.AAAA", "alg missing" },              /* {} */
        { "eyJhbGciOjF9.e30.AAAA", "alg missing" },     /* {"alg":1} */
        { "eyJhbGciOiJIUzI1NiJ9.e30.", "bad signature" },
        { "eyJhbGciOiJYWDk5OSJ9.e30.AAAA", "alg mismatch" }, /* {"alg":"XX999"} */
    };
    const char *why;

    (void)state;
    expect(v, NULL, -EACCES, "no token");
    assert_int_equal(jwtv_verify(NULL, good, now, NULL, &why), -EACCES);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(v, cases[i].tok, -EACCES, cases[i].why);

    /* Duplicate members: the header's alg, the payload's exp. */
    expect_raw(v, -EACCES, "bad header", "{\"alg\":\"none\",\"alg\":\"HS256\"}", cl, SECRET, NULL);
    {
        char *dup = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"exp\":%lld}", (long long)now - 3600, (long long)now + 600);
        expect_raw(v, -EACCES, "bad payload", "{\"alg\":\"HS256\"}", dup, SECRET, NULL);
        free(dup);
    }
    expect_raw(v, -EACCES, "bad payload", "{\"alg\":\"HS256\"}", "[1,2]", SECRET, NULL);
    /* jansson refuses \u0000 in strings, so no claim can smuggle a NUL. */
    expect_raw(v, -EACCES, "bad payload", "{\"alg\":\"HS256\"}", "{\"sub\":\"a\\u0000b\",\"exp\":9999999999}", SECRET, NULL);
    expect_raw(v, -EACCES, "bad payload", "{\"alg\":\"HS256\"}", "{\"sub\":", SECRET, NULL);
    expect_raw(v, -EACCES, "crit header", "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", cl, SECRET, NULL);
    expect_raw(v, -EACCES, "bad typ", "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", cl, SECRET, NULL);
    expect_raw(v, 0, "ok", "{\"alg\":\"HS256\",\"typ\":\"jwt\"}", cl, SECRET, NULL);
    /* The hand-built path itself is sound: same token with a good MAC passes. */
    expect_raw(v, 0, "ok", "{\"alg\":\"HS256\"}", cl, SECRET, NULL);

    /* Huge: a valid token padded past the bound with a long claim. */
    {
        size_t pad = JWTV_MAX_TOKEN;
        char *filler = malloc(pad + 1), *big;
        memset(filler, 'x', pad);
        filler[pad] = '\0';
        big = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"pad\":\"%s\"}", (long long)now + 60, filler);
        tok = hs_token(big);
        assert_true(strlen(tok) > JWTV_MAX_TOKEN);
        expect(v, tok, -EACCES, "token too long");
        free(tok);
        free(big);
        /* and one just under it still verifies */
        filler[JWTV_MAX_TOKEN / 2] = '\0';
        big = xasprintf("{\"sub\":\"a\",\"exp\":%lld,\"pad\":\"%s\"}", (long long)now + 60, filler);
        tok = hs_token(big);
        assert_true(strlen(tok) <= JWTV_MAX_TOKEN);
        expect(v, tok, 0, "ok");
        free(tok);
        free(big);
        free(filler);
    }

    /* Every one-character change of a good token is refused. */
    {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= \x01\xff";
        size_t len = strlen(good);
        char *m = malloc(len + 1);
        for (size_t pos = 0; pos < len; pos++)
            for (size_t a = 0; a < sizeof alphabet - 1; a++) {
                if (good[pos] == alphabet[a])
                    continue;
                memcpy(m, good, len + 1);
                m[pos] = alphabet[a];
                if (jwtv_verify(v, m, now, NULL, &why) != -EACCES)
                    fail_msg("mutated token accepted at %zu: %s", pos, m);
            }
        /* Truncations too. */
        for (size_t cut = 0; cut < len; cut++) {
            memcpy(m, good, cut);
            m[cut] = '\0';
            assert_int_equal(jwtv_verify(v, m, now, NULL, &why), -EACCES);
        }
        free(m);
    }

    /* Random bytes and random base64url-shaped strings: refused, never crash. */
    for (int i = 0; i < 20000; i++) {
        char buf[300];
        size_t n = next_rand() % (sizeof buf - 1);
        for (size_t k = 0; k < n; k++) {
            uint64_t r = next_rand();
            if (i & 1)
                buf[k] = (char)(r % 255 + 1);
            else
                buf[k] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."[r % 65];
        }
        buf[n] = '\0';
        assert_int_equal(jwtv_verify(v, buf, now, NULL, &why), -EACCES);
    }
    free(good);
    free(cl);
    jwtv_free(v);
}

/* ---- key file ---------------------------------------------------------------- */

static void test_keyfile_errors(void **state)
{
    static const struct { const char *text, *want1, *want2; } cases[] = {
        { "# header\n\nk1 HS256\n", "line 3", "expected" },
        { "k1\n", "line 1", "expected" },
        { "k1 HS256 s\nk2 XS256 s\n", "line 2", "unknown alg" },
        { "k1 none s\n", "line 1", "unknown alg" },
        { "k1 HS256 s\nk1 HS512 t\n", "line 2", "duplicate kid" },
        { "k1 RS256 missing.pem\n", "line 1", "cannot read" },
        { "k1 RS256 ec.pem\n", "line 1", "needs an RSA key;" },
        { "k1 ES256 rsa.pem\n", "line 1", "needs an EC key;" },
        { "k1 ES256 ec384.pem\n", "line 1", "curve" },
        { "k1 ES512 ec.pem\n", "line 1", "curve" },
        { "k1 RS256 rsa1024.pem\n", "line 1", "at least 2048 bits" },
        { "k1 RS256 rsa_private.pem\n", "line 1", "no PEM public key" },
        { "k1 RS256 keys.txt\n", "line 1", "no PEM public key" },
        { "# only comments\n\n   \n", "no key", "keys.txt" },
    };
    char err[512];
    char *p = tmp_path("keys.txt");
    char kid[JWTV_MAX_KID + 40];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("keys.txt", cases[i].text);
        err[0] = '\0';
        assert_null(jwtv_new(NULL, p, NULL, NULL, err, sizeof err));
        if (!strstr(err, cases[i].want1) || !strstr(err, cases[i].want2))
            fail_msg("case %zu: error '%s' lacks '%s'/'%s'", i, err, cases[i].want1, cases[i].want2);
        /* The HS secret does not excuse a broken key file. */
        assert_null(jwtv_new(SECRET, p, NULL, NULL, err, sizeof err));
    }
    snprintf(kid, sizeof kid, "%0*d HS256 s\n", JWTV_MAX_KID + 1, 0);
    write_file("keys.txt", kid);
    assert_null(jwtv_new(NULL, p, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "line 1"));
    assert_null(jwtv_new(NULL, "/nonexistent/tether-keys", NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "TETHER_JWT_KEYS"));
    assert_null(jwtv_new(NULL, NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "TETHER_JWT_SECRET"));
    assert_null(jwtv_new("", "", "iss", "aud", err, sizeof err));
    assert_null(jwtv_new(NULL, NULL, NULL, NULL, NULL, 0));
    free(p);
}

static void test_keyfile_syntax_ok(void **state)
{
    jwtv *v = file_verifier(NULL,
                            "# comment\r\n"
                            "\r\n"
                            "   \t# indented comment\n"
                            "  a\tHS256\t  spaced  secret \r\n"
                            "b HS384 #not-a-comment\n"
                            "c ES256 ec.pem", /* no final newline */
                            NULL, NULL);
    char *cl = good_claims();

    (void)state;
    assert_int_equal(jwtv_key_count(v), 3);
    expect_lib(v, 0, "ok", JWT_ALG_HS256, "spaced  secret", "a", cl);
    expect_lib(v, 0, "ok", JWT_ALG_HS384, "#not-a-comment", "b", cl);
    expect_lib(v, 0, "ok", JWT_ALG_ES256, ec_priv, "c", cl);
    free(cl);
    jwtv_free(v);
}

/* ---- minting ------------------------------------------------------------------ */

static void test_mint_roundtrip(void **state)
{
    static const char *const rooms[] = { "lobby", "team-*" };
    jwtv *v = file_verifier(NULL, "dev HS256 " SECRET "\n", "tether", "gw");
    jwtv *plain = hs_verifier(NULL, NULL);
    char *tok;
    jwt_claims c;
    const char *why;

    (void)state;
    tok = jwt_mint_hs256(SECRET, "bob", rooms, 2, now + 300, "tether", "gw", "dev");
    assert_non_null(tok);
    assert_int_equal(jwtv_verify(v, tok, now, &c, &why), 0);
    assert_string_equal(c.sub, "bob");
    assert_int_equal(c.exp, now + 300);
    assert_true(c.iat >= now && c.iat <= now + 5);
    assert_int_equal(c.nrooms, 2);
    assert_true(jwt_claims_room_allowed(&c, "lobby"));
    assert_true(jwt_claims_room_allowed(&c, "team-blue"));
    assert_false(jwt_claims_room_allowed(&c, "secret"));
    jwt_claims_clear(&c);
    /* Expired once its time has passed. */
    assert_int_equal(jwtv_verify(v, tok, now + 300 + JWTV_LEEWAY_S, &c, &why), -EKEYEXPIRED);
    free(tok);

    tok = jwt_mint_hs256(SECRET, "carol", NULL, 0, now + 60, NULL, NULL, NULL);
    assert_non_null(tok);
    assert_int_equal(jwtv_verify(plain, tok, now, &c, &why), 0);
    assert_int_equal(c.rooms_present, 0);
    jwt_claims_clear(&c);
    /* Without kid/iss/aud the strict verifier refuses it. */
    assert_int_equal(jwtv_verify(v, tok, now, NULL, &why), -EACCES);
    assert_string_equal(why, "iss mismatch");
    free(tok);

    {
        static const char *const badroom[] = { "ok", "no spaces" };
        assert_null(jwt_mint_hs256(NULL, "bob", NULL, 0, now + 60, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256("", "bob", NULL, 0, now + 60, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256(SECRET, "", NULL, 0, now + 60, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256(SECRET, NULL, NULL, 0, now + 60, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256(SECRET, "bob", badroom, 2, now + 60, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256(SECRET, "bob", NULL, 0, 0, NULL, NULL, NULL));
        assert_null(jwt_mint_hs256(SECRET, "bob", NULL, 0, now + 60, NULL, NULL, ""));
    }
    jwtv_free(plain);
    jwtv_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256_valid),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_expired_but_otherwise_invalid),
        cmocka_unit_test(test_exp_missing_or_bad),
        cmocka_unit_test(test_nbf_and_iat),
        cmocka_unit_test(test_wrong_secret_and_tampering),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_es256_es384),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_iss),
        cmocka_unit_test(test_aud),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_keyfile_errors),
        cmocka_unit_test(test_keyfile_syntax_ok),
        cmocka_unit_test(test_mint_roundtrip),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
