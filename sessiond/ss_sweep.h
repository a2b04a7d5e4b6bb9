/* ss_sweep.h -- sessiond's clockwork: every cfg.sweep_ms one sweep script
 * (dead gateways' sessions marked disconnected, expired sessions ended,
 * resumed sessions' rooms that were not re-joined left), run again at once
 * while it reports more work; every second the session gauges from Redis.
 *
 * Replica-safe: the scripts claim what they process (ZREM of a deadline), so
 * any number of replicas may sweep. A replica sweeps only while its bus
 * works (ss_gw_bus_stable): it would not hear heartbeats otherwise, and
 * presence events it produced would be lost.
 */
#ifndef TETHER_SS_SWEEP_H
#define TETHER_SS_SWEEP_H

#include "ss.h"

ss_sweep *ss_sweep_new(ss_ctx *c);
void ss_sweep_free(ss_sweep *s);
/* Stops sweeping (draining). */
void ss_sweep_stop(ss_sweep *s);
/* Sweeps run so far (for tests and health). */
unsigned long long ss_sweep_count(const ss_sweep *s);

#endif
