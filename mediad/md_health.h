/* md_health.h -- mediad's HTTP endpoints and metrics.
 *
 *   /healthz   200 while the loop runs
 *   /readyz    200 when Redis answers PINGs and the bus round trip works
 *              (and not draining), else 503 with a JSON detail
 *   /metrics   sessions, rooms, packets and bytes in/out, SRTP errors by
 *              kind, drops by reason, DTLS results, floor grants/denials/
 *              releases/revocations, plus the process metrics
 */
#ifndef TETHER_MD_HEALTH_H
#define TETHER_MD_HEALTH_H

#include "md.h"

typedef struct md_health md_health;

/* Listens on hostport (TETHER_HTTP). NULL with errno on failure. */
md_health *md_health_new(md_ctx *c, const char *hostport);
void md_health_free(md_health *h);

#endif
