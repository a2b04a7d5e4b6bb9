/* gw_media.h -- the gateway's side of push-to-talk and WebRTC audio.
 *
 * The gateway relays `ptt` and `media` frames between clients and mediad and
 * delivers floor events (bus topic ptt.<room>) to the room's subscribers.
 * Everything media-specific lives behind this interface.
 */
#ifndef TETHER_GW_MEDIA_H
#define TETHER_GW_MEDIA_H

#include "gw.h"

void gw_media_init(void);
/* A decoded `ptt` or `media` frame from a ready connection. */
void gw_media_frame(gw_conn *c, const gw_cframe *f);
/* Bus events on ptt.* and media.* topics. */
void gw_media_on_bus(const bus_env *env);
/* The connection is going away (before its subscriptions are stopped). */
void gw_media_conn_closed(gw_conn *c);
/* A room got its first / lost its last local subscriber. */
void gw_media_room_open(gw_room *r);
void gw_media_room_close(gw_room *r);
/* 1 when media is available (mediad answers) or not configured. */
int gw_media_ready(void);
void gw_media_shutdown(void);

#endif
