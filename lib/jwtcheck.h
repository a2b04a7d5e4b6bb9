/* jwtcheck.h -- JWT verification for the gateway, and HS256 minting for tools.
 *
 * libjwt 1.10.2 only checks a signature with whatever key it is handed: it
 * accepts `alg: none` when the key is NULL, an HS256 token MACed with an RSA
 * public PEM when that PEM is the key, and expired tokens. So this module
 * decides everything itself: it parses the header first, picks the key by
 * `kid` (or the single configured key), pins the algorithm to that key's
 * configured one, lets libjwt check only the signature, and then validates
 * every claim (docs/protocol.md, section Authentication).
 *
 * A jwtv is immutable after jwtv_new(), so one verifier may be shared by all
 * connections of a process.
 */
#ifndef TETHER_JWTCHECK_H
#define TETHER_JWTCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Clock leeway for exp, nbf and iat, in seconds. */
#define JWTV_LEEWAY_S 30
/* Longest token accepted, in bytes (anything longer is rejected unparsed). */
#define JWTV_MAX_TOKEN 8192
/* Most entries in a `rooms` claim. */
#define JWTV_MAX_ROOMS 1024
/* Longest `sub`, in bytes (the user id rules are lib/names.h). */
#define JWTV_MAX_SUB 128
/* Longest `kid`, in bytes (header and key file). */
#define JWTV_MAX_KID 128

typedef struct jwtv jwtv;

/* Builds a verifier. Borrows every argument (all are copied).
 *
 * hs_secret: HS256 secret (TETHER_JWT_SECRET) or NULL. It has no kid and is
 *   the key used for tokens without a `kid` header.
 * keys_file: path (TETHER_JWT_KEYS) or NULL. One key per line,
 *   "kid alg key", fields separated by blanks; `#` comment lines and blank
 *   lines are skipped. alg is one of HS256/384/512, RS256/384/512,
 *   ES256/384/512. key is the rest of the line, trimmed: for HS the secret
 *   itself; for RS/ES the path of a PEM public key or certificate (a relative
 *   path is taken relative to the key file's directory). RSA keys must be at
 *   least 2048 bits; an EC key's curve must match the alg (P-256/384/521).
 *   A token without `kid` uses hs_secret, else the key file's only key.
 * iss, aud: required issuer / audience (TETHER_JWT_ISS/AUD), or NULL.
 * An empty string counts as NULL for every argument. At least one key is required.
 *
 * Returns a new verifier (free with jwtv_free), or NULL with a message in err
 * (errlen bytes; a key file problem names the file and the line number). */
jwtv *jwtv_new(const char *hs_secret, const char *keys_file, const char *iss,
               const char *aud, char *err, size_t errlen);
/* Frees v and wipes its secrets. NULL is a no-op. */
void jwtv_free(jwtv *v);
/* Number of keys v holds (the HS secret counts as one). */
size_t jwtv_key_count(const jwtv *v);

/* The claims of a verified token. rooms is NULL unless rooms_present: then it
 * holds nrooms patterns (possibly 0: no room allowed), stored in one
 * allocation owned by the struct: release with jwt_claims_clear(). */
typedef struct jwt_claims {
    char sub[JWTV_MAX_SUB + 1];
    int64_t exp, nbf, iat;  /* nbf, iat: 0 when absent */
    int rooms_present;
    char **rooms;
    size_t nrooms;
} jwt_claims;

/* Verifies token (borrowed, NUL-terminated; any bytes at all are safe) at time
 * now_s (Unix seconds).
 *
 * Returns 0 when valid, -EKEYEXPIRED when the token is valid in every respect
 * except that exp has passed (the gateway answers 4502), or -EACCES for
 * anything else (4501). *why (if why is non-NULL) gets a short static reason
 * such as "expired", "alg mismatch", "bad signature"; "ok" on success.
 *
 * out may be NULL. Otherwise it is overwritten without being freed first
 * (call jwt_claims_clear on a reused struct); on success the caller owns it
 * and releases it with jwt_claims_clear(); on failure it is left zeroed. */
int jwtv_verify(const jwtv *v, const char *token, int64_t now_s, jwt_claims *out,
                const char **why);

/* Non-zero when room may be used under c: always when the token had no
 * `rooms` claim; otherwise when room equals a pattern, or starts with a
 * pattern's text before its trailing '*'. Borrows both. */
int jwt_claims_room_allowed(const jwt_claims *c, const char *room);
/* Frees c's rooms and zeroes c. NULL is a no-op; safe to call twice. */
void jwt_claims_clear(jwt_claims *c);
/* Non-zero when p is a valid `rooms` entry: a room name (1..128 chars of
 * [A-Za-z0-9._:@/-]), or such a prefix (possibly empty) followed by one '*'. */
int jwt_claims_pattern_valid(const char *p);

/* Mints an HS256 token: sub, exp (Unix seconds), iat (now), a `rooms` claim
 * when nrooms > 0 (each entry valid per jwt_claims_pattern_valid; rooms NULL
 * or nrooms 0 leaves the claim out: every room), iss/aud/kid when non-NULL.
 * Borrows everything. Returns a new string (free()) or NULL on bad input
 * (empty secret, sub not 1..128 bytes or with control characters, bad room
 * pattern, kid empty or over 128 bytes, exp not in (0, year 9999]) or no memory. */
char *jwt_mint_hs256(const char *secret, const char *sub, const char *const *rooms,
                     size_t nrooms, int64_t exp_s, const char *iss, const char *aud,
                     const char *kid);

#endif
