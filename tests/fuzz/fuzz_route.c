/* fuzz_route.c -- libFuzzer target for the gateway's HTTP routing and the
 * percent-decoding of room names (gateway/gw_route.c), the part of gw_http.c
 * that reads what a stranger wrote in a request line.
 *
 * The input's first byte picks the method, the rest is the raw path. Beyond
 * "no crash" (ASan/UBSan), the target checks what gw_http.c relies on and
 * abort()s when it does not hold:
 *
 *  - a room route carries a decoded room that gw_valid_room accepts, and the
 *    path really is /v1/rooms/<room><suffix>;
 *  - a static file is whitelisted: it starts with '/', has no "..", no
 *    hidden file, nothing outside [A-Za-z0-9/._-], and fits its buffer;
 *  - the standard routes are only ever the three exact paths;
 *  - pct_decode never writes past its buffer, NUL-terminates what it
 *    returns, never yields a NUL byte, and decoding text without '%' is the
 *    identity.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_route.h"
#include "pct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_route: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static const char *methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", "" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    const char *method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = 0;
    size_t plen = strlen(path); /* a NUL ends the path, as it would in lib/http */

    gw_route r;
    int kind = gw_route_match(method, path, &r);
    CHECK(kind == r.kind);
    switch (kind) {
    case GW_RT_PUBLISH:
    case GW_RT_QUALITY:
    case GW_RT_STATE: {
        CHECK(gw_valid_room(r.room));
        CHECK(!strncmp(path, "/v1/rooms/", 10));
        const char *suffix = kind == GW_RT_PUBLISH ? "/publish"
                             : kind == GW_RT_QUALITY ? "/connection-quality" : "/reconnection-state";
        CHECK(plen > 10 + strlen(suffix) && !strcmp(path + plen - strlen(suffix), suffix));
        break;
    }
    case GW_RT_STATIC:
        CHECK(r.file[0] == '/');
        CHECK(strlen(r.file) < sizeof(r.file));
        CHECK(!strstr(r.file, "..") && !strstr(r.file, "/."));
        for (const char *p = r.file; *p; p++)
            CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '/' ||
                  *p == '-' || *p == '_' || *p == '.');
        break;
    case GW_RT_HEALTHZ:
        CHECK(!strcmp(path, "/healthz"));
        break;
    case GW_RT_READYZ:
        CHECK(!strcmp(path, "/readyz"));
        break;
    case GW_RT_METRICS:
        CHECK(!strcmp(path, "/metrics"));
        break;
    case GW_RT_NOT_FOUND:
    case GW_RT_BAD_METHOD:
    case GW_RT_BAD_ROOM:
        CHECK(r.why != NULL);
        break;
    case GW_RT_DEV_TOKEN:
        CHECK(!strcmp(path, "/dev/token"));
        break;
    default:
        CHECK(0);
    }

    /* The decoder on its own, into a buffer sized by the input. */
    size_t cap = (size_t)(data[0] & 63) + 1;
    char *out = malloc(cap);
    int n = pct_decode(path, plen, out, cap);
    if (n >= 0) {
        CHECK((size_t)n < cap && out[n] == 0 && strlen(out) == (size_t)n);
        if (!memchr(path, '%', plen))
            CHECK((size_t)n == plen && !memcmp(out, path, plen));
    }
    free(out);
    free(path);
    return 0;
}
