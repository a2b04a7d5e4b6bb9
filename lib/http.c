/* http.c -- lib/http.h on libmicrohttpd, driven by lib/loop.
 *
 * libmicrohttpd (MHD) parses and answers HTTP/1.1; this file owns what lies
 * around it:
 *
 *   sockets   our own listener (or none: sockets arrive by http_server_adopt);
 *             every socket passes the global and per-address limits here (503
 *             and close beyond) before MHD_add_connection hands it to MHD
 *   driving   MHD runs with MHD_USE_EPOLL and no thread of its own: its epoll
 *             fd is watched by the loop, MHD_run runs on readiness, and one
 *             loop timer is re-armed from MHD_get_timeout after every run
 *   strictness MHD's access handler sees the head before any body byte: a
 *             duplicate Content-Length, Transfer-Encoding, a head over
 *             HTTP_MAX_HEAD, a bad method or target or a control byte in a
 *             header are answered there (an early reply: MHD then closes);
 *             too many query parameters are answered when the request line
 *             is logged, before MHD would run out of memory indexing them
 *   deadlines MHD's timeout (whole seconds) only catches idle sockets; each
 *             connection also has a loop timer: a request must be whole, and
 *             its reply taken, within the timeout, or the socket is shut down
 *             under MHD (after a 408 if the request line had come)
 *   junk      bytes MHD cannot split into a request line make it close the
 *             connection without a word; the close is recognised (nothing
 *             written since the last reply, client still there, not our
 *             deadline) and told 400 (MHD_USE_TURBO leaves the socket open)
 *   requests  an http_req is made when MHD logs the request line (the raw
 *             target), filled from the head, given the body whole, and handed
 *             to the handler once; not replied inline, its connection is
 *             suspended until http_reply resumes it. A suspended connection's
 *             socket sits in a second epoll set (EPOLLRDHUP) watched by the
 *             loop, so a client that leaves is noticed: the connection is
 *             resumed and dropped, and the request detached
 *             (MHD_OPTION_NOTIFY_COMPLETED is where requests are detached or
 *             freed)
 *
 * GET /healthz with keep-alive, the server pinned to one core, wrk -t1 -c30
 * -d4s on the other (a shared 2-core machine, load average 4-5):
 *   requests/s, median of five alternating runs (wrk-bound, the server's
 *   core is not saturated; single runs spread 22,900-85,600):
 *     before (our own HTTP/1.1 server) 32,800 and 53,400 in two series
 *     after (libmicrohttpd 0.9.75)     32,100 and 49,000
 *   server CPU per request (utime + stime over the run, three runs):
 *     before 7.4-7.6 us (about 134,000 requests per CPU-second)
 *     after  8.1-8.9 us (about 120,000 requests per CPU-second)
 * RSS per idle keep-alive connection (240 connections, each served once):
 * 5.2 KiB before, 16.6 KiB after (MHD's per-connection pool, HTTP_POOL_SIZE).
 */
#include "http.h"

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

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 64 /* query parameters (MHD indexes each in the connection's memory) */
#define HTTP_PER_IP_CONNS 32
#define HTTP_POOL_SIZE (HTTP_MAX_HEAD + 8 * 1024) /* an 8 KiB head, its index, the reply's head */
#define HTTP_ACCEPT_PAUSE_MS 100
#define HTTP_ACCEPT_BATCH 64

/* The request's life, as far as this file is concerned. */
enum {
    REQ_HEAD,    /* the request line is known, the head not checked yet */
    REQ_BODY,    /* the head is accepted; the body (if any) is arriving */
    REQ_HANDLER, /* with the handler, not replied yet */
    REQ_REPLIED, /* replied; the reply waits to be queued on resumption */
    REQ_DONE,    /* a reply is queued (or the request was refused) */
    REQ_DROPPED, /* answered behind MHD's back and the socket shut down */
};

typedef struct http_hdr {
    const char *name, *value;
} http_hdr;

/* What we keep per MHD connection (its socket context). */
typedef struct http_conn {
    http_server *srv;
    int fd;
    http_req *req;             /* the request being read or answered */
    loop_timer deadline;       /* a request must be read and answered within the timeout */
    int shut;                  /* we shut the socket down (deadline, 414) */
    int ended;                 /* a request ended in error, or its reply closes the connection */
    int marked;                /* sent holds what the socket had been given at the last reply */
    uint64_t sent;
} http_conn;

struct http_req {
    http_server *srv;
    struct MHD_Connection *mc; /* NULL once detached */
    http_conn *conn;           /* NULL once detached (or out of memory) */
    int stage;
    int in_handler;            /* the handler is running: replies are queued on return */
    int susp;                  /* the connection is suspended: r is on srv->susp */
    int watched;               /* fd is in srv->wep */
    int left;                  /* the client went away while suspended */
    int fd;
    int is_head;
    int http10;
    int refused;               /* answered by refuse(), which closes */
    unsigned status;
    struct MHD_Response *resp; /* built by http_reply, queued by the access handler */
    uint64_t t0;
    const char *method, *path, *query;
    http_hdr *hdr;
    int nhdr;
    char *body;
    size_t bodylen, bodyneed;
    char peer[INET6_ADDRSTRLEN];
    char *strs;                /* method, target and headers, NUL-separated */
    http_req *prev, *next;     /* on srv->susp */
};

/* One source address and its admitted connections (open addressing). */
typedef struct ip_slot {
    unsigned char key[17];     /* family byte + address; key[0] == 0: empty */
    unsigned n;
} ip_slot;

struct http_server {
    loop *l;
    struct MHD_Daemon *d;
    int mfd;                   /* MHD's epoll fd */
    int wep;                   /* epoll set of suspended connections' sockets */
    int lfd;                   /* our listener, -1 for an adopt-only server */
    int port;
    int stopping;
    http_handler *h;
    void *arg;
    loop_timer timer;          /* MHD's next timeout, or 0 ms after a resume */
    loop_timer accept_timer;
    http_req *susp;            /* requests whose connections are suspended */
    size_t nconns;
    unsigned max_conns, per_ip, timeout_ms, timeout_s;
    size_t max_body;
    ip_slot *ips;
    size_t ipcap;              /* a power of two, at least 2 * max_conns */
};

/* ---- refusal counters ---------------------------------------------------------------- */

/* tether_http_refused_total{reason}: connections and requests this file
 * turned away, shared by every server of the process. Registered (again,
 * idempotently) by each new server, since metrics_reset() drops handles. */
enum { REF_CONNECTIONS, REF_PER_ADDRESS, REF_DEADLINE, REF_REQUEST, REF_N };
static metrics_series *m_refused[REF_N];

static void refused_register(void)
{
    static const char *labels[REF_N] = { "reason=\"connections\"", "reason=\"per_address\"",
                                         "reason=\"deadline\"", "reason=\"request\"" };
    for (int i = 0; i < REF_N; i++)
        m_refused[i] = metrics_counter("tether_http_refused_total",
                                       "HTTP connections or requests refused: beyond the connection or "
                                       "per-address limit, past the request deadline, or malformed or too "
                                       "large (400, 413, 414, 431, 501, 505).",
                                       labels[i]);
}

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

/* ---- per-address counts -------------------------------------------------------- */

static void ip_key(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (sa && sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        key[0] = 1; /* a Unix socket or unknown: all such peers share one count */
    }
}

static size_t ip_hash(const unsigned char key[17], size_t cap)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h & (cap - 1);
}

/* The slot of key, or of the empty slot where it would go. */
static ip_slot *ip_find(http_server *s, const unsigned char key[17])
{
    size_t i = ip_hash(key, s->ipcap);
    while (s->ips[i].key[0] && memcmp(s->ips[i].key, key, 17) != 0)
        i = (i + 1) & (s->ipcap - 1);
    return &s->ips[i];
}

static unsigned ip_count(http_server *s, const unsigned char key[17])
{
    return ip_find(s, key)->n;
}

static void ip_add(http_server *s, const unsigned char key[17])
{
    ip_slot *e = ip_find(s, key);
    if (!e->key[0])
        memcpy(e->key, key, 17);
    e->n++;
}

/* Backward-shift deletion keeps every probe sequence unbroken. */
static void ip_del(http_server *s, const unsigned char key[17])
{
    ip_slot *e = ip_find(s, key);
    if (!e->key[0] || --e->n > 0)
        return;
    size_t mask = s->ipcap - 1, i = (size_t)(e - s->ips), j = i;
    for (;;) {
        s->ips[i].key[0] = 0;
        s->ips[i].n = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!s->ips[j].key[0])
                return;
            size_t home = ip_hash(s->ips[j].key, s->ipcap);
            /* j's entry may move to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        s->ips[i] = s->ips[j];
        i = j;
    }
}

/* ---- driving MHD from the loop --------------------------------------------------- */

static void srv_timer(loop *l, loop_timer *t, void *arg);

static void srv_arm(http_server *s)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->d, &ms) == MHD_YES)
        loop_timer_start(s->l, &s->timer, (uint64_t)ms, 0, srv_timer, s);
    else
        loop_timer_stop(s->l, &s->timer);
}

static void srv_run(http_server *s)
{
    MHD_run(s->d);
    srv_arm(s);
}

static void srv_timer(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    srv_run(arg);
}

static void srv_on_epoll(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    srv_run(arg);
}

/* MHD must run soon (a connection was resumed or added): at the end of this
 * loop iteration, through the timer so that http_server_free can cancel it. */
static void srv_kick(http_server *s)
{
    loop_timer_start(s->l, &s->timer, 0, 0, srv_timer, s);
}

/* ---- suspended connections ------------------------------------------------------- */

/* Unlinks r from the suspended list and the watch set. */
static void susp_del(http_req *r)
{
    http_server *s = r->srv;
    if (r->watched)
        epoll_ctl(s->wep, EPOLL_CTL_DEL, r->fd, NULL);
    r->watched = 0;
    if (!r->susp)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->susp = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->susp = 0;
}

static void req_suspend(http_req *r)
{
    http_server *s = r->srv;
    MHD_suspend_connection(r->mc);
    r->susp = 1;
    r->prev = NULL;
    r->next = s->susp;
    if (s->susp)
        s->susp->prev = r;
    s->susp = r;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    r->fd = ci->connect_fd;
    struct epoll_event ev = { .events = EPOLLRDHUP, .data.ptr = r };
    if (epoll_ctl(s->wep, EPOLL_CTL_ADD, r->fd, &ev) == 0)
        r->watched = 1;
}

static void req_resume(http_req *r)
{
    if (!r->susp)
        return; /* already resumed (its client left) */
    susp_del(r);
    MHD_resume_connection(r->mc);
    srv_kick(r->srv);
}

/* A suspended connection's client closed or reset: resume it so that MHD
 * drops it (the access handler refuses to go on), which detaches the request. */
static void watch_on_io(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)events;
    (void)arg;
    struct epoll_event evs[64];
    int n = epoll_wait(fd, evs, 64, 0);
    for (int i = 0; i < n; i++) {
        http_req *r = evs[i].data.ptr;
        r->left = 1;
        req_resume(r);
    }
}

/* ---- request deadlines ------------------------------------------------------------ */

/* MHD's own timeout is an idle one (any byte moving restarts it), so a client
 * trickling a byte at a time would hold its connection for ever. The deadline
 * runs from the connection's start, and again from each reply, until the next
 * request is whole (stopped while its handler has it): past it, a request
 * begun is told 408, and the socket is shut down under MHD, which then drops
 * the connection as closed by the client. */
static void conn_deadline(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    http_conn *c = arg;
    static const char msg[] = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";
    if (c->req && (c->req->stage == REQ_HEAD || c->req->stage == REQ_BODY))
        (void)!send(c->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    LOG_DEBUG("http timeout", "{s:i,s:b}", "fd", c->fd, "idle", c->req == NULL);
    c->shut = 1;
    if (c->req)
        metrics_inc(m_refused[REF_DEADLINE]); /* not an idle keep-alive connection */
    shutdown(c->fd, SHUT_RDWR);
    srv_kick(c->srv);
}

static void conn_arm(http_conn *c)
{
    if (c)
        loop_timer_start(c->srv->l, &c->deadline, c->srv->timeout_ms, 0, conn_deadline, c);
}

static void conn_disarm(http_conn *c)
{
    if (c)
        loop_timer_stop(c->srv->l, &c->deadline);
}

/* The bytes written to TCP socket fd so far (one consistent snapshot), or
 * -1 (not TCP, or a kernel before 4.19). */
static int tcp_written(int fd, uint64_t *n)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof(ti.tcpi_bytes_retrans))
        return -1;
    *n = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans + ti.tcpi_notsent_bytes;
    return 0;
}

static void conn_mark(http_conn *c)
{
    c->marked = tcp_written(c->fd, &c->sent) == 0;
}

/* ---- requests -------------------------------------------------------------------- */

static void req_free(http_req *r)
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
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
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
        metrics_inc(m_refused[REF_REQUEST]);
        LOG_DEBUG("http refused", "{s:i,s:s}", "status", 414, "peer", r->peer);
        srv_kick(s);
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
    while (vlen && (*value == ' ' || *value == '\t')) {
        value++;
        vlen--;
    }
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--;
    e->value = h->p;
    memcpy(h->p, value, vlen);
    h->p[vlen] = 0;
    h->p += vlen + 1;
    return MHD_YES;
}

/* Checks the head and copies it into r. Returns 0 or the status to refuse with. */
static int req_take_head(http_req *r, struct MHD_Connection *mc, const char *method, const char *version)
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

/* Builds a response; NULL when out of memory. */
static struct MHD_Response *resp_new(int status, const char *ctype, const char *headers, const void *body,
                                     size_t len, int close)
{
    if (status == 204 || status == 304 || status < 200)
        len = 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)(len ? body : ""),
                                                                MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    int ok = 1;
    if (ctype)
        ok = MHD_add_response_header(resp, "Content-Type", ctype) == MHD_YES;
    if (close)
        ok = ok && MHD_add_response_header(resp, "Connection", "close") == MHD_YES;
    else
        MHD_set_response_options(resp, MHD_RF_SEND_KEEP_ALIVE_HEADER, MHD_RO_END);
    /* Extra header lines, "Name: value\r\n" each. */
    for (const char *p = headers; ok && p && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        if (colon && colon > p && n < 1024) {
            char name[256], value[1024];
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + n && (*v == ' ' || *v == '\t'))
                v++;
            if (nl < sizeof(name)) {
                memcpy(name, p, nl);
                name[nl] = 0;
                memcpy(value, v, (size_t)(p + n - v));
                value[p + n - v] = 0;
                ok = MHD_add_response_header(resp, name, value) == MHD_YES;
            }
        }
        p = eol ? eol + 2 : p + n;
    }
    if (!ok) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* An error found by the server itself: answer and close. */
static enum MHD_Result refuse(http_req *r, struct MHD_Connection *mc, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", http_status_text(status));
    struct MHD_Response *resp = resp_new(status, "text/plain; charset=utf-8",
                                         status == 503 ? "Retry-After: 1\r\n" : NULL, body, (size_t)n, 1);
    r->stage = REQ_DONE;
    r->refused = 1;
    LOG_DEBUG("http refused", "{s:i,s:s}", "status", status, "peer", r->peer);
    metrics_inc(m_refused[REF_REQUEST]);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result queue_reply(http_req *r, struct MHD_Connection *mc)
{
    struct MHD_Response *resp = r->resp;
    r->resp = NULL;
    r->stage = REQ_DONE;
    conn_arm(r->conn); /* the client must take the reply and ask again in time */
    if (!resp)
        return MHD_NO; /* out of memory building it: the honest answer is a closed socket */
    enum MHD_Result ok = MHD_queue_response(mc, r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)url;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r || s->stopping)
        return MHD_NO;
    switch (r->stage) {
    case REQ_HEAD: {
        int st = req_take_head(r, mc, method, version);
        if (st)
            return refuse(r, mc, st);
        r->stage = REQ_BODY;
        return MHD_YES;
    }
    case REQ_BODY:
        if (*data_size) {
            if (*data_size > r->bodyneed - r->bodylen)
                return refuse(r, mc, 400);
            memcpy(r->body + r->bodylen, data, *data_size);
            r->bodylen += *data_size;
            r->body[r->bodylen] = 0;
            *data_size = 0;
            return MHD_YES;
        }
        if (r->bodylen != r->bodyneed)
            return refuse(r, mc, 400);
        /* The request is whole: the handler gets it, once. */
        r->stage = REQ_HANDLER;
        conn_disarm(r->conn);
        r->in_handler = 1;
        s->h(r, s->arg);
        r->in_handler = 0;
        if (r->stage == REQ_REPLIED)
            return queue_reply(r, mc);
        req_suspend(r);
        return MHD_YES;
    case REQ_HANDLER:
        /* Resumed without a reply: the client left. */
        if (r->left)
            return MHD_NO;
        req_suspend(r);
        return MHD_YES;
    case REQ_REPLIED:
        return queue_reply(r, mc);
    default:
        return MHD_NO; /* REQ_DONE (MHD has the reply and asks no more) or REQ_DROPPED */
    }
}

static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (v && *v) {
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

/* Whether MHD closes the connection after r's reply (its keep-alive rules;
 * a client that half-closed is seen at the socket instead). */
static int reply_closes(const http_req *r)
{
    const char *conn = http_req_header(r, "Connection");
    if (r->refused || has_token(conn, "close"))
        return 1;
    return r->http10 && !has_token(conn, "keep-alive");
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)mc;
    http_req *r = *con_cls;
    *con_cls = NULL;
    if (!r)
        return;
    susp_del(r);
    r->mc = NULL;
    if (r->conn) {
        r->conn->req = NULL;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK || reply_closes(r))
            r->conn->ended = 1;
        else {
            conn_arm(r->conn); /* keep-alive: the next request's time starts */
            conn_mark(r->conn);
        }
        r->conn = NULL;
    }
    if (r->stage == REQ_HANDLER)
        return; /* the handler owns it: detached, freed by its reply */
    req_free(r);
}

/* MHD closed c between requests without a word, the client still there,
 * and not on our deadline: it met bytes it could not take for a request
 * line (not three words; after a body, or first) and closed without an
 * answer (its error pages for other bad request lines went out: then the
 * socket was given more bytes since the last reply). The client is told,
 * here where the socket is still open (MHD_USE_TURBO: MHD does not shut it
 * down first). */
static void tell_unparsed(http_conn *c)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
    char b;
    uint64_t now;
    if (!c->marked || tcp_written(c->fd, &now) < 0 || now != c->sent)
        return; /* unknown, or MHD answered */
    if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return; /* the client closed (or reset), or sent more: not that case */
    (void)!send(c->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    metrics_inc(m_refused[REF_REQUEST]);
    LOG_DEBUG("http refused", "{s:i,s:i}", "status", 400, "fd", c->fd);
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)socket_context;
    http_server *s = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char key[17];
    ip_key(ci ? ci->client_addr : NULL, key);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        s->nconns++;
        ip_add(s, key);
        MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        http_conn *c = fi ? calloc(1, sizeof(*c)) : NULL;
        if (c) { /* without it only MHD's idle timeout applies */
            c->srv = s;
            c->fd = fi->connect_fd;
            conn_arm(c);
            conn_mark(c);
        }
        *socket_context = c;
    } else {
        s->nconns--;
        ip_del(s, key);
        http_conn *c = *socket_context;
        if (c && !c->shut && !c->ended && !s->stopping)
            tell_unparsed(c);
        if (c) {
            loop_timer_stop(s->l, &c->deadline);
            if (c->req)
                c->req->conn = NULL;
            free(c);
        }
        *socket_context = NULL;
    }
}

/* ---- replies --------------------------------------------------------------------- */

void http_reply_ex(http_req *req, int status, const char *content_type, const char *headers,
                   const void *body, size_t len)
{
    if (!req)
        return;
    if (!req->mc) {
        req_free(req); /* detached: the client or the server went away */
        return;
    }
    if (req->stage != REQ_HANDLER)
        return; /* replied twice: the first reply stands */
    if (status < 100 || status > 599)
        status = 500;
    LOG_DEBUG("http", "{s:s,s:s,s:i,s:I}", "method", req->method, "path", req->path, "status", status,
              "ms", (json_int_t)(loop_mono_ms() - req->t0));
    req->status = (unsigned)status;
    req->resp = resp_new(status, content_type, headers, body, len, 0);
    req->stage = REQ_REPLIED;
    if (!req->in_handler)
        req_resume(req);
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


/* ---- sockets --------------------------------------------------------------------- */

/* Beyond a limit: what the client sent so far is read (so that closing does
 * not reset the connection under the answer), 503 is sent, the socket closed.
 * Bounded work, no state kept. */
static void turn_away(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                              "Service Unavailable\n";
    char drop[4096];
    for (int i = 0; i < 4 && recv(fd, drop, sizeof(drop), MSG_DONTWAIT) > 0; i++)
        ;
    (void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    close(fd);
}

static int admit(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
    unsigned char key[17];
    ip_key(sa, key);
    if (s->nconns >= s->max_conns || ip_count(s, key) >= s->per_ip) {
        int per_address = s->nconns < s->max_conns;
        LOG_DEBUG("http refused", "{s:i,s:b}", "status", 503, "per_address", per_address);
        metrics_inc(m_refused[per_address ? REF_PER_ADDRESS : REF_CONNECTIONS]);
        turn_away(fd);
        return -EBUSY;
    }
    if (MHD_add_connection(s->d, fd, sa, salen) != MHD_YES) {
        int err = errno ? errno : ENOMEM;
        return -err; /* MHD closed fd */
    }
    srv_kick(s);
    return 0;
}

int http_server_adopt(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
    if (!s || fd < 0 || !sa || salen == 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    return admit(s, fd, sa, salen);
}

static void accept_resume(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    http_server *s = arg;
    loop_mod_fd(l, s->lfd, LOOP_READ);
}

static void on_accept(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    http_server *s = arg;
    for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
        admit(s, cfd, (struct sockaddr *)&ss, sl);
    }
}

/* Binds hostport. Returns the listening fd and the port, or -errno. */
static int listen_on(const char *hostport, int *portp, char *host, size_t hostlen)
{
    int port;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (cfg_parse_hostport(hostport, host, (unsigned)hostlen, &port) < 0)
        return -EINVAL;
    if (strcmp(host, "*") == 0)
        snprintf(host, hostlen, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
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
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return -err;
    }
    *portp = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

http_server *http_server_new_opts(loop *l, const char *hostport, const http_opts *o, http_handler *h, void *arg)
{
    http_opts def = { 0 };
    if (!o)
        o = &def;
    if (!l || !h) {
        errno = EINVAL;
        return NULL;
    }
    http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->l = l;
    s->h = h;
    s->arg = arg;
    s->lfd = s->wep = s->mfd = -1;
    s->max_conns = o->max_conns ? o->max_conns : HTTP_MAX_CONNS;
    s->per_ip = o->per_ip_conns ? o->per_ip_conns : HTTP_PER_IP_CONNS;
    unsigned tms = o->timeout_ms ? o->timeout_ms : HTTP_TIMEOUT_MS;
    s->timeout_ms = tms;
    s->timeout_s = (tms + 999) / 1000 + 1; /* MHD's idle timeout: a backstop behind ours */
    s->max_body = o->max_body ? o->max_body : HTTP_MAX_BODY;
    s->ipcap = 16;
    while (s->ipcap < 2 * (size_t)s->max_conns + 2)
        s->ipcap *= 2;
    int err = 0;
    char host[128] = "";
    refused_register();
    s->ips = calloc(s->ipcap, sizeof(*s->ips));
    if (!s->ips) {
        err = ENOMEM;
        goto fail;
    }
    if (hostport) {
        int fd = listen_on(hostport, &s->port, host, sizeof(host));
        if (fd < 0) {
            err = -fd;
            goto fail;
        }
        s->lfd = fd;
    }
    s->wep = epoll_create1(EPOLL_CLOEXEC);
    if (s->wep < 0) {
        err = errno;
        goto fail;
    }
    s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_TURBO,
                            0, NULL,
                            NULL, on_request, s,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            /* Our own counts turn connections away with 503 first;
                             * MHD's limits are the backstops (closing silently). */
                            MHD_OPTION_CONNECTION_LIMIT, s->max_conns + 16,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->per_ip,
                            MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_POOL_SIZE,
                            MHD_OPTION_END);
    if (!s->d) {
        err = errno ? errno : ENOMEM;
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    s->mfd = di ? di->epoll_fd : -1;
    int r = s->mfd < 0 ? -EINVAL : loop_add_fd(l, s->mfd, LOOP_READ, srv_on_epoll, s);
    if (r == 0)
        r = loop_add_fd(l, s->wep, LOOP_READ, watch_on_io, s);
    if (r == 0 && s->lfd >= 0)
        r = loop_add_fd(l, s->lfd, LOOP_READ, on_accept, s);
    if (r < 0) {
        err = -r;
        goto fail;
    }
    srv_arm(s);
    if (hostport)
        LOG_INFO("http listening", "{s:s,s:i}", "host", host, "port", s->port);
    return s;
fail:
    if (s->mfd >= 0)
        loop_del_fd(l, s->mfd);
    if (s->wep >= 0) {
        loop_del_fd(l, s->wep);
        close(s->wep);
    }
    if (s->lfd >= 0) {
        loop_del_fd(l, s->lfd);
        close(s->lfd);
    }
    if (s->d)
        MHD_stop_daemon(s->d);
    free(s->ips);
    free(s);
    errno = err;
    return NULL;
}

http_server *http_server_new(loop *l, const char *hostport, http_handler *h, void *arg)
{
    if (!hostport) {
        errno = EINVAL;
        return NULL;
    }
    return http_server_new_opts(l, hostport, NULL, h, arg);
}

void http_server_free(http_server *s)
{
    if (!s)
        return;
    s->stopping = 1;
    loop_timer_stop(s->l, &s->timer);
    loop_timer_stop(s->l, &s->accept_timer);
    loop_del_fd(s->l, s->mfd);
    loop_del_fd(s->l, s->wep);
    if (s->lfd >= 0) {
        loop_del_fd(s->l, s->lfd);
        close(s->lfd);
    }
    /* MHD cannot stop with suspended connections: resumed, they meet the
     * access handler refusing to go on and are closed. Then MHD closes every
     * connection; requests still with their handlers are detached in
     * on_completed. */
    while (s->susp) {
        http_req *r = s->susp;
        susp_del(r);
        MHD_resume_connection(r->mc);
    }
    MHD_run(s->d);
    MHD_stop_daemon(s->d);
    close(s->wep);
    free(s->ips);
    free(s);
}

int http_server_port(const http_server *s) { return s->port; }
size_t http_server_connections(const http_server *s) { return s->nconns; }

void http_server_set_timeout(http_server *s, unsigned ms)
{
    if (ms > 0) {
        s->timeout_ms = ms;
        s->timeout_s = (ms + 999) / 1000 + 1;
    }
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
