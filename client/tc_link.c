/* tc_link.c -- one client's socket: the WebSocket attempt, the send queue,
 * frame reassembly and close codes, on libwebsockets.
 *
 * A "link" is one socket from lws_client_connect_via_info() until lws says it
 * is gone (CLIENT_CONNECTION_ERROR before the upgrade, CLIENT_CLOSED after;
 * lws guarantees exactly one of the two). tc_client__link_down() is called
 * exactly once per link with the close code that explains it: the server's
 * (from its close frame), ours (when we closed), or 1006 when the socket
 * simply died. lws may report a failure synchronously from inside the connect
 * call, which is why 'in_connect' lets the callback adopt a wsi it has not
 * been told about yet.
 *
 * lws allows one write per WRITEABLE callback, so frames wait in a FIFO with
 * LWS_PRE bytes of headroom each; one callback writes all of them as one
 * send() when the framing is ours (see write_batch()).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tc_internal.h"
#include "wsframe.h"

/* ---- url ---------------------------------------------------------------------------- */

int tc_link__parse_url(tc_client *c)
{
    const char *u = c->url, *p;
    size_t hl;
    if (!strncmp(u, "ws://", 5)) {
        c->tls = 0;
        u += 5;
    } else if (!strncmp(u, "wss://", 6)) {
        c->tls = 1;
        u += 6;
    } else {
        return -EINVAL;
    }
    c->port = c->tls ? 443 : 80;
    if (*u == '[') {
        p = strchr(u, ']');
        if (!p)
            return -EINVAL;
        hl = (size_t)(p - u - 1);
        if (hl == 0 || hl >= sizeof(c->host))
            return -EINVAL;
        memcpy(c->host, u + 1, hl);
        c->host[hl] = 0;
        p++;
    } else {
        p = u + strcspn(u, ":/");
        hl = (size_t)(p - u);
        if (hl == 0 || hl >= sizeof(c->host))
            return -EINVAL;
        memcpy(c->host, u, hl);
        c->host[hl] = 0;
    }
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return -EINVAL;
        c->port = (int)port;
        p = end;
    }
    if (*p && *p != '/')
        return -EINVAL;
    if (snprintf(c->path, sizeof(c->path), "%s", *p ? p : "/") >= (int)sizeof(c->path))
        return -EINVAL;
    snprintf(c->hostport, sizeof(c->hostport), strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host, c->port);
    return 0;
}

/* ---- the send queue -------------------------------------------------------------- */

static void sq_clear(tc_client *c)
{
    while (c->sq_head) {
        tc_sq *n = c->sq_head->next;
        free(c->sq_head);
        c->sq_head = n;
    }
    c->sq_tail = NULL;
    c->sq_len = 0;
}

int tc_link__send(tc_client *c, char *text)
{
    int rc = 0;
    tc_sq *q = NULL;
    if (!text)
        return -ENOMEM;
    if (!c->wsi || !c->established || c->local_code) {
        rc = -ENOTCONN;
        goto out;
    }
    size_t n = strlen(text);
    q = malloc(sizeof(*q) + LWS_PRE + n);
    if (!q) {
        rc = -ENOMEM;
        goto out;
    }
    q->next = NULL;
    q->len = n;
    memcpy(q->buf + LWS_PRE, text, n);
    if (c->sq_tail)
        c->sq_tail->next = q;
    else
        c->sq_head = q;
    c->sq_tail = q;
    c->sq_len++;
    lws_callback_on_writable(c->wsi);
out:
    free(text);
    return rc;
}

/* ---- life of a link ------------------------------------------------------------------ */

static int has_word(const char *s, const char *w)
{
    return s && strcasestr(s, w) != NULL;
}

/* A plain sentence for a connection that failed before the upgrade: lws
 * says only "Unable to connect" or prints an OpenSSL error stack. err is
 * lws's text (may be NULL: lws made no socket), sys_errno the errno lws
 * left behind when it reported the failure. */
static void describe_failure(const tc_client *c, const char *err, int sys_errno, char *why, size_t n)
{
    if (c->tls && (has_word(err, "cert") || has_word(err, "verif"))) {
        snprintf(why, n, "TLS: the certificate of %.100s was not accepted (%.80s)", c->hostport, err);
        return;
    }
    if (c->tls && (has_word(err, "ssl") || has_word(err, "tls"))) {
        snprintf(why, n, "TLS handshake with %.100s failed: the server does not speak TLS there "
                         "(a plain ws:// port? use ws://)", c->hostport);
        return;
    }
    if (!err || has_word(err, "getaddrinfo") || has_word(err, "dns")) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(c->host, NULL, &hints, &res);
        if (res)
            freeaddrinfo(res);
        if (g != 0) {
            snprintf(why, n, "cannot resolve host '%.100s': %s", c->host, g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
            return;
        }
    }
    switch (sys_errno) {
    case ECONNREFUSED:
        snprintf(why, n, "connection refused by %.100s (is the gateway running, and is that its port?)", c->hostport);
        return;
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
        snprintf(why, n, "cannot connect to %.100s: %s", c->hostport, strerror(sys_errno));
        return;
    default:
        if (has_word(err, "unable to connect"))
            snprintf(why, n, "cannot connect to %.100s: connection refused or host unreachable (is the gateway "
                             "running, and is that its port?)", c->hostport);
        else
            snprintf(why, n, "cannot connect to %.100s%s%.100s", c->hostport, err ? ": " : "", err ? err : "");
        return;
    }
}

static void link_gone(tc_client *c, struct lws *wsi, int code, const char *reason)
{
    if (!c->link_active)
        return;
    if (wsi)
        lws_set_opaque_user_data(wsi, NULL);
    c->link_active = 0;
    c->wsi = NULL;
    c->established = 0;
    sq_clear(c);
    free(c->rx);
    c->rx = NULL;
    c->rxlen = c->rxcap = 0;
    tc_client__link_down(c, code, reason);
}

int tc_link__connect(tc_client *c)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = tc_loop__ctx(c->loop);
    i.address = c->host;
    i.port = c->port;
    i.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
    i.path = c->path;
    i.host = c->hostport;
    i.origin = c->hostport;
    i.protocol = "tether.v1.json";
    i.local_protocol_name = "tether-client";
    i.ietf_version_or_minus_one = -1;
    i.opaque_user_data = c;
    c->wsi = NULL;
    c->established = 0;
    c->local_code = c->peer_code = 0;
    c->local_reason[0] = c->peer_reason[0] = 0;
    c->link_active = 1;
    c->in_connect = 1;
    struct lws *w = lws_client_connect_via_info(&i);
    c->in_connect = 0;
    if (!w) {
        /* Either lws already reported the failure (link_gone ran) or it
         * failed before creating a socket; report it once. */
        char why[320] = "cannot start a connection";
        int e = errno;
        if (c->link_active)
            describe_failure(c, NULL, e, why, sizeof(why));
        link_gone(c, NULL, 1006, why);
        return -ECONNREFUSED;
    }
    if (c->link_active)
        c->wsi = w;
    return 0;
}

/* Detaches the socket from the client: lws closes it soon (and every
 * callback it still makes for it returns -1), the client forgets it now.
 * An asynchronous kill alone is not enough while connecting: lws replaces a
 * wsi's timeout with its own handshake timeouts when the TCP connect
 * completes, which would keep a link alive that we already gave up. */
static void orphan(tc_client *c)
{
    struct lws *w = c->wsi;
    c->wsi = NULL;
    if (w) {
        lws_set_opaque_user_data(w, NULL);
        lws_set_timeout(w, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
}

void tc_link__close(tc_client *c, int code, const char *reason, int hard)
{
    if (!c->wsi || c->local_code)
        return;
    c->local_code = code;
    snprintf(c->local_reason, sizeof(c->local_reason), "%s", reason ? reason : "");
    if (hard || !c->established) {
        char why[sizeof(c->local_reason)];
        snprintf(why, sizeof(why), "%s", c->local_reason);
        orphan(c);
        link_gone(c, NULL, code, why);
        return;
    }
    /* Flush what is queued, then the close frame; a peer that does not
     * read still loses the socket after a few seconds. */
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 3);
}

void tc_link__abandon(tc_client *c)
{
    orphan(c);
    c->link_active = 0;
    c->established = 0;
    sq_clear(c);
    free(c->rx);
    c->rx = NULL;
    c->rxlen = c->rxcap = 0;
}

static int rx_append(tc_client *c, const void *in, size_t len)
{
    if (c->rxlen + len > TC_MAX_RX)
        return -EMSGSIZE;
    if (c->rxlen + len > c->rxcap) {
        size_t n = c->rxcap ? c->rxcap : 8192;
        while (n < c->rxlen + len)
            n *= 2;
        unsigned char *p = realloc(c->rx, n);
        if (!p)
            return -ENOMEM;
        c->rx = p;
        c->rxcap = n;
    }
    memcpy(c->rx + c->rxlen, in, len);
    c->rxlen += len;
    return 0;
}

#define FLUSH_BATCH (64u << 10) /* bytes per send(), unless one frame is larger */

/* Writes the masked, final, uncompressed text frame of q at out (WS_MAX_HDR
 * bytes more than the text); returns its size, or 0 when no masking key could
 * be had. */
static size_t frame_one(tc_loop *l, unsigned char *out, const tc_sq *q)
{
    unsigned char key[4];
    if (tc_loop__mask_key(l, key) < 0)
        return 0;
    size_t h = ws_encode_hdr(out, 1, WS_OP_TEXT, 0, q->len, key);
    memcpy(out + h, q->buf + LWS_PRE, q->len);
    ws_mask(out + h, q->len, key, 0);
    return h + q->len;
}

/* Every queued frame (up to FLUSH_BATCH bytes) in one send(), framed here:
 * lws_write(LWS_WRITE_TEXT) is one send() and one writable round trip per
 * frame, which was a fifth of a publishing client's CPU. lws keeps an unsent
 * tail itself and calls back when it is gone. */
static int write_batch(tc_client *c, struct lws *wsi)
{
    size_t n = 0;
    unsigned k = 0;
    unsigned char *buf = NULL;
    for (tc_sq *q = c->sq_head; q; q = q->next, k++) {
        if (k > 0 && n + q->len + WS_MAX_HDR > FLUSH_BATCH)
            break;
        buf = tc_loop__scratch(c->loop, LWS_PRE + n + q->len + WS_MAX_HDR);
        if (!buf)
            return -1;
        size_t m = frame_one(c->loop, buf + LWS_PRE + n, q);
        if (!m)
            return -1;
        n += m;
    }
    while (k--) {
        tc_sq *q = c->sq_head;
        c->sq_head = q->next;
        c->sq_len--;
        free(q);
    }
    if (!c->sq_head)
        c->sq_tail = NULL;
    return lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP) < (int)n ? -1 : 0;
}

static int on_writeable(tc_client *c, struct lws *wsi)
{
    tc_sq *q = c->sq_head;
    if (q) {
        if (tc_loop__frames_ours(c->loop)) {
            if (write_batch(c, wsi) < 0)
                return -1;
        } else {
            c->sq_head = q->next;
            if (!c->sq_head)
                c->sq_tail = NULL;
            c->sq_len--;
            int n = lws_write(wsi, q->buf + LWS_PRE, q->len, LWS_WRITE_TEXT);
            int short_write = n < (int)q->len;
            free(q);
            if (short_write)
                return -1;
        }
        if (c->sq_head || c->local_code)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->local_code) {
        lws_close_reason(wsi, (enum lws_close_status)c->local_code, (unsigned char *)c->local_reason,
                         strlen(c->local_reason));
        return -1;
    }
    return 0;
}

int tc_link__callback(struct lws *wsi, enum lws_callback_reasons reason, void *in, size_t len)
{
    int sys_errno = errno; /* what lws's failed connect() left, for CONNECTION_ERROR */
    tc_client *c = lws_get_opaque_user_data(wsi);
    char why[320];
    if (!c || !c->link_active) {
        /* An orphaned socket (see orphan()): refuse to go on with it. */
        switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
        case LWS_CALLBACK_CLIENT_RECEIVE:
        case LWS_CALLBACK_CLIENT_WRITEABLE:
            return -1;
        default:
            return 0;
        }
    }
    if (!c->wsi && c->in_connect)
        c->wsi = wsi;
    if (c->wsi != wsi)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        int status = (int)lws_http_client_http_response(wsi);
        char err[128];
        snprintf(err, sizeof(err), "%.*s", in ? (int)(len ? len : strlen(in)) : 0, in ? (const char *)in : "");
        if (c->local_code)
            snprintf(why, sizeof(why), "%s", c->local_reason);
        else if (status)
            snprintf(why, sizeof(why), "upgrade refused by %.100s: HTTP %d (is %.60s a Tether gateway's WebSocket path?)",
                     c->hostport, status, c->path);
        else
            describe_failure(c, err[0] ? err : "unknown error", sys_errno, why, sizeof(why));
        /* The gateway answers a bad Authorization header with 401 before the
         * upgrade; it means the same as 4501. */
        link_gone(c, wsi, status == 401 ? 4501 : c->local_code ? c->local_code : 1006, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = 1;
        tc_client__on_open(c);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        int final = lws_is_final_fragment(wsi);
        if (lws_frame_is_binary(wsi) || c->local_code)
            return 0;
        if (c->rxlen == 0 && final) {
            tc_client__on_frame(c, in, len);
            return 0;
        }
        if (rx_append(c, in, len) < 0) {
            tc_link__close(c, 1009, "frame too large", 0);
            return 0;
        }
        if (final) {
            size_t n = c->rxlen;
            c->rxlen = 0;
            tc_client__on_frame(c, (const char *)c->rx, n);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *p = in;
        if (p && len >= 2) {
            c->peer_code = (p[0] << 8) | p[1];
            size_t rl = len - 2 < sizeof(c->peer_reason) - 1 ? len - 2 : sizeof(c->peer_reason) - 1;
            memcpy(c->peer_reason, p + 2, rl);
            c->peer_reason[rl] = 0;
        } else {
            c->peer_code = 1005;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (c->peer_code) {
            snprintf(why, sizeof(why), "closed by the server: %d %s", c->peer_code,
                     c->peer_reason[0] ? c->peer_reason : "");
            link_gone(c, wsi, c->peer_code, why);
        } else if (c->local_code) {
            link_gone(c, wsi, c->local_code, c->local_reason);
        } else if (!c->established) {
            /* lws's own handshake timeout (the context's 10 s) or a peer
             * that hung up before answering the upgrade. */
            uint64_t took = tc_now_ms() - c->attempt_started_ms;
            if (took + 500 >= c->o.connect_timeout_ms || took >= 9500)
                snprintf(why, sizeof(why), "no welcome within %llu ms: %.100s accepted the connection but never "
                         "answered the upgrade", (unsigned long long)took, c->hostport);
            else
                snprintf(why, sizeof(why), "%.100s closed the connection before answering the upgrade",
                         c->hostport);
            link_gone(c, wsi, 1006, why);
        } else {
            link_gone(c, wsi, 1006, "connection lost (no close frame)");
        }
        return 0;
    default:
        return 0;
    }
}
