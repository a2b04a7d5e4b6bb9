/* http_head.c -- the request (see http.h and http_int.h): made when MHD logs
 * the request line, its head checked strictly before any body byte (method,
 * target, duplicate or conflicting framing headers, control bytes, size),
 * and the accessors and query parsing handlers use.
 */

#include "http_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/tcp.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* ---- requests -------------------------------------------------------------------- */

void http_req_free(http_req *r)
{
    if (!r)
        return;
    if (r->resp)
        MHD_destroy_response(r->resp);
    free(r->strs);
    free(r->hdr);
    free(r->body);
    free(r);
}

const char *http_req_method(const http_req *req) { return req->method; }
const char *http_req_path(const http_req *req) { return req->path; }
const char *http_req_query(const http_req *req) { return req->query; }
const char *http_req_peer(const http_req *req) { return req->peer; }
int http_req_gone(const http_req *req) { return req->mc == NULL; }

const char *http_req_header(const http_req *req, const char *name)
{
    for (int i = 0; i < req->nhdr; i++)
        if (strcasecmp(req->hdr[i].name, name) == 0)
            return req->hdr[i].value;
    return NULL;
}

const char *http_req_body(const http_req *req, size_t *len)
{
    if (len)
        *len = req->bodylen;
    return req->body ? req->body : "";
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int http_req_query_param(const http_req *req, const char *key, char *buf, size_t buflen)
{
    size_t kl = strlen(key);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == kl && memcmp(p, key, kl) == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : end; v < end; v++) {
                int ch = (unsigned char)*v;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%') {
                    if (end - v < 3)
                        return -EINVAL;
                    int hi = hexval((unsigned char)v[1]), lo = hexval((unsigned char)v[2]);
                    if (hi < 0 || lo < 0)
                        return -EINVAL;
                    ch = hi * 16 + lo;
                    v += 2;
                }
                if (n + 1 >= buflen)
                    return -ENOSPC;
                buf[n++] = (char)ch;
            }
            if (buflen == 0)
                return -ENOSPC;
            buf[n] = 0;
            return (int)n;
        }
        p = *end ? end + 1 : end;
    }
    return -ENOENT;
}

/* RFC 9110 token characters. */
static int is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* MHD logs the request line: the request starts here, with the raw target. */
void *http_on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
    http_server *s = cls;
    http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->srv = s;
    r->mc = mc;
    r->fd = -1;
    r->t0 = loop_mono_ms();
    r->strs = strdup(uri);
    if (!r->strs) {
        free(r);
        return NULL;
    }
    const union MHD_ConnectionInfo *cc = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->conn = cc ? cc->socket_context : NULL;
    if (r->conn)
        r->conn->req = r;
    r->path = r->strs;
    r->method = "";
    char *q = strchr(r->strs, '?');
    if (q) {
        *q = 0;
        r->query = q + 1;
    } else {
        r->query = "";
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->peer, sizeof(r->peer));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->peer, sizeof(r->peer));
    /* MHD is about to index every query parameter in the connection's
     * memory; with too many it runs out and waits, unanswered, for ever. So
     * they are counted first, and too many are answered here: MHD has sent
     * everything before this request, and the socket is then shut down
     * under it, which it takes as the client closing. */
    size_t nparams = *r->query ? 1 : 0;
    for (const char *p = r->query; *p; p++)
        nparams += *p == '&';
    if (nparams > HTTP_MAX_PARAMS && r->conn) {
        static const char msg[] = "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Length: 13\r\nConnection: close\r\n\r\nURI Too Long\n";
        (void)!send(r->conn->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(r->conn->fd, SHUT_RDWR);
        r->conn->shut = 1;
        r->stage = REQ_DROPPED;
        metrics_inc(http_m_refused[REF_REQUEST]);
        LOG_DEBUG("http refused", "{s:i,s:s}", "status", 414, "peer", r->peer);
        http_srv_kick(s);
    }
    return r;
}

/* The head as MHD parsed it, checked and copied. */
typedef struct head_scan {
    size_t bytes;     /* names, values and their separators */
    int n, ncl, nte, bad;
    unsigned long long clen;
    http_req *r;      /* filling pass when set */
    char *p;
} head_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t klen,
                                   const char *value, size_t vlen)
{
    (void)kind;
    head_scan *h = cls;
    if (!h->r) {
        h->n++;
        h->bytes += klen + vlen + 4;
        if (klen == 0 || strlen(key) != klen || !value || strlen(value) != vlen)
            h->bad = 1; /* an embedded NUL */
        for (size_t i = 0; i < klen; i++)
            if (!is_tchar((unsigned char)key[i]))
                h->bad = 1;
        for (size_t i = 0; value && i < vlen; i++)
            if (((unsigned char)value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
                h->bad = 1;
        if (strcasecmp(key, "Content-Length") == 0) {
            h->ncl++;
            if (!value || !*value || vlen > 12)
                h->bad = 1;
            h->clen = 0;
            for (size_t i = 0; value && i < vlen; i++) {
                if (!isdigit((unsigned char)value[i]))
                    h->bad = 1;
                h->clen = h->clen * 10 + (unsigned)(value[i] - '0');
            }
        } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
            h->nte++;
        }
        return MHD_YES;
    }
    http_hdr *e = &h->r->hdr[h->r->nhdr++];
    e->name = h->p;
    memcpy(h->p, key, klen + 1);
    h->p += klen + 1;
    /* MHD has skipped the whitespace before the value, not the one after. */
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--;
    e->value = h->p;
    memcpy(h->p, value, vlen);
    h->p[vlen] = 0;
    h->p += vlen + 1;
    return MHD_YES;
}

/* Checks the head and copies it into r. Returns 0 or the status to refuse with. */
int http_req_take_head(http_req *r, struct MHD_Connection *mc, const char *method, const char *version)
{
    head_scan h = { 0 };
    MHD_get_connection_values_n(mc, MHD_HEADER_KIND, scan_header, &h);
    size_t ml = strlen(method);
    if (ml == 0 || ml > 32)
        return 400;
    for (size_t i = 0; i < ml; i++)
        if (!is_tchar((unsigned char)method[i]))
            return 400;
    if (r->path[0] != '/')
        return 400;
    for (const char *p = r->strs; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 400;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    if (h.n > HTTP_MAX_HEADERS || h.bytes + ml + strlen(r->path) + strlen(r->query) + 16 > (size_t)HTTP_MAX_HEAD)
        return 431;
    if (h.bad || h.ncl > 1 || (h.ncl && h.nte))
        return 400;
    if (h.nte)
        return 501;
    if (h.clen > r->srv->max_body)
        return 413;
    /* Move method, target and headers into one allocation. */
    size_t tl = strlen(r->path) + 1 + strlen(r->query) + 1;
    char *strs = malloc(ml + 1 + tl + h.bytes);
    http_hdr *hdr = calloc((size_t)h.n + 1, sizeof(*hdr));
    r->body = malloc((size_t)h.clen + 1);
    if (!strs || !hdr || !r->body) {
        free(strs);
        free(hdr);
        return 503;
    }
    char *p = strs;
    memcpy(p, method, ml + 1);
    r->method = p;
    p += ml + 1;
    size_t pl = strlen(r->path) + 1, ql = strlen(r->query) + 1;
    memcpy(p, r->path, pl);
    memcpy(p + pl, r->query, ql);
    r->path = p;
    r->query = p + pl;
    p += pl + ql;
    free(r->strs);
    r->strs = strs;
    r->hdr = hdr;
    h.r = r;
    h.p = p;
    MHD_get_connection_values_n(mc, MHD_HEADER_KIND, scan_header, &h);
    r->is_head = strcmp(r->method, "HEAD") == 0;
    r->http10 = strcmp(version, "HTTP/1.0") == 0;
    r->bodyneed = (size_t)h.clen;
    r->body[0] = 0;
    return 0;
}
