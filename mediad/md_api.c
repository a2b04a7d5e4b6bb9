/* md_api.c -- dispatch of the gateways' requests (see md_api.h). */
#include "md_api.h"

#include <errno.h>
#include <stdlib.h>

#include "md_floor.h"
#include "md_room.h"

struct md_api {
    md_ctx *c;
    rpc_server *srv;
};

static void on_request(rpc_server *srv, rpc_ctx *ctx, const bus_env *req, void *arg)
{
    md_api *a = arg;
    switch (req->payload_case) {
    case TETHER__BUS__ENVELOPE__PAYLOAD_PTT_REQ:
        /* Only gateways mediad has heard of are judged when they go silent:
         * one whose first heartbeat was lost (a PUB's first messages are,
         * while it connects) could be granted a floor and then die with it
         * for the whole max talk time. A request says it is alive, too. */
        if (req->ptt_req)
            md_rooms_gw_touch(a->c->rooms, req->ptt_req->gateway);
        md_floor_handle(a->c->floor, srv, ctx, req->ptt_req);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_MEDIA_REQ:
        md_rooms_handle(a->c->rooms, srv, ctx, req->media_req);
        break;
    default:
        rpc_reply_error(srv, ctx, 4400, "mediad serves PttReq and MediaReq");
        break;
    }
}

md_api *md_api_new(md_ctx *c, const char *endpoint)
{
    md_api *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->c = c;
    a->srv = rpc_server_new(c->l, endpoint, "mediad", on_request, a);
    if (!a->srv) {
        int e = errno;
        free(a);
        errno = e;
        return NULL;
    }
    return a;
}

void md_api_free(md_api *a)
{
    if (!a)
        return;
    rpc_server_free(a->srv);
    free(a);
}
