/* gw_ws.c -- the WebSocket connection's socket: RFC 6455 framing on lib/loop.
 *
 * gw_listen.c answers the upgrade and hands the socket over here. Reads go
 * into one buffer shared by every connection and are parsed with
 * lib/wsframe in place: payload chunks go to gw_conn_rx as they arrive (it
 * reassembles fragmented messages, bounded by TETHER_MAX_FRAME), control
 * frames are answered here. Compressed messages (permessage-deflate) are
 * gathered, bounded, and inflated whole into a bounded buffer.
 *
 * The client's violations fail the connection: an unmasked frame, RSV bits
 * that were not negotiated, a continuation without a message or a new
 * message inside one, a malformed header: 1002; text that is not UTF-8 (or a
 * compressed message that does not inflate): 1007; a compressed message over
 * TETHER_MAX_FRAME as sent: 1009, once inflated: 4505 (what a plain frame far
 * over the limit gets; a plain frame over it is skipped with error 4413).
 *
 * Writes: gw_ws_write sends at once and keeps what the socket does not take
 * as the connection's tail; while there is a tail the loop watches only for
 * writability, so a client that does not read is not read either.
 * Connections are freed only from their own zero-delay timer (gw_ws_kill), so
 * no caller ever sees its connection vanish.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h"
#include "log.h"

#define RBUF_SIZE (64u << 10)
#define READS_PER_WAKEUP 4

static unsigned char rbuf[RBUF_SIZE];
static unsigned char *zout;   /* inflated messages, TETHER_MAX_FRAME bytes */

static void on_io(loop *l, int fd, unsigned events, void *arg);

static void destroy(gw_conn *c)
{
    loop_timer_stop(G.l, &c->close_timer);
    loop_del_fd(G.l, c->fd);
    close(c->fd);
    gw_listen_release(c->peer);
    gw_conn_closed(c);
}

static void kill_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    destroy(arg);
}

void gw_ws_kill(gw_conn *c)
{
    if (!c->dying) {
        c->dying = 1;
        if (c->events)
            loop_mod_fd(G.l, c->fd, 0);
        c->events = 0;
    }
    loop_timer_start(G.l, &c->close_timer, 0, 0, kill_cb, c);
}

void gw_ws_deadline(gw_conn *c, uint64_t ms)
{
    if (!c->dying)
        loop_timer_start(G.l, &c->close_timer, ms, 0, kill_cb, c);
}

void gw_ws_events(gw_conn *c)
{
    if (c->dying)
        return;
    unsigned want = c->taillen ? LOOP_WRITE : (!c->rx_paused && !c->close_rcvd ? LOOP_READ : 0);
    if (want != c->events && loop_mod_fd(G.l, c->fd, want) == 0)
        c->events = want;
}

gw_conn *gw_ws_adopt(int fd, const char *peer, int proto, int deflate)
{
    if (deflate && !G.inflater && !(G.inflater = ws_inflater_new()))
        deflate = 0; /* the 101 already went out: without memory, fail the first compressed message */
    gw_conn *c = gw_conn_open(fd, proto);
    if (!c) {
        close(fd);
        return NULL;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->deflate = deflate ? 1 : 0;
    c->preauth = 1;
    if (loop_add_fd(G.l, fd, LOOP_READ, on_io, c) < 0) {
        c->fd = -1;
        c->preauth = 0;
        c->peer[0] = 0;
        gw_conn_closed(c);
        close(fd);
        return NULL;
    }
    c->events = LOOP_READ;
    return c;
}

/* ---- writing ---------------------------------------------------------------------- */

static int tail_keep(gw_conn *c, const unsigned char *p, size_t n)
{
    if (c->tailoff) {
        memmove(c->tail, c->tail + c->tailoff, c->taillen - c->tailoff);
        c->taillen -= c->tailoff;
        c->tailoff = 0;
    }
    unsigned char *t = realloc(c->tail, c->taillen + n);
    if (!t)
        return -1;
    memcpy(t + c->taillen, p, n);
    c->tail = t;
    c->taillen += n;
    return 0;
}

int gw_ws_write(gw_conn *c, const void *p, size_t n)
{
    if (c->dying)
        return -1;
    if (c->taillen) {
        if (tail_keep(c, p, n) < 0)
            goto fail;
        return 0;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, (const unsigned char *)p + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            goto fail;
        }
        off += (size_t)w;
    }
    if (off < n) {
        if (tail_keep(c, (const unsigned char *)p + off, n - off) < 0)
            goto fail;
        gw_ws_events(c);
    }
    return 0;
fail:
    gw_ws_kill(c);
    return -1;
}

/* Sends what is left of the tail. Returns -1 when the socket failed. */
static int tail_flush(gw_conn *c)
{
    while (c->tailoff < c->taillen) {
        ssize_t w = send(c->fd, c->tail + c->tailoff, c->taillen - c->tailoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->tailoff += (size_t)w;
    }
    c->taillen = c->tailoff = 0;
    free(c->tail);
    c->tail = NULL;
    return 0;
}

/* ---- reading ---------------------------------------------------------------------- */

/* Fails the connection: our close frame goes after what is queued, nothing
 * more is read, and the socket closes once the frame is out. */
static int fail(gw_conn *c, int code, const char *why)
{
    G.st.protocol_closes++;
    LOG_DEBUG("websocket protocol error", "{s:I,s:i,s:s}", "conn", (json_int_t)c->id, "code", code, "why", why);
    gw_conn_close(c, code, why);
    c->close_rcvd = 1;
    gw_ws_events(c);
    return -1;
}

static int frame_start(gw_conn *c)
{
    ws_hdr *h = &c->fh;
    if (!h->masked)
        return fail(c, 1002, "unmasked client frame");
    if (h->rsv2 || h->rsv3)
        return fail(c, 1002, "reserved bits set");
    if (h->opcode >= WS_OP_CLOSE) {
        if (h->rsv1)
            return fail(c, 1002, "reserved bits set");
        if (!h->fin || h->len > WS_MAX_CONTROL)
            return fail(c, 1002, "fragmented or oversized control frame");
        return 0;
    }
    if (h->opcode == WS_OP_CONT) {
        if (!c->msg_open)
            return fail(c, 1002, "continuation without a message");
        if (h->rsv1)
            return fail(c, 1002, "reserved bits set");
    } else {
        if (c->msg_open)
            return fail(c, 1002, "new message inside a fragmented one");
        if (h->rsv1 && !c->deflate)
            return fail(c, 1002, "reserved bits set");
        c->msg_open = 1;
        c->msg_first = 1;
        c->msg_binary = h->opcode == WS_OP_BINARY;
        c->msg_deflated = h->rsv1 ? 1 : 0;
        c->utf8 = 0;
        c->zlen = 0;
    }
    if (c->msg_deflated && c->zlen + h->len > G.cfg.lim.max_frame)
        return fail(c, 1009, "message too big");
    return 0;
}

/* Hands a plain payload chunk on; last: it ends the message. */
static int data_chunk(gw_conn *c, const unsigned char *p, size_t n, int last)
{
    if (!c->msg_binary) {
        c->utf8 = ws_utf8_step(c->utf8, p, n);
        if (c->utf8 < 0 || (last && c->utf8 != 0))
            return fail(c, 1007, "text is not UTF-8");
    }
    int first = c->msg_first;
    c->msg_first = 0;
    gw_conn_rx(c, p, n, first, last, c->msg_binary);
    if (last && !first)
        gw_conn_rx_done(c);
    return 0;
}

static int frame_data(gw_conn *c, const unsigned char *p, size_t n)
{
    ws_hdr *h = &c->fh;
    int last = h->fin && c->fpos + n == h->len;
    if (h->opcode >= WS_OP_CLOSE) {
        memcpy(c->ctl + c->fpos, p, n);
    } else if (c->msg_deflated) {
        if (c->zlen + n > c->zcap) {
            size_t cap = c->zcap ? c->zcap : 1024;
            while (cap < c->zlen + n)
                cap *= 2;
            unsigned char *z = realloc(c->z, cap);
            if (!z)
                return fail(c, 1011, "out of memory");
            c->z = z;
            c->zcap = cap;
        }
        memcpy(c->z + c->zlen, p, n);
        c->zlen += n;
    } else if (n || last) {
        if (data_chunk(c, p, n, last) < 0)
            return -1;
    }
    c->fpos += n;
    return 0;
}

static int on_close_frame(gw_conn *c, size_t n)
{
    int code = 1005;
    if (n == 1)
        return fail(c, 1002, "close frame of one byte");
    if (n >= 2) {
        code = (c->ctl[0] << 8) | c->ctl[1];
        int ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
        if (!ok)
            return fail(c, 1002, "invalid close code");
        if (ws_utf8_step(0, c->ctl + 2, n - 2) != 0)
            return fail(c, 1007, "close reason is not UTF-8");
    }
    c->close_rcvd = 1;
    /* Echo it (after what is queued); the socket closes once it is out. */
    gw_conn_close(c, code, "");
    if (c->close_sent)
        gw_conn_writable(c);
    gw_ws_events(c);
    return -1;
}

static int frame_end(gw_conn *c)
{
    ws_hdr *h = &c->fh;
    c->in_frame = 0;
    switch (h->opcode) {
    case WS_OP_PING: {
        unsigned char f[2 + WS_MAX_CONTROL];
        size_t hl = ws_encode_hdr(f, 1, WS_OP_PONG, 0, h->len, NULL);
        memcpy(f + hl, c->ctl, (size_t)h->len);
        return gw_ws_write(c, f, hl + (size_t)h->len);
    }
    case WS_OP_PONG:
        return 0;
    case WS_OP_CLOSE:
        return on_close_frame(c, (size_t)h->len);
    default:
        break;
    }
    if (!h->fin)
        return 0;
    c->msg_open = 0;
    if (!c->msg_deflated) {
        if (h->len == 0 && c->fpos == 0)
            return data_chunk(c, (const unsigned char *)"", 0, 1);
        return 0;
    }
    if (!G.inflater)
        return fail(c, 1011, "out of memory");
    if (!zout && !(zout = malloc(G.cfg.lim.max_frame)))
        return fail(c, 1011, "out of memory");
    long r = ws_inflate(G.inflater, c->z, c->zlen, zout, G.cfg.lim.max_frame);
    if (c->zcap > 4096) {
        free(c->z);
        c->z = NULL;
        c->zcap = 0;
    }
    c->zlen = 0;
    /* Over the limit once inflated (a decompression bomb stops at the
     * limit): the message cannot be skipped like a plain one, so the
     * connection closes as for a plain frame far over the limit. */
    if (r == -EMSGSIZE)
        return fail(c, GW_E_MALFORMED, "protocol violation: frame far over the limit");
    if (r == -ENOMEM)
        return fail(c, 1011, "out of memory");
    if (r < 0)
        return fail(c, 1007, "compressed message does not inflate");
    c->msg_first = 1;
    return data_chunk(c, zout, (size_t)r, 1);
}

/* Parses n bytes (unmasked in place). Returns -1 once the connection stops
 * reading (failed, closing, dying). */
static int rx_bytes(gw_conn *c, unsigned char *p, size_t n)
{
    while (n) {
        if (c->dying || c->close_rcvd)
            return -1;
        if (!c->in_frame) {
            size_t take = WS_MAX_HDR - c->hdrlen < n ? WS_MAX_HDR - c->hdrlen : n;
            memcpy(c->hdr + c->hdrlen, p, take);
            int r = ws_parse_hdr(c->hdr, c->hdrlen + take, &c->fh);
            if (r == 0) {
                c->hdrlen += take;
                p += take;
                n -= take;
                continue;
            }
            if (r < 0)
                return fail(c, 1002, "malformed frame header");
            size_t used = (size_t)r - c->hdrlen;
            p += used;
            n -= used;
            c->hdrlen = 0;
            if (frame_start(c) < 0)
                return -1;
            c->in_frame = 1;
            c->fpos = 0;
            if (c->fh.len == 0) {
                if (frame_data(c, p, 0) < 0 || frame_end(c) < 0)
                    return -1;
            }
            continue;
        }
        uint64_t left = c->fh.len - c->fpos;
        size_t take = left < n ? (size_t)left : n;
        ws_mask(p, take, c->fh.mask, c->fpos);
        if (frame_data(c, p, take) < 0)
            return -1;
        p += take;
        n -= take;
        if (c->fpos == c->fh.len && frame_end(c) < 0)
            return -1;
    }
    return 0;
}

static void on_read(gw_conn *c)
{
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
        if (n == 0) {
            if (!c->close_code) {
                c->close_code = 1006;
                snprintf(c->close_reason, sizeof(c->close_reason), "peer went away");
            }
            gw_ws_kill(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                gw_ws_kill(c);
            return;
        }
        c->last_rx_ms = loop_now_ms(G.l);
        if (rx_bytes(c, rbuf, (size_t)n) < 0 || (size_t)n < sizeof(rbuf) || !(c->events & LOOP_READ) ||
            c->rx_paused || c->taillen)
            return;
    }
}

static void on_io(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    gw_conn *c = arg;
    if (c->dying)
        return;
    if ((events & LOOP_WRITE) && c->taillen) {
        if (tail_flush(c) < 0) {
            gw_ws_kill(c);
            return;
        }
        if (!c->taillen)
            gw_conn_writable(c);
        gw_ws_events(c);
    }
    if (c->dying)
        return;
    if ((events & LOOP_READ) && (c->events & LOOP_READ))
        on_read(c);
    else if (events & LOOP_ERROR)
        gw_ws_kill(c);
    gw_conn_flush_all();
}
