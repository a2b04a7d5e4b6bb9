/* md_room.h -- the rooms whose audio this replica hosts.
 *
 * A room exists here while it has media sessions. It knows its floor (the
 * holder from the latest PttEvent, by floor sequence) and resolves the talker
 * session from it; md_fwd.c forwards the talker's RTP to every other member.
 * Hosting is claimed in Redis (md_host) when a room's first session arrives,
 * so one replica forwards a room's audio; an offer reaching a replica that
 * does not host the room is answered with a redirect to the one that does.
 *
 * Media requests (MediaReq) are handled here: offer (new session, re-offer,
 * ICE restart), candidate, leave, close. Gateways that stop sending
 * heartbeats (gw.heartbeat) lose their sessions, so a dead gateway's clients
 * do not linger as listeners.
 */
#ifndef TETHER_MD_ROOM_H
#define TETHER_MD_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "md.h"
#include "md_sess.h"

struct md_room {
    md_rooms *rs;
    char name[MD_MAX_ROOM + 1];
    list_node members;           /* md_sess (link), newest first */
    unsigned nmembers;
    uint64_t floor_seq;          /* of the last floor event applied */
    char holder[MD_MAX_USER + 1];/* "" when the floor is idle */
    char holder_gw[MD_MAX_GW + 1];
    uint64_t holder_conn;
    uint32_t holder_max_ms;
    md_sess *talker;             /* resolved from the holder; valid while talker_known */
    int talker_known;
    uint64_t burst;              /* floor sequence of the current grant: a talk burst's identity */
};

md_rooms *md_rooms_new(md_ctx *c);
/* Destroys every session (no notices) and frees. NULL is a no-op. */
void md_rooms_free(md_rooms *rs);

/* A MediaReq (borrowed): answers ctx on srv (MediaRep or ErrorRep), now or later. */
void md_rooms_handle(md_rooms *rs, rpc_server *srv, rpc_ctx *ctx, const Tether__Bus__MediaReq *req);
/* A floor event (from md_floor or from the bus); stale ones are ignored. */
void md_rooms_on_floor(md_rooms *rs, const Tether__Bus__PttEvent *ev);
/* Floor events of room were lost on the bus: read its floor from Redis. */
void md_rooms_refresh_floor(md_rooms *rs, const char *room);
/* A gateway heartbeat (gw.heartbeat). */
void md_rooms_on_gw_heartbeat(md_rooms *rs, const bus_env *env);
/* gw (an instance) just sent a request: it is alive, as a heartbeat says. */
void md_rooms_gw_touch(md_rooms *rs, const char *gw);
/* This replica no longer hosts room (its claim was taken): every session
 * there gets a `restart` notice and is dropped. */
void md_rooms_lost(md_rooms *rs, const char *room);
/* SIGTERM: every session gets a `restart` notice (clients renegotiate on
 * another replica) and is dropped; hosting claims are released. */
void md_rooms_drain(md_rooms *rs);
size_t md_rooms_count(const md_rooms *rs);
size_t md_rooms_sessions(const md_rooms *rs);

/* Sends a MediaNotice about s to its gateway (action "candidate",
 * "restart" or "error"). */
void md_room_notice(md_sess *s, const char *action, const char *reason);
/* s cannot go on: notice (action NULL: none), leave the room, destroy. */
void md_room_sess_failed(md_sess *s, const char *action, const char *reason);
/* The session whose RTP is forwarded now, or NULL. */
md_sess *md_room_talker(md_room *r);

/* md_fwd.c: forwards the talker's RTP (pkt unprotected, h parsed) to every
 * other member that can receive; anything else is counted and dropped. */
void md_fwd_rtp(md_room *r, md_sess *from, const uint8_t *pkt, const md_rtp_hdr *h);
/* RTCP sender reports to listeners and receiver reports to the talker. */
void md_fwd_reports(md_room *r);

#endif
