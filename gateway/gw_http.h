/* gw_http.h -- plain HTTP on the gateway port (and TETHER_ADMIN_HTTP):
 * /healthz, /readyz, /metrics, the REST API (POST /v1/rooms/{room}/publish
 * ...), dev tokens and the web console's files, as lib/http handlers. */
#ifndef TETHER_GW_HTTP_H
#define TETHER_GW_HTTP_H

#include <jansson.h>

#include "gw.h"
#include "http.h"

/* The public port's handler (requests gw_listen.c hands to lib/http). */
void gw_http_handler(http_req *req, void *arg);
/* TETHER_ADMIN_HTTP's handler: /healthz, /readyz, /metrics only. */
void gw_http_admin_handler(http_req *req, void *arg);
/* Readiness as /readyz reports it: 1 ready, 0 not; detail JSON borrowed into *detail (new). */
int gw_ready(json_t **detail);
/* Registers the gateway's metrics. */
void gw_metrics_init(void);

#endif
