/* md_host.h -- room affinity: which mediad replica hosts a room's audio.
 *
 * Every member of a room must reach the same replica, because forwarding is
 * a replica-local affair. The first offer for a room claims it in Redis
 * (tether:media:host:<room> = "<endpoint>|<instance>|<incarnation>", with a
 * TTL the host refreshes every second). A replica receiving an offer for a
 * room hosted elsewhere answers with a redirect to the host's endpoint
 * (TETHER_MEDIAD_ADVERTISE). A claim whose host died expires within its
 * TTL; a claim left by an earlier incarnation at our own endpoint is ours at
 * once (we bound that endpoint, so that process is gone). A room whose claim
 * was taken while we thought we held it is reported lost (md_rooms_lost), so
 * a room's audio is never split between two replicas for long.
 */
#ifndef TETHER_MD_HOST_H
#define TETHER_MD_HOST_H

#include "md.h"

/* status 0: mine != 0 when this replica hosts room; otherwise owner is the
 * host's endpoint (borrowed for the call). Negative status: Redis failed. */
typedef void md_host_cb(int status, int mine, const char *owner, void *arg);

md_host *md_host_new(md_ctx *c);
void md_host_free(md_host *h);
/* Claims room; take_over: even from a live-looking host (a gateway found it
 * unreachable; if it is in fact alive, its next refresh finds the claim
 * gone and it drops its sessions, which renegotiate here). Returns 0 (cb
 * runs later) or -errno (cb never runs). */
int md_host_claim(md_host *h, const char *room, int take_over, md_host_cb *cb, void *arg);
/* This replica stops hosting room (its last session left). */
void md_host_release(md_host *h, const char *room);
/* Releases every claim (shutdown). */
void md_host_release_all(md_host *h);

#endif
