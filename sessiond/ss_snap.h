/* ss_snap.h -- assembly of gateway snapshots from their parts.
 *
 * A gateway answers a SnapshotReq with GwSnapshot parts 1..parts on
 * gw.snapshot. A snapshot can only be reconciled whole: what makes a
 * connection "absent" is that no part lists it. Parts are kept (as copies)
 * per (instance, incarnation, snapshot_id) until the last one arrives; an
 * assembly that does not complete within its deadline is dropped (the
 * requester's re-request brings a new one). A part 1 for an assembly that
 * already has parts starts it again (the gateway began a new answer).
 *
 * Pure bookkeeping: no I/O, no loop, so that the rules are unit-tested.
 */
#ifndef TETHER_SS_SNAP_H
#define TETHER_SS_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"

#define SS_SNAP_MAX_PARTS 4096
#define SS_SNAP_MAX_PENDING 256

typedef struct ss_snaps ss_snaps;

/* A complete snapshot: parts[0..nparts) in part order (copies, owned). */
typedef struct ss_snap {
    char *instance;
    uint64_t incarnation;
    uint64_t snapshot_id;
    int64_t ts;           /* the earliest part's envelope ts (the gateway's clock) */
    uint32_t nparts;
    uint32_t got;
    uint64_t started_ms;
    Tether__Bus__GwSnapshot **parts;
} ss_snap;

ss_snaps *ss_snaps_new(void);
/* Frees every pending assembly. NULL: no-op. */
void ss_snaps_free(ss_snaps *s);

/* Adds part (borrowed; copied) of (instance, incarnation) sent at ts.
 * Returns 1 when the snapshot is complete (*out receives it, now owned by
 * the caller: ss_snap_free), 0 while parts are missing, -EINVAL for a part
 * that cannot belong to a snapshot (part 0 or > parts, parts over the
 * limit, a parts count different from earlier parts'), -ENOSPC when too
 * many assemblies are pending, -ENOMEM. A duplicate part is ignored (0). */
int ss_snaps_add(ss_snaps *s, const char *instance, uint64_t incarnation, int64_t ts,
                 const Tether__Bus__GwSnapshot *part, uint64_t now_ms, ss_snap **out);
/* Drops assemblies started more than max_age_ms before now; returns how many. */
size_t ss_snaps_expire(ss_snaps *s, uint64_t now_ms, uint64_t max_age_ms);
/* Pending (incomplete) assemblies. */
size_t ss_snaps_pending(const ss_snaps *s);

void ss_snap_free(ss_snap *sn);
/* Total connections over all parts. */
size_t ss_snap_conns(const ss_snap *sn);

#endif
