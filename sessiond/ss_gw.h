/* ss_gw.h -- sessiond's view of the gateways, from the bus (TETHER_BUS_OUT,
 * prefix "gw."):
 *
 *   gw.heartbeat  every second from each gateway: its liveness, recorded in
 *                 Redis (heartbeat script) so that all replicas agree; the
 *                 sweep declares dead the ones that fall silent.
 *   gw.snapshot   a gateway's connections, in parts, answering a SnapshotReq
 *                 that sessiond published on sess.snapshot: assembled
 *                 (ss_snap) and reconciled (snap_part / snap_finish scripts).
 *
 * Snapshots are requested when this process starts, when a gateway is heard
 * from that Redis does not know (state lost) or had declared dead, when a
 * source_seq gap shows gw.* events were lost, and again, up to a few times,
 * while a gateway that was alive at request time has not answered whole
 * within 2 s.
 *
 * The bus itself is watched: sessiond publishes a probe on its own topic
 * every 250 ms and reads it back. Gateways are only judged (declared dead
 * for silence) once the probe has worked for cfg.bus_stable_ms, because a
 * replica that cannot hear heartbeats would otherwise kill every gateway.
 */
#ifndef TETHER_SS_GW_H
#define TETHER_SS_GW_H

#include <stddef.h>

#include "ss.h"

/* Subscribes and sets the bus callbacks. Borrows c. Returns NULL (errno). */
ss_gw *ss_gw_new(ss_ctx *c);
void ss_gw_free(ss_gw *g);

/* Asks every gateway for a snapshot. Requests within 1 s of a round are
 * folded into it. reason is logged. */
void ss_gw_request_snapshot(ss_gw *g, const char *reason);
/* 1 when the probe came back within the last second. */
int ss_gw_bus_ok(const ss_gw *g);
/* 1 when the probe has been coming back for cfg.bus_stable_ms. */
int ss_gw_bus_stable(const ss_gw *g);
/* Gateways heard from (heartbeat) in the last 3 s by this replica. */
size_t ss_gw_heard(const ss_gw *g);
/* Snapshots being reconciled by this replica, and assemblies pending. */
size_t ss_gw_busy(const ss_gw *g);

#endif
