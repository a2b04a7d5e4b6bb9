/* opkey.h -- the operator key that guards the internal HTTP routes which
 * reveal other users' data (sessiond's /v1/sessions).
 *
 * The key is TETHER_OPERATOR_KEY, or the contents of the file named by
 * TETHER_OPERATOR_KEY_FILE, at least OPKEY_MIN bytes. A request carries it
 * as `Authorization: Bearer <key>`. Without a configured key the routes are
 * not served at all (404); a missing or wrong key is 401.
 */
#ifndef TETHER_OPKEY_H
#define TETHER_OPKEY_H

#include "http.h"

/* Shortest key accepted, in bytes. */
#define OPKEY_MIN 16

/* Reads the key (lib/config.c cfg_secret). Returns it (valid for the process
 * life) or NULL when none is configured; a key shorter than OPKEY_MIN ends
 * the process with a message. */
const char *opkey_load(void);
/* Whether authorization (an Authorization header value, or NULL) is
 * "Bearer <key>" (scheme case-insensitive). The comparison takes the same
 * time whatever the header holds. Returns 0 when it is, -ENOENT when key is
 * NULL (no key configured), -EACCES otherwise. */
int opkey_check(const char *key, const char *authorization);
/* For a route behind the key: returns 1 when req may proceed; else replies
 * (404 without a key, 401 with `WWW-Authenticate: Bearer`) and returns 0. */
int opkey_allow(http_req *req, const char *key);

#endif
