/* jwtcheck_int.h -- what jwtcheck.c (verification, minting) and
 * jwtcheck_keys.c (the TETHER_JWT_KEYS file) share. Not a public interface:
 * jwtcheck.h is.
 */
#ifndef TETHER_JWTCHECK_INT_H
#define TETHER_JWTCHECK_INT_H

#include "jwtcheck.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <stddef.h>

#define JWTV_MAX_KEYS 1024
#define JWTV_MAX_LINE 16384
#define JWTV_MAX_PEM 65536
#define JWTV_MIN_RSA_BITS 2048

enum { KIND_HS, KIND_RS, KIND_ES };

typedef struct jwtv_alg {
    const char *name;
    jwt_alg_t alg;
    int kind;
    const EVP_MD *(*md)(void);
    int curve;  /* ES: the NID its curve must have */
} jwtv_alg;

/* One verification key. For HS, key holds the secret; for RS/ES, the public
 * key re-encoded as a SubjectPublicKeyInfo PEM (what libjwt expects), so a
 * certificate in the key file works the same as a bare public key. */
typedef struct jwtv_key {
    char kid[JWTV_MAX_KID + 1];
    const jwtv_alg *alg;
    unsigned char *key;
    size_t keylen;
} jwtv_key;

struct jwtv {
    jwtv_key *hs;     /* TETHER_JWT_SECRET, no kid; NULL when not set */
    jwtv_key *keys;   /* the key file's lines */
    size_t nkeys;
    char *iss, *aud;  /* NULL: not checked */
};

/* Formats into err (when err and errlen are set). */
__attribute__((format(printf, 3, 4)))
void jwtv_seterr(char *err, size_t errlen, const char *fmt, ...);
/* The algorithm called name ("HS256" ...), NULL when not supported. */
const jwtv_alg *jwtv_alg_by_name(const char *name);
/* Cleanses and frees k's key material (k itself stays). */
void jwtv_key_wipe(jwtv_key *k);
/* Reads the key file into v->keys: 0, or -1 with err set. */
int jwtv_load_key_file(jwtv *v, const char *file, char *err, size_t errlen);

#endif
