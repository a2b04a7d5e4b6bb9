/* ss.h -- what sessiond's modules share: the configuration, the process
 * context (one per process, built by main.c) and the metrics handles.
 *
 *   ss_api     ROUTER (TETHER_SESSIOND): the gateway's session requests
 *   ss_gw      bus (TETHER_BUS_OUT): gateway heartbeats, snapshots, bus loss
 *   ss_sweep   timers: dead gateways, session expiry, rejoin grace, gauges
 *   ss_events  bus (TETHER_BUS_IN): presence.<room> events
 *   ss_health  HTTP (TETHER_HTTP): /healthz /readyz /metrics /v1/sessions
 *   ss_store   Redis (TETHER_REDIS) through the scripts of sessiond/lua/
 */
#ifndef TETHER_SS_H
#define TETHER_SS_H

#include <stdint.h>

#include "bus.h"
#include "loop.h"
#include "metrics.h"
#include "ss_store.h"

typedef struct ss_cfg {
    uint32_t ttl_ms;          /* TETHER_SESSION_TTL_S: a disconnected session's grace */
    uint32_t dead_after_ms;   /* a gateway silent this long is dead (at least 2.5 heartbeats) */
    uint32_t rejoin_grace_ms; /* a resumed session's old rooms not re-joined by then are left */
    uint32_t sweep_ms;        /* sweep period */
    uint32_t batch;           /* sessions per sweep script call */
    uint32_t bus_stable_ms;   /* the bus must have worked this long before gateways are judged */
    const char *operator_key; /* TETHER_OPERATOR_KEY[_FILE] for /v1/sessions; NULL: not served */
} ss_cfg;

typedef struct ss_gw ss_gw;
typedef struct ss_api ss_api;
typedef struct ss_sweep ss_sweep;

typedef struct ss_ctx {
    loop *l;
    ss_store *st;
    bus *b;
    ss_cfg cfg;
    ss_gw *gw;
    ss_api *api;
    ss_sweep *sweep;
    int draining;
} ss_ctx;

/* Metric handles (NULL-safe; registered by ss_metrics_register). */
typedef struct ss_metrics {
    metrics_series *opens, *resumes, *takeovers, *closes_drop, *closes_bye, *room_joins, *room_leaves, *qualities,
        *expiries, *rejoin_drops;
    metrics_series *pres_online, *pres_reconnecting, *pres_offline, *pres_fail;
    metrics_series *gw_deaths, *gw_marked, *gw_resurrected, *snap_requests, *snap_reconciled, *snap_revived,
        *snap_disconnected, *bus_gaps;
    metrics_series *err_invalid, *err_forbidden, *err_notfound, *err_internal, *drop_store, *drop_draining;
    metrics_series *sessions_connected, *sessions_disconnected, *gateways_alive, *gateways_dying;
    metrics_series *lat[6]; /* per request type, see ss_api.c */
} ss_metrics;

extern ss_metrics ss_m;
void ss_metrics_register(void);

/* Publishes the presence changes of r on presence.<room> (ss_events.c). */
void ss_events_publish(ss_ctx *c, const ss_res *r);

#endif
