/* ss_health.h -- sessiond's HTTP surface (TETHER_HTTP, internal):
 *
 *   GET /healthz                 200 while the loop runs
 *   GET /readyz                  200 when Redis answers PINGs and the bus
 *                                round trip works, and not draining; else
 *                                503 with a JSON detail
 *   GET /metrics                 Prometheus text
 *   GET /v1/sessions/{id}        the session record as JSON (404 unknown)
 *   GET /v1/sessions?user={u}    the user's most recent session
 *
 * /v1/sessions* needs `Authorization: Bearer <TETHER_OPERATOR_KEY>` (401
 * without it) and is not served (404) when no operator key is configured
 * (lib/opkey.h).
 *
 * The public, per-user endpoints live on the gateway, which asks sessiond
 * over the ROUTER (SessGetReq / SessQualityReq).
 */
#ifndef TETHER_SS_HEALTH_H
#define TETHER_SS_HEALTH_H

#include "ss.h"

typedef struct ss_health ss_health;

/* Borrows c. Returns NULL (errno set). */
ss_health *ss_health_new(ss_ctx *c, const char *hostport);
void ss_health_free(ss_health *h);
int ss_health_port(const ss_health *h);

#endif
