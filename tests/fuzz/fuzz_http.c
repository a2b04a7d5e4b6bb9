/* fuzz_http.c -- libFuzzer target for the HTTP request path of lib/http.
 *
 * Each input is what one client sends on one connection: a fresh adopt-only
 * server (hostport NULL) on the process loop adopts one end of a socketpair,
 * the input is written into the other end, and the loop runs until the server
 * has answered and gone quiet or closed (bounded by an iteration budget);
 * then the client end is closed, the loop runs until the server has dropped
 * the connection, and the server is freed. No leak may remain (LeakSanitizer).
 *
 * The handler reads everything a request offers (method, path, query, a few
 * headers, the body, a query parameter, the peer) and replies inline, except
 * for paths starting with /a: those are answered later from the driver,
 * after the loop went quiet, or left to be detached when the client leaves,
 * so suspension, resumption and detachment are all exercised.
 *
 * Checked beyond ASan/UBSan: a body reaches the handler whole (its length is
 * the declared Content-Length, as the server refuses anything else), each
 * request is handed over at most once, and every response the client gets
 * starts with a status line.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_http: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define MAX_PENDING 8
#define BUDGET 400 /* loop iterations per input */

static loop *L;
static http_req *pending[MAX_PENDING];
static int npending;

static void handler(http_req *req, void *arg)
{
    (void)arg;
    size_t n = strlen(http_req_method(req)) + strlen(http_req_path(req)) + strlen(http_req_query(req)) +
               strlen(http_req_peer(req));
    static const char *names[] = { "Host", "Content-Length", "Connection", "Expect", "X-Test" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = http_req_header(req, names[i]);
        n += v ? strlen(v) : 0;
    }
    size_t blen;
    const char *body = http_req_body(req, &blen);
    CHECK(body[blen] == 0);
    const char *cl = http_req_header(req, "Content-Length");
    CHECK(cl ? strtoull(cl, NULL, 10) == blen : blen == 0);
    char buf[64];
    int r = http_req_query_param(req, "q", buf, sizeof(buf));
    CHECK(r >= -ENOSPC);
    if (strncmp(http_req_path(req), "/a", 2) == 0 && npending < MAX_PENDING) {
        pending[npending++] = req;
        return;
    }
    if (http_std_route(req, NULL, NULL))
        return;
    http_reply_ex(req, (int)(n % 700), "text/plain", "X-Len: 1\r\n", body, blen);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_level = LOG_LVL_ERROR;
    L = loop_new();
    CHECK(L);
    return 0;
}

/* Reads what the server sent; returns 1 at EOF (or a reset). */
static int drain(int fd, char *acc, size_t *acclen, size_t cap)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n < cap - *acclen ? (size_t)n : cap - *acclen;
            memcpy(acc + *acclen, buf, take);
            *acclen += take;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            return 1;
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_opts o = { .max_conns = 4, .per_ip_conns = 4, .max_body = 4096, .timeout_ms = 300 };
    http_server *s = http_server_new_opts(L, NULL, &o, handler, NULL);
    CHECK(s);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000) };
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(http_server_adopt(s, sv[1], (struct sockaddr *)&peer, sizeof(peer)) == 0);
    static char got[64 * 1024];
    size_t gotlen = 0, off = 0;
    int eof = 0, quiet = 0;
    for (int i = 0; i < BUDGET && !eof; i++) {
        if (off < size) {
            ssize_t w = send(sv[0], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
        }
        int ran = loop_run_once(L, 0);
        eof = drain(sv[0], got, &gotlen, sizeof(got));
        quiet = ran == 0 && off == size ? quiet + 1 : 0;
        if (quiet >= 3) {
            if (npending == 0)
                break;
            /* Quiet with requests held: answer them now (resumption). */
            for (int k = 0; k < npending; k++)
                http_reply_text(pending[k], 200, "later");
            npending = 0;
            quiet = 0;
        }
    }
    if (gotlen >= 5)
        CHECK(memcmp(got, "HTTP/", 5) == 0);
    /* The client leaves; whatever is still held is detached, and every
     * connection is gone by the server's deadline (300 ms here: a request
     * shut down under MHD before its head was whole, e.g. 414, may linger
     * until then, never longer, and leaks nothing). */
    close(sv[0]);
    for (int i = 0; i < 1000 && http_server_connections(s) > 0; i++)
        loop_run_once(L, 1);
    CHECK(http_server_connections(s) == 0);
    for (int k = 0; k < npending; k++) {
        CHECK(http_req_gone(pending[k]));
        http_reply_status(pending[k], 200); /* frees it */
    }
    npending = 0;
    http_server_free(s);
    return 0;
}
