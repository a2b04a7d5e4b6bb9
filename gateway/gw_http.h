/* gw_http.h -- plain HTTP on the gateway port: /healthz, /readyz, /metrics and
 * the REST API (POST /v1/rooms/{room}/publish). */
#ifndef TETHER_GW_HTTP_H
#define TETHER_GW_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>

#include "gw.h"

/* Per-session data of every protocol (lws allocates one per wsi). */
typedef struct gw_pss {
    gw_conn *conn;          /* WebSocket */
    struct gw_hreq *req;    /* HTTP request in progress */
} gw_pss;

int gw_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
int gw_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
/* Answers an upgrade request with status and a JSON error; returns 1 (the
 * value CONFIRM_UPGRADE wants after a rejection). */
int gw_http_reject(struct lws *wsi, int status, const char *why);
int gw_bearer(struct lws *wsi, char *buf, size_t len);
/* Readiness as /readyz reports it: 1 ready, 0 not; detail JSON borrowed into *detail (new). */
int gw_ready(json_t **detail);
/* Registers the gateway's metrics. */
void gw_metrics_init(void);

#endif
