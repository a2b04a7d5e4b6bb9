/* http.c -- lib/http.h on libmicrohttpd, driven by lib/loop (the request
 * and its head: http_head.c; replies and the standard routes: http_reply.c;
 * sockets and connection limits: http_sock.c; shared types: http_int.h).
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

/* ---- refusal counters ---------------------------------------------------------------- */

/* tether_http_refused_total{reason}: connections and requests this file
 * turned away, shared by every server of the process. Registered (again,
 * idempotently) by each new server, since metrics_reset() drops handles. */
metrics_series *http_m_refused[REF_N];

static void refused_register(void)
{
    static const char *labels[REF_N] = { "reason=\"connections\"", "reason=\"per_address\"",
                                         "reason=\"deadline\"", "reason=\"request\"" };
    for (int i = 0; i < REF_N; i++)
        http_m_refused[i] = metrics_counter("tether_http_refused_total",
                                       "HTTP connections or requests refused: beyond the connection or "
                                       "per-address limit, past the request deadline, or malformed or too "
                                       "large (400, 413, 414, 431, 501, 505).",
                                       labels[i]);
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
void http_srv_kick(http_server *s)
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

void http_req_resume(http_req *r)
{
    if (!r->susp)
        return; /* already resumed (its client left) */
    susp_del(r);
    MHD_resume_connection(r->mc);
    http_srv_kick(r->srv);
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
        http_req_resume(r);
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
        metrics_inc(http_m_refused[REF_DEADLINE]); /* not an idle keep-alive connection */
    shutdown(c->fd, SHUT_RDWR);
    http_srv_kick(c->srv);
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

/* An error found by the server itself: answer and close. */
enum MHD_Result http_refuse(http_req *r, struct MHD_Connection *mc, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", http_status_text(status));
    struct MHD_Response *resp = http_resp_new(status, "text/plain; charset=utf-8",
                                         status == 503 ? "Retry-After: 1\r\n" : NULL, body, (size_t)n, 1);
    r->stage = REQ_DONE;
    r->refused = 1;
    LOG_DEBUG("http refused", "{s:i,s:s}", "status", status, "peer", r->peer);
    metrics_inc(http_m_refused[REF_REQUEST]);
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
    r->seen = 1;
    switch (r->stage) {
    case REQ_HEAD: {
        int st = http_req_take_head(r, mc, method, version);
        if (st)
            return http_refuse(r, mc, st);
        r->stage = REQ_BODY;
        return MHD_YES;
    }
    case REQ_BODY:
        if (*data_size) {
            if (*data_size > r->bodyneed - r->bodylen)
                return http_refuse(r, mc, 400);
            memcpy(r->body + r->bodylen, data, *data_size);
            r->bodylen += *data_size;
            r->body[r->bodylen] = 0;
            *data_size = 0;
            return MHD_YES;
        }
        if (r->bodylen != r->bodyneed)
            return http_refuse(r, mc, 400);
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
    http_req_free(r);
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
    metrics_inc(http_m_refused[REF_REQUEST]);
    LOG_DEBUG("http refused", "{s:i,s:i}", "status", 400, "fd", c->fd);
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)socket_context;
    http_server *s = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char key[17];
    http_ip_key(ci ? ci->client_addr : NULL, key);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        s->nconns++;
        http_ip_add(s, key);
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
        http_ip_del(s, key);
        http_conn *c = *socket_context;
        if (c && !c->shut && !c->ended && !s->stopping)
            tell_unparsed(c);
        if (c) {
            loop_timer_stop(s->l, &c->deadline);
            if (c->req) {
                http_req *r = c->req;
                r->conn = NULL;
                /* MHD reports the end only of requests its access handler
                 * saw; one shut down before its head was whole (414, the
                 * deadline) is freed here. */
                if (!r->seen)
                    http_req_free(r);
            }
            free(c);
        }
        *socket_context = NULL;
    }
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
        int fd = http_listen_on(hostport, &s->port, host, sizeof(host));
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
                            MHD_OPTION_URI_LOG_CALLBACK, http_on_uri, s,
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
        r = loop_add_fd(l, s->lfd, LOOP_READ, http_on_accept, s);
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
