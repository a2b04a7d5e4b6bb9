/* md_probe.c -- `mediad probe`: a synthetic media peer for tests, benchmarks
 * and operators checking a deployment end to end.
 *
 * It is the native client of the media path: full ICE (libnice, controlling)
 * toward mediad's ICE-lite, SDES-SRTP (a=crypto, keyed over the client's
 * authenticated WebSocket) or DTLS-SRTP, RTP sending with recognisable
 * payloads, and receive statistics. It reuses mediad's own SDP, ICE, DTLS
 * and SRTP modules, so it links where mediad links. Signaling is left to
 * whoever drives it (a test's WebSocket client): commands come as JSON lines
 * on stdin, events go out as JSON lines on stdout.
 *
 *   {"cmd":"offer","id":"a","keying":"sdes"|"dtls","dir":"sendrecv",
 *    "suite":"AES_CM_128_HMAC_SHA1_80","setup":"actpass","fingerprint":"..."}
 *                                      -> {"ev":"offer","id":"a","sdp":"..."}
 *   {"cmd":"answer","id":"a","sdp":"..."}    -> {"ev":"ready","id":"a"} once
 *                                               ICE is up and keys are set
 *   {"cmd":"restart_ice","id":"a"}           -> a new offer (new ICE credentials,
 *                                               same keys); answer it as above
 *   {"cmd":"send","id":"a","count":N,"interval_ms":20 or "pps":R,"tag":"alice",
 *    "size":80,"ssrc":optional,"corrupt":bool,"replay":bool}
 *                                      -> {"ev":"sent","id":"a","n":N}
 *   {"cmd":"raw","id":"a","hex":"...","count":N}  unencrypted datagrams
 *   {"cmd":"stats","id":"a"}                 -> {"ev":"stats",...}
 *   {"cmd":"reset","id":"a"}                 (receive statistics)
 *   {"cmd":"close","id":"a"}, {"cmd":"quit"}
 *   {"cmd":"srtp_bench","seconds":2,"size":100} -> libsrtp2's protect and
 *                                      unprotect rates on one core
 *
 * Payloads are "<tag>:<n>:" followed by bytes derived from n, so a receiver
 * checks that what arrives is exactly what its talker sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>
#include <jansson.h>

#include "config.h"
#include "hmap.h"
#include "loop.h"
#include "md.h"
#include "md_dtls.h"
#include "md_ice.h"
#include "md_rtp.h"
#include "md_sdp.h"
#include "md_srtp.h"

#define MAX_TAGS 8
#define OPUS_PT 111

typedef struct tag_count {
    char tag[64];
    uint64_t n;
} tag_count;

typedef struct peer {
    char id[64];
    md_ice *ice;
    md_dtls *dtls;
    md_srtp *in, *out;
    md_srtp_suite suite;
    int dtls_mode;
    int dtls_active;
    int ready_sent;
    uint8_t key[MD_SRTP_MAX_KEY];
    char key_b64[80];
    char dir[16];
    char fp_override[MD_SDP_MAX_FP + 1];
    char setup[16];
    unsigned version;
    int restarted;              /* an ICE restart is under way: keep the DTLS/SDES state */
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    unsigned decrypt_every;     /* 1: every packet; N: one in N (benchmarks) */
    /* receiving */
    uint64_t rx, rx_bytes, rx_bad, rx_rtcp, rx_plain, rx_dtls, payload_ok, payload_bad, markers, seq_gaps;
    uint32_t ssrcs[8];
    unsigned nssrc;
    int have_seq;
    uint16_t last_seq;
    uint64_t first_rx_ms, last_rx_ms, max_gap_ms;
    tag_count tags[MAX_TAGS];
    /* sending */
    loop_timer send_t;
    unsigned to_send, sent, size, interval_ms, pps;
    uint64_t send_start_ms;
    uint32_t send_ssrc;
    int corrupt;
    int replay;                 /* each packet sent twice (replay tests) */
    char tag[64];
    uint64_t counter;
} peer;

static struct {
    loop *l;
    GMainLoop *ml;
    hmap *peers;
    md_dtls_ctx *dtls;
    unsigned port_min, port_max;
    char inbuf[1 << 20];
    size_t inlen;
} P;

static void emit(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return;
    fputs(s, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    free(s);
}

static void emit_error(const char *id, const char *what)
{
    emit(json_pack("{s:s,s:s,s:s}", "ev", "error", "id", id ? id : "", "error", what));
}

static uint64_t now_ms(void) { return loop_mono_ms(); }

/* ---- payloads ------------------------------------------------------------------------ */

static size_t make_payload(uint8_t *out, size_t size, const char *tag, uint64_t n)
{
    int h = snprintf((char *)out, size, "%s:%" PRIu64 ":", tag, n);
    size_t len = h > 0 ? (size_t)h : 0;
    if (len > size)
        len = size;
    for (size_t i = len; i < size; i++)
        out[i] = (uint8_t)(n * 31 + i * 7);
    return size > len ? size : len;
}

static void check_payload(peer *p, const uint8_t *pl, size_t n)
{
    char head[80];
    size_t hl = n < sizeof(head) - 1 ? n : sizeof(head) - 1;
    memcpy(head, pl, hl);
    head[hl] = 0;
    char *c1 = strchr(head, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2) {
        p->payload_bad++;
        return;
    }
    *c1 = 0;
    uint64_t k = strtoull(c1 + 1, NULL, 10);
    size_t start = (size_t)(c2 - head) + 1;
    for (size_t i = start; i < n; i++)
        if (pl[i] != (uint8_t)(k * 31 + i * 7)) {
            p->payload_bad++;
            return;
        }
    p->payload_ok++;
    for (unsigned i = 0; i < MAX_TAGS; i++) {
        if (!p->tags[i].tag[0])
            snprintf(p->tags[i].tag, sizeof(p->tags[i].tag), "%.63s", head);
        if (!strcmp(p->tags[i].tag, head)) {
            p->tags[i].n++;
            return;
        }
    }
}

/* ---- receiving ------------------------------------------------------------------------ */

static void maybe_ready(peer *p)
{
    int st = md_ice_state(p->ice);
    if (p->ready_sent || !p->in || !p->out || (st != MD_ICE_CONNECTED && st != MD_ICE_READY))
        return;
    p->ready_sent = 1;
    emit(json_pack("{s:s,s:s,s:s}", "ev", "ready", "id", p->id, "suite", md_srtp_suite_name(p->suite)));
}

static void rx_rtp(peer *p, const uint8_t *buf, size_t len)
{
    uint8_t pkt[MD_RTP_MAX + MD_SRTP_TRAILER];
    uint64_t t = now_ms();
    if (p->rx && t - p->last_rx_ms > p->max_gap_ms)
        p->max_gap_ms = t - p->last_rx_ms;
    if (!p->rx)
        p->first_rx_ms = t;
    p->last_rx_ms = t;
    p->rx++;
    p->rx_bytes += len;
    if (!p->in || len > MD_RTP_MAX) {
        p->rx_bad++;
        return;
    }
    if (p->decrypt_every > 1 && p->rx % p->decrypt_every != 0)
        return;
    memcpy(pkt, buf, len);
    int n = (int)len;
    if (md_srtp_unprotect(p->in, pkt, &n) < 0) {
        p->rx_bad++;
        return;
    }
    md_rtp_hdr h;
    if (md_rtp_parse(pkt, (size_t)n, &h) < 0) {
        p->rx_bad++;
        return;
    }
    unsigned i;
    for (i = 0; i < p->nssrc && p->ssrcs[i] != h.ssrc; i++)
        ;
    if (i == p->nssrc && p->nssrc < 8)
        p->ssrcs[p->nssrc++] = h.ssrc;
    if (h.marker)
        p->markers++;
    if (p->have_seq && p->decrypt_every <= 1 && h.seq != (uint16_t)(p->last_seq + 1))
        p->seq_gaps++;
    p->have_seq = 1;
    p->last_seq = h.seq;
    check_payload(p, pkt + h.hdr_len, h.payload_len);
}

static void on_recv(const uint8_t *buf, size_t len, void *arg)
{
    peer *p = arg;
    switch (md_rtp_classify(buf, len)) {
    case MD_PKT_DTLS:
        p->rx_dtls++;
        if (p->dtls)
            md_dtls_input(p->dtls, buf, len);
        break;
    case MD_PKT_RTP:
        rx_rtp(p, buf, len);
        break;
    case MD_PKT_RTCP:
        p->rx_rtcp++;
        break;
    default:
        p->rx_plain++;
        break;
    }
}

static void on_state(int state, void *arg)
{
    peer *p = arg;
    if ((state == MD_ICE_CONNECTED || state == MD_ICE_READY) && p->dtls && p->dtls_active)
        md_dtls_start(p->dtls);
    if (state == MD_ICE_FAILED)
        emit(json_pack("{s:s,s:s}", "ev", "ice_failed", "id", p->id));
    maybe_ready(p);
}

static void dtls_send(const uint8_t *buf, size_t len, void *arg)
{
    peer *p = arg;
    md_ice_send(p->ice, buf, len);
}

static void dtls_done(int status, const md_dtls_keys *k, void *arg)
{
    peer *p = arg;
    if (status < 0) {
        emit(json_pack("{s:s,s:s,s:i,s:s}", "ev", "dtls_failed", "id", p->id, "status", status, "error",
                       md_dtls_last_error(p->dtls)));
        return;
    }
    p->suite = k->suite;
    p->in = md_srtp_new(k->suite, k->remote, 0);
    p->out = md_srtp_new(k->suite, k->local, 1);
    maybe_ready(p);
}

/* ---- offer / answer ---------------------------------------------------------------------- */

static void peer_free(peer *p)
{
    if (!p)
        return;
    loop_timer_stop(P.l, &p->send_t);
    md_dtls_free(p->dtls);
    md_ice_free(p->ice);
    md_srtp_free(p->in);
    md_srtp_free(p->out);
    free(p);
}

/* Writes and emits an offer for p's current ICE credentials and keys. */
static void write_offer(peer *p)
{
    char cands[MD_ICE_MAX_CANDS][MD_ICE_CAND_LEN];
    size_t nc = md_ice_candidates(p->ice, cands, MD_ICE_MAX_CANDS);
    char sdp[8192];
    int o = snprintf(sdp, sizeof(sdp),
                     "v=0\r\no=- %u %u IN IP4 127.0.0.1\r\ns=tether-probe\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
                     "m=audio 9 %s %d\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=%s\r\na=rtcp-mux\r\n"
                     "a=rtpmap:%d opus/48000/2\r\na=fmtp:%d minptime=10;useinbandfec=1\r\n"
                     "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=ssrc:%u cname:probe-%s\r\n",
                     p->ssrc, ++p->version, p->dtls_mode ? "UDP/TLS/RTP/SAVPF" : "RTP/SAVPF", OPUS_PT, p->dir,
                     OPUS_PT, OPUS_PT, md_ice_ufrag(p->ice), md_ice_pwd(p->ice), p->ssrc, p->id);
    if (p->dtls_mode)
        o += snprintf(sdp + o, sizeof(sdp) - (size_t)o, "a=fingerprint:sha-256 %s\r\na=setup:%s\r\n",
                      p->fp_override[0] ? p->fp_override : md_dtls_ctx_fingerprint(P.dtls), p->setup);
    else
        o += snprintf(sdp + o, sizeof(sdp) - (size_t)o, "a=crypto:1 %s inline:%s\r\n", md_srtp_suite_name(p->suite),
                      p->key_b64);
    for (size_t i = 0; i < nc; i++)
        o += snprintf(sdp + o, sizeof(sdp) - (size_t)o, "a=%s\r\n", cands[i]);
    snprintf(sdp + o, sizeof(sdp) - (size_t)o, "a=end-of-candidates\r\n");
    emit(json_pack("{s:s,s:s,s:s,s:i}", "ev", "offer", "id", p->id, "sdp", sdp, "port",
                   (int)md_ice_local_port(p->ice)));
}

static void cmd_offer(json_t *c, const char *id)
{
    const char *keying = json_string_value(json_object_get(c, "keying"));
    const char *dir = json_string_value(json_object_get(c, "dir"));
    const char *suite = json_string_value(json_object_get(c, "suite"));
    const char *setup = json_string_value(json_object_get(c, "setup"));
    const char *fp = json_string_value(json_object_get(c, "fingerprint"));
    json_t *every = json_object_get(c, "decrypt_every");
    char err[200];
    if (hmap_get(P.peers, id)) {
        emit_error(id, "peer exists");
        return;
    }
    peer *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    snprintf(p->id, sizeof(p->id), "%s", id);
    snprintf(p->dir, sizeof(p->dir), "%s", dir ? dir : "sendrecv");
    snprintf(p->setup, sizeof(p->setup), "%s", setup ? setup : "actpass");
    snprintf(p->fp_override, sizeof(p->fp_override), "%s", fp ? fp : "");
    p->dtls_mode = keying && !strcmp(keying, "dtls");
    p->decrypt_every = every ? (unsigned)json_integer_value(every) : 1;
    getrandom(&p->ssrc, sizeof(p->ssrc), 0);
    getrandom(&p->seq, sizeof(p->seq), 0);
    getrandom(&p->ts, sizeof(p->ts), 0);
    p->ice = md_ice_new(g_main_context_default(), P.port_min, P.port_max, 0, on_recv, on_state, p, err,
                        sizeof(err));
    if (!p->ice || hmap_put(P.peers, p->id, p) < 0) {
        emit_error(id, p->ice ? "out of memory" : err);
        peer_free(p);
        return;
    }
    if (!p->dtls_mode) {
        p->suite = md_srtp_suite_from_name(suite ? suite : "AES_CM_128_HMAC_SHA1_80");
        size_t kl = md_srtp_key_len(p->suite) + md_srtp_salt_len(p->suite);
        if (!kl) {
            emit_error(id, "unknown suite");
            hmap_del(P.peers, p->id);
            peer_free(p);
            return;
        }
        getrandom(p->key, kl, 0);
        md_b64_encode(p->key, kl, p->key_b64, sizeof(p->key_b64));
        p->out = md_srtp_new(p->suite, p->key, 1);
    }
    write_offer(p);
}

/* An ICE restart: new local credentials, the same keys; a new offer. */
static void cmd_restart_ice(peer *p)
{
    if (md_ice_restart(p->ice) < 0) {
        emit_error(p->id, "ICE restart failed");
        return;
    }
    p->ready_sent = 0;
    p->restarted = 1;
    write_offer(p);
}

static void cmd_answer(peer *p, json_t *c)
{
    const char *text = json_string_value(json_object_get(c, "sdp"));
    static md_sdp a;
    md_sdp_pick pick;
    const char *why = "no sdp";
    if (!text || md_sdp_parse(text, strlen(text), &a, &why) < 0 || md_sdp_select(&a, &pick, &why) < 0) {
        emit_error(p->id, why);
        return;
    }
    const md_sdp_media *m = &a.m[pick.index];
    if (md_ice_set_remote(p->ice, m->ufrag, m->pwd) < 0) {
        emit_error(p->id, "remote credentials refused");
        return;
    }
    for (unsigned i = 0; i < m->ncand; i++)
        md_ice_add_candidate(p->ice, m->cand[i]);
    md_ice_remote_done(p->ice);
    if (p->restarted) {
        /* Same keys: only ICE changed. */
        p->restarted = 0;
    } else if (p->dtls_mode) {
        /* The answerer said passive: we connect; active: it does. */
        p->dtls_active = m->setup != MD_SETUP_ACTIVE;
        md_dtls_free(p->dtls);
        p->dtls = md_dtls_new(P.dtls, P.l, p->dtls_active, m->fp_alg, m->fp, dtls_send, dtls_done, p);
        int st = md_ice_state(p->ice);
        if (p->dtls && p->dtls_active && (st == MD_ICE_CONNECTED || st == MD_ICE_READY))
            md_dtls_start(p->dtls);
    } else {
        uint8_t key[MD_SRTP_MAX_KEY + 4];
        md_srtp_suite s = md_srtp_suite_from_name(pick.crypto->suite);
        int n = md_b64_decode(pick.crypto->key, key, sizeof(key));
        if (s != p->suite || n != (int)(md_srtp_key_len(s) + md_srtp_salt_len(s))) {
            emit_error(p->id, "answer's a=crypto does not match the offer");
            return;
        }
        md_srtp_free(p->in);
        p->in = md_srtp_new(s, key, 0);
    }
    maybe_ready(p);
}

/* ---- sending ------------------------------------------------------------------------------ */

static int send_one(peer *p)
{
    uint8_t payload[MD_RTP_MAX], pkt[MD_RTP_MAX + MD_SRTP_TRAILER];
    if (!p->out)
        return -ENOTCONN;
    size_t pl = make_payload(payload, p->size, p->tag, p->counter++);
    int n = md_rtp_build(pkt, MD_RTP_MAX, p->sent == 0, OPUS_PT, p->seq++, p->ts, p->send_ssrc ? p->send_ssrc : p->ssrc,
                         payload, pl);
    p->ts += 960;
    if (n < 0 || md_srtp_protect(p->out, pkt, &n) < 0)
        return -EINVAL;
    if (p->corrupt)
        pkt[n - 1] ^= 0x5a;
    if (p->replay)
        md_ice_send(p->ice, pkt, (size_t)n);
    return md_ice_send(p->ice, pkt, (size_t)n);
}

static void send_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    peer *p = arg;
    /* With a rate: whatever is due by now (a late timer catches up), so
     * the rate is what was asked whatever the timer's granularity. */
    unsigned due = p->sent + 1;
    if (p->pps)
        due = (unsigned)((now_ms() - p->send_start_ms) * p->pps / 1000) + 1;
    else if (!p->interval_ms)
        due = p->sent + 50;
    if (due > p->to_send)
        due = p->to_send;
    while (p->sent < due) {
        send_one(p);
        p->sent++;
    }
    if (p->sent >= p->to_send) {
        loop_timer_stop(P.l, &p->send_t);
        emit(json_pack("{s:s,s:s,s:i}", "ev", "sent", "id", p->id, "n", (int)p->sent));
    }
}

static void cmd_send(peer *p, json_t *c)
{
    const char *tag = json_string_value(json_object_get(c, "tag"));
    p->to_send = (unsigned)json_integer_value(json_object_get(c, "count"));
    p->interval_ms = json_object_get(c, "interval_ms") ? (unsigned)json_integer_value(json_object_get(c, "interval_ms"))
                                                       : 20;
    p->size = json_object_get(c, "size") ? (unsigned)json_integer_value(json_object_get(c, "size")) : 80;
    if (p->size < 16 || p->size > 1200)
        p->size = 80;
    p->send_ssrc = (uint32_t)json_integer_value(json_object_get(c, "ssrc"));
    p->corrupt = json_is_true(json_object_get(c, "corrupt"));
    p->replay = json_is_true(json_object_get(c, "replay"));
    snprintf(p->tag, sizeof(p->tag), "%s", tag ? tag : p->id);
    p->pps = (unsigned)json_integer_value(json_object_get(c, "pps"));
    p->sent = 0;
    p->send_start_ms = now_ms();
    loop_now_update(P.l);
    loop_timer_start(P.l, &p->send_t, 0, p->pps ? 2 : p->interval_ms ? p->interval_ms : 1, send_tick, p);
}

static void cmd_raw(peer *p, json_t *c)
{
    const char *hex = json_string_value(json_object_get(c, "hex"));
    int count = json_object_get(c, "count") ? (int)json_integer_value(json_object_get(c, "count")) : 1;
    uint8_t buf[1500];
    size_t n = 0;
    for (const char *h = hex ? hex : ""; h[0] && h[1] && n < sizeof(buf); h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        buf[n++] = (uint8_t)v;
    }
    for (int i = 0; i < count; i++)
        md_ice_send(p->ice, buf, n);
    emit(json_pack("{s:s,s:s,s:i}", "ev", "sent", "id", p->id, "n", count));
}

static void cmd_stats(peer *p)
{
    json_t *ssrcs = json_array(), *tags = json_object();
    for (unsigned i = 0; i < p->nssrc; i++)
        json_array_append_new(ssrcs, json_integer(p->ssrcs[i]));
    for (unsigned i = 0; i < MAX_TAGS && p->tags[i].tag[0]; i++)
        json_object_set_new(tags, p->tags[i].tag, json_integer((json_int_t)p->tags[i].n));
    emit(json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:I,s:I,s:I,s:i,s:b,s:s}", "ev",
                   "stats", "id", p->id, "rx", (json_int_t)p->rx, "rx_bytes", (json_int_t)p->rx_bytes, "rx_bad",
                   (json_int_t)p->rx_bad, "rx_rtcp", (json_int_t)p->rx_rtcp, "rx_dtls", (json_int_t)p->rx_dtls,
                   "rx_other", (json_int_t)p->rx_plain, "payload_ok", (json_int_t)p->payload_ok, "payload_bad",
                   (json_int_t)p->payload_bad, "markers", (json_int_t)p->markers, "seq_gaps",
                   (json_int_t)p->seq_gaps, "ssrcs", ssrcs, "tags", tags, "first_rx_ms", (json_int_t)p->first_rx_ms,
                   "last_rx_ms", (json_int_t)p->last_rx_ms, "max_gap_ms", (json_int_t)p->max_gap_ms, "ice",
                   md_ice_state(p->ice), "ready", p->ready_sent, "suite", md_srtp_suite_name(p->suite)));
}

static void cmd_reset(peer *p)
{
    p->rx = p->rx_bytes = p->rx_bad = p->rx_rtcp = p->rx_plain = p->payload_ok = p->payload_bad = 0;
    p->markers = p->seq_gaps = p->first_rx_ms = p->last_rx_ms = p->max_gap_ms = 0;
    p->nssrc = 0;
    p->have_seq = 0;
    memset(p->tags, 0, sizeof(p->tags));
    emit(json_pack("{s:s,s:s}", "ev", "reset", "id", p->id));
}

static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libsrtp2's own ceiling on this machine: protect and unprotect of
 * size-byte RTP packets in a tight loop, per CPU-second of this thread (so
 * other processes sharing the core do not lower it, and it compares with
 * mediad's packets per CPU-second). */
static void cmd_srtp_bench(json_t *c)
{
    double seconds = json_object_get(c, "seconds") ? json_number_value(json_object_get(c, "seconds")) : 2.0;
    int size = json_object_get(c, "size") ? (int)json_integer_value(json_object_get(c, "size")) : 100;
    const char *sname = json_string_value(json_object_get(c, "suite"));
    md_srtp_suite s = md_srtp_suite_from_name(sname ? sname : "AES_CM_128_HMAC_SHA1_80");
    if (size < 12 || size > 1200 || s == MD_SRTP_NONE) {
        emit_error("", "srtp_bench: bad size or suite");
        return;
    }
    uint8_t key[MD_SRTP_MAX_KEY];
    getrandom(key, sizeof(key), 0);
    md_srtp *out = md_srtp_new(s, key, 1), *in = NULL;
    uint8_t pl[1200], pkt[1300], copy[1300];
    memset(pl, 0x42, sizeof(pl));
    uint8_t (*saved)[1300] = malloc(4096 * sizeof(*saved));
    int *slen = malloc(4096 * sizeof(*slen));
    if (!out || !saved || !slen) {
        emit_error("", "srtp_bench: setup failed");
        goto out;
    }
    /* Protect: packets with increasing sequence numbers. */
    uint64_t n = 0, t_end = now_ms() + (uint64_t)(seconds * 500.0);
    double c0 = cpu_now_s();
    do {
        for (int k = 0; k < 1000; k++, n++) {
            int len = md_rtp_build(pkt, sizeof(pkt), 0, OPUS_PT, (uint16_t)n, (uint32_t)(n * 960), 1, pl,
                                   (size_t)size - 12);
            md_srtp_protect(out, pkt, &len);
            if (n < 4096) {
                memcpy(saved[n], pkt, (size_t)len);
                slen[n] = len;
            }
        }
    } while (now_ms() < t_end);
    double protect_pps = (double)n / (cpu_now_s() - c0);
    /* Unprotect: the first 4096 protected packets again and again, each
     * round through a fresh inbound context (a replay would be refused);
     * the context setup is not counted. */
    uint64_t m = 0;
    double busy = 0;
    t_end = now_ms() + (uint64_t)(seconds * 500.0);
    do {
        md_srtp_free(in);
        in = md_srtp_new(s, key, 0);
        if (!in)
            break;
        double a = cpu_now_s();
        for (int k = 0; k < 4096; k++, m++) {
            int len = slen[k];
            memcpy(copy, saved[k], (size_t)len);
            md_srtp_unprotect(in, copy, &len);
        }
        busy += cpu_now_s() - a;
    } while (now_ms() < t_end);
    double unprotect_pps = busy > 0 ? (double)m / busy : 0;
    emit(json_pack("{s:s,s:s,s:i,s:f,s:f}", "ev", "srtp_bench", "suite", md_srtp_suite_name(s), "size", size,
                   "protect_pps", protect_pps, "unprotect_pps", unprotect_pps));
out:
    free(saved);
    free(slen);
    md_srtp_free(out);
    md_srtp_free(in);
}

/* ---- commands ------------------------------------------------------------------------------ */

static void command(const char *line)
{
    json_error_t jerr;
    json_t *c = json_loads(line, 0, &jerr);
    const char *cmd = c ? json_string_value(json_object_get(c, "cmd")) : NULL;
    const char *id = c ? json_string_value(json_object_get(c, "id")) : NULL;
    if (!cmd) {
        emit_error(NULL, "expected a JSON object with cmd");
        json_decref(c);
        return;
    }
    peer *p = id ? hmap_get(P.peers, id) : NULL;
    if (!strcmp(cmd, "quit")) {
        g_main_loop_quit(P.ml);
    } else if (!strcmp(cmd, "srtp_bench")) {
        cmd_srtp_bench(c);
    } else if (!id) {
        emit_error(NULL, "missing id");
    } else if (!strcmp(cmd, "offer")) {
        cmd_offer(c, id);
    } else if (!p) {
        emit_error(id, "no such peer");
    } else if (!strcmp(cmd, "answer")) {
        cmd_answer(p, c);
    } else if (!strcmp(cmd, "candidate")) {
        const char *cand = json_string_value(json_object_get(c, "candidate"));
        if (cand && *cand)
            md_ice_add_candidate(p->ice, !strncmp(cand, "a=", 2) ? cand + 2 : cand);
    } else if (!strcmp(cmd, "restart_ice")) {
        cmd_restart_ice(p);
    } else if (!strcmp(cmd, "send")) {
        cmd_send(p, c);
    } else if (!strcmp(cmd, "raw")) {
        cmd_raw(p, c);
    } else if (!strcmp(cmd, "stats")) {
        cmd_stats(p);
    } else if (!strcmp(cmd, "reset")) {
        cmd_reset(p);
    } else if (!strcmp(cmd, "close")) {
        hmap_del(P.peers, id);
        peer_free(p);
        emit(json_pack("{s:s,s:s}", "ev", "closed", "id", id));
    } else {
        emit_error(id, "unknown cmd");
    }
    json_decref(c);
}

static void on_stdin(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)events;
    (void)arg;
    ssize_t n = read(fd, P.inbuf + P.inlen, sizeof(P.inbuf) - 1 - P.inlen);
    if (n <= 0) {
        g_main_loop_quit(P.ml);
        loop_del_fd(P.l, fd);
        return;
    }
    P.inlen += (size_t)n;
    char *start = P.inbuf, *nl;
    while ((nl = memchr(start, '\n', P.inlen - (size_t)(start - P.inbuf)))) {
        *nl = 0;
        if (nl > start)
            command(start);
        start = nl + 1;
    }
    P.inlen -= (size_t)(start - P.inbuf);
    memmove(P.inbuf, start, P.inlen);
    if (P.inlen == sizeof(P.inbuf) - 1)
        P.inlen = 0;   /* a line longer than 1 MiB: dropped */
}

int md_probe_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    /* Told apart from the daemon in ps and by process-name tools. */
    prctl(PR_SET_NAME, "md-probe", 0, 0, 0);
    const char *ifaces = getenv("TETHER_MEDIA_IFACES");
    const char *ports = getenv("TETHER_PROBE_PORTS");
    if (md_ice_init(ifaces && *ifaces ? ifaces : "lo", err, sizeof(err)) < 0) {
        fprintf(stderr, "probe: TETHER_MEDIA_IFACES: %s\n", err);
        return 2;
    }
    if (!ports || sscanf(ports, "%u-%u", &P.port_min, &P.port_max) != 2)
        P.port_min = P.port_max = 0;
    if (md_srtp_init() < 0 || !(P.dtls = md_dtls_ctx_new(NULL, err, sizeof(err)))) {
        fprintf(stderr, "probe: %s\n", err);
        return 2;
    }
    P.ml = g_main_loop_new(NULL, FALSE);
    P.l = loop_new();
    P.peers = hmap_new();
    if (!P.ml || !P.l || !P.peers || !md_glib_attach(P.l) || loop_add_fd(P.l, 0, LOOP_READ, on_stdin, NULL) < 0) {
        fprintf(stderr, "probe: cannot set up the loop\n");
        return 2;
    }
    emit(json_pack("{s:s,s:s,s:s}", "ev", "hello", "addresses", md_ice_addresses(), "fingerprint",
                   md_dtls_ctx_fingerprint(P.dtls)));
    g_main_loop_run(P.ml);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(P.peers, &it, &k, &v))
        peer_free(v);
    hmap_free(P.peers);
    loop_free(P.l);
    md_dtls_ctx_free(P.dtls);
    g_main_loop_unref(P.ml);
    return 0;
}
