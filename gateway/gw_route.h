/* gw_route.h -- what a gateway HTTP request path names: a pure function of
 * the method and the raw path, with the percent-decoding of room names, so
 * that it can be fuzzed on its own (tests/fuzz/fuzz_route.c). */
#ifndef TETHER_GW_ROUTE_H
#define TETHER_GW_ROUTE_H

#include <stddef.h>

#include "gw_frame.h"

enum {
    GW_RT_NOT_FOUND,   /* 404 */
    GW_RT_BAD_METHOD,  /* 405 */
    GW_RT_HEALTHZ,
    GW_RT_READYZ,
    GW_RT_METRICS,
    GW_RT_DEV_TOKEN,
    GW_RT_PUBLISH,     /* POST /v1/rooms/{room}/publish */
    GW_RT_QUALITY,     /* POST /v1/rooms/{room}/connection-quality */
    GW_RT_STATE,       /* GET  /v1/rooms/{room}/reconnection-state */
    GW_RT_BAD_ROOM,    /* a room route whose room does not decode or is invalid: 400 */
    GW_RT_STATIC,      /* a file under the web root: gw_route.file */
};

typedef struct gw_route {
    int kind;
    const char *why;                 /* for 404/405/400: the error text */
    char room[GW_MAX_ROOM + 1];      /* decoded, valid, for the room routes */
    char file[256];                  /* for GW_RT_STATIC: "/index.html" for "/" */
} gw_route;


/* Routes method ("GET", "HEAD", "POST", ...) and path (raw, without the
 * query) into r. Returns r->kind. */
int gw_route_match(const char *method, const char *path, gw_route *r);

#endif
