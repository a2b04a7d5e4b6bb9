/* jwtcheck.c -- JWT verification and HS256 minting (see jwtcheck.h).
 *
 * The order of checks matters. The token is bounded and split by hand, the
 * header is decoded here (strict base64url, jansson rejecting duplicate
 * members) to learn `alg` and `kid`, and the key is chosen before libjwt sees
 * anything: libjwt would otherwise let the token pick the algorithm. Only a
 * token whose signature holds has its claims looked at, and expiry is judged
 * last, so -EKEYEXPIRED ("get a fresh token") is never said about a token that
 * is also wrong in some other way.
 */
#include "jwtcheck_int.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "names.h"

/* 9999-12-31T23:59:59Z: NumericDates beyond it are garbage, and bounding them
 * keeps every sum with the leeway far from overflow. */
#define JWTV_MAX_DATE 253402300799LL
#define JWTV_MAX_AUD 64

static const jwtv_alg algs[] = {
    { "HS256", JWT_ALG_HS256, KIND_HS, EVP_sha256, 0 },
    { "HS384", JWT_ALG_HS384, KIND_HS, EVP_sha384, 0 },
    { "HS512", JWT_ALG_HS512, KIND_HS, EVP_sha512, 0 },
    { "RS256", JWT_ALG_RS256, KIND_RS, EVP_sha256, 0 },
    { "RS384", JWT_ALG_RS384, KIND_RS, EVP_sha384, 0 },
    { "RS512", JWT_ALG_RS512, KIND_RS, EVP_sha512, 0 },
    { "ES256", JWT_ALG_ES256, KIND_ES, EVP_sha256, NID_X9_62_prime256v1 },
    { "ES384", JWT_ALG_ES384, KIND_ES, EVP_sha384, NID_secp384r1 },
    { "ES512", JWT_ALG_ES512, KIND_ES, EVP_sha512, NID_secp521r1 },
};

void jwtv_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const jwtv_alg *jwtv_alg_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (strcmp(algs[i].name, name) == 0)
            return &algs[i];
    return NULL;
}

void jwtv_key_wipe(jwtv_key *k)
{
    if (!k)
        return;
    if (k->key) {
        OPENSSL_cleanse(k->key, k->keylen);
        free(k->key);
    }
    k->key = NULL;
    k->keylen = 0;
}

/* ---- base64url ------------------------------------------------------------- */

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(char c)
{
    const char *p = c ? strchr(b64url_alphabet, c) : NULL;
    return p ? (int)(p - b64url_alphabet) : -1;
}

/* Decodes n chars of unpadded base64url. Strict: only the URL alphabet, no
 * padding, no impossible length, no stray bits in the last char, so each
 * byte string has exactly one accepted spelling. Returns a new NUL-terminated
 * buffer (length in *outlen) or NULL. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (n % 4 == 1)
        return NULL;
    out = malloc(n / 4 * 3 + 3);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            goto fail;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        goto fail;
    out[o] = '\0';
    *outlen = o;
    return out;
fail:
    free(out);
    return NULL;
}

/* A base64url segment holding a JSON object; NULL if it is anything else. */
static json_t *segment_object(const char *s, size_t n)
{
    size_t len;
    unsigned char *raw = b64url_decode(s, n, &len);
    json_t *j = NULL;

    if (!raw)
        return NULL;
    j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ---- verifier ---------------------------------------------------------------- */

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

jwtv *jwtv_new(const char *hs_secret, const char *keys_file, const char *iss,
               const char *aud, char *err, size_t errlen)
{
    jwtv *v = calloc(1, sizeof *v);
    int ok = 0;

    hs_secret = nonempty(hs_secret);
    keys_file = nonempty(keys_file);
    iss = nonempty(iss);
    aud = nonempty(aud);
    jwtv_seterr(err, errlen, "out of memory");
    if (!v || (iss && !(v->iss = strdup(iss))) || (aud && !(v->aud = strdup(aud))))
        goto out;
    if (hs_secret) {
        v->hs = calloc(1, sizeof *v->hs);
        if (!v->hs || !(v->hs->key = (unsigned char *)strdup(hs_secret)))
            goto out;
        v->hs->keylen = strlen(hs_secret);
        v->hs->alg = jwtv_alg_by_name("HS256");
    }
    if (keys_file && jwtv_load_key_file(v, keys_file, err, errlen) < 0)
        goto out;
    /* A key file without keys is a mistake even next to an HS secret. */
    if (keys_file && v->nkeys == 0) {
        jwtv_seterr(err, errlen, "TETHER_JWT_KEYS: no key in '%s'", keys_file);
        goto out;
    }
    if (!v->hs && v->nkeys == 0) {
        jwtv_seterr(err, errlen, "no JWT key: set TETHER_JWT_SECRET or TETHER_JWT_KEYS");
        goto out;
    }
    jwtv_seterr(err, errlen, "ok");
    ok = 1;
out:
    if (!ok) {
        jwtv_free(v);
        v = NULL;
    }
    return v;
}

void jwtv_free(jwtv *v)
{
    if (!v)
        return;
    jwtv_key_wipe(v->hs);
    free(v->hs);
    for (size_t i = 0; i < v->nkeys; i++)
        jwtv_key_wipe(&v->keys[i]);
    free(v->keys);
    free(v->iss);
    free(v->aud);
    free(v);
}

size_t jwtv_key_count(const jwtv *v)
{
    return v ? v->nkeys + (v->hs ? 1 : 0) : 0;
}

/* Checks the header and picks its key: by kid when the header has one
 * (unknown kid: none), else the HS secret, else the key file's only key.
 * Returns NULL with *kp set, or the reason for refusing the token. */
static const char *check_header(const jwtv *v, const json_t *hdr, const jwtv_key **kp)
{
    const json_t *alg = json_object_get(hdr, "alg"), *kid = json_object_get(hdr, "kid");
    const json_t *typ = json_object_get(hdr, "typ");
    const jwtv_key *k = NULL;

    if (!json_is_string(alg) || strlen(json_string_value(alg)) != json_string_length(alg))
        return "alg missing";
    if (strcasecmp(json_string_value(alg), "none") == 0)
        return "alg none";
    /* Extensions we would have to understand; we understand none. */
    if (json_object_get(hdr, "crit"))
        return "crit header";
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        return "bad typ";
    if (kid) {
        const char *s = json_string_value(kid);
        if (!s || !*s || json_string_length(kid) > JWTV_MAX_KID || strlen(s) != json_string_length(kid))
            return "bad kid";
        for (size_t i = 0; i < v->nkeys && !k; i++)
            if (strcmp(v->keys[i].kid, s) == 0)
                k = &v->keys[i];
        if (!k)
            return "unknown kid";
    } else if (v->hs) {
        k = v->hs;
    } else if (v->nkeys == 1) {
        k = &v->keys[0];
    } else {
        return "kid required";
    }
    /* The pin: the key decides the algorithm, never the token. An RS/ES key
     * therefore never verifies an HS token MACed with its public PEM. */
    if (strcmp(json_string_value(alg), k->alg->name) != 0)
        return "alg mismatch";
    *kp = k;
    return NULL;
}

/* Constant-time HMAC check. libjwt compares MACs with strcmp, which leaks
 * how many leading characters matched; checking here first means libjwt only
 * ever compares a MAC that is already known to be right. */
static int hmac_ok(const jwtv_key *k, const char *signed_part, size_t n, const unsigned char *sig, size_t siglen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!HMAC(k->alg->md(), k->key, (int)k->keylen, (const unsigned char *)signed_part, n, md, &mdlen))
        return 0;
    return siglen == mdlen && CRYPTO_memcmp(md, sig, mdlen) == 0;
}

/* A NumericDate (integer, or real as RFC 7519 allows) in [0, JWTV_MAX_DATE]. */
static int numeric_date(const json_t *j, int64_t *out)
{
    if (json_is_integer(j)) {
        json_int_t x = json_integer_value(j);
        if (x < 0 || x > JWTV_MAX_DATE)
            return -1;
        *out = (int64_t)x;
        return 0;
    }
    if (json_is_real(j)) {
        double d = json_real_value(j);
        if (!(d >= 0 && d <= (double)JWTV_MAX_DATE))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

/* A JSON string without embedded NUL equal to want. */
static int json_str_eq(const json_t *j, const char *want)
{
    const char *s = json_string_value(j);
    return s && json_string_length(j) == strlen(want) && strcmp(s, want) == 0;
}

static int aud_ok(const json_t *aud, const char *want)
{
    size_t i;
    json_t *e;

    if (json_is_string(aud))
        return json_str_eq(aud, want);
    if (!json_is_array(aud) || json_array_size(aud) > JWTV_MAX_AUD)
        return 0;
    json_array_foreach(aud, i, e) {
        if (json_str_eq(e, want))
            return 1;
    }
    return 0;
}

/* Copies a validated `rooms` array into c as one allocation. */
static int copy_rooms(const json_t *rooms, jwt_claims *c)
{
    size_t n = json_array_size(rooms), total = 0, i;
    json_t *e;
    char *p;

    json_array_foreach(rooms, i, e) {
        const char *s = json_string_value(e);
        if (!s || strlen(s) != json_string_length(e) || !jwt_claims_pattern_valid(s))
            return -1;
        total += strlen(s) + 1;
    }
    c->rooms_present = 1;
    if (n == 0)
        return 0;
    c->rooms = malloc(n * sizeof(char *) + total);
    if (!c->rooms)
        return -1;
    p = (char *)(c->rooms + n);
    json_array_foreach(rooms, i, e) {
        size_t len = strlen(json_string_value(e)) + 1;
        memcpy(p, json_string_value(e), len);
        c->rooms[i] = p;
        p += len;
    }
    c->nrooms = n;
    return 0;
}

/* sub: a user id by lib/names.h (1..JWTV_MAX_SUB bytes of valid UTF-8, no
 * control or bidirectional control characters, no NUL inside). */
_Static_assert(JWTV_MAX_SUB == NAMES_MAX_USER, "a sub is a user id");
static int sub_valid(const char *s, size_t len)
{
    return names_user_check(s, len) == NULL;
}

/* Everything about the payload except expiry, into c. Returns NULL or the
 * reason for refusing the token. */
static const char *check_claims(const jwtv *v, const json_t *p, int64_t now_s, jwt_claims *c)
{
    const json_t *j;

    if (!(j = json_object_get(p, "exp")))
        return "exp missing";
    if (numeric_date(j, &c->exp) < 0)
        return "bad exp";
    if ((j = json_object_get(p, "nbf")) && numeric_date(j, &c->nbf) < 0)
        return "bad nbf";
    if (j && c->nbf > now_s + JWTV_LEEWAY_S)
        return "not yet valid";
    if ((j = json_object_get(p, "iat")) && numeric_date(j, &c->iat) < 0)
        return "bad iat";
    if (j && c->iat > now_s + JWTV_LEEWAY_S)
        return "issued in the future";
    if (v->iss && !json_str_eq(json_object_get(p, "iss"), v->iss))
        return "iss mismatch";
    if (v->aud && !aud_ok(json_object_get(p, "aud"), v->aud))
        return "aud mismatch";
    if (!(j = json_object_get(p, "sub")))
        return "sub missing";
    if (!json_is_string(j) || !sub_valid(json_string_value(j), json_string_length(j)))
        return "bad sub";
    memcpy(c->sub, json_string_value(j), json_string_length(j) + 1);
    if ((j = json_object_get(p, "rooms")) &&
        (!json_is_array(j) || json_array_size(j) > JWTV_MAX_ROOMS || copy_rooms(j, c) < 0))
        return "bad rooms";
    return NULL;
}

/* Bounds the token and finds its two dots: header and payload must be
 * non-empty (the signature is checked later). Returns NULL or the reason. */
static const char *split_token(const char *token, size_t *len, const char **d1, const char **d2)
{
    if (!token)
        return "no token";
    *len = strnlen(token, JWTV_MAX_TOKEN + 1);
    if (*len == 0)
        return "empty token";
    if (*len > JWTV_MAX_TOKEN)
        return "token too long";
    *d1 = memchr(token, '.', *len);
    *d2 = *d1 ? memchr(*d1 + 1, '.', *len - (size_t)(*d1 + 1 - token)) : NULL;
    if (!*d2 || memchr(*d2 + 1, '.', *len - (size_t)(*d2 + 1 - token)) || *d1 == token || *d2 == *d1 + 1)
        return "malformed token";
    return NULL;
}

int jwtv_verify(const jwtv *v, const char *token, int64_t now_s, jwt_claims *out, const char **why)
{
    const char *reason, *d1 = NULL, *d2 = NULL;
    size_t len = 0, hlen, plen, slen, siglen = 0;
    json_t *hdr = NULL, *payload = NULL;
    const jwtv_key *k = NULL;
    unsigned char *sig = NULL;
    jwt_t *jwt = NULL;
    jwt_claims c;
    int rc = -EACCES;

    memset(&c, 0, sizeof c);
    if (out)
        memset(out, 0, sizeof *out);
    if (!v)
        reason = "no verifier";
    else if (now_s < 0 || now_s > JWTV_MAX_DATE)
        reason = "bad clock";
    else
        reason = split_token(token, &len, &d1, &d2);
    if (reason)
        goto out;
    hlen = (size_t)(d1 - token);
    plen = (size_t)(d2 - d1 - 1);
    slen = len - (size_t)(d2 + 1 - token);

    reason = "bad header";
    if (!(hdr = segment_object(token, hlen)) || (reason = check_header(v, hdr, &k)))
        goto out;
    /* Parsed before the signature check only so that a malformed payload
     * is reported as such; its claims are not looked at until then. */
    reason = "bad payload";
    if (!(payload = segment_object(d1 + 1, plen)))
        goto out;
    reason = "bad signature";
    if (!slen || !(sig = b64url_decode(d2 + 1, slen, &siglen)))
        goto out;
    if (k->alg->kind == KIND_HS && !hmac_ok(k, token, (size_t)(d2 - token), sig, siglen))
        goto out;
    if (k->keylen == 0 || k->keylen > INT_MAX ||
        jwt_decode(&jwt, token, k->key, (int)k->keylen) != 0 || !jwt)
        goto out;
    /* Second pin, on what libjwt itself parsed and verified with. */
    reason = "alg mismatch";
    if (jwt_get_alg(jwt) != k->alg->alg)
        goto out;
    if ((reason = check_claims(v, payload, now_s, &c)))
        goto out;
    if (now_s >= c.exp + JWTV_LEEWAY_S) {
        reason = "expired";
        rc = -EKEYEXPIRED;
        goto out;
    }
    reason = "ok";
    rc = 0;
out:
    if (rc == 0 && out)
        *out = c;
    else
        jwt_claims_clear(&c);
    if (why)
        *why = reason;
    jwt_free(jwt);
    free(sig);
    json_decref(payload);
    json_decref(hdr);
    ERR_clear_error();
    return rc;
}

/* ---- claims ------------------------------------------------------------------ */

int jwt_claims_pattern_valid(const char *p)
{
    static const char room_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@/-";
    size_t n = p ? strlen(p) : 0;

    if (n > 0 && p[n - 1] == '*')
        n--;
    else if (n == 0)
        return 0;
    return n <= 128 && strspn(p, room_chars) == n;
}

int jwt_claims_room_allowed(const jwt_claims *c, const char *room)
{
    if (!c || !room)
        return 0;
    if (!c->rooms_present)
        return 1;
    for (size_t i = 0; i < c->nrooms; i++) {
        const char *p = c->rooms[i];
        size_t n = strlen(p);
        if (n > 0 && p[n - 1] == '*') {
            if (strncmp(room, p, n - 1) == 0)
                return 1;
        } else if (strcmp(room, p) == 0) {
            return 1;
        }
    }
    return 0;
}

void jwt_claims_clear(jwt_claims *c)
{
    if (!c)
        return;
    free(c->rooms);
    memset(c, 0, sizeof *c);
}

/* ---- minting ----------------------------------------------------------------- */

char *jwt_mint_hs256(const char *secret, const char *sub, const char *const *rooms,
                     size_t nrooms, int64_t exp_s, const char *iss, const char *aud,
                     const char *kid)
{
    json_t *g = NULL, *arr = NULL;
    char *grants = NULL, *tok = NULL;
    jwt_t *jwt = NULL;
    int bad = 0;

    if (!secret || !*secret || strlen(secret) > INT_MAX || !sub || !sub_valid(sub, strlen(sub)) ||
        exp_s <= 0 || exp_s > JWTV_MAX_DATE || (kid && (!*kid || strlen(kid) > JWTV_MAX_KID)))
        return NULL;
    if (!rooms)
        nrooms = 0;
    if (nrooms > JWTV_MAX_ROOMS)
        return NULL;
    g = json_pack("{s:s,s:I,s:I}", "sub", sub, "exp", (json_int_t)exp_s, "iat", (json_int_t)time(NULL));
    arr = json_array();
    if (!g || !arr)
        goto out;
    if (iss)
        bad |= json_object_set_new(g, "iss", json_string(iss));
    if (aud)
        bad |= json_object_set_new(g, "aud", json_string(aud));
    for (size_t i = 0; i < nrooms; i++) {
        if (!jwt_claims_pattern_valid(rooms[i]))
            goto out;
        bad |= json_array_append_new(arr, json_string(rooms[i]));
    }
    if (nrooms > 0)
        bad |= json_object_set(g, "rooms", arr);
    if (bad || !(grants = json_dumps(g, JSON_COMPACT)))
        goto out;
    if (jwt_new(&jwt) != 0 || jwt_add_grants_json(jwt, grants) != 0 ||
        (kid && jwt_add_header(jwt, "kid", kid) != 0) ||
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) != 0)
        goto out;
    tok = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    free(grants);
    json_decref(arr);
    json_decref(g);
    return tok;
}
