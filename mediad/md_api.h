/* md_api.h -- mediad's request socket: the gateways' ptt and media requests.
 *
 * A ROUTER on TETHER_MEDIAD (lib/rpc). PttReq goes to md_floor (any replica
 * answers: floors live in Redis), MediaReq to md_room (the hosting replica
 * answers, the others redirect). Requests are idempotent, so the gateway's
 * retries after a timeout are safe.
 */
#ifndef TETHER_MD_API_H
#define TETHER_MD_API_H

#include "md.h"

/* Binds endpoint. Returns NULL (errno set) when it cannot. */
md_api *md_api_new(md_ctx *c, const char *endpoint);
void md_api_free(md_api *a);

#endif
