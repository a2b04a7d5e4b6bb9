/* pb_net.c -- peerbench's sockets: a minimal WebSocket client (RFC 6455,
 * client side: upgrade request, masked frames out, unmasked frames in,
 * ping/pong, close, fragments) and an HTTP/1.1 keep-alive client for
 * pipelined POSTs, both on lib/loop.h.
 *
 * Why not libwebsockets: its client parses frames byte by byte and costs
 * about 10 us of CPU per received frame on this machine (bench/README.md), so
 * the generator's core would saturate near 100k deliveries/s and cap every
 * system's measured maximum at the generator's. Here a read takes up to
 * 256 KiB at once and frames are parsed in place, so one core receives well
 * over a million small frames per second, and all three systems pay the same.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pb.h"

#define RDBUF (256 * 1024)
#define MAX_FRAME (16u << 20)
#define MAX_HEADER (16 * 1024)

static char g_rd[RDBUF];
static void net_io(loop *l, int fd, unsigned ev, void *arg);
static uint32_t g_rand = 2463534242u;

static uint32_t rnd(void)
{
    g_rand ^= g_rand << 13;
    g_rand ^= g_rand >> 17;
    g_rand ^= g_rand << 5;
    return g_rand;
}

static int grow(char **buf, uint32_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX)
        return -ENOMEM;
    char *p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = (uint32_t)n;
    return 0;
}

static void set_events(pb_conn *c)
{
    unsigned ev = LOOP_READ;
    if (c->out_len || c->state == PB_S_CONNECTING)
        ev |= LOOP_WRITE;
    loop_mod_fd(PB_LOOP, c->fd, ev);
}

void pb_conn_close(pb_conn *c, int abort)
{
    if (c->fd >= 0) {
        loop_del_fd(PB_LOOP, c->fd);
        if (abort) {
            struct linger lg = { 1, 0 };
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(c->fd);
    }
    c->fd = -1;
    c->state = PB_S_IDLE;
    c->in_len = c->out_len = c->frag_len = 0;
    /* Idle and lost connections keep no buffers: the idle workload measures
     * the servers' memory, not ours, but 10,000 of them add up. */
    free(c->in);
    free(c->out);
    free(c->frag);
    c->in = c->out = c->frag = NULL;
    c->in_cap = c->out_cap = c->frag_cap = 0;
}

static void fail(pb_conn *c, const char *why)
{
    pb_conn_close(c, 0);
    pb_conn_lost(c, why);
}

/* Writes what is queued. Returns 0, or -1 after failing c. */
static int flush(pb_conn *c)
{
    uint32_t off = 0;
    while (off < c->out_len) {
        ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            fail(c, "send failed");
            return -1;
        }
        off += (uint32_t)w;
    }
    if (off) {
        memmove(c->out, c->out + off, c->out_len - off);
        c->out_len -= off;
    }
    set_events(c);
    return 0;
}

static void queue(pb_conn *c, const char *s, size_t n)
{
    if (c->fd < 0)
        return;
    size_t done = 0;
    if (!c->out_len && c->state >= PB_S_UPGRADING) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w > 0)
            done = (size_t)w;
        /* A hard error is found again by the write event below. */
    }
    if (done == n)
        return;
    if (grow(&c->out, &c->out_cap, c->out_len + (n - done)) < 0)
        return;
    memcpy(c->out + c->out_len, s + done, n - done);
    c->out_len += (uint32_t)(n - done);
    set_events(c);
}

void pb_conn_send_raw(pb_conn *c, const char *s, size_t n)
{
    queue(c, s, n);
}

static void send_frame(pb_conn *c, int opcode, const char *s, size_t n)
{
    static char fb[MAX_FRAME + 14];
    if (n > MAX_FRAME)
        return;
    size_t h = 0;
    fb[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        fb[h++] = (char)(0x80 | n);
    } else if (n < 65536) {
        fb[h++] = (char)(0x80 | 126);
        fb[h++] = (char)(n >> 8);
        fb[h++] = (char)n;
    } else {
        fb[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--)
            fb[h++] = (char)((uint64_t)n >> (8 * i));
    }
    uint32_t key = rnd();
    unsigned char m[4];
    memcpy(m, &key, 4);
    memcpy(fb + h, m, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        fb[h + i] = (char)(s[i] ^ m[i & 3]);
    queue(c, fb, h + n);
}

void pb_conn_send_text(pb_conn *c, const char *s, size_t n)
{
    send_frame(c, 1, s, n);
}

size_t pb_conn_backlog(const pb_conn *c)
{
    return c->out_len;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static void send_upgrade(pb_conn *c)
{
    char path[512], key[32], req[1024];
    const char *proto = NULL;
    unsigned char k[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = rnd();
        memcpy(k + i, &r, 4);
    }
    b64(k, 16, key);
    pb_d_request(c, path, sizeof(path), &proto);
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, PB_CFG.host, PB_CFG.port, key, proto ? "Sec-WebSocket-Protocol: " : "",
                     proto ? proto : "", proto ? "\r\n" : "");
    c->state = PB_S_UPGRADING;
    queue(c, req, (size_t)n);
}

int pb_conn_start(pb_conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)PB_CFG.port) };
    inet_pton(AF_INET, PB_CFG.host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(fd);
        return e;
    }
    c->fd = fd;
    c->state = PB_S_CONNECTING;
    c->t_attempt_ns = pb_now_ns();
    c->attempts++;
    int r = loop_add_fd(PB_LOOP, fd, LOOP_READ | LOOP_WRITE, net_io, c);
    if (r < 0) {
        close(fd);
        c->fd = -1;
        c->state = PB_S_IDLE;
        return r;
    }
    return 0;
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Each consumer returns the bytes it used, or -1 when c was closed by it or
 * by a callback (then nothing of c may be touched but its fields). */

static long consume_upgrade(pb_conn *c, char *p, size_t n)
{
    char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > MAX_HEADER) {
            fail(c, "upgrade answer too long");
            return -1;
        }
        return 0;
    }
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        char why[64];
        snprintf(why, sizeof(why), "upgrade refused: %.12s", p);
        fail(c, why);
        return -1;
    }
    c->state = PB_S_OPEN;
    int fd = c->fd;
    pb_d_on_open(c);
    if (c->fd != fd)
        return -1;
    return (end + 4) - p;
}

static long consume_http(pb_conn *c, char *p, size_t n)
{
    char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > MAX_HEADER) {
            fail(c, "http answer too long");
            return -1;
        }
        return 0;
    }
    int status = (n > 12 && !memcmp(p, "HTTP/1.", 7)) ? atoi(p + 9) : 0;
    size_t hl = (size_t)(end + 4 - p), cl = 0;
    for (char *h = memchr(p, '\n', hl); h && h < end; h = memchr(h + 1, '\n', (size_t)(end - h))) {
        if ((size_t)(end - h) > 16 && !strncasecmp(h + 1, "content-length:", 15))
            cl = strtoul(h + 16, NULL, 10);
    }
    if (n < hl + cl)
        return 0;
    int fd = c->fd;
    pb_d_on_http(c, status);
    if (c->fd != fd)
        return -1;
    return (long)(hl + cl);
}

static int deliver(pb_conn *c, char *p, size_t n)
{
    int fd = c->fd;
    pb_d_on_message(c, p, n);
    return c->fd == fd ? 0 : -1;
}

static long consume_frame(pb_conn *c, char *p, size_t n)
{
    if (n < 2)
        return 0;
    unsigned char b0 = (unsigned char)p[0], b1 = (unsigned char)p[1];
    uint64_t len = b1 & 0x7f;
    size_t h = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)(unsigned char)p[2] << 8 | (unsigned char)p[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | (unsigned char)p[2 + i];
        h = 10;
    }
    if (len > MAX_FRAME) {
        fail(c, "frame too large");
        return -1;
    }
    size_t mask_at = h;
    if (b1 & 0x80)
        h += 4;
    if (n < h + len)
        return 0;
    char *pl = p + h;
    if (b1 & 0x80)
        for (uint64_t i = 0; i < len; i++)
            pl[i] ^= p[mask_at + (i & 3)];
    int op = b0 & 0x0f, fin = b0 & 0x80;
    switch (op) {
    case 0x0: /* continuation */
    case 0x1:
    case 0x2:
        if (fin && op != 0 && !c->frag_len) {
            if (deliver(c, pl, len) < 0)
                return -1;
            break;
        }
        if (grow(&c->frag, &c->frag_cap, c->frag_len + len + 1) < 0) {
            fail(c, "out of memory");
            return -1;
        }
        memcpy(c->frag + c->frag_len, pl, len);
        c->frag_len += (uint32_t)len;
        if (fin) {
            uint32_t fl = c->frag_len;
            c->frag_len = 0;
            if (deliver(c, c->frag, fl) < 0)
                return -1;
        }
        break;
    case 0x8: {
        int code = len >= 2 ? ((unsigned char)pl[0] << 8 | (unsigned char)pl[1]) : 1005;
        char why[48];
        snprintf(why, sizeof(why), "closed by the server (%d)", code);
        send_frame(c, 0x8, pl, len >= 2 ? 2 : 0);
        flush(c);
        if (c->fd >= 0)
            fail(c, why);
        return -1;
    }
    case 0x9:
        send_frame(c, 0xA, pl, len);
        break;
    default:
        break;
    }
    return (long)(h + len);
}

/* Consumes what it can of p; keeps the rest in c->in. Returns -1 if c closed. */
static int consume(pb_conn *c, char *p, size_t n, int from_in)
{
    size_t off = 0;
    while (off < n) {
        long used;
        if (c->state == PB_S_UPGRADING)
            used = consume_upgrade(c, p + off, n - off);
        else if (c->http)
            used = consume_http(c, p + off, n - off);
        else
            used = consume_frame(c, p + off, n - off);
        if (used < 0)
            return -1;
        if (used == 0)
            break;
        off += (size_t)used;
    }
    size_t rest = n - off;
    if (from_in) {
        memmove(c->in, c->in + off, rest);
        c->in_len = (uint32_t)rest;
    } else if (rest) {
        if (grow(&c->in, &c->in_cap, rest) < 0) {
            fail(c, "out of memory");
            return -1;
        }
        memcpy(c->in, p + off, rest);
        c->in_len = (uint32_t)rest;
    }
    if (!c->in_len && c->in_cap > 65536) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static void on_readable(pb_conn *c)
{
    for (int round = 0; round < 4; round++) {
        ssize_t r = recv(c->fd, g_rd, RDBUF, 0);
        if (r == 0) {
            fail(c, "closed by the server (EOF)");
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            fail(c, errno == ECONNREFUSED ? "connection refused" : "connection reset");
            return;
        }
        int rc;
        if (c->in_len) {
            if (grow(&c->in, &c->in_cap, c->in_len + (size_t)r) < 0) {
                fail(c, "out of memory");
                return;
            }
            memcpy(c->in + c->in_len, g_rd, (size_t)r);
            c->in_len += (uint32_t)r;
            rc = consume(c, c->in, c->in_len, 1);
        } else {
            rc = consume(c, g_rd, (size_t)r, 0);
        }
        if (rc < 0 || c->fd < 0 || r < RDBUF)
            return;
    }
}

static void net_io(loop *l, int fd, unsigned ev, void *arg)
{
    (void)l;
    pb_conn *c = arg;
    if (c->fd != fd)
        return;
    if (c->state == PB_S_CONNECTING) {
        if (!(ev & (LOOP_WRITE | LOOP_ERROR | LOOP_READ)))
            return;
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fail(c, err == ECONNREFUSED ? "connection refused" : "connect failed");
            return;
        }
        if (c->http) {
            c->state = PB_S_OPEN;
            set_events(c);
            pb_d_on_open(c);
            return;
        }
        send_upgrade(c);
        if (c->fd < 0 || flush(c) < 0)
            return;
        return;
    }
    if (ev & LOOP_WRITE) {
        if (flush(c) < 0)
            return;
    }
    if (ev & (LOOP_READ | LOOP_ERROR))
        on_readable(c);
}
