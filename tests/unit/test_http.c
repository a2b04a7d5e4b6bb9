/* test_http.c -- lib/http against a plain-socket client, in one thread.
 *
 * The server runs on a real loop bound to 127.0.0.1 on a free port (port 0);
 * the client is an ordinary non-blocking TCP socket. Every wait pumps
 * loop_run_once() and polls the client until a condition holds or a
 * deadline passes, so nothing sleeps and every wait can fail.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"

#define DEADLINE_MS 3000

static loop *L;
static http_server *S;
static http_req *g_pending;     /* an /async request awaiting our reply */
static int g_handled;

static void ready_cb(http_req *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 503, json_pack("{s:b,s:s}", "ready", 0, "why", "test"));
}

static void handler(http_req *req, void *arg)
{
    (void)arg;
    g_handled++;
    const char *p = http_req_path(req);
    if (strcmp(p, "/hello") == 0) {
        http_reply_text(req, 200, "hello");
    } else if (strcmp(p, "/echo") == 0) {
        size_t n;
        const char *b = http_req_body(req, &n);
        http_reply(req, 200, "application/octet-stream", b, n);
    } else if (strcmp(p, "/param") == 0) {
        char buf[64];
        int n = http_req_query_param(req, "name", buf, sizeof(buf));
        if (n < 0)
            snprintf(buf, sizeof(buf), "err %d", n);
        const char *ua = http_req_header(req, "x-test");
        char out[160];
        snprintf(out, sizeof(out), "%s|%s", buf, ua ? ua : "(none)");
        http_reply_text(req, 200, out);
    } else if (strcmp(p, "/big") == 0) {
        static char big[4 << 20];
        memset(big, 'b', sizeof(big));
        http_reply(req, 200, "application/octet-stream", big, sizeof(big));
    } else if (strcmp(p, "/peer") == 0) {
        http_reply_text(req, 200, http_req_peer(req));
    } else if (strcmp(p, "/async") == 0) {
        g_pending = req;
    } else if (!http_std_route(req, ready_cb, NULL)) {
        http_reply_status(req, 404);
    }
}

/* ---- client side ------------------------------------------------------------------ */

typedef struct cli {
    int fd;
    int eof;
    size_t len;
    char buf[256 * 1024];
} cli;

typedef struct resp {
    int status;
    char head[4096];
    char body[128 * 1024];
    size_t bodylen;
} resp;

static cli *cli_open(void)
{
    cli *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(S)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Loopback connect completes against the listen backlog, without the loop. */
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    return c;
}

static void cli_close(cli *c)
{
    close(c->fd);
    free(c);
}

static void pump(int ms) { loop_run_once(L, ms); }

/* Reads whatever is available into c->buf. */
static void cli_poll(cli *c)
{
    while (!c->eof && c->len < sizeof(c->buf)) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n > 0)
            c->len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            c->eof = 1;
        else
            break;
    }
}

static void cli_send(cli *c, const void *p, size_t n)
{
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN)
            return; /* the server may legitimately have closed (413) */
        assert_true(loop_mono_ms() < end);
        pump(5);
        cli_poll(c);
    }
}

static void cli_sends(cli *c, const char *s) { cli_send(c, s, strlen(s)); }

/* Tries to take one complete response out of c->buf. head_req: the request
 * was HEAD, so no body follows whatever Content-Length says. */
static int take_response(cli *c, resp *r, int head_req)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hl = (size_t)(end - c->buf) + 4;
    size_t cl = 0;
    char *h = memmem(c->buf, hl, "Content-Length: ", 16);
    if (h)
        cl = strtoul(h + 16, NULL, 10);
    if (head_req)
        cl = 0;
    if (c->len < hl + cl)
        return 0;
    assert_true(hl < sizeof(r->head) && cl < sizeof(r->body));
    memcpy(r->head, c->buf, hl);
    r->head[hl] = 0;
    memcpy(r->body, c->buf + hl, cl);
    r->body[cl] = 0;
    r->bodylen = cl;
    r->status = atoi(c->buf + 9);
    memmove(c->buf, c->buf + hl + cl, c->len - hl - cl);
    c->len -= hl + cl;
    return 1;
}

/* Waits for the next response (skipping a 100 Continue). Returns its status,
 * or -1 if the connection closed first / the deadline passed. */
static int cli_response(cli *c, resp *r, int head_req)
{
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    for (;;) {
        cli_poll(c);
        if (take_response(c, r, head_req)) {
            if (r->status == 100)
                continue;
            return r->status;
        }
        if (c->eof || loop_mono_ms() > end)
            return -1;
        pump(5);
    }
}

/* Waits until the server has closed the connection (and nothing else comes). */
static int cli_wait_eof(cli *c)
{
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (!c->eof && loop_mono_ms() < end) {
        pump(5);
        cli_poll(c);
    }
    return c->eof;
}

static int roundtrip(const char *req, resp *r)
{
    cli *c = cli_open();
    cli_sends(c, req);
    int st = cli_response(c, r, strncmp(req, "HEAD ", 5) == 0);
    cli_close(c);
    return st;
}

static resp R; /* large: keep it off the stack */

/* ---- fixtures --------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    L = loop_new();
    assert_non_null(L);
    metrics_reset(); /* each test counts its own refusals */
    S = http_server_new(L, "127.0.0.1:0", handler, NULL);
    assert_non_null(S);
    assert_true(http_server_port(S) > 0);
    g_pending = NULL;
    g_handled = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_server_free(S);
    if (g_pending)
        http_reply_status(g_pending, 500); /* detached by now: frees it */
    g_pending = NULL;
    loop_free(L);
    return 0;
}

/* Waits until the server holds exactly n connections. */
static int wait_conns(size_t n)
{
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (http_server_connections(S) != n && loop_mono_ms() < end)
        pump(5);
    return http_server_connections(S) == n;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_route_200(void **state)
{
    (void)state;
    assert_int_equal(roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &R), 200);
    assert_string_equal(R.body, "hello");
    assert_non_null(strstr(R.head, "Content-Length: 5\r\n"));
    assert_non_null(strstr(R.head, "Content-Type: text/plain; charset=utf-8\r\n"));
}

/* A header's value reaches the handler without the whitespace around it. */
static void test_header_value_trimmed(void **state)
{
    (void)state;
    assert_int_equal(roundtrip("GET /param?name=x HTTP/1.1\r\nHost: x\r\nX-Test: \t v 1 \t \r\n\r\n", &R), 200);
    assert_string_equal(R.body, "x|v 1");
}

static void test_404(void **state)
{
    (void)state;
    assert_int_equal(roundtrip("GET /nope HTTP/1.1\r\n\r\n", &R), 404);
    assert_string_equal(R.body, "Not Found\n");
}

static void test_std_routes(void **state)
{
    (void)state;
    metrics_series *m = metrics_counter("test_http_hits_total", "Hits.", NULL);
    metrics_add(m, 3);
    assert_int_equal(roundtrip("GET /healthz HTTP/1.1\r\n\r\n", &R), 200);
    assert_string_equal(R.body, "ok\n");
    assert_int_equal(roundtrip("GET /metrics HTTP/1.1\r\n\r\n", &R), 200);
    assert_non_null(strstr(R.head, "Content-Type: " METRICS_CONTENT_TYPE "\r\n"));
    assert_non_null(strstr(R.body, "\ntest_http_hits_total 3\n"));
    assert_non_null(strstr(R.body, "process_open_fds "));
    assert_int_equal(roundtrip("GET /readyz HTTP/1.1\r\n\r\n", &R), 503);
    assert_string_equal(R.body, "{\"ready\":false,\"why\":\"test\"}\n");
    assert_int_equal(roundtrip("POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R), 405);
    assert_non_null(strstr(R.head, "Allow: GET, HEAD\r\n"));
    assert_int_equal(roundtrip("HEAD /healthz HTTP/1.1\r\n\r\n", &R), 200);
    assert_non_null(strstr(R.head, "Content-Length: 3\r\n"));
    assert_int_equal(R.bodylen, 0);
    metrics_reset();
}

static void test_std_handler(void **state)
{
    (void)state;
    http_std std = { NULL, NULL };
    http_server *s2 = http_server_new(L, ":0", http_std_handler, &std);
    assert_non_null(s2);
    http_server *keep = S;
    S = s2;
    assert_int_equal(roundtrip("GET /readyz HTTP/1.1\r\n\r\n", &R), 200);
    assert_int_equal(roundtrip("GET /other HTTP/1.1\r\n\r\n", &R), 404);
    S = keep;
    http_server_free(s2);
}

static void test_garbage_400(void **state)
{
    (void)state;
    assert_int_equal(roundtrip("GET /x HTTP/1.1\r\nno colon here\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("GET noslash HTTP/1.1\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("GET /a\x01b HTTP/1.1\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("G(T /x HTTP/1.1\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("GET /x HTTP/2.0\r\n\r\n", &R), 505);
    assert_int_equal(roundtrip("GET /x HTTP/1.1\r\nContent-Length: x1\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("GET /x HTTP/1.1\r\nA: b\x7f\r\n\r\n", &R), 400);
    assert_int_equal(roundtrip("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &R), 501);
    /* A request line that is not three words (libmicrohttpd closes without
     * a word; the 400 is ours). */
    assert_int_equal(roundtrip("GARBAGE\r\n\r\n", &R), 400);
    cli *c = cli_open();
    cli_sends(c, "GARBAGE\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 400);
    assert_true(cli_wait_eof(c));
    cli_close(c);
    /* Binary noise without a line end is dropped at the timeout. */
    http_server_set_timeout(S, 150);
    uint64_t t0 = loop_mono_ms();
    c = cli_open();
    cli_sends(c, "\x16\x03\x01\x02\x00\x01");
    assert_true(cli_wait_eof(c));
    assert_true(loop_mono_ms() - t0 < 2500);
    cli_close(c);
    assert_int_equal(g_handled, 0);
}

static void test_huge_body_413(void **state)
{
    (void)state;
    static char big[HTTP_MAX_BODY + 5000];
    memset(big, 'a', sizeof(big));
    cli *c = cli_open();
    char head[128];
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof(big));
    cli_sends(c, head);
    cli_send(c, big, sizeof(big));
    assert_int_equal(cli_response(c, &R, 0), 413);
    assert_true(cli_wait_eof(c));
    cli_close(c);
    /* A head over 8 KiB. */
    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nX-Big: ");
    cli_send(c, big, HTTP_MAX_HEAD);
    cli_sends(c, "\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 431);
    cli_close(c);
    assert_int_equal(g_handled, 0);
}

/* A head just under the limit, in many headers, is served (the
 * per-connection memory is sized for it). */
static void test_big_head_ok(void **state)
{
    (void)state;
    static char req[HTTP_MAX_HEAD + 512];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET /param?name=big");
    for (int i = 0; i < 63; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "&p%d=%d", i, i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\n");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "X-H%02d: %0100d\r\n", i, i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, "X-Test: ");
    while (n < HTTP_MAX_HEAD - 300)
        req[n++] = 'v';
    n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n\r\n");
    cli *c = cli_open();
    cli_send(c, req, n);
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_int_equal(strncmp(R.body, "big|vvvv", 8), 0);
    /* And again on the same connection. */
    cli_send(c, req, n);
    assert_int_equal(cli_response(c, &R, 0), 200);
    cli_close(c);
    /* One query parameter more than the limit: 414 at once, then closed. */
    n = (size_t)snprintf(req, sizeof(req), "GET /param?name=big");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "&p%d", i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\n\r\n");
    uint64_t t0 = loop_mono_ms();
    c = cli_open();
    cli_send(c, req, n);
    assert_int_equal(cli_response(c, &R, 0), 414);
    assert_true(cli_wait_eof(c));
    assert_true(loop_mono_ms() - t0 < 1000);
    cli_close(c);
    assert_int_equal(g_handled, 2);
}

static void test_body_echo(void **state)
{
    (void)state;
    static char body[HTTP_MAX_BODY];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    cli *c = cli_open();
    char head[160];
    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\nExpect: 100-continue\r\n\r\n", sizeof(body));
    cli_sends(c, head);
    cli_send(c, body, sizeof(body));
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_int_equal(R.bodylen, sizeof(body));
    assert_memory_equal(R.body, body, sizeof(body));
    cli_close(c);
}

static void test_keepalive_pipelining(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                 "GET /param?name=a%20b+c HTTP/1.1\r\nX-Test: t1\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "hello");
    assert_non_null(strcasestr(R.head, "Connection: keep-alive\r\n"));
    assert_int_equal(cli_response(c, &R, 0), 404);
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "a b c|t1");
    /* Same connection, later, then an explicit close. */
    cli_sends(c, "GET /param?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "err -2|(none)");
    assert_non_null(strstr(R.head, "Connection: close\r\n"));
    assert_true(cli_wait_eof(c));
    cli_close(c);
    /* HTTP/1.0 closes by default. */
    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_true(cli_wait_eof(c));
    cli_close(c);
    assert_true(wait_conns(0));
}

static void test_async_reply(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli_sends(c, "GET /async?q=1 HTTP/1.1\r\n\r\n");
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (!g_pending && loop_mono_ms() < end)
        pump(5);
    assert_non_null(g_pending);
    /* Nothing is sent until we reply. */
    for (int i = 0; i < 10; i++)
        pump(5);
    cli_poll(c);
    assert_int_equal(c->len, 0);
    assert_false(http_req_gone(g_pending));
    assert_string_equal(http_req_query(g_pending), "q=1");
    http_reply_text(g_pending, 202, "later");
    g_pending = NULL;
    assert_int_equal(cli_response(c, &R, 0), 202);
    assert_string_equal(R.body, "later");
    /* The connection is usable again afterwards. */
    cli_sends(c, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    cli_close(c);
}

/* While a request is with the handler, a client that keeps pipelining fills
 * a bounded buffer and is then not read any more: the loop goes idle instead
 * of spinning on a readable socket. */
static void test_pipeline_backpressure(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli_sends(c, "GET /async HTTP/1.1\r\n\r\n");
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (!g_pending && loop_mono_ms() < end)
        pump(5);
    assert_non_null(g_pending);
    static const char one[] = "GET /hello HTTP/1.1\r\n\r\n";
    static char more[(sizeof(one) - 1) * 2800]; /* 64 KiB: more than the server buffers */
    for (size_t i = 0; i < sizeof(more); i += sizeof(one) - 1)
        memcpy(more + i, one, sizeof(one) - 1);
    cli_send(c, more, sizeof(more));
    for (int i = 0; i < 20; i++)
        pump(1);
    assert_int_equal(loop_run_once(L, 20), 0);
    http_reply_text(g_pending, 200, "first");
    g_pending = NULL;
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "first");
    /* The pipelined requests are then served in order. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cli_response(c, &R, 0), 200);
        assert_string_equal(R.body, "hello");
    }
    cli_close(c);
}

static void test_async_disconnect(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli_sends(c, "GET /async HTTP/1.1\r\n\r\n");
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (!g_pending && loop_mono_ms() < end)
        pump(5);
    assert_non_null(g_pending);
    cli_close(c);
    end = loop_mono_ms() + DEADLINE_MS;
    while (!http_req_gone(g_pending) && loop_mono_ms() < end)
        pump(5);
    assert_true(http_req_gone(g_pending));
    assert_true(wait_conns(0));
    /* Still readable, and replying only frees it. */
    assert_string_equal(http_req_path(g_pending), "/async");
    http_reply_text(g_pending, 200, "too late");
    g_pending = NULL;
    pump(5);
    /* A request still pending when the server goes away is detached as well. */
    c = cli_open();
    cli_sends(c, "GET /async HTTP/1.1\r\n\r\n");
    end = loop_mono_ms() + DEADLINE_MS;
    while (!g_pending && loop_mono_ms() < end)
        pump(5);
    assert_non_null(g_pending);
    http_server_free(S);
    assert_true(http_req_gone(g_pending));
    http_reply_text(g_pending, 200, "gone");
    g_pending = NULL;
    assert_true(cli_wait_eof(c));
    cli_close(c);
    S = http_server_new(L, "127.0.0.1:0", handler, NULL);
    assert_non_null(S);
}

static void test_timeouts(void **state)
{
    (void)state;
    http_server_set_timeout(S, 150);
    uint64_t t0 = loop_mono_ms();
    cli *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\n");
    assert_int_equal(cli_response(c, &R, 0), 408);
    assert_true(cli_wait_eof(c));
    assert_true(loop_mono_ms() - t0 < 1000);
    cli_close(c);
    /* An idle keep-alive connection is closed quietly. */
    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_true(cli_wait_eof(c));
    assert_int_equal(c->len, 0);
    cli_close(c);
    assert_true(wait_conns(0));
}

/* A client trickling its headers a byte at a time keeps the connection busy,
 * which restarts an idle timeout but not the request's deadline. (A request
 * whose request line is not complete at the deadline is closed without an
 * answer.) */
static void test_trickle_deadline(void **state)
{
    (void)state;
    http_server_set_timeout(S, 300);
    static const char req[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    cli *c = cli_open();
    uint64_t t0 = loop_mono_ms();
    cli_sends(c, "GET /hello HTTP/1.1\r\n");
    for (size_t i = 0; i < sizeof(req) - 1 && !c->eof; i++) {
        cli_send(c, req + i, 1);
        uint64_t until = loop_mono_ms() + 20;
        while (loop_mono_ms() < until)
            pump(5);
        cli_poll(c);
    }
    assert_true(cli_wait_eof(c));
    assert_true(loop_mono_ms() - t0 < 1200);
    assert_int_equal(cli_response(c, &R, 0), 408);
    assert_int_equal(g_handled, 0);
    cli_close(c);
    assert_int_equal(roundtrip("GET /metrics HTTP/1.1\r\n\r\n", &R), 200);
    assert_non_null(strstr(R.body, "\ntether_http_refused_total{reason=\"deadline\"} 1\n"));
    assert_true(wait_conns(0));
}

/* A client that asks for a large reply and never reads it is dropped at the
 * deadline: it cannot hold its connection (and 4 MiB) for ever. */
static void test_slow_reader_deadline(void **state)
{
    (void)state;
    http_server_set_timeout(S, 300);
    cli *c = cli_open();
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    cli_sends(c, "GET /big HTTP/1.1\r\n\r\n");
    uint64_t t0 = loop_mono_ms();
    assert_true(wait_conns(1));
    assert_true(wait_conns(0)); /* without reading a byte */
    assert_true(loop_mono_ms() - t0 < 1500);
    cli_close(c);
}

/* Replaces S by a server with options o (on a free port or, hostport NULL,
 * without a listener). */
static void server_with(const char *hostport, const http_opts *o)
{
    http_server_free(S);
    S = http_server_new_opts(L, hostport, o, handler, NULL);
    assert_non_null(S);
}

static void test_conn_limit_503(void **state)
{
    (void)state;
    server_with("127.0.0.1:0", &(http_opts){ .per_ip_conns = HTTP_MAX_CONNS + 1 });
    static cli *cs[HTTP_MAX_CONNS];
    for (int i = 0; i < HTTP_MAX_CONNS; i++)
        cs[i] = cli_open();
    assert_true(wait_conns(HTTP_MAX_CONNS));
    cli *extra = cli_open();
    cli_sends(extra, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(extra, &R, 0), 503);
    assert_non_null(strstr(R.head, "Retry-After: 1\r\n"));
    assert_true(cli_wait_eof(extra));
    cli_close(extra);
    assert_int_equal(http_server_connections(S), HTTP_MAX_CONNS);
    /* The admitted ones are served normally. */
    cli_sends(cs[0], "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(cs[0], &R, 0), 200);
    for (int i = 0; i < HTTP_MAX_CONNS; i++)
        cli_close(cs[i]);
    assert_true(wait_conns(0));
}

/* Connects from 127.0.0.2 (all of 127/8 is loopback). */
static cli *cli_open_from(const char *src)
{
    cli *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in b = { .sin_family = AF_INET };
    assert_int_equal(inet_pton(AF_INET, src, &b.sin_addr), 1);
    assert_int_equal(bind(c->fd, (struct sockaddr *)&b, sizeof(b)), 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(S)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    return c;
}

static void test_per_ip_limit(void **state)
{
    (void)state;
    server_with("127.0.0.1:0", &(http_opts){ .per_ip_conns = 3 });
    cli *cs[3];
    for (int i = 0; i < 3; i++)
        cs[i] = cli_open_from("127.0.0.2");
    assert_true(wait_conns(3));
    cli *extra = cli_open_from("127.0.0.2");
    cli_sends(extra, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(extra, &R, 0), 503);
    cli_close(extra);
    assert_int_equal(roundtrip("GET /metrics HTTP/1.1\r\n\r\n", &R), 200);
    assert_non_null(strstr(R.body, "\ntether_http_refused_total{reason=\"per_address\"} 1\n"));
    /* Another address is not affected, and sees itself as the peer. */
    cli *other = cli_open();
    cli_sends(other, "GET /peer HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(other, &R, 0), 200);
    assert_string_equal(R.body, "127.0.0.1");
    cli_close(other);
    /* A slot freed is a slot usable again. */
    cli_close(cs[0]);
    assert_true(wait_conns(2));
    cs[0] = cli_open_from("127.0.0.2");
    cli_sends(cs[0], "GET /peer HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(cs[0], &R, 0), 200);
    assert_string_equal(R.body, "127.0.0.2");
    for (int i = 0; i < 3; i++)
        cli_close(cs[i]);
    assert_true(wait_conns(0));
}

/* Framing the server must refuse before any handler runs, closing after. */
static void test_strict_framing(void **state)
{
    (void)state;
    static const char *bad[] = {
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cli *c = cli_open();
        cli_sends(c, bad[i]);
        assert_int_equal(cli_response(c, &R, 0), 400);
        assert_non_null(strcasestr(R.head, "Connection: close\r\n"));
        assert_true(cli_wait_eof(c));
        cli_close(c);
    }
    assert_int_equal(g_handled, 0);
    /* Junk after a body: the body's request is answered once, the junk
     * with 400, then the connection closes. */
    static const char *junk[] = { "JUNK JUNK JUNK\r\n\r\n", "JUNK\r\n\r\n", "\x01\x02\r\n" };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        cli *c = cli_open();
        cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        cli_sends(c, junk[i]);
        assert_int_equal(cli_response(c, &R, 0), 200);
        assert_string_equal(R.body, "hello");
        assert_int_equal(cli_response(c, &R, 0), 400);
        assert_true(cli_wait_eof(c));
        cli_close(c);
    }
    assert_int_equal(g_handled, 3);
    /* A Connection: close reply is not followed by anything. */
    cli *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_true(cli_wait_eof(c));
    assert_int_equal(c->len, 0);
    cli_close(c);
    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_true(cli_wait_eof(c));
    assert_int_equal(c->len, 0);
    cli_close(c);
}

/* Two pipelined POSTs with bodies, sent in one write: each body reaches the
 * handler exactly once, the answers come in order, and the loop goes idle. */
static void test_pipelined_posts(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nfirst"
                 "POST /echo HTTP/1.1\r\nContent-Length: 6\r\n\r\nsecond"
                 "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "first");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "second");
    assert_int_equal(cli_response(c, &R, 0), 200);
    assert_string_equal(R.body, "hello");
    assert_int_equal(g_handled, 3);
    /* Idle with an open keep-alive connection: nothing runs. */
    for (int i = 0; i < 5; i++)
        pump(1);
    assert_int_equal(loop_run_once(L, 50), 0);
    assert_int_equal(g_handled, 3);
    cli_close(c);
}

/* An adopt-only server (no listener) serving a socket accepted elsewhere. */
static void test_adopt(void **state)
{
    (void)state;
    http_server *keep = S;
    S = http_server_new_opts(L, NULL, &(http_opts){ .per_ip_conns = 1 }, handler, NULL);
    assert_non_null(S);
    assert_int_equal(http_server_port(S), 0);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    int fds[2];
    cli *cs[2];
    for (int i = 0; i < 2; i++) {
        cs[i] = calloc(1, sizeof(cli));
        cs[i]->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(cs[i]->fd, (struct sockaddr *)&a, sizeof(a)), 0);
        fcntl(cs[i]->fd, F_SETFL, fcntl(cs[i]->fd, F_GETFL) | O_NONBLOCK);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        fds[i] = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        assert_true(fds[i] >= 0);
        /* Bytes already waiting when the socket is handed over are served. */
        cli_sends(cs[i], "GET /peer HTTP/1.1\r\n\r\n");
        int r = http_server_adopt(S, fds[i], (struct sockaddr *)&ss, sl);
        assert_int_equal(r, i == 0 ? 0 : -EBUSY); /* per_ip_conns 1 */
    }
    assert_int_equal(cli_response(cs[0], &R, 0), 200);
    assert_string_equal(R.body, "127.0.0.1");
    assert_int_equal(cli_response(cs[1], &R, 0), 503);
    assert_int_equal(http_server_connections(S), 1);
    assert_int_equal(http_server_adopt(S, -1, (struct sockaddr *)&a, sizeof(a)), -EINVAL);
    cli_close(cs[0]);
    cli_close(cs[1]);
    assert_true(wait_conns(0));
    close(lfd);
    http_server_free(S);
    S = keep;
}

/* A client that leaves while its request waits for an async reply, among
 * other connections: only its request is detached, the others carry on. */
static void test_async_leave_others(void **state)
{
    (void)state;
    cli *c = cli_open();
    cli *o = cli_open();
    cli_sends(c, "GET /async HTTP/1.1\r\n\r\n");
    uint64_t end = loop_mono_ms() + DEADLINE_MS;
    while (!g_pending && loop_mono_ms() < end)
        pump(5);
    assert_non_null(g_pending);
    http_req *mine = g_pending;
    g_pending = NULL;
    cli_close(c);
    end = loop_mono_ms() + DEADLINE_MS;
    while (!http_req_gone(mine) && loop_mono_ms() < end)
        pump(5);
    assert_true(http_req_gone(mine));
    assert_string_equal(http_req_peer(mine), "127.0.0.1");
    cli_sends(o, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(o, &R, 0), 200);
    http_reply_status(mine, 200); /* only frees it */
    cli_sends(o, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(o, &R, 0), 200);
    cli_close(o);
    assert_true(wait_conns(0));
}

static void test_bind(void **state)
{
    (void)state;
    errno = 0;
    assert_null(http_server_new(L, "nonsense", handler, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(http_server_new(L, "example.com:80", handler, NULL));
    assert_int_equal(errno, EINVAL);
    char hp[32];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", http_server_port(S));
    assert_null(http_server_new(L, hp, handler, NULL));
    assert_int_equal(errno, EADDRINUSE);
    http_server *v6 = http_server_new(L, "[::1]:0", handler, NULL);
    if (!v6 && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT))
        return; /* no IPv6 loopback on this machine */
    assert_non_null(v6);
    http_server_free(v6);
}

int main(void)
{
    log_level = LOG_LVL_WARN;
    metrics_process_enable(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_route_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_value_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_std_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_std_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_body_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_head_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_limit_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_ip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_posts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_leave_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
