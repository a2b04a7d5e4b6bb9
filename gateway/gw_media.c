/* gw_media.c -- push-to-talk and audio signaling relay (see gw_media.h).
 *
 * Until a mediad answers on TETHER_MEDIAD, `ptt` and `media` frames are
 * answered with error 4500 ("retry is safe"): the client is told, never left
 * waiting.
 */
#include "gw_media.h"

void gw_media_init(void) {}

void gw_media_frame(gw_conn *c, const gw_cframe *f)
{
    (void)f;
    gw_conn_error(c, GW_E_INTERNAL, "push-to-talk media service is not available on this gateway", NULL);
}

void gw_media_on_bus(const bus_env *env) { (void)env; }
void gw_media_conn_closed(gw_conn *c) { (void)c; }
void gw_media_room_open(gw_room *r) { (void)r; }
void gw_media_room_close(gw_room *r) { (void)r; }
int gw_media_ready(void) { return 1; }
void gw_media_shutdown(void) {}
