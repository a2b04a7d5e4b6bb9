/* gw_route.c -- the gateway's HTTP routes as a pure function (see gw_route.h). */
#include "gw_route.h"

#include "pct.h"

#include <stdio.h>
#include <string.h>

/* A strict whitelist for files under the web root: no '..', no hidden
 * files, no odd bytes. */
static int static_ok(const char *rel)
{
    if (rel[0] != '/')
        return 0;
    for (const char *p = rel; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '/' ||
                 ch == '-' || ch == '_' || ch == '.';
        if (!ok || (ch == '.' && p[-1] == '/') || (ch == '.' && p[1] == '.'))
            return 0;
    }
    return 1;
}

static int set(gw_route *r, int kind, const char *why)
{
    r->kind = kind;
    r->why = why;
    return kind;
}

int gw_route_match(const char *method, const char *path, gw_route *r)
{
    memset(r, 0, sizeof(*r));
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int post = !strcmp(method, "POST");
    if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz") || !strcmp(path, "/metrics")) {
        if (!get)
            return set(r, post ? GW_RT_NOT_FOUND : GW_RT_BAD_METHOD, post ? "not found" : "method not allowed");
        return set(r, path[1] == 'h' ? GW_RT_HEALTHZ : path[1] == 'r' ? GW_RT_READYZ : GW_RT_METRICS, NULL);
    }
    if (!strcmp(path, "/dev/token") && get)
        return set(r, GW_RT_DEV_TOKEN, NULL);
    static const char pre[] = "/v1/rooms/";
    static const struct {
        const char *suffix;
        int kind, post;
    } routes[] = {
        { "/publish", GW_RT_PUBLISH, 1 },
        { "/connection-quality", GW_RT_QUALITY, 1 },
        { "/reconnection-state", GW_RT_STATE, 0 },
    };
    size_t ul = strlen(path), pl = sizeof(pre) - 1;
    if ((post || get) && !strncmp(path, pre, pl)) {
        int kind = GW_RT_NOT_FOUND, want_post = 0;
        size_t sl = 0;
        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
            size_t l = strlen(routes[i].suffix);
            if (ul > pl + l && !strcmp(path + ul - l, routes[i].suffix)) {
                kind = routes[i].kind;
                want_post = routes[i].post;
                sl = l;
            }
        }
        if (kind == GW_RT_NOT_FOUND)
            return set(r, GW_RT_NOT_FOUND, "not found");
        if (post != want_post)
            return set(r, GW_RT_BAD_METHOD, want_post ? "use POST" : "use GET");
        if (pct_decode(path + pl, ul - pl - sl, r->room, sizeof(r->room)) < 0 || !gw_valid_room(r->room)) {
            r->room[0] = 0;
            return set(r, GW_RT_BAD_ROOM, "invalid room name");
        }
        return set(r, kind, NULL);
    }
    if (!strncmp(path, "/v1/", 4))
        return set(r, post || get ? GW_RT_NOT_FOUND : GW_RT_BAD_METHOD, post || get ? "not found" : "method not allowed");
    if (!get)
        return set(r, GW_RT_BAD_METHOD, "method not allowed");
    const char *rel = !strcmp(path, "/") ? "/index.html" : path;
    if (!static_ok(rel) || strlen(rel) >= sizeof(r->file))
        return set(r, GW_RT_NOT_FOUND, "not found");
    snprintf(r->file, sizeof(r->file), "%s", rel);
    return set(r, GW_RT_STATIC, NULL);
}
