/* opkey.c -- the operator key for internal HTTP routes (see opkey.h). */
#include "opkey.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

const char *opkey_load(void)
{
    const char *k = cfg_secret("TETHER_OPERATOR_KEY", NULL);
    if (!k || !*k)
        return NULL;
    if (strlen(k) < OPKEY_MIN) {
        fprintf(stderr, "TETHER_OPERATOR_KEY: shorter than %d bytes; use a long random key\n", OPKEY_MIN);
        exit(2);
    }
    return k;
}

int opkey_check(const char *key, const char *authorization)
{
    if (!key)
        return -ENOENT;
    const char *got = "";
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        got = authorization + 7;
        while (*got == ' ')
            got++;
    }
    /* Digests of both: equal length, and a comparison that does not stop
     * at the first differing byte, so timing tells nothing of the key. */
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)got, strlen(got), a);
    SHA256((const unsigned char *)key, strlen(key), b);
    int same = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    return same && *got ? 0 : -EACCES;
}

int opkey_allow(http_req *req, const char *key)
{
    int r = opkey_check(key, http_req_header(req, "Authorization"));
    if (r == 0)
        return 1;
    if (r == -ENOENT)
        http_reply_status(req, 404);
    else {
        static const char body[] = "{\"error\":\"operator key required\"}";
        http_reply_ex(req, 401, "application/json", "WWW-Authenticate: Bearer\r\n", body, sizeof(body) - 1);
    }
    return 0;
}
