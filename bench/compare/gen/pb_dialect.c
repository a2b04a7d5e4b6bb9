/* pb_dialect.c -- the three protocols peerbench speaks, on top of pb_net.c.
 *
 * tether  docs/protocol.md, JSON sub-protocol: hello with a per-connection HS256
 *         token and the room, resume with {session, rooms: {room: {epoch,
 *         seq}}}; `subscribed.recovered` says whether it was whole.
 * nchan   WebSocket subscriber on /sub/<room> with the ws+meta.nchan
 *         sub-protocol (each message comes with its id), resume with
 *         ?last_event_id=<id>; publisher: pipelined HTTP POST /pub/<room>.
 *         nchan never says whether a resume was whole.
 * sio     Engine.IO v4 over WebSocket ("0" open, "2" ping / "3" pong) carrying
 *         Socket.IO v5 packets: "40" connect (with {pid, offset} to recover),
 *         "42" events, "43" acks. A recovery is confirmed when the server
 *         gives back the same pid; events carry their stream offset last.
 *
 * Hot paths (a message frame) are scanned by hand; rare frames go through
 * jansson.
 */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "pb.h"

#define TETHER_MAX_INFLIGHT 500   /* the gateway refuses more than 1,000 per connection */
#define NCHAN_MAX_INFLIGHT 64
#define SIO_MAX_BACKLOG (1u << 20)

const char *pb_d_name(int dialect)
{
    return dialect == PB_TETHER ? "tether" : dialect == PB_NCHAN ? "nchan" : dialect == PB_SIO ? "sio" : "?";
}

/* Copies the string value after `key` (e.g. "\"pid\":\"") into out.
 * Returns its length, or -1 when absent or too long. */
static int str_after(const char *p, size_t n, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *k = memmem(p, n, key, kl);
    if (!k)
        return -1;
    const char *v = k + kl, *end = p + n;
    const char *q = memchr(v, '"', (size_t)(end - v));
    if (!q || (size_t)(q - v) >= cap)
        return -1;
    memcpy(out, v, (size_t)(q - v));
    out[q - v] = 0;
    return (int)(q - v);
}

/* ---- tether -------------------------------------------------------------------------------- */

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = t[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = t[v & 63];
    }
    out[o] = 0;
}

/* An HS256 token for user, valid for four hours. Returns its length. */
static int mint(const char *user, char *tok, size_t cap)
{
    char claims[160], hb[64], cb[256], sig64[64];
    unsigned char sig[EVP_MAX_MD_SIZE];
    unsigned sl = 0;
    long now = (long)time(NULL);
    b64url((const unsigned char *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27, hb);
    int cl = snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"iat\":%ld,\"exp\":%ld}", user, now, now + 4 * 3600);
    b64url((const unsigned char *)claims, (size_t)cl, cb);
    int n = snprintf(tok, cap, "%s.%s", hb, cb);
    const char *secret = PB_CFG.secret ? PB_CFG.secret : "";
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)tok, (size_t)n, sig, &sl);
    b64url(sig, sl, sig64);
    return snprintf(tok + n, cap - (size_t)n, ".%s", sig64) + n;
}

static void tether_hello(pb_conn *c)
{
    char user[32], tok[512], buf[1024];
    /* Users are new each run: publish ids restart at m0 every run, and the
     * gateway would answer a second run's publishes as duplicates of the
     * first's (within the dedup TTL) if the user were the same. */
    static unsigned run;
    if (!run)
        run = (unsigned)getpid() ^ (unsigned)pb_now_ns();
    snprintf(user, sizeof(user), "%s%u-%x", c->kind == PB_SUB ? "s" : "p", c->idx, run);
    mint(user, tok, sizeof(tok));
    int n;
    if (c->kind == PB_PUB)
        n = snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"token\":\"%s\"}", tok);
    else if (c->session[0] && c->epoch[0])
        n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"hello\",\"token\":\"%s\",\"session\":\"%s\",\"rooms\":{\"r%u\":"
                     "{\"epoch\":\"%s\",\"seq\":%llu}}}",
                     tok, c->session, c->room, c->epoch, (unsigned long long)c->pos);
    else if (c->session[0])
        n = snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"token\":\"%s\",\"session\":\"%s\",\"rooms\":{\"r%u\":{}}}",
                     tok, c->session, c->room);
    else
        n = snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"token\":\"%s\",\"rooms\":{\"r%u\":{}}}", tok, c->room);
    pb_conn_send_text(c, buf, (size_t)n);
}

static void tether_message(pb_conn *c, char *p, size_t n)
{
    char *end = p + n;
    char *s = memmem(p, n, "\"seq\":", 6);
    if (s)
        c->pos = strtoull(s + 6, NULL, 10);
    char *e = memmem(p, n, "\"epoch\":\"", 9);
    if (e) {
        e += 9;
        char *q = memchr(e, '"', (size_t)(end - e));
        if (q && (size_t)(q - e) < sizeof(c->epoch) &&
            (strncmp(c->epoch, e, (size_t)(q - e)) || c->epoch[q - e])) {
            memcpy(c->epoch, e, (size_t)(q - e));
            c->epoch[q - e] = 0;
        }
    }
    char *d = memmem(p, n, "\"data\":\"", 8);
    if (!d)
        return;
    d += 8;
    char *q = memchr(d, '"', (size_t)(end - d));
    if (q)
        pb_sub_message(c, d, (size_t)(q - d));
}

static void tether_other(pb_conn *c, char *p, size_t n, const char *type, size_t tl)
{
    if (tl == 8 && !memcmp(type, "presence", 8)) {
        pb_presence_seen();
        return;
    }
    if (tl == 3 && !memcmp(type, "ack", 3)) {
        char *id = memmem(p, n, "\"id\":\"m", 7);
        uint64_t t = 0;
        if (id && c->ob && pb_outbox_done(c->ob, strtoull(id + 7, NULL, 10), &t) < 0)
            t = 0;
        pb_pub_answered(c, 1, t);
        return;
    }
    if (tl == 4 && !memcmp(type, "ping", 4)) {
        pb_conn_send_text(c, "{\"type\":\"pong\"}", 15);
        return;
    }
    if (tl == 4 && !memcmp(type, "pong", 4))
        return;
    json_error_t jerr;
    json_t *o = json_loadb(p, n, 0, &jerr);
    if (!o)
        return;
    if (tl == 7 && !memcmp(type, "welcome", 7)) {
        const char *sess = json_string_value(json_object_get(o, "session"));
        if (sess && strlen(sess) < sizeof(c->session))
            strcpy(c->session, sess);
        if (c->kind == PB_PUB)
            pb_pub_ready(c);
    } else if (tl == 10 && !memcmp(type, "subscribed", 10)) {
        const char *ep = json_string_value(json_object_get(o, "epoch"));
        int rec = json_is_true(json_object_get(o, "recovered"));
        if (ep && strlen(ep) < sizeof(c->epoch) && !c->epoch[0]) {
            strcpy(c->epoch, ep);
            /* A fresh live-only subscription: the room's top is our position. */
            c->pos = (uint64_t)json_integer_value(json_object_get(o, "seq"));
        } else if (ep && strcmp(ep, c->epoch) && strlen(ep) < sizeof(c->epoch)) {
            strcpy(c->epoch, ep);
        }
        pb_sub_joined(c, rec);
    } else if (tl == 5 && !memcmp(type, "error", 5)) {
        pb_server_error(c, p, n);
        const char *id = json_string_value(json_object_get(o, "id"));
        if (c->kind == PB_PUB && id && id[0] == 'm') {
            if (c->ob)
                pb_outbox_done(c->ob, strtoull(id + 1, NULL, 10), NULL);
            pb_pub_answered(c, 0, 0);
        }
    } else if (tl == 3 && !memcmp(type, "gap", 3)) {
        pb_server_error(c, p, n);
    }
    json_decref(o);
}

static void tether_on_message(pb_conn *c, char *p, size_t n)
{
    if (n > 17 && !memcmp(p, "{\"type\":\"message\"", 17)) {
        tether_message(c, p, n);
        return;
    }
    char *t = memmem(p, n, "\"type\":\"", 8);
    if (!t)
        return;
    t += 8;
    char *q = memchr(t, '"', (size_t)(p + n - t));
    if (!q)
        return;
    if ((size_t)(q - t) == 7 && !memcmp(t, "message", 7)) {
        tether_message(c, p, n);
        return;
    }
    tether_other(c, p, n, t, (size_t)(q - t));
}

static void tether_send(pb_conn *c, const pb_out *e)
{
    char buf[70000];
    int h = snprintf(buf, sizeof(buf), "{\"type\":\"publish\",\"room\":\"r%u\",\"id\":\"m%llu\",\"data\":\"",
                     e->room, (unsigned long long)e->id);
    size_t n = pb_payload(buf + h, sizeof(buf) - (size_t)h - 2, e->room, e->seq, e->t_ns);
    memcpy(buf + h + n, "\"}", 2);
    pb_conn_send_text(c, buf, (size_t)h + n + 2);
}

/* ---- nchan ----------------------------------------------------------------------------------- */

static void nchan_on_message(pb_conn *c, char *p, size_t n)
{
    /* "id: <id>\n[content-type: ...\n]\n<data>" */
    if (n > 4 && !memcmp(p, "id: ", 4)) {
        char *nl = memchr(p + 4, '\n', n - 4);
        if (nl && (size_t)(nl - p - 4) < sizeof(c->last_id)) {
            memcpy(c->last_id, p + 4, (size_t)(nl - p - 4));
            c->last_id[nl - p - 4] = 0;
        }
    }
    if (!PB_CFG.nchan_meta) {
        pb_sub_message(c, p, n);
        return;
    }
    char *body = memmem(p, n, "\n\n", 2);
    if (!body)
        return;
    body += 2;
    pb_sub_message(c, body, (size_t)(p + n - body));
}

static void nchan_send(pb_conn *c, const pb_out *e)
{
    char payload[65536], buf[70000];
    size_t n = pb_payload(payload, sizeof(payload), e->room, e->seq, e->t_ns);
    int h = snprintf(buf, sizeof(buf),
                     "POST /pub/r%u HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                     e->room, PB_CFG.host, PB_CFG.port, n);
    memcpy(buf + h, payload, n);
    pb_conn_send_raw(c, buf, (size_t)h + n);
}

/* ---- socket.io ------------------------------------------------------------------------------- */

static void sio_join(pb_conn *c)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "421[\"join\",\"r%u\"]", c->room);
    pb_conn_send_text(c, buf, (size_t)n);
}

static void sio_connected(pb_conn *c, char *p, size_t n)
{
    char pid[64];
    if (str_after(p, n, "\"pid\":\"", pid, sizeof(pid)) < 0)
        pid[0] = 0;
    if (c->kind == PB_PUB) {
        pb_pub_ready(c);
        return;
    }
    int recovered = c->resuming && c->session[0] && !strcmp(pid, c->session);
    strcpy(c->session, pid);
    if (recovered) {
        pb_sub_joined(c, 1);
        return;
    }
    c->rejoin = c->resuming;
    sio_join(c);
}

static void sio_event(pb_conn *c, char *p, size_t n)
{
    /* 42["m","<payload>","<offset>"] */
    if (n < 9 || memcmp(p, "42[\"m\",\"", 8))
        return;
    char *d = p + 8, *end = p + n;
    char *q = memchr(d, '"', (size_t)(end - d));
    if (!q)
        return;
    char *o = q + 1;
    if (o + 2 < end && o[0] == ',' && o[1] == '"') {
        o += 2;
        char *oq = memchr(o, '"', (size_t)(end - o));
        if (oq && (size_t)(oq - o) < sizeof(c->last_id)) {
            memcpy(c->last_id, o, (size_t)(oq - o));
            c->last_id[oq - o] = 0;
        }
    }
    pb_sub_message(c, d, (size_t)(q - d));
}

static void sio_on_message(pb_conn *c, char *p, size_t n)
{
    if (!n)
        return;
    switch (p[0]) {
    case '0': { /* Engine.IO open: connect to the main namespace, recovering if we can */
        char buf[192];
        int k;
        if (c->kind == PB_SUB && c->session[0] && c->last_id[0]) {
            c->resuming = 1;
            k = snprintf(buf, sizeof(buf), "40{\"pid\":\"%s\",\"offset\":\"%s\"}", c->session, c->last_id);
        } else {
            k = snprintf(buf, sizeof(buf), "40");
        }
        pb_conn_send_text(c, buf, (size_t)k);
        return;
    }
    case '2':
        pb_conn_send_text(c, "3", 1);
        return;
    case '4':
        break;
    default:
        return;
    }
    if (n < 2)
        return;
    switch (p[1]) {
    case '2':
        sio_event(c, p, n);
        break;
    case '0':
        sio_connected(c, p, n);
        break;
    case '3': /* our join's ack */
        if (c->kind == PB_SUB)
            pb_sub_joined(c, c->rejoin ? 0 : 1);
        c->rejoin = 0;
        break;
    case '4':
        pb_server_error(c, p, n);
        break;
    default:
        break;
    }
}

static int sio_publish(pb_conn *c, uint32_t room, uint64_t seq, uint64_t t_ns)
{
    char buf[70000];
    if (pb_conn_backlog(c) > SIO_MAX_BACKLOG)
        return -EAGAIN;
    int h = snprintf(buf, sizeof(buf), "42[\"pub\",\"r%u\",\"", room);
    size_t n = pb_payload(buf + h, sizeof(buf) - (size_t)h - 2, room, seq, t_ns);
    memcpy(buf + h + n, "\"]", 2);
    pb_conn_send_text(c, buf, (size_t)h + n + 2);
    return 0;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

void pb_d_request(const pb_conn *c, char *path, size_t n, const char **subproto)
{
    *subproto = NULL;
    switch (PB_CFG.dialect) {
    case PB_TETHER:
        snprintf(path, n, "/ws");
        *subproto = "tether.v1.json";
        break;
    case PB_NCHAN:
        if (c->last_id[0]) {
            /* the id is digits, ':' and maybe ',' '[' ']': percent-encode all but digits */
            size_t o = (size_t)snprintf(path, n, "/sub/r%u?last_event_id=", c->room);
            for (const char *s = c->last_id; *s && o + 4 < n; s++)
                o += (size_t)(*s >= '0' && *s <= '9' ? snprintf(path + o, n - o, "%c", *s)
                                                      : snprintf(path + o, n - o, "%%%02X", (unsigned char)*s));
        } else {
            snprintf(path, n, "/sub/r%u", c->room);
        }
        *subproto = PB_CFG.nchan_meta ? "ws+meta.nchan" : NULL;
        break;
    default:
        snprintf(path, n, "/socket.io/?EIO=4&transport=websocket");
        break;
    }
}

void pb_d_on_open(pb_conn *c)
{
    c->resuming = c->ever_joined;
    switch (PB_CFG.dialect) {
    case PB_TETHER:
        tether_hello(c);
        break;
    case PB_NCHAN:
        if (c->kind == PB_PUB)
            pb_pub_ready(c);
        else
            pb_sub_joined(c, -1);
        break;
    default:
        c->resuming = 0; /* decided when the Engine.IO open arrives */
        break;
    }
}

void pb_d_on_message(pb_conn *c, char *p, size_t n)
{
    switch (PB_CFG.dialect) {
    case PB_TETHER:
        tether_on_message(c, p, n);
        break;
    case PB_NCHAN:
        nchan_on_message(c, p, n);
        break;
    default:
        sio_on_message(c, p, n);
        break;
    }
}

void pb_d_on_http(pb_conn *c, int status)
{
    uint64_t t = 0;
    if (c->ob && pb_outbox_done_oldest(c->ob, &t) < 0)
        t = 0;
    pb_pub_answered(c, status == 201 || status == 202, t);
}

static void send_one(pb_conn *c, const pb_out *e)
{
    if (PB_CFG.dialect == PB_TETHER)
        tether_send(c, e);
    else
        nchan_send(c, e);
}

int pb_d_publish(pb_conn *pub, uint32_t room, uint64_t seq, uint64_t t_ns)
{
    if (PB_CFG.dialect == PB_SIO)
        return sio_publish(pub, room, seq, t_ns);
    uint32_t cap = PB_CFG.dialect == PB_TETHER ? TETHER_MAX_INFLIGHT : NCHAN_MAX_INFLIGHT;
    uint64_t id;
    if (pub->ob->live >= cap || pb_outbox_add(pub->ob, room, seq, t_ns, &id) < 0)
        return -EAGAIN;
    send_one(pub, &pub->ob->slot[id % PB_OUTBOX_CAP]);
    return 0;
}

static void resend_one(const pb_out *e, void *arg)
{
    send_one(arg, e);
}

uint32_t pb_d_resend(pb_conn *pub)
{
    if (!pub->ob || !pub->ob->live)
        return 0;
    uint32_t n = pub->ob->live;
    pb_outbox_each(pub->ob, resend_one, pub);
    return n;
}
