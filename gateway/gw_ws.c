/* gw_ws.c -- libwebsockets callbacks: WebSocket lifecycle, the embedded loop fd.
 *
 * One callback serves every protocol of the vhost. A client that offers no
 * sub-protocol lands on protocol 0 ("http") and is served tether.v1.json, as
 * PROTOCOL.md requires, whatever lws's default-protocol rules would pick.
 * Plain HTTP requests are passed to gw_http.c.
 */
#include <string.h>

#include "gw.h"
#include "gw_http.h"
#include "log.h"

_Static_assert(GW_PRE >= LWS_PRE, "GW_PRE must cover LWS_PRE");

static int is_proto(struct lws *wsi)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    return p && p->name && strcmp(p->name, "tether.v1.proto") == 0;
}

/* Reads the bearer token of the upgrade request into buf; 1 if present. */
int gw_bearer(struct lws *wsi, char *buf, size_t len)
{
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0 || (size_t)n >= len)
        return n > 0 ? -1 : 0;
    if (lws_hdr_copy(wsi, buf, (int)len, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return -1;
    const char *p = buf;
    if (strncasecmp(p, "Bearer ", 7) != 0)
        return -1;
    p += 7;
    while (*p == ' ')
        p++;
    memmove(buf, p, strlen(p) + 1);
    return 1;
}

int gw_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    gw_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        if (G.draining)
            return gw_http_reject(wsi, 503, "draining");
        char tok[8192];
        int b = gw_bearer(wsi, tok, sizeof(tok));
        if (b < 0)
            return gw_http_reject(wsi, 401, "malformed Authorization header");
        if (b > 0) {
            jwt_claims cl;
            const char *why = "invalid token";
            memset(&cl, 0, sizeof(cl));
            int r = jwtv_verify(G.jwt, tok, (int64_t)time(NULL), &cl, &why);
            jwt_claims_clear(&cl);
            if (r < 0) {
                G.st.auth_failures++;
                return gw_http_reject(wsi, 401, r == -EKEYEXPIRED ? "token expired" : "authentication failed");
            }
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        if (!pss)
            return -1;
        gw_conn *c = gw_conn_open(wsi, is_proto(wsi));
        if (!c)
            return -1;
        pss->conn = c;
        char tok[8192];
        if (gw_bearer(wsi, tok, sizeof(tok)) > 0) {
            int code = gw_conn_auth_header(c, tok);
            if (code)
                gw_conn_close(c, code, "authentication failed");
        }
        if (G.nconns > G.cfg.max_conns)
            gw_conn_close(c, GW_E_TOO_MANY, "too many connections");
        gw_conn_flush_all();
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (pss && pss->conn) {
            int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
            gw_conn_rx(pss->conn, in, len, first, final, lws_frame_is_binary(wsi));
            if (final && !first)
                gw_conn_rx_done(pss->conn);
        }
        gw_conn_flush_all();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss && pss->conn ? gw_conn_writable(pss->conn) : 0;
    case LWS_CALLBACK_CLOSED:
        if (pss && pss->conn) {
            gw_conn_closed(pss->conn);
            pss->conn = NULL;
        }
        return 0;
    /* The process loop, embedded: its epoll fd adopted as a raw file. */
    case LWS_CALLBACK_RAW_RX_FILE:
        loop_run_once(G.l, 0);
        gw_conn_flush_all();
        return 0;
    case LWS_CALLBACK_RAW_ADOPT_FILE:
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        return 0;
    default:
        return gw_http_cb(wsi, reason, user, in, len);
    }
}
