/* fuzz_jwt.c -- libFuzzer target for the gateway's JWT checker (lib/jwtcheck.c).
 *
 * One verifier, built once, holds every kind of key the checker takes: an
 * HS256 secret (TETHER_JWT_SECRET: tokens without kid) and a key file
 * (TETHER_JWT_KEYS) with an RS256 and an ES256 public key and a second, HS384
 * secret. It requires an issuer and an audience. The private halves of the
 * fixed test keys below let the target sign what it builds.
 *
 * An input is one of:
 *   - a raw token (anything not starting with 'S' or 'M'), verified as is;
 *   - "S<k>\n<header JSON>\n<payload JSON>": header and payload are encoded
 *     and signed with key k ('0' the HS256 secret, '1' RS256, '2' ES256,
 *     '3' HS384; an empty header line gets the key's usual header), so the
 *     fuzzer explores claims (odd types, huge numbers, exp/nbf/iat edges,
 *     alg none, kid games) behind a valid signature;
 *   - "M<sub>\n<room>\n<room>...": jwt_mint_hs256's input.
 *
 * FUZZ_VERBOSE=1 prints each verdict, to check what a new seed reaches.
 *
 * Beyond "no crash, no leak", it abort()s unless:
 *   - a refused token leaves the claims zeroed and gives a reason;
 *   - an accepted token (0, or -EKEYEXPIRED) carries a signature libjwt itself
 *     verifies with the key its header designates and with that key's
 *     algorithm; the same token with one signature character changed is
 *     refused;
 *   - its claims are within the limits: sub 1..JWTV_MAX_SUB bytes of UTF-8
 *     without control characters and equal to the payload's; exp, nbf and iat
 *     NumericDates with the leeway respected (expired exactly when the result
 *     says so); iss and aud the configured ones; rooms valid patterns, at
 *     most JWTV_MAX_ROOMS, each granting its own room;
 *   - a minted token verifies with the same sub and rooms, and minting
 *     refuses a sub or room the checker would refuse.
 */
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jwtcheck.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_jwt: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#define NOW 1800000000LL          /* 2027-01-15: the clock of raw and signed inputs */
#define MAX_DATE 253402300799LL   /* 9999-12-31T23:59:59Z */
#define HS_SECRET "fuzz-hs256-secret-0123456789abcdef"
#define HS2_SECRET "fuzz-hs384-second-secret"
#define ISS "https://issuer.test"
#define AUD "tether"

/* Test keys, generated for this target only. */
static const char rs_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCRmG/NlVc3E9c/\n"
    "QWZ2aj+zmIDgdNln80K2hfLFRm9eQRglswzrZEnUYCIP4Q5kvVCnCNJ/jnBJqi5O\n"
    "6Xq1hbarPMLiXwzQKfIXnjJ7H5gOQGw5hvSPxoTjzrRyVLL4G47FMPI3sEJpwRy4\n"
    "JH3QRn/4zDxUu87VQHodLfkoDXJVr7WCyjy96pxEKvfCNUdhW8XAc81zcvKd8B5k\n"
    "j3U15CuEdsjXkwcHVyyuGTtsB+Fwjbxs2YfzDwfdX5rcRZhzSZ3cHF4rPgnVDvsw\n"
    "kt4VPxxyrBHlRKbdSWVey0uJXg3TMyIMFiy0gTXL80VOMetYZrjramPUmnxPROCb\n"
    "D3LhhMeZAgMBAAECggEAAYpjtVMmQGyfkkTikZAgv6Ta//dNtAtYlueflVNygd/r\n"
    "hvSYPjlA+k9+PeshHeVp7c+vMapobbDVDYnHa8ym38bo7El++XZ7BMYsSxJxebOz\n"
    "mFHPAOKa1iiv4S+um4vVrLqzLgBQkLse/LX4I43wj8mkmRHurCrsGQIo2PH4VjWL\n"
    "R9xshWAqXsgrMCsMGq4GZ0RdBZ3+kcOSbaKMwLurDyVcABhNMz7rkc9QAvUJ5Knr\n"
    "+uNBKRMmWeRAMiWcvYz7EoCG6oQPPTa6ikln1wjeTti8aMdF/S76RTu7gWk4Rjg9\n"
    "Z2VgqG2hkRAtXHKE6avwa7iWAvcHp/x77+80HVEuTQKBgQDCG9dL0fAE2SUPpVb5\n"
    "TrBN3VKecFE6uE3nK6auTBk6R8AiKsia1gubw+zO/9VppIci0HKSHb0fThsxuS7S\n"
    "7QX80g5lH+dEszMXbVY4sovVmSE3obPC9KrGSm/+xezw6OEnABBwYcupKmvx0iv4\n"
    "S2Cd8ob15BaNTTMB7dqz19iKDQKBgQDABLCWoWRpDhXpCwxtvKkJvjhz6FJrFQFm\n"
    "x+a/nDStnhH6RGrpc9hCGzJiA099OFm9c0k2PFwMU5wvnLFfe8sUNe9WGLrj1Hc2\n"
    "dlONnCImKmK3ovdaNt4iVKfQBr5ln3D1LrmhBixGq0zrz0lwWaPO+KzJbt8tWcyZ\n"
    "7I62EJdMvQKBgCAnTHqaxA+JiMIWuVmC12GOj+j+4fXAIedxK6Mjp+oniIQgYiqD\n"
    "2lhrFAcWCdv+DQSPUusxUeqlnYuXCVKXQK6ofQnzRvPyWzw+OFIcAV3Yh9AXURey\n"
    "P7epDPQ/BQjDCsjTEeYLzRiwlkDwd6ghlFeVnRWOOs4dQ53GMLwpvQzhAoGAe5uJ\n"
    "Qa4rQSV8HUSrf4jPGCKHnLWVOLGQ8WUFuZsInir/T6fzWszkDcoMKOQQq3825ant\n"
    "GyjH6Hd6N3wbAmhiVmRR6Y6J4FfJVhndt28m3IK0gZo6uKxRWrA8RsHQlwKIaIzn\n"
    "miyrG+Lx5WrOz7AkrvuN3y2sJTmFaCDLzY/oldECgYEAnL61gBSnCp0kv3zeNUl3\n"
    "psjIyQeJaO1oXCNMzLrUEvGRc2pdsNSsckgkzM0qk6uUCd3P1ND69IjX3dHZKUKN\n"
    "2qhXQceDchnYWrVPVbvkCDPgzQAerKMuYyoTooCGfPULIYQFYtG44xHbum70wkYG\n"
    "sndIILTK4iWU3s0qcc51Sec=\n"
    "-----END PRIVATE KEY-----\n";

static const char es_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgw20zNG+OgZScYtqp\n"
    "RGJGbooUQ8BlJ0yhf/ra13aShqehRANCAATw4TK2WEHNg0HHqKRgC9FhW29G6cEU\n"
    "fOtcZ29iabdaT6b0+TVtlNyk0S/Wwduat1qGvpNfFFNYaboLtwWIShFX\n"
    "-----END PRIVATE KEY-----\n";

enum { K_HS, K_RS, K_ES, K_HS2, NKEYS };

static const struct {
    const char *kid;        /* NULL: no kid (the TETHER_JWT_SECRET key) */
    const char *alg;
    jwt_alg_t jalg;
    const char *hdr;        /* the usual header */
} keyinfo[NKEYS] = {
    { NULL, "HS256", JWT_ALG_HS256, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}" },
    { "rs1", "RS256", JWT_ALG_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rs1\"}" },
    { "es1", "ES256", JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"es1\"}" },
    { "hs2", "HS384", JWT_ALG_HS384, "{\"alg\":\"HS384\",\"kid\":\"hs2\"}" },
};

static jwtv *v;
static int verbose;  /* FUZZ_VERBOSE set: each verdict on stderr (for writing seeds) */
static EVP_PKEY *rs_key, *es_key;
static char *pub_pem[NKEYS];  /* RS/ES: the public key as libjwt takes it */

static EVP_PKEY *load_private(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    CHECK(k != NULL);
    return k;
}

/* Writes k's public half to path and returns it as a PEM string. */
static char *write_public(EVP_PKEY *k, const char *path)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data, *copy;
    long n;
    FILE *f;

    CHECK(mem && PEM_write_bio_PUBKEY(mem, k) == 1);
    n = BIO_get_mem_data(mem, &data);
    CHECK(n > 0 && (copy = strndup(data, (size_t)n)));
    BIO_free(mem);
    CHECK((f = fopen(path, "w")) && fputs(copy, f) >= 0 && fclose(f) == 0);
    return copy;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/fuzz_jwt.XXXXXX", rs[64], es[64], kf[64], err[512];
    FILE *f;

    (void)argc;
    (void)argv;
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    CHECK(mkdtemp(dir));
    snprintf(rs, sizeof rs, "%s/rs.pem", dir);
    snprintf(es, sizeof es, "%s/es.pem", dir);
    snprintf(kf, sizeof kf, "%s/keys", dir);
    rs_key = load_private(rs_pem);
    es_key = load_private(es_pem);
    pub_pem[K_RS] = write_public(rs_key, rs);
    pub_pem[K_ES] = write_public(es_key, es);
    CHECK((f = fopen(kf, "w")));
    fprintf(f, "# fuzz_jwt's keys\nrs1 RS256 rs.pem\nes1 ES256 %s\n\nhs2 HS384 %s\n", es, HS2_SECRET);
    CHECK(fclose(f) == 0);
    v = jwtv_new(HS_SECRET, kf, ISS, AUD, err, sizeof err);
    if (!v)
        fprintf(stderr, "fuzz_jwt: jwtv_new: %s\n", err);
    CHECK(v && jwtv_key_count(v) == 4);
    unlink(rs);
    unlink(es);
    unlink(kf);
    rmdir(dir);
    return 0;
}

/* ---- encoding and signing --------------------------------------------------- */

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

static int b64url_val(char c)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? strchr(a, c) : NULL;
    return p ? (int)(p - a) : -1;
}

/* Lenient decoder of the target's own (the checker's is strict). */
static size_t b64url_dec(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int x = b64url_val(s[i]);
        if (x < 0)
            break;
        acc = acc << 6 | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* Signs msg (n bytes) with key k into sig; returns its length, 0 on failure. */
static size_t sign(int k, const char *msg, size_t n, unsigned char *sig)
{
    unsigned int len = 0;
    size_t slen = 512;
    unsigned char der[512];
    const unsigned char *p = der;
    EVP_MD_CTX *md;
    ECDSA_SIG *es;
    int ok;

    if (k == K_HS || k == K_HS2) {
        const char *secret = k == K_HS ? HS_SECRET : HS2_SECRET;
        HMAC(k == K_HS ? EVP_sha256() : EVP_sha384(), secret, (int)strlen(secret), (const unsigned char *)msg, n,
             sig, &len);
        return len;
    }
    CHECK((md = EVP_MD_CTX_new()));
    ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k == K_RS ? rs_key : es_key) == 1 &&
         EVP_DigestSign(md, k == K_RS ? sig : der, &slen, (const unsigned char *)msg, n) == 1;
    EVP_MD_CTX_free(md);
    CHECK(ok);
    if (k == K_RS)
        return slen;
    /* JWS takes ECDSA signatures as r || s, 32 bytes each for P-256. */
    CHECK((es = d2i_ECDSA_SIG(NULL, &p, (long)slen)));
    ok = BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32;
    ECDSA_SIG_free(es);
    CHECK(ok);
    return 64;
}

/* ---- checks ------------------------------------------------------------------ */

static int utf8_ok(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

static int sub_ok(const char *s, size_t n)
{
    if (n == 0 || n > JWTV_MAX_SUB || strlen(s) != n || !utf8_ok(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* A NumericDate claim of the payload in [0, MAX_DATE], as the checker reads it. */
static int date_of(json_t *p, const char *name, int64_t *out)
{
    json_t *j = json_object_get(p, name);
    if (json_is_integer(j) && json_integer_value(j) >= 0 && json_integer_value(j) <= MAX_DATE) {
        *out = json_integer_value(j);
        return 1;
    }
    if (json_is_real(j) && json_real_value(j) >= 0 && json_real_value(j) <= (double)MAX_DATE) {
        *out = (int64_t)json_real_value(j);
        return 1;
    }
    return 0;
}

/* The key the token's header designates (kid, else the HS256 secret), or -1. */
static int designated_key(const char *token, size_t hlen)
{
    unsigned char raw[JWTV_MAX_TOKEN];
    size_t n = b64url_dec(token, hlen, raw);
    json_t *h = json_loadb((const char *)raw, n, JSON_ALLOW_NUL, NULL);
    const char *kid = json_string_value(json_object_get(h, "kid"));
    int k = -1;

    if (h && !json_object_get(h, "kid"))
        k = K_HS;
    for (int i = K_RS; kid && i < NKEYS; i++)
        if (strcmp(kid, keyinfo[i].kid) == 0)
            k = i;
    json_decref(h);
    return k;
}

static void check_claims(json_t *p, int64_t now, int64_t exp, const jwt_claims *c)
{
    int64_t nbf, iat;

    CHECK(sub_ok(c->sub, strlen(c->sub)));
    CHECK(json_is_string(json_object_get(p, "sub")) && strcmp(json_string_value(json_object_get(p, "sub")), c->sub) == 0);
    CHECK(exp == c->exp);
    if (json_object_get(p, "nbf"))
        CHECK(date_of(p, "nbf", &nbf) && nbf == c->nbf && nbf <= now + JWTV_LEEWAY_S);
    else
        CHECK(c->nbf == 0);
    if (json_object_get(p, "iat"))
        CHECK(date_of(p, "iat", &iat) && iat == c->iat && iat <= now + JWTV_LEEWAY_S);
    else
        CHECK(c->iat == 0);
    CHECK(json_is_string(json_object_get(p, "iss")) && strcmp(json_string_value(json_object_get(p, "iss")), ISS) == 0);
    json_t *aud = json_object_get(p, "aud");
    CHECK(json_is_string(aud) || json_is_array(aud));
    CHECK(c->rooms_present == (json_object_get(p, "rooms") != NULL));
    CHECK(c->nrooms <= JWTV_MAX_ROOMS && (c->nrooms == 0 || c->rooms));
    if (c->rooms_present)
        CHECK(c->nrooms == json_array_size(json_object_get(p, "rooms")));
    for (size_t i = 0; i < c->nrooms; i++) {
        char room[130];
        size_t n = strlen(c->rooms[i]);
        CHECK(jwt_claims_pattern_valid(c->rooms[i]));
        CHECK(strcmp(c->rooms[i], json_string_value(json_array_get(json_object_get(p, "rooms"), i))) == 0);
        if (n > 0 && c->rooms[i][n - 1] == '*') {
            if (n == 1)
                continue;  /* "*": every room */
            n--;
        }
        CHECK(n < sizeof room);
        memcpy(room, c->rooms[i], n);
        room[n] = '\0';
        CHECK(jwt_claims_room_allowed(c, room));
    }
    if (!c->rooms_present)
        CHECK(jwt_claims_room_allowed(c, "any-room"));
}

/* An accepted or expired token (c: its claims, NULL when expired). */
static void check_accepted(const char *token, int64_t now, int rc, const jwt_claims *c)
{
    size_t len = strlen(token);
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    int k;
    jwt_t *jwt = NULL;
    unsigned char raw[JWTV_MAX_TOKEN];
    json_t *p;
    int64_t exp = 0;

    CHECK(d1 && d2 && !strchr(d2 + 1, '.') && len <= JWTV_MAX_TOKEN);
    k = designated_key(token, (size_t)(d1 - token));
    CHECK(k >= 0);
    /* libjwt, on its own, with the designated key and its algorithm. */
    if (k == K_HS || k == K_HS2) {
        const char *secret = k == K_HS ? HS_SECRET : HS2_SECRET;
        CHECK(jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) == 0);
    } else {
        CHECK(jwt_decode(&jwt, token, (const unsigned char *)pub_pem[k], (int)strlen(pub_pem[k])) == 0);
    }
    CHECK(jwt && jwt_get_alg(jwt) == keyinfo[k].jalg);
    jwt_free(jwt);

    /* The claims, read again from the payload. An expired token's are not
     * handed out (c is NULL), but its expiry must be the reason. */
    p = json_loadb((const char *)raw, b64url_dec(d1 + 1, (size_t)(d2 - d1 - 1), raw), JSON_ALLOW_NUL, NULL);
    CHECK(json_is_object(p));
    CHECK(date_of(p, "exp", &exp));
    CHECK(rc == 0 ? now < exp + JWTV_LEEWAY_S : now >= exp + JWTV_LEEWAY_S);
    if (c)
        check_claims(p, now, exp, c);
    json_decref(p);

    /* The same token with one signature character changed is refused. */
    if (*(d2 + 1)) {
        char *t = strdup(token);
        size_t at = (size_t)(d2 + 1 - token) + (len - (size_t)(d2 + 1 - token)) / 2;
        jwt_claims c2;
        const char *why = NULL;
        CHECK(t);
        t[at] = t[at] == 'A' ? 'B' : 'A';
        CHECK(jwtv_verify(v, t, now, &c2, &why) == -EACCES && why);
        free(t);
    }
}

static void verify(const char *token, int64_t now)
{
    jwt_claims c;
    const char *why = NULL;
    int rc;

    memset(&c, 0x5a, sizeof c);
    rc = jwtv_verify(v, token, now, &c, &why);
    CHECK(why != NULL);
    if (verbose)
        fprintf(stderr, "fuzz_jwt: %d %s\n", rc, why);
    CHECK(rc == 0 || rc == -EKEYEXPIRED || rc == -EACCES);
    if (rc != 0) {
        CHECK(c.sub[0] == '\0' && c.rooms == NULL && c.nrooms == 0 && !c.rooms_present && c.exp == 0);
        if (rc == -EACCES)
            return;
    }
    check_accepted(token, now, rc, rc == 0 ? &c : NULL);
    jwt_claims_clear(&c);
}

/* "S<k>\n<header>\n<payload>": encoded, signed, verified. */
static void signed_input(const char *s, size_t n)
{
    static char token[3 * JWTV_MAX_TOKEN];
    unsigned char sig[512];
    const char *hdr, *pay, *nl;
    size_t hlen, plen, o;
    int k;

    if (n < 3 || s[1] < '0' || s[1] >= '0' + NKEYS || s[2] != '\n')
        return;
    k = s[1] - '0';
    hdr = s + 3;
    nl = memchr(hdr, '\n', n - 3);
    if (!nl)
        return;
    hlen = (size_t)(nl - hdr);
    pay = nl + 1;
    plen = n - (size_t)(pay - s);
    if (hlen == 0) {
        hdr = keyinfo[k].hdr;
        hlen = strlen(hdr);
    }
    if (4 * (hlen + plen) / 3 + 700 > sizeof token)
        return;
    o = b64url((const unsigned char *)hdr, hlen, token);
    token[o++] = '.';
    o += b64url((const unsigned char *)pay, plen, token + o);
    size_t slen = sign(k, token, o, sig);
    CHECK(slen > 0);
    token[o++] = '.';
    b64url(sig, slen, token + o);
    verify(token, NOW);
}

/* "M<sub>\n<room>...": minted, then verified. */
static void mint_input(const char *s, size_t n)
{
    char buf[4096], *rooms[16], *sub, *p;
    size_t nrooms = 0;
    int valid;

    if (n >= sizeof buf)
        return;
    memcpy(buf, s + 1, n - 1);
    buf[n - 1] = '\0';
    sub = buf;
    p = strchr(buf, '\n');
    while (p && nrooms < 16) {
        *p++ = '\0';
        rooms[nrooms++] = p;
        p = strchr(p, '\n');
    }
    if (p)
        return;
    valid = sub_ok(sub, strlen(sub));
    for (size_t i = 0; i < nrooms; i++)
        valid = valid && jwt_claims_pattern_valid(rooms[i]);
    int64_t now = (int64_t)time(NULL);
    char *tok = jwt_mint_hs256(HS_SECRET, sub, (const char *const *)rooms, nrooms, now + 3600, ISS, AUD, NULL);
    if (!valid)
        CHECK(tok == NULL);
    if (!tok)
        return;
    jwt_claims c;
    const char *why = NULL;
    CHECK(jwtv_verify(v, tok, now, &c, &why) == 0);
    CHECK(strcmp(c.sub, sub) == 0 && c.exp == now + 3600);
    CHECK(c.rooms_present == (nrooms > 0) && c.nrooms == nrooms);
    for (size_t i = 0; i < nrooms; i++)
        CHECK(strcmp(c.rooms[i], rooms[i]) == 0);
    check_accepted(tok, now, 0, &c);
    jwt_claims_clear(&c);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char s[2 * JWTV_MAX_TOKEN + 1];

    if (size > 2 * JWTV_MAX_TOKEN)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (size > 0 && s[0] == 'S')
        signed_input(s, size);
    else if (size > 0 && s[0] == 'M')
        mint_input(s, size);
    else
        verify(s, NOW);
    return 0;
}
