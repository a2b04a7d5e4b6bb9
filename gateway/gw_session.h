/* gw_session.h -- the gateway's side of sessions and presence (sessiond).
 *
 * hello asks sessiond whether the session resumes (welcome.resumed and
 * disconnected_ms), joins and leaves and disconnects are reported to it, and
 * presence events from it are delivered to the room's subscribers. sessiond
 * being down never blocks a client: hello answers resumed: false after a short
 * wait, and the events are retried (bounded) until it is back; sessiond then
 * reconciles with the snapshot every gateway publishes on request.
 */
#ifndef TETHER_GW_SESSION_H
#define TETHER_GW_SESSION_H

#include "gw.h"
#include "quality.h"

void gw_sess_init(void);
/* Gives c (authenticated) its session id at hello: presented (the hello's
 * `session`, "" for none) when it is unknown here or c's user's own (a
 * connection holding it here is closed with 4006, taken over), else a new
 * one: another user's session is never closed, read or resumed. */
void gw_sess_choose(gw_conn *c, const char *presented);
/* Finishes a hello whose token and session id were accepted: asks sessiond,
 * then sends welcome and starts the rooms. Takes over rooms (malloc'd). */
void gw_sess_hello(gw_conn *c, gw_room_pos *rooms, size_t nrooms);
/* The connection is going away (before its subscriptions are stopped). */
void gw_sess_conn_closed(gw_conn *c);
void gw_sess_room(gw_conn *c, const char *room, int joined);
void gw_sess_quality(gw_conn *c, const quality_in *in, const quality_out *out);
/* Asks sessiond for the members of s's room; s's first read waits for it. */
void gw_sess_members(gw_sub *s);
/* Right after s's `subscribed`: the members frame and what happened since. */
void gw_sess_after_subscribed(gw_sub *s);
/* Hooks (gw_room_hooks): a subscription is created (joined, members asked
 * for, its presence state allocated) and stopped (that state freed). */
typedef struct gw_sub_presence gw_sub_presence;
void gw_sess_sub_created(gw_sub *s);
void gw_sess_sub_stopping(gw_sub *s);
/* Bus events on presence.* and sess.snapshot, and detected losses. */
void gw_sess_on_bus(const bus_env *env);
void gw_sess_on_gap(const char *topic);
/* 1 when sessiond answered a ping recently (or none is configured). */
int gw_sess_ready(void);
int gw_sess_enabled(void);
/* Sends a SessQualityReq / SessGetReq; the reply goes to cb (rpc semantics). */
uint64_t gw_sess_call_quality(const char *user, const quality_in *in, const quality_out *out, rpc_reply_cb *cb,
                              void *arg);
uint64_t gw_sess_call_get(const char *user, rpc_reply_cb *cb, void *arg);

#endif
