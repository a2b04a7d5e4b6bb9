/* gw_conn.c -- one client connection: authentication, the protocol state
 * machine, the bounded outbound queue, heartbeats and draining.
 *
 * Frames from the client arrive (possibly fragmented) through gw_conn_rx; the
 * reassembled frame is decoded by gw_frame.c and dispatched here. Frames to the
 * client are refcounted gw_bufs queued on the connection and written in
 * batches through gw_ws.c's socket. The queue is bounded in bytes:
 * a client that does not read is closed with 4002 and resumes on reconnect,
 * instead of making the gateway hold an unbounded backlog.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw.h"
#include "gw_media.h"
#include "gw_session.h"
#include "log.h"
#include "quality.h"

#define MALFORMED_MAX 10
#define MALFORMED_WINDOW_MS 60000
#define DEAD_PEER_GRACE_MS 10000
#define SKIP_CLOSE_FACTOR 16
#define CLOSE_WAIT_MS 1000      /* for the peer's close frame, once ours is out */

static void dirty_del(gw_conn *c);

gw_conn *gw_conn_find(uint64_t id)
{
    return u64map_get(G.conns, id);
}

gw_conn *gw_conn_open(int fd, int proto)
{
    gw_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    c->msg_first = 1;
    c->id = ++G.next_conn_id;
    c->proto = proto ? 1 : 0;
    c->created_ms = c->last_rx_ms = c->last_ping_ms = loop_now_ms(G.l);
    if (u64map_put(G.conns, c->id, c) < 0) {
        free(c);
        return NULL;
    }
    list_insert_head(&G.conn_list, &c->link);
    G.nconns++;
    G.st.conns_opened++;
    return c;
}

static void queue_clear(gw_conn *c)
{
    while (c->qlen) {
        gw_buf_unref(c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    c->qbytes = 0;
}

void gw_conn_closed(gw_conn *c)
{
    dirty_del(c);
    gw_sess_conn_closed(c);
    gw_media_conn_closed(c);
    while (c->nsubs)
        gw_sub_stop(c->subs[c->nsubs - 1]);
    if (c->session[0] && hmap_get(G.sessions, c->session) == c)
        hmap_del(G.sessions, c->session);
    u64map_del(G.conns, c->id);
    list_remove(&c->link);
    G.nconns--;
    if (c->counted)
        G.nhello--;
    if (c->preauth)
        G.npreauth--;
    G.st.conns_closed++;
    LOG_DEBUG("connection closed", "{s:I,s:s,s:s,s:i}", "conn", (json_int_t)c->id, "user", c->claims.sub,
              "session", c->session, "code", c->close_code);
    queue_clear(c);
    for (uint32_t i = 0; i < c->nheld; i++)
        gw_buf_unref(c->held[i]);
    free(c->q);
    free(c->subs);
    free(c->rx);
    free(c->z);
    free(c->tail);
    jwt_claims_clear(&c->claims);
    free(c);
}

/* ---- sending ------------------------------------------------------------------------
 *
 * Frames are written at the end of the batch of work that queued them (a bus
 * drain, a client frame, a timer), not one per writable callback: one send()
 * carries every frame queued for a connection (a presence burst, a resume's
 * history, a message and an ack), where a writable round trip per frame cost
 * a poll wake-up and a send() each. The framing is ours: server frames are
 * unmasked, and never compressed (RFC 7692 lets a sender leave RSV1 clear on
 * any message; compressing per connection would cost CPU per delivery and
 * zlib state per connection, and frames are encoded once per message for all
 * connections). gw_ws_write sends the bytes and keeps any unsent tail; while
 * there is one, frames stay in our bounded queue, the client is not read
 * (back-pressure both ways) and the writable callback resumes the flush.
 */

#define FLUSH_BATCH (64u << 10) /* bytes per send(), unless one frame is larger */

static unsigned char *scratch;
static size_t scratch_cap;

static void dirty_del(gw_conn *c) { list_remove(&c->dlink); }

static void flush_deferred(loop *l, void *arg)
{
    (void)l;
    (void)arg;
    G.flush_deferred = 0;
    gw_conn_flush_all();
}

static void dirty_add(gw_conn *c)
{
    if (list_linked(&c->dlink))
        return;
    list_insert_head(&G.dirty, &c->dlink);
    /* gw_ws.c flushes at the end of every callback that can queue frames;
     * the deferred call covers any other path. */
    if (!G.flush_deferred && loop_defer(G.l, flush_deferred, NULL) == 0)
        G.flush_deferred = 1;
}

static int scratch_fit(size_t n)
{
    if (n <= scratch_cap)
        return 0;
    size_t cap = scratch_cap ? scratch_cap : FLUSH_BATCH + 16;
    while (cap < n)
        cap *= 2;
    unsigned char *p = realloc(scratch, cap);
    if (!p)
        return -ENOMEM;
    scratch = p;
    scratch_cap = cap;
    return 0;
}

/* Writes queued frames while the socket holds no unsent tail, then the close
 * frame once the queue is empty. -1: the connection is unusable (write
 * error, out of memory). */
static int conn_flush(gw_conn *c)
{
    if (c->dying)
        return -1;
    while (c->qlen && !c->taillen) {
        size_t n = 0;
        uint32_t k = 0;
        while (k < c->qlen) {
            gw_buf *b = c->q[(c->qhead + k) % c->qcap];
            if (k > 0 && n + b->len + 10 > FLUSH_BATCH)
                break;
            if (scratch_fit(n + b->len + 10) < 0)
                return -1;
            n += ws_encode_hdr(scratch + n, 1, b->binary ? WS_OP_BINARY : WS_OP_TEXT, 0, b->len, NULL);
            memcpy(scratch + n, gw_buf_payload(b), b->len);
            n += b->len;
            k++;
        }
        for (uint32_t i = 0; i < k; i++) {
            gw_buf *b = c->q[c->qhead];
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
            c->qbytes -= b->len;
            G.st.frames_out++;
            G.st.bytes_out += b->len;
            gw_buf_unref(b);
        }
        G.st.writes++;
        if (gw_ws_write(c, scratch, n) < 0)
            return -1;
    }
    if (c->close_code && !c->qlen && !c->taillen && !c->close_sent) {
        /* Our close frame: the code (1005 is never sent) and the reason. */
        unsigned char f[2 + 2 + sizeof(c->close_reason)];
        size_t rl = c->close_code == 1005 || c->close_code == 1006 ? 0 : strlen(c->close_reason);
        size_t pl = c->close_code == 1005 || c->close_code == 1006 ? 0 : 2 + rl;
        f[0] = 0x88;
        f[1] = (unsigned char)pl;
        if (pl) {
            f[2] = (unsigned char)(c->close_code >> 8);
            f[3] = (unsigned char)c->close_code;
            memcpy(f + 4, c->close_reason, rl);
        }
        c->close_sent = 1;
        if (gw_ws_write(c, f, 2 + pl) < 0)
            return -1;
    }
    /* The handshake is done once both close frames are through: the socket
     * goes (the server closes TCP first, RFC 6455 7.1.1). */
    if (c->close_sent && c->close_rcvd && !c->taillen)
        gw_ws_kill(c);
    else if (c->close_sent && !c->taillen && !c->close_wait) {
        /* Our close frame is out: the peer has a moment to answer it. */
        c->close_wait = 1;
        gw_ws_deadline(c, CLOSE_WAIT_MS);
    }
    gw_ws_events(c);
    return 0;
}

/* Flushes c outside the writable callback: what cannot be written now
 * continues from the writable callback. */
static void conn_flush_now(gw_conn *c)
{
    dirty_del(c);
    if (conn_flush(c) < 0) {
        queue_clear(c);
        if (!c->close_code) {
            c->close_code = 1006;
            snprintf(c->close_reason, sizeof(c->close_reason), "write failed");
        }
        gw_ws_kill(c);
    }
}

void gw_conn_flush_all(void)
{
    gw_append_flush();
    while (!list_empty(&G.dirty))
        conn_flush_now(list_entry(G.dirty.next, gw_conn, dlink));
}

void gw_conn_rx_pause(gw_conn *c, int paused)
{
    c->rx_paused = paused ? 1 : 0;
    gw_ws_events(c);
}

void gw_conn_send(gw_conn *c, gw_buf *b)
{
    if (!b || c->close_code)
        return;
    if (c->qbytes + b->len > G.cfg.outq_max_bytes) {
        G.st.slow_closes++;
        LOG_WARN("slow consumer", "{s:I,s:s,s:I}", "conn", (json_int_t)c->id, "user", c->claims.sub, "queued",
                 (json_int_t)c->qbytes);
        queue_clear(c);
        gw_conn_close(c, 4002, "slow consumer");
        return;
    }
    if (c->qlen == c->qcap) {
        uint32_t n = c->qcap ? c->qcap * 2 : 8;
        gw_buf **q = malloc(n * sizeof(*q));
        if (!q) {
            gw_conn_close(c, 1011, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = n;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = gw_buf_ref(b);
    c->qlen++;
    c->qbytes += b->len;
    dirty_add(c);
}

void gw_conn_send_take(gw_conn *c, gw_buf *b)
{
    gw_conn_send(c, b);
    gw_buf_unref(b);
}

void gw_conn_error(gw_conn *c, int code, const char *reason, const char *id)
{
    gw_conn_send_take(c, gw_enc_error(c->proto, code, reason, id));
}

void gw_conn_close(gw_conn *c, int code, const char *reason)
{
    if (c->close_code)
        return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
    /* Cut at a character boundary: the reason is UTF-8 on the wire. */
    size_t rl = strlen(c->close_reason);
    while (rl && ((unsigned char)c->close_reason[rl - 1] & 0xc0) == 0x80)
        rl--;
    if (rl && (unsigned char)c->close_reason[rl - 1] >= 0xc0)
        rl--;
    if (ws_utf8_step(0, (const unsigned char *)c->close_reason, strlen(c->close_reason)) != 0)
        c->close_reason[rl] = 0;
    dirty_add(c);
    /* A peer that never lets us write, or never answers our close, still
     * goes away. */
    gw_ws_deadline(c, 5000);
}

void gw_conn_writable(gw_conn *c)
{
    conn_flush_now(c);
}

/* ---- publish ------------------------------------------------------------------------ */

typedef struct pub_ctx {
    uint64_t conn_id;
    char id[GW_MAX_ID + 1];
    char room[GW_MAX_ROOM + 1];
} pub_ctx;

static void pub_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    (void)rc;
    pub_ctx *x = arg;
    gw_conn *c = gw_conn_find(x->conn_id);
    if (!c)
        goto out;
    c->inflight_pub--;
    if (status < 0 || !rep) {
        G.st.publish_errors++;
        gw_conn_error(c, GW_E_INTERNAL, "publish not acknowledged in time; retrying with the same id is safe", x->id);
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP) {
        G.st.acks++;
        gw_conn_send_take(c, gw_enc_ack(c->proto, x->id, x->room, rep->append_rep->seq, rep->append_rep->duplicate));
    } else if (rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR) {
        G.st.publish_errors++;
        gw_conn_error(c, (int)rep->error->code, rep->error->reason ? rep->error->reason : "publish failed", x->id);
    } else {
        G.st.publish_errors++;
        gw_conn_error(c, GW_E_INTERNAL, "unexpected reply from replayd", x->id);
    }
out:
    free(x);
}

static void do_publish(gw_conn *c, gw_cframe *f)
{
    if (!jwt_claims_room_allowed(&c->claims, f->room)) {
        gw_conn_error(c, GW_E_FORBIDDEN, "forbidden: this room is not in your token", f->id);
        return;
    }
    if (c->inflight_pub >= G.cfg.max_inflight_publish) {
        gw_conn_error(c, GW_E_RATE, "too many publishes awaiting ack", f->id);
        return;
    }
    pub_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        gw_conn_error(c, GW_E_INTERNAL, "out of memory", f->id);
        return;
    }
    x->conn_id = c->id;
    strcpy(x->id, f->id);
    strcpy(x->room, f->room);
    if (!gw_append(c->claims.sub, f->room, f->id, f->data, pub_reply, x)) {
        free(x);
        gw_conn_error(c, GW_E_INTERNAL, "out of memory", f->id);
        return;
    }
    c->inflight_pub++;
}

/* ---- hello ---------------------------------------------------------------------------- */

/* Verifies token into c->claims. Returns 0 or the close code (4501/4502). */
static int authenticate(gw_conn *c, const char *token)
{
    jwt_claims cl;
    const char *why = "invalid token";
    memset(&cl, 0, sizeof(cl));
    int r = jwtv_verify(G.jwt, token, (int64_t)time(NULL), &cl, &why);
    if (r < 0) {
        G.st.auth_failures++;
        LOG_INFO("authentication failed", "{s:I,s:s}", "conn", (json_int_t)c->id, "why", why);
        jwt_claims_clear(&cl);
        return r == -EKEYEXPIRED ? GW_E_EXPIRED : GW_E_AUTH;
    }
    if (c->authed && strcmp(cl.sub, c->claims.sub) != 0) {
        jwt_claims_clear(&cl);
        return GW_E_AUTH; /* a token may not switch users on a live connection */
    }
    jwt_claims_clear(&c->claims);
    c->claims = cl;
    c->authed = 1;
    return 0;
}

int gw_conn_auth_header(gw_conn *c, const char *token)
{
    return authenticate(c, token);
}

static void do_hello(gw_conn *c, gw_cframe *f)
{
    if (c->ready || c->hello_pending) {
        gw_conn_error(c, GW_E_INVALID, "hello already received", NULL);
        return;
    }
    if (f->token) {
        int code = authenticate(c, f->token);
        if (code) {
            gw_conn_close(c, code, code == GW_E_EXPIRED ? "token expired" : "authentication failed");
            return;
        }
    } else if (!c->authed) {
        gw_conn_close(c, GW_E_AUTH, "authentication failed: no token");
        return;
    }
    /* Only an authenticated hello makes a connection count against TETHER_MAX_CONNS:
     * sockets that never say hello lock nobody out. */
    if (!c->counted) {
        if (G.nhello >= G.cfg.max_conns) {
            gw_conn_close(c, GW_E_TOO_MANY, "too many connections");
            return;
        }
        c->counted = 1;
        G.nhello++;
        if (c->preauth) {
            c->preauth = 0;
            G.npreauth--;
        }
    }
    gw_sess_choose(c, f->session);
    snprintf(c->client, sizeof(c->client), "%s", f->client);
    /* Refuse the forbidden rooms one by one; the rest start after welcome,
     * with one batched read. */
    gw_room_pos *ok = NULL;
    size_t nok = 0;
    if (f->nrooms) {
        ok = calloc(f->nrooms, sizeof(*ok));
        if (!ok) {
            gw_conn_close(c, 1011, "out of memory");
            return;
        }
        for (size_t i = 0; i < f->nrooms; i++) {
            if (!jwt_claims_room_allowed(&c->claims, f->rooms[i].room)) {
                char why[GW_MAX_ROOM + 48];
                snprintf(why, sizeof(why), "forbidden: room %s is not in your token", f->rooms[i].room);
                gw_conn_error(c, GW_E_FORBIDDEN, why, NULL);
                continue;
            }
            ok[nok++] = f->rooms[i];
        }
    }
    gw_sess_hello(c, ok, nok);
}

static void do_quality(gw_conn *c, gw_cframe *f)
{
    /* The client's own RTT if it sent one, else what the gateway measured
     * from its pings. */
    quality_in in = { f->rtt_ms > 0 ? f->rtt_ms : c->rtt_ms, f->loss_pct, f->jitter_ms, f->bandwidth_kbps };
    quality_out out;
    quality_classify(&in, &out);
    gw_conn_send_take(c, gw_enc_quality(c->proto, quality_name(out.level), out.recs, out.nrecs));
    gw_sess_quality(c, &in, &out);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static void malformed(gw_conn *c, int code, const char *why, const char *id)
{
    uint64_t now = loop_now_ms(G.l);
    G.st.malformed++;
    if (now - c->bad_window_ms > MALFORMED_WINDOW_MS) {
        c->bad_window_ms = now;
        c->bad_count = 0;
    }
    gw_conn_error(c, code, why, id);
    if (++c->bad_count >= MALFORMED_MAX)
        gw_conn_close(c, GW_E_MALFORMED, "protocol violation: too many malformed frames");
}

static void dispatch(gw_conn *c, const unsigned char *buf, size_t len, int binary)
{
    gw_cframe f;
    const char *why = "malformed";
    int code;
    if (c->hello_pending) {
        /* Reading is paused until welcome; a frame already read is held and
         * handled after it, in order. */
        if (c->nheld == sizeof(c->held) / sizeof(c->held[0])) {
            gw_conn_error(c, GW_E_RATE, "too many frames before welcome", NULL);
            return;
        }
        gw_buf *h = gw_buf_new(len, binary);
        if (!h)
            return;
        memcpy(gw_buf_payload(h), buf, len);
        c->held[c->nheld++] = h;
        return;
    }
    G.st.frames_in++;
    if (binary != (int)c->proto) {
        malformed(c, GW_E_MALFORMED, c->proto ? "expected a binary frame" : "expected a text frame", NULL);
        return;
    }
    if (c->proto)
        code = gw_decode_proto(buf, len, &G.cfg.lim, &f, &why);
    else
        code = gw_decode_json((const char *)buf, len, &G.cfg.lim, &f, &why);
    if (code) {
        if (code == GW_E_MALFORMED)
            malformed(c, code, why, f.id[0] ? f.id : NULL);
        else
            gw_conn_error(c, code, why, f.id[0] ? f.id : NULL);
        return;
    }
    if (!c->ready && f.type != GW_C_HELLO && f.type != GW_C_PING && f.type != GW_C_PONG) {
        gw_conn_error(c, GW_E_INVALID, "send hello first", f.id[0] ? f.id : NULL);
        goto out;
    }
    switch (f.type) {
    case GW_C_HELLO:
        do_hello(c, &f);
        break;
    case GW_C_SUBSCRIBE:
        if (!jwt_claims_room_allowed(&c->claims, f.room)) {
            gw_conn_error(c, GW_E_FORBIDDEN, "forbidden: this room is not in your token", NULL);
            break;
        }
        code = gw_sub_start(c, f.room, &f.pos);
        if (code)
            gw_conn_error(c, code, code == GW_E_INVALID ? "too many rooms on this connection" : "cannot subscribe",
                          NULL);
        break;
    case GW_C_UNSUBSCRIBE: {
        gw_sub *s = gw_conn_find_sub(c, f.room);
        if (s) {
            gw_sess_room(c, f.room, 0);
            gw_sub_stop(s);
        }
        else
            gw_conn_error(c, GW_E_NOT_FOUND, "not subscribed to this room", NULL);
        break;
    }
    case GW_C_PUBLISH:
        do_publish(c, &f);
        break;
    case GW_C_PING:
        gw_conn_send_take(c, gw_enc_simple(c->proto, GW_C_PONG));
        break;
    case GW_C_PONG:
        if (c->ping_sent_ms) {
            c->rtt_ms = (double)(loop_now_ms(G.l) - c->ping_sent_ms);
            c->ping_sent_ms = 0;
        }
        break;
    case GW_C_REFRESH: {
        int r = authenticate(c, f.token);
        if (r)
            gw_conn_error(c, r, r == GW_E_EXPIRED ? "refresh token already expired" : "refresh token invalid", NULL);
        break;
    }
    case GW_C_QUALITY:
        do_quality(c, &f);
        break;
    case GW_C_PTT:
    case GW_C_MEDIA:
        gw_media_frame(c, &f);
        break;
    case GW_C_BYE:
        /* The session ends now: sessiond hears it with the close. */
        if (c->session[0] && hmap_get(G.sessions, c->session) == c)
            hmap_del(G.sessions, c->session);
        c->bye = 1;
        gw_conn_close(c, 1000, "bye");
        break;
    default:
        break;
    }
out:
    gw_cframe_clear(&f);
}

void gw_conn_rx(gw_conn *c, const void *in, size_t len, int first, int final, int binary)
{
    c->last_rx_ms = loop_now_ms(G.l);
    if (c->close_code)
        return;
    size_t max = G.cfg.lim.max_frame;
    if (first) {
        c->rxlen = 0;
        c->rx_skipping = 0;
        c->rx_skipped = 0;
    }
    if (first && final) {
        if (len > max) {
            malformed(c, GW_E_TOO_LARGE, "frame too large", NULL);
            return;
        }
        dispatch(c, in, len, binary);
        return;
    }
    if (c->rx_skipping) {
        c->rx_skipped += len;
        if (c->rx_skipped > max * SKIP_CLOSE_FACTOR) {
            gw_conn_close(c, GW_E_MALFORMED, "protocol violation: frame far over the limit");
            return;
        }
        if (final)
            malformed(c, GW_E_TOO_LARGE, "frame too large", NULL);
        return;
    }
    if (c->rxlen + len > max) {
        c->rx_skipping = 1;
        c->rx_skipped = c->rxlen + len;
        free(c->rx);
        c->rx = NULL;
        c->rxcap = c->rxlen = 0;
        if (final)
            malformed(c, GW_E_TOO_LARGE, "frame too large", NULL);
        return;
    }
    if (c->rxlen + len > c->rxcap) {
        size_t n = c->rxcap ? c->rxcap : 1024;
        while (n < c->rxlen + len)
            n *= 2;
        unsigned char *p = realloc(c->rx, n);
        if (!p) {
            gw_conn_close(c, 1011, "out of memory");
            return;
        }
        c->rx = p;
        c->rxcap = n;
    }
    memcpy(c->rx + c->rxlen, in, len);
    c->rxlen += len;
    if (final) {
        dispatch(c, c->rx, c->rxlen, binary);
        /* Keep small buffers; give large ones back. */
        c = NULL;
    }
}

void gw_conn_replay_held(gw_conn *c)
{
    uint32_t n = c->nheld;
    gw_buf *held[16];
    memcpy(held, c->held, n * sizeof(*held));
    c->nheld = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!c->close_code && !c->hello_pending)
            dispatch(c, gw_buf_payload(held[i]), held[i]->len, (int)held[i]->binary);
        gw_buf_unref(held[i]);
    }
}

void gw_conn_rx_done(gw_conn *c)
{
    if (c->rxcap > 4096) {
        free(c->rx);
        c->rx = NULL;
        c->rxcap = 0;
    }
    c->rxlen = 0;
}

/* ---- timers ------------------------------------------------------------------------------ */

void gw_conn_sweep(void)
{
    uint64_t now = loop_now_ms(G.l);
    int64_t wall_s = (int64_t)time(NULL);
    list_node *n, *nx;
    list_foreach_safe(n, nx, &G.conn_list) {
        gw_conn *c = list_entry(n, gw_conn, link);
        if (c->close_code)
            continue;
        if (!c->ready) {
            if (now - c->created_ms >= G.cfg.hello_timeout_ms)
                gw_conn_close(c, GW_E_HELLO_TIMEOUT, "no hello in time");
            continue;
        }
        if (now - c->last_rx_ms >= (uint64_t)G.cfg.heartbeat_ms + DEAD_PEER_GRACE_MS) {
            gw_conn_close(c, 4001, "heartbeat timeout");
            continue;
        }
        if (c->claims.exp && wall_s >= c->claims.exp) {
            gw_conn_close(c, GW_E_EXPIRED, "token expired");
            continue;
        }
        if (now - c->last_ping_ms >= G.cfg.heartbeat_ms) {
            c->last_ping_ms = now;
            if (!c->ping_sent_ms)
                c->ping_sent_ms = now;
            gw_conn_send_take(c, gw_enc_simple(c->proto, GW_C_PING));
        }
    }
}

void gw_conn_drain_all(void)
{
    list_node *n;
    list_foreach(n, &G.conn_list) {
        gw_conn *c = list_entry(n, gw_conn, link);
        if (c->close_code)
            continue;
        /* Spread the comebacks over the drain window so that the remaining
         * gateways see a ramp, not a wall. */
        uint32_t after = 0;
        if (G.cfg.drain_ms) {
            uint32_t r;
            gw_random(&r, sizeof(r));
            after = r % G.cfg.drain_ms;
        }
        gw_conn_send_take(c, gw_enc_reconnect(c->proto, after, "server draining"));
        gw_conn_close(c, 4000, "draining");
    }
}
