/* md.h -- what mediad's modules share: the configuration, the process
 * context (one per process, built by main.c) and the metric handles.
 *
 *   md_api     ROUTER (TETHER_MEDIAD): the gateway's ptt and media requests
 *   md_floor   push-to-talk floors in Redis (TETHER_REDIS): grants, releases,
 *              max talk time, grace after a holder's disconnection; events
 *              on ptt.<room> (TETHER_BUS_IN)
 *   md_host    room affinity in Redis: which replica hosts a room's audio
 *   md_room    the rooms hosted here: members' sessions, the floor holder,
 *              forwarding of the holder's RTP to every listener
 *   md_sess    one media session: ICE (md_ice), DTLS (md_dtls), SRTP (md_srtp)
 *   md_sdp     offer parsing and answer writing (pure, unit-tested)
 *   md_health  HTTP (TETHER_HTTP): /healthz /readyz /metrics
 *
 * GLib owns the main loop (libnice needs a GMainContext); lib/loop is
 * embedded in it through its epoll fd, so everything, bus and Redis and
 * libnice alike, runs on one thread.
 */
#ifndef TETHER_MD_H
#define TETHER_MD_H

#include <stdint.h>

#include "bus.h"
#include "loop.h"
#include "metrics.h"
#include "redis.h"
#include "rpc.h"

typedef struct md_cfg {
    const char *endpoint;     /* TETHER_MEDIAD: the ROUTER this replica binds */
    const char *advertise;    /* TETHER_MEDIAD_ADVERTISE: how gateways reach it (redirects) */
    const char *ifaces;       /* TETHER_MEDIA_IFACES: "all" or a comma list of interface names */
    unsigned port_min, port_max; /* TETHER_MEDIA_PORTS */
    const char *cert_path;    /* TETHER_MEDIA_CERT */
    uint32_t ptt_max_ms;      /* TETHER_PTT_MAX_MS */
    uint32_t ptt_grace_ms;    /* TETHER_PTT_GRACE_MS */
    uint32_t host_ttl_ms;     /* a room's hosting claim lives this long unless refreshed */
    uint32_t gw_dead_ms;      /* a gateway silent this long is gone: drop its sessions */
    int trickle;              /* TETHER_MEDIA_TRICKLE: our candidates trickled after the answer */
} md_cfg;

typedef struct md_floor md_floor;
typedef struct md_host md_host;
typedef struct md_rooms md_rooms;
typedef struct md_api md_api;
typedef struct md_dtls_ctx md_dtls_ctx;

typedef struct md_ctx {
    loop *l;
    void *gctx;               /* the GMainContext (void here: md.h is glib-free) */
    md_cfg cfg;
    redis *r;
    bus *b;
    md_floor *floor;
    md_host *host;
    md_rooms *rooms;
    md_api *api;
    md_dtls_ctx *dtls;
    int draining;
    uint64_t last_bus_probe_ms;
} md_ctx;

/* Metric handles (NULL-safe; registered by md_metrics_register). */
typedef struct md_metrics {
    metrics_series *rtp_in, *rtp_out, *rtcp_in, *rtcp_out, *bytes_in, *bytes_out;
    metrics_series *srtp_auth, *srtp_replay, *srtp_other, *srtp_protect_fail;
    metrics_series *drop_not_holder, *drop_unknown_ssrc, *drop_no_keys, *drop_malformed, *drop_send;
    metrics_series *dtls_ok, *dtls_fingerprint, *dtls_failed;
    metrics_series *sdp_rejected, *offers, *ice_restarts, *candidates_in, *redirects, *sessions_dropped;
    metrics_series *floor_grants, *floor_denials, *floor_releases, *floor_revokes, *floor_grace_expired,
        *floor_suspends, *floor_errors;
    metrics_series *talker_switches;
} md_metrics;

extern md_metrics md_m;
void md_metrics_register(void);

/* Embeds l in the default GMainContext: its epoll fd is watched and
 * loop_run_once(l, 0) runs whenever it is readable (main.c). Returns the
 * GLib source id, 0 on failure. */
unsigned md_glib_attach(loop *l);

/* `mediad probe`: the synthetic media peer used by tests and benchmarks
 * (md_probe.c). Returns the process exit status. */
int md_probe_main(int argc, char **argv);

#endif
