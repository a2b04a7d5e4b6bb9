/* http.c -- a small HTTP/1.1 server on lib/loop (see http.h for the contract).
 *
 * Each connection is a little state machine:
 *
 *   HEAD    reading the request head into c->in (bounded by HTTP_MAX_HEAD)
 *   BODY    the head is parsed into a request; reading Content-Length bytes
 *   HANDLER the request belongs to the handler; we only watch for EOF
 *   WRITE   a response is queued in c->out and being written
 *   LINGER  the response is out and our side is shut down; the rest of the
 *           client's data is read and dropped for a moment so that closing
 *           with unread input (a 413 mid-upload) does not reset the
 *           connection before the client has read the status
 *
 * The parsed request lives in its own allocation (struct + a copy of the head
 * with NULs in place of separators + the body), so it can outlive its
 * connection: on disconnect it is only detached (req->conn = NULL), which is
 * what makes late http_reply() calls safe.
 *
 * A connection is freed only from its own fd or timer callback or from
 * http_server_free; http_reply never frees it, it queues bytes and asks for
 * LOOP_WRITE, so a handler cannot pull the connection out from under the
 * callback that invoked it.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_IN_MAX (HTTP_MAX_HEAD + 8 * 1024) /* head plus some pipelined bytes */
#define HTTP_MAX_REJECTING 64                 /* connections being told 503 */
#define HTTP_LINGER_MS 2000
#define HTTP_ACCEPT_PAUSE_MS 100

enum { C_HEAD, C_BODY, C_HANDLER, C_WRITE, C_LINGER };

typedef struct http_conn http_conn;

typedef struct http_hdr {
    const char *name, *value;
} http_hdr;

struct http_req {
    http_conn *conn;        /* NULL once detached */
    const char *method, *path, *query;
    int minor;              /* HTTP/1.<minor> */
    int keepalive;
    int is_head;
    int expect_continue;
    uint64_t t0;
    http_hdr hdr[HTTP_MAX_HEADERS];
    int nhdr;
    char *body;
    size_t bodylen, bodyneed;
    char peer[64];          /* the client's address, copied from its connection */
    char head[];            /* the head, NUL-split */
};

struct http_conn {
    http_server *srv;
    int fd;
    int state;
    int reject;             /* beyond HTTP_MAX_CONNS: every request gets 503 */
    int close_after;        /* close once c->out is written */
    int eof;                /* the client shut its side */
    unsigned events;
    loop_timer timer;
    char *in;
    size_t inlen;
    http_req *req;          /* being read (BODY) or with the handler (HANDLER) */
    char *out;
    size_t outlen, outoff, outcap;
    char peer[64];
    http_conn *prev, *next;
};

struct http_server {
    loop *l;
    int fd;
    int port;
    http_handler *h;
    void *arg;
    http_conn *conns;
    size_t nconns, nreject;
    unsigned timeout_ms;
    unsigned max_conns;
    size_t max_body;
    loop_timer accept_timer;
};

static void conn_close(http_conn *c);
static int conn_process(http_conn *c);
static void conn_error(http_conn *c, int status);

/* ---- small helpers ---------------------------------------------------------------- */

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* RFC 9110 token characters. */
static int is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void conn_set_events(http_conn *c, unsigned ev)
{
    if (c->events == ev)
        return;
    if (loop_mod_fd(c->srv->l, c->fd, ev) == 0)
        c->events = ev;
}

static void conn_timeout(loop *l, loop_timer *t, void *arg);

static void conn_arm(http_conn *c, unsigned ms)
{
    loop_timer_start(c->srv->l, &c->timer, ms, 0, conn_timeout, c);
}

static int out_append(http_conn *c, const void *p, size_t n)
{
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 1024;
        while (cap < c->outlen + n)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o)
            return -ENOMEM;
        c->out = o;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    return 0;
}

static void req_free(http_req *r)
{
    if (!r)
        return;
    free(r->body);
    free(r);
}

/* ---- request accessors ----------------------------------------------------------- */

const char *http_req_method(const http_req *req) { return req->method; }
const char *http_req_path(const http_req *req) { return req->path; }
const char *http_req_query(const http_req *req) { return req->query; }
int http_req_gone(const http_req *req) { return req->conn == NULL; }

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

/* ---- parsing --------------------------------------------------------------------- */

/* Checks the request line s[0..n) (no CRLF). Returns 0 or an HTTP status,
 * and the offsets of its parts when they are not NULL. */
static int parse_reqline(const char *s, size_t n, size_t *msp, size_t *tsp, int *minor)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i > 32 || i >= n || s[i] != ' ')
        return 400;
    size_t ms = i++;
    size_t t0 = i;
    while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    if (i == t0 || i >= n || s[i] != ' ' || s[t0] != '/')
        return 400;
    size_t ts = i++;
    if (n - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || !isdigit((unsigned char)s[i + 5]) ||
        s[i + 6] != '.' || !isdigit((unsigned char)s[i + 7]))
        return 400;
    if (s[i + 5] != '1')
        return 505;
    if (msp)
        *msp = ms;
    if (tsp)
        *tsp = ts;
    if (minor)
        *minor = s[i + 7] - '0';
    return 0;
}

/* Early rejection of bytes that can never start a request (binary noise, a
 * TLS hello), so the client does not wait for the timeout to learn it. */
static int head_hopeless(const char *s, size_t n)
{
    const char *lf = memchr(s, '\n', n);
    if (lf) {
        size_t ln = (size_t)(lf - s);
        if (ln == 0 || s[ln - 1] != '\r')
            return 400;
        return parse_reqline(s, ln - 1, NULL, NULL, NULL);
    }
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i < n && s[i] != ' ')
        return 400;
    if (i > 32)
        return 400;
    return 0;
}

static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if ((size_t)(e - v) == tl && strncasecmp(v, tok, tl) == 0)
            return 1;
        v = e;
    }
    return 0;
}

/* Parses the head (headlen bytes ending in CRLFCRLF) into a new request.
 * Returns 0 and *out, or an HTTP status for a bad request. */
static int parse_head(const char *src, size_t headlen, http_req **out, long long *clen)
{
    if (memchr(src, 0, headlen))
        return 400; /* the string parsing below relies on there being none */
    http_req *r = calloc(1, sizeof(*r) + headlen + 1);
    if (!r)
        return 503;
    memcpy(r->head, src, headlen);
    r->head[headlen] = 0;
    int st = 0;
    char *s = r->head;
    char *eol = strstr(s, "\r\n");
    size_t ms, ts;
    st = parse_reqline(s, (size_t)(eol - s), &ms, &ts, &r->minor);
    if (st)
        goto out;
    s[ms] = 0;
    s[ts] = 0;
    r->method = s;
    char *target = s + ms + 1;
    char *q = strchr(target, '?');
    if (q) {
        *q = 0;
        r->query = q + 1;
    } else {
        r->query = "";
    }
    r->path = target;
    r->is_head = strcmp(r->method, "HEAD") == 0;

    *clen = 0;
    int have_cl = 0;
    char *line = eol + 2;
    while (!(line[0] == '\r' && line[1] == '\n')) {
        eol = strstr(line, "\r\n");
        *eol = 0;
        if (line[0] == ' ' || line[0] == '\t') { /* obsolete line folding */
            st = 400;
            goto out;
        }
        char *colon = line;
        while (is_tchar((unsigned char)*colon))
            colon++;
        if (colon == line || *colon != ':') {
            st = 400;
            goto out;
        }
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = v + strlen(v);
        for (char *p = v; p < ve; p++)
            if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
                st = 400;
                goto out;
            }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = 0;
        if (r->nhdr == HTTP_MAX_HEADERS) {
            st = 431;
            goto out;
        }
        r->hdr[r->nhdr++] = (http_hdr){ line, v };
        if (strcasecmp(line, "Content-Length") == 0) {
            long long n = 0;
            if (!*v || strlen(v) > 12) {
                st = 400;
                goto out;
            }
            for (const char *p = v; *p; p++) {
                if (!isdigit((unsigned char)*p)) {
                    st = 400;
                    goto out;
                }
                n = n * 10 + (*p - '0');
            }
            if (have_cl && n != *clen) {
                st = 400;
                goto out;
            }
            have_cl = 1;
            *clen = n;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            st = 501;
            goto out;
        } else if (strcasecmp(line, "Expect") == 0 && strcasecmp(v, "100-continue") == 0) {
            r->expect_continue = 1;
        }
        line = eol + 2;
    }
    const char *conn = http_req_header(r, "Connection");
    if (r->minor >= 1)
        r->keepalive = !(conn && has_token(conn, "close"));
    else
        r->keepalive = conn && has_token(conn, "keep-alive");
out:
    if (st) {
        free(r);
        return st;
    }
    *out = r;
    return 0;
}

/* ---- responses ---------------------------------------------------------------------- */

/* Queues a complete response on c. body NULL/len 0 for none; no_body keeps
 * Content-Length but leaves the bytes out (HEAD). */
static int queue_response(http_conn *c, int status, const char *ctype, const char *headers,
                          const void *body, size_t len, int no_body, int keepalive)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\nConnection: %s\r\n", status,
                     http_status_text(status), ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", len, keepalive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -EINVAL;
    int r = out_append(c, head, (size_t)n);
    if (!r && headers && *headers) {
        size_t hl = strlen(headers);
        r = out_append(c, headers, hl);
        if (!r && (hl < 2 || headers[hl - 2] != '\r' || headers[hl - 1] != '\n'))
            r = out_append(c, "\r\n", 2);
    }
    if (!r)
        r = out_append(c, "\r\n", 2);
    if (!r && !no_body && len && status != 204 && status != 304)
        r = out_append(c, body, len);
    if (r)
        return r;
    if (!keepalive)
        c->close_after = 1;
    c->state = C_WRITE;
    conn_set_events(c, c->eof ? LOOP_WRITE : LOOP_READ | LOOP_WRITE);
    conn_arm(c, c->srv->timeout_ms);
    return 0;
}

/* An error found by the server itself: answer and close. */
static void conn_error(http_conn *c, int status)
{
    req_free(c->req);
    c->req = NULL;
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", http_status_text(status));
    if (queue_response(c, status, "text/plain; charset=utf-8",
                       status == 503 ? "Retry-After: 1\r\n" : NULL, body, (size_t)n, 0, 0) < 0)
        c->close_after = 1;
    LOG_DEBUG("http refused", "{s:i,s:i}", "status", status, "fd", c->fd);
}

void http_reply_ex(http_req *req, int status, const char *content_type, const char *headers,
                   const void *body, size_t len)
{
    if (!req)
        return;
    http_conn *c = req->conn;
    if (status < 100 || status > 599)
        status = 500;
    if (c) {
        LOG_DEBUG("http", "{s:s,s:s,s:i,s:I}", "method", req->method, "path", req->path, "status",
                  status, "ms", (json_int_t)(loop_mono_ms() - req->t0));
        c->req = NULL;
        if (queue_response(c, status, content_type, headers, body, len, req->is_head, req->keepalive) < 0) {
            /* Out of memory mid-response: the bytes queued so far are not a
             * valid response, so the only honest answer is a closed socket. */
            c->outlen = c->outoff = 0;
            c->close_after = 1;
            c->state = C_WRITE;
            conn_set_events(c, LOOP_WRITE);
        }
    }
    req_free(req);
}

void http_reply(http_req *req, int status, const char *content_type, const void *body, size_t len)
{
    http_reply_ex(req, status, content_type, NULL, body, len);
}

void http_reply_text(http_req *req, int status, const char *text)
{
    http_reply(req, status, "text/plain; charset=utf-8", text, text ? strlen(text) : 0);
}

void http_reply_json(http_req *req, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) {
        http_reply_status(req, 500);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL; the length below bounds the copy */
    http_reply(req, status, "application/json", s, n + 1);
    free(s);
}

void http_reply_status(http_req *req, int status)
{
    char body[64];
    snprintf(body, sizeof(body), "%s\n", http_status_text(status));
    http_reply_text(req, status, body);
}

/* ---- connection I/O ------------------------------------------------------------------ */

static void conn_dispatch(http_conn *c)
{
    http_req *r = c->req;
    r->conn = c;
    r->t0 = loop_mono_ms();
    memcpy(r->peer, c->peer, sizeof(r->peer));
    c->state = C_HANDLER;
    loop_timer_stop(c->srv->l, &c->timer);
    if (c->reject) {
        c->req = NULL;
        r->conn = NULL;
        req_free(r);
        conn_error(c, 503);
        return;
    }
    /* The handler now owns r; c->req stays set so a disconnect can detach it. */
    c->srv->h(r, c->srv->arg);
}

/* Consumes buffered input as far as the state allows. Returns -1 if the
 * connection was closed, else 0. */
static int conn_process(http_conn *c)
{
    for (;;) {
        if (c->state == C_HEAD) {
            /* Tolerate blank lines between pipelined requests (RFC 9112 2.2). */
            size_t skip = 0;
            while (skip + 1 < c->inlen && c->in[skip] == '\r' && c->in[skip + 1] == '\n')
                skip += 2;
            if (skip) {
                memmove(c->in, c->in + skip, c->inlen - skip);
                c->inlen -= skip;
            }
            if (c->inlen == 0)
                return 0;
            char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
            if (!end) {
                int st = c->inlen >= HTTP_MAX_HEAD ? 431 : head_hopeless(c->in, c->inlen);
                if (st)
                    conn_error(c, st);
                return 0;
            }
            size_t headlen = (size_t)(end - c->in) + 4;
            if (headlen > HTTP_MAX_HEAD) {
                conn_error(c, 431);
                return 0;
            }
            long long clen = 0;
            http_req *r = NULL;
            int st = parse_head(c->in, headlen, &r, &clen);
            memmove(c->in, c->in + headlen, c->inlen - headlen);
            c->inlen -= headlen;
            if (st) {
                conn_error(c, st);
                return 0;
            }
            c->req = r;
            if (clen > (long long)c->srv->max_body) {
                conn_error(c, 413);
                return 0;
            }
            r->bodyneed = (size_t)clen;
            r->body = malloc(r->bodyneed + 1);
            if (!r->body) {
                conn_error(c, 503);
                return 0;
            }
            r->body[0] = 0;
            if (r->bodyneed == 0) {
                conn_dispatch(c);
                continue;
            }
            c->state = C_BODY;
            if (r->expect_continue && c->inlen == 0 && !c->reject) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (out_append(c, cont, sizeof(cont) - 1) == 0)
                    conn_set_events(c, LOOP_READ | LOOP_WRITE);
            }
        }
        if (c->state == C_BODY) {
            http_req *r = c->req;
            size_t n = r->bodyneed - r->bodylen;
            if (n > c->inlen)
                n = c->inlen;
            memcpy(r->body + r->bodylen, c->in, n);
            r->bodylen += n;
            r->body[r->bodylen] = 0;
            memmove(c->in, c->in + n, c->inlen - n);
            c->inlen -= n;
            if (r->bodylen < r->bodyneed)
                return 0;
            conn_dispatch(c);
            continue;
        }
        /* HANDLER, WRITE, LINGER: input waits. Stop reading while the buffer
         * is full, so a pipelining client cannot make us buffer without end. */
        if (c->inlen >= HTTP_IN_MAX && (c->events & LOOP_READ))
            conn_set_events(c, c->events & ~LOOP_READ);
        return 0;
    }
}

/* Writes queued output. Returns -1 if the connection was closed. */
static int conn_flush(http_conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            conn_close(c);
            return -1;
        }
        c->outoff += (size_t)n;
        if (c->state == C_WRITE)
            conn_arm(c, c->srv->timeout_ms); /* progress: the write timeout restarts */
    }
    c->outoff = c->outlen = 0;
    if (c->state != C_WRITE) {
        /* Only an interim "100 Continue" was queued. */
        conn_set_events(c, c->events & ~LOOP_WRITE);
        return 0;
    }
    if (c->close_after || c->eof) {
        if (c->eof) {
            conn_close(c);
            return -1;
        }
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->inlen = 0;
        conn_set_events(c, LOOP_READ);
        unsigned ms = c->srv->timeout_ms < HTTP_LINGER_MS ? c->srv->timeout_ms : HTTP_LINGER_MS;
        conn_arm(c, ms);
        return 0;
    }
    c->state = C_HEAD;
    conn_set_events(c, LOOP_READ);
    conn_arm(c, c->srv->timeout_ms);
    return conn_process(c);
}

static void conn_timeout(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    http_conn *c = arg;
    if ((c->state == C_HEAD && c->inlen > 0) || c->state == C_BODY) {
        conn_error(c, 408);
        if (conn_flush(c) < 0)
            return;
        if (c->state == C_WRITE)
            conn_close(c); /* the client is not reading either: give up now */
        return;
    }
    conn_close(c);
}

static void conn_on_io(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    http_conn *c = arg;
    if ((events & LOOP_WRITE) && c->outlen > c->outoff && conn_flush(c) < 0)
        return;
    if ((events & LOOP_ERROR) && !(c->events & LOOP_READ)) {
        /* A reset or hang-up is reported whatever we asked for, and would be
         * reported again on every iteration: the connection is over. */
        conn_close(c);
        return;
    }
    if (!(events & (LOOP_READ | LOOP_ERROR)) || !(c->events & LOOP_READ))
        return;
    char drop[4096];
    for (;;) {
        char *dst;
        size_t room;
        if (c->state == C_LINGER) {
            dst = drop;
            room = sizeof(drop);
        } else {
            if (c->inlen >= HTTP_IN_MAX)
                break;
            if (!c->in && !(c->in = malloc(HTTP_IN_MAX))) {
                conn_close(c);
                return;
            }
            dst = c->in + c->inlen;
            room = HTTP_IN_MAX - c->inlen;
        }
        ssize_t n = recv(c->fd, dst, room, 0);
        if (n > 0) {
            if (c->state != C_LINGER)
                c->inlen += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or a reset. */
        if (n < 0 || c->state == C_LINGER || c->state == C_HANDLER) {
            conn_close(c);
            return;
        }
        c->eof = 1;
        break;
    }
    if (c->state != C_LINGER && conn_process(c) < 0)
        return;
    if (c->eof) {
        /* Answer what was complete before the half-close (printf | nc), and
         * stop there; anything still incomplete will never be. */
        if (c->state == C_WRITE) {
            conn_set_events(c, LOOP_WRITE);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->state == C_WRITE && c->outlen > c->outoff)
        conn_flush(c); /* a synchronous handler replied: send it right away */
}

static void conn_close(http_conn *c)
{
    http_server *s = c->srv;
    loop_timer_stop(s->l, &c->timer);
    loop_del_fd(s->l, c->fd);
    close(c->fd);
    if (c->req) {
        if (c->state == C_HANDLER)
            c->req->conn = NULL; /* the handler owns it; detach */
        else
            req_free(c->req);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->reject)
        s->nreject--;
    else
        s->nconns--;
    free(c->in);
    free(c->out);
    free(c);
}

/* ---- listening -------------------------------------------------------------------------- */

static void on_accept(loop *l, int fd, unsigned events, void *arg);

static void accept_resume(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    http_server *s = arg;
    loop_mod_fd(l, s->fd, LOOP_READ);
}

static void peer_text(const struct sockaddr *sa, char *out, size_t n)
{
    out[0] = 0;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

/* Starts serving the accepted socket cfd. Returns 0, or -errno (cfd not
 * closed). */
static int conn_add(http_server *s, int cfd, const struct sockaddr *sa, socklen_t salen)
{
    struct sockaddr_storage ss;
    if (!sa) {
        salen = sizeof(ss);
        if (getpeername(cfd, (struct sockaddr *)&ss, &salen) == 0)
            sa = (const struct sockaddr *)&ss;
    }
    (void)salen;
    int reject = s->nconns >= s->max_conns;
    if (reject && s->nreject >= HTTP_MAX_REJECTING)
        return -EBUSY;
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    http_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int r = loop_add_fd(s->l, cfd, LOOP_READ, conn_on_io, c);
    if (r < 0) {
        free(c);
        return r;
    }
    c->srv = s;
    c->fd = cfd;
    c->events = LOOP_READ;
    c->reject = reject;
    c->state = C_HEAD;
    peer_text(sa, c->peer, sizeof(c->peer));
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (reject)
        s->nreject++;
    else
        s->nconns++;
    conn_arm(c, s->timeout_ms);
    return 0;
}

static void on_accept(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    http_server *s = arg;
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: the pending connection would wake us in a
                 * tight loop. Pause accepting briefly instead. */
                LOG_WARN("http accept paused", "{s:s}", "error", strerror(errno));
                loop_mod_fd(l, fd, 0);
                loop_timer_start(l, &s->accept_timer, HTTP_ACCEPT_PAUSE_MS, 0, accept_resume, s);
            }
            return;
        }
        if (conn_add(s, cfd, NULL, 0) < 0)
            close(cfd);
    }
}
http_server *http_server_new(loop *l, const char *hostport, http_handler *h, void *arg)
{
    char host[128];
    int port, fd = -1, err = 0;
    http_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (!hostport || !h || cfg_parse_hostport(hostport, host, sizeof(host), &port) < 0) {
        err = EINVAL;
        goto out;
    }
    if (strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        sl = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*v6);
    } else {
        err = EINVAL;
        goto out;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        err = errno;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        err = ENOMEM;
        goto out;
    }
    s->l = l;
    s->fd = fd;
    s->h = h;
    s->arg = arg;
    s->timeout_ms = HTTP_TIMEOUT_MS;
    s->max_conns = HTTP_MAX_CONNS;
    s->max_body = HTTP_MAX_BODY;
    s->port = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    int r = loop_add_fd(l, fd, LOOP_READ, on_accept, s);
    if (r < 0) {
        err = -r;
        goto out;
    }
    LOG_INFO("http listening", "{s:s,s:i}", "host", host, "port", s->port);
out:
    if (err) {
        if (fd >= 0)
            close(fd);
        free(s);
        errno = err;
        return NULL;
    }
    return s;
}

http_server *http_server_new_opts(loop *l, const char *hostport, const http_opts *o, http_handler *h, void *arg)
{
    http_server *s;
    if (hostport) {
        s = http_server_new(l, hostport, h, arg);
    } else if (!h) {
        errno = EINVAL;
        return NULL;
    } else if ((s = calloc(1, sizeof(*s)))) {
        s->l = l;
        s->fd = -1;
        s->h = h;
        s->arg = arg;
        s->timeout_ms = HTTP_TIMEOUT_MS;
        s->max_conns = HTTP_MAX_CONNS;
        s->max_body = HTTP_MAX_BODY;
    }
    if (s && o) {
        if (o->max_conns)
            s->max_conns = o->max_conns;
        if (o->timeout_ms)
            s->timeout_ms = o->timeout_ms;
        if (o->max_body)
            s->max_body = o->max_body;
    }
    return s;
}

int http_server_adopt(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
    int r = conn_add(s, fd, sa, salen);
    if (r < 0)
        close(fd);
    return r;
}

const char *http_req_peer(const http_req *req) { return req->peer; }

void http_server_free(http_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    loop_timer_stop(s->l, &s->accept_timer);
    if (s->fd >= 0) {
        loop_del_fd(s->l, s->fd);
        close(s->fd);
    }
    free(s);
}

int http_server_port(const http_server *s) { return s->port; }
size_t http_server_connections(const http_server *s) { return s->nconns + s->nreject; }

void http_server_set_timeout(http_server *s, unsigned ms)
{
    if (ms > 0)
        s->timeout_ms = ms;
}

/* ---- the standard routes -------------------------------------------------------------- */

int http_std_route(http_req *req, http_ready_fn *ready, void *ready_arg)
{
    const char *p = req->path;
    int health = strcmp(p, "/healthz") == 0, readyz = strcmp(p, "/readyz") == 0,
        metrics = strcmp(p, "/metrics") == 0;
    if (!health && !readyz && !metrics)
        return 0;
    if (strcmp(req->method, "GET") != 0 && !req->is_head) {
        char body[64];
        int n = snprintf(body, sizeof(body), "%s\n", http_status_text(405));
        http_reply_ex(req, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", body, (size_t)n);
        return 1;
    }
    if (health) {
        http_reply_text(req, 200, "ok\n");
    } else if (metrics) {
        size_t len;
        char *text = metrics_render_len(&len);
        if (text)
            http_reply(req, 200, METRICS_CONTENT_TYPE, text, len);
        else
            http_reply_status(req, 500);
        free(text);
    } else if (ready) {
        ready(req, ready_arg);
    } else {
        http_reply_text(req, 200, "ok\n");
    }
    return 1;
}

void http_std_handler(http_req *req, void *arg)
{
    const http_std *std = arg;
    if (!http_std_route(req, std ? std->ready : NULL, std ? std->ready_arg : NULL))
        http_reply_status(req, 404);
}
