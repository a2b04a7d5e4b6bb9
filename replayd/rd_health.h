/* rd_health.h -- replayd's operational surface: /healthz, /readyz, /metrics.
 *
 * /readyz is 200 when both Redis connections are up and their last PING
 * (every second, 1 s timeout) was answered, and replayd is not draining;
 * otherwise 503 with a JSON detail naming what is wrong. The Redis, bus and
 * heads figures are exported as callback series read at scrape time, so the
 * hot path pays nothing for them.
 */
#ifndef TETHER_RD_HEALTH_H
#define TETHER_RD_HEALTH_H

#include "bus.h"
#include "loop.h"
#include "rd_api.h"
#include "rd_heads.h"
#include "rd_store.h"

typedef struct rd_health rd_health;

/* Serves HTTP on hostport ("host:port"). Borrows everything (it must all
 * outlive the health server). Returns NULL (errno set). */
rd_health *rd_health_new(loop *l, const char *hostport, rd_store *st, bus *b, rd_api *api, rd_heads *heads);
void rd_health_free(rd_health *h);
/* From now on /readyz answers 503 {"draining": true}. */
void rd_health_draining(rd_health *h);

#endif
