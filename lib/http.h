/* http.h -- a non-blocking HTTP/1.1 server on the process loop, on libmicrohttpd.
 *
 * For the daemons' operational endpoints (/healthz, /readyz, /metrics) and
 * small JSON APIs, and for the gateway's HTTP requests (the gateway accepts
 * on its public port, keeps WebSocket upgrades and hands every other socket
 * over with http_server_adopt). libmicrohttpd parses and answers; it runs in
 * the caller's loop (no threads). Bodies are bounded and read whole before
 * the handler runs, and handed to it exactly once; there is no chunked
 * request encoding (501), no TLS, no upgrade.
 *
 * Checked before any handler runs (exceeding one answers the status shown,
 * then closes): request head 8 KiB or 64 headers (431), more than 64 query
 * parameters (414), body by Content-Length beyond max_body (413),
 * Content-Length twice, even with equal values, or with Transfer-Encoding
 * (400), Transfer-Encoding alone (501), a method that is not a token, a
 * target not starting with '/', a control byte in the target or a header
 * value (400; libmicrohttpd ends a value at a NUL), an HTTP version other
 * than 1.0/1.1 (505), a line after a body (or first) that is not a request
 * line (400; bytes without a line end meet the deadline below).
 *
 * Connections: max_conns in all and per_ip_conns from one source address;
 * beyond either the socket gets 503 (Retry-After: 1) and is closed at once.
 * The timeout is a deadline: a request must be whole within it, counted from
 * the connection's start or the previous reply (so a client trickling bytes
 * gains nothing), and the reply must be taken within it; past it a request
 * whose request line has arrived is told 408, and the connection is closed
 * (an idle keep-alive one quietly). The handler's own time does not count.
 * Keep-alive and pipelining are supported, one request in flight per
 * connection, answered in order; while a request is with its handler nothing
 * more is read from that connection.
 *
 * Request ownership (the async contract). The handler receives a request it
 * then owns: it must answer it exactly once with http_reply() (or one of its
 * variants), either inside the handler or later from any loop callback, e.g.
 * when a bus round trip for /readyz completes. http_reply frees the request;
 * it must not be used afterwards. If the client disconnects (or the server is
 * freed) before the reply, the request is detached, not freed: its accessors
 * keep working, http_req_gone() returns 1, and http_reply() just frees it. So
 * a pending request is always safe to reply to; an owner that can drop work
 * early may poll http_req_gone(). A client that closes (or half-closes) its
 * side while its request waits is gone. A request that is never replied to
 * leaks.
 *
 * Single-threaded like the loop: call everything from the loop thread.
 */
#ifndef TETHER_HTTP_H
#define TETHER_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <sys/socket.h>

#include "loop.h"

#define HTTP_MAX_HEAD (8 * 1024)
#define HTTP_MAX_BODY (64 * 1024)
#define HTTP_MAX_CONNS 256
#define HTTP_TIMEOUT_MS 5000

typedef struct http_server http_server;
typedef struct http_req http_req;

/* Called once per complete request; req is owned by the callee (see above). */
typedef void http_handler(http_req *req, void *arg);

/* Listens on hostport ("host:port", ":port", "[v6]:port"; host an IPv4 or
 * IPv6 literal, "*" for all IPv4 interfaces, or "localhost"; port 0 picks a
 * free port, see http_server_port) with SO_REUSEADDR, and serves requests on
 * l with h(req, arg). Borrows l (must outlive the server). Returns NULL with
 * errno set (EINVAL for an address that does not parse, or bind's error such
 * as EADDRINUSE). */
http_server *http_server_new(loop *l, const char *hostport, http_handler *h, void *arg);
/* Closes the listener and every connection; requests still owned by handlers
 * are detached (their owners must still reply to free them). NULL is a no-op.
 * Not from inside this server's handler. */
void http_server_free(http_server *s);
/* The bound TCP port. */
int http_server_port(const http_server *s);
/* Open connections (the ones turned away with 503 are closed at once and
 * never count). */
size_t http_server_connections(const http_server *s);
/* Changes the deadline (ms > 0) for deadlines started from now on. */
void http_server_set_timeout(http_server *s, unsigned ms);

/* Server options; zero fields take the defaults shown. */
typedef struct http_opts {
    unsigned max_conns;    /* all connections, HTTP_MAX_CONNS; beyond: 503 and close */
    unsigned per_ip_conns; /* connections from one source address, 32; beyond: 503 and close */
    unsigned timeout_ms;   /* request / keep-alive idle / write deadline, HTTP_TIMEOUT_MS */
    size_t max_body;       /* request body bytes, HTTP_MAX_BODY; beyond: 413 and close */
} http_opts;
/* Like http_server_new with options; hostport NULL makes a server with no
 * listener that only serves sockets handed to it by http_server_adopt (the
 * gateway, which accepts on its public port and routes WebSocket upgrades
 * itself). */
http_server *http_server_new_opts(loop *l, const char *hostport, const http_opts *o, http_handler *h, void *arg);
/* Takes over fd, an accepted, non-blocking TCP socket none of whose bytes
 * have been read, as if the server had accepted it (limits apply). sa is the
 * peer address. Returns 0, or -errno with fd closed: -EBUSY when a limit
 * turned it away (503 sent), -EINVAL for a bad argument. */
int http_server_adopt(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen);
/* The peer's address as text ("127.0.0.1", "::1"), borrowed from req. */
const char *http_req_peer(const http_req *req);

/* Request accessors: strings are borrowed from req and valid until it is
 * replied to. */
const char *http_req_method(const http_req *req);  /* "GET", as sent */
const char *http_req_path(const http_req *req);    /* "/readyz", raw (not percent-decoded) */
const char *http_req_query(const http_req *req);   /* after '?', raw; "" if none */
/* The first header named name (case-insensitive), value trimmed; NULL if absent. */
const char *http_req_header(const http_req *req, const char *name);
/* The body (NUL-terminated for convenience; may contain NULs) and its length. */
const char *http_req_body(const http_req *req, size_t *len);
/* Percent-decodes the first query parameter key ('+' is a space) into buf
 * (NUL-terminated). Returns its length, -ENOENT if absent, -ENOSPC if buf is
 * too small, -EINVAL for a bad escape. */
int http_req_query_param(const http_req *req, const char *key, char *buf, size_t buflen);
/* 1 once the client has gone (or the server was freed) before the reply. */
int http_req_gone(const http_req *req);

/* Answers and frees req. status 100..599 (others become 500); content_type
 * may be NULL when len is 0; body is copied. For HEAD requests the body is
 * omitted and Content-Length still describes it. NULL req: no-op. */
void http_reply(http_req *req, int status, const char *content_type, const void *body, size_t len);
/* Same, with extra header lines (each "Name: value\r\n"; NULL for none). */
void http_reply_ex(http_req *req, int status, const char *content_type, const char *headers,
                   const void *body, size_t len);
/* Replies with text/plain; charset=utf-8. */
void http_reply_text(http_req *req, int status, const char *text);
/* Replies with application/json: takes over obj (decref'd; NULL gives 500). */
void http_reply_json(http_req *req, int status, json_t *obj);
/* Replies with the status' reason phrase as text ("Not Found\n"). */
void http_reply_status(http_req *req, int status);
/* The reason phrase for status ("OK", "Not Found"...), "Unknown" otherwise. */
const char *http_status_text(int status);

/* The standard operational routes every daemon serves identically.
 *
 *   GET|HEAD /healthz  200 "ok\n" (the loop answers, so it is alive)
 *   GET|HEAD /metrics  200 metrics_render()
 *   GET|HEAD /readyz   ready(req, ready_arg), which owns req and must reply
 *                      (200 when the daemon's dependencies answer, 503 with a
 *                      JSON detail otherwise; possibly later); ready NULL: 200
 *   other methods on those paths: 405 with Allow: GET, HEAD
 *
 * Returns 1 when it took req (replied or handed it to ready), 0 when the path
 * is none of these (req untouched: route it yourself, or http_reply_status(req, 404)). */
typedef void http_ready_fn(http_req *req, void *arg);
int http_std_route(http_req *req, http_ready_fn *ready, void *ready_arg);

/* A ready-made handler for daemons without routes of their own: pass it to
 * http_server_new with an http_std (borrowed for the server's life) as arg;
 * it serves the standard routes and 404 for everything else. */
typedef struct http_std {
    http_ready_fn *ready;
    void *ready_arg;
} http_std;
void http_std_handler(http_req *req, void *arg);

#endif
