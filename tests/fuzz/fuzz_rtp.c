/* fuzz_rtp.c -- libFuzzer target for what mediad reads from UDP: the
 * RFC 7983 demultiplexer, the RTP header parser and the SRTP/SRTCP layer in
 * front of it (mediad/md_rtp.c, mediad/md_srtp.c over libsrtp2), and the
 * switching context that renumbers a talker's packets for each listener.
 * md_srtp.c is compiled in (the target resets libsrtp's per-SSRC state).
 *
 * An input is one datagram, handled as mediad's session does (md_sess.c:
 * classify, bound to MD_RTP_MAX, unprotect with the peer's key). STUN goes to
 * libnice and DTLS records to OpenSSL, so only their classification is ours.
 * Beyond "no crash, no leak", it abort()s unless:
 *   - the classification follows RFC 7983 (DTLS 20..63, RTP/RTCP 128..191
 *     with RTCP packet types 192..223) and the packet is long enough for it;
 *   - a parsed header lies within the datagram, and the packet mediad would
 *     forward from it (md_rtp_build) parses back to the same fields and
 *     payload;
 *   - in each suite (the last byte picks one), the plain packet protected
 *     with a key unprotects with it to the same bytes (SSRC in the clear),
 *     for RTP and RTCP alike;
 *   - the switching context fed the same bytes as a series of (source, seq,
 *     ts, elapsed ms) keeps a listener's stream continuous: a new source
 *     starts at the next sequence number with the marker, its timestamp at
 *     least one 20 ms frame and less than 2^31 ahead; packets of one source
 *     keep their offsets.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mediad/md_rtp.h"
/* Compiled in, for the session handle inside an md_srtp. */
#include "mediad/md_srtp.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_rtp: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Every suite md_srtp.c knows: its suites[] and NSUITES. */

static uint8_t key[MD_SRTP_MAX_KEY];
/* One inbound and one outbound context per suite, made once (making them
 * costs more than all the rest of an input). The state libsrtp keeps per
 * SSRC (rollover counter, replay window) is dropped after each input, or it
 * would make one input's verdict depend on the ones before it. */
static md_srtp *in_ctx[NSUITES], *out_ctx[NSUITES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(md_srtp_init() == 0);
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < NSUITES; i++)
        CHECK((in_ctx[i] = md_srtp_new(suites[i].suite, key, 0)) && (out_ctx[i] = md_srtp_new(suites[i].suite, key, 1)));
    return 0;
}

static void forget(md_srtp *c, const uint8_t *ssrc_be)
{
    uint32_t ssrc;
    memcpy(&ssrc, ssrc_be, 4);  /* libsrtp takes it in network order */
    srtp_remove_stream(c->s, ssrc);
}

static void check_classify(const uint8_t *buf, size_t len, md_pkt_kind k)
{
    uint8_t b = len ? buf[0] : 0;
    switch (k) {
    case MD_PKT_DTLS:
        CHECK(len >= 1 && b >= 20 && b <= 63);
        break;
    case MD_PKT_RTP:
        CHECK(len >= 12 && b >= 128 && b <= 191 && !(buf[1] >= 192 && buf[1] <= 223));
        break;
    case MD_PKT_RTCP:
        CHECK(len >= 8 && b >= 128 && b <= 191 && buf[1] >= 192 && buf[1] <= 223);
        break;
    case MD_PKT_OTHER:
        CHECK(len == 0 || !(b >= 20 && b <= 63));
        CHECK(len < 8 || !(b >= 128 && b <= 191 && buf[1] >= 192 && buf[1] <= 223));
        CHECK(len < 12 || !(b >= 128 && b <= 191));
        break;
    default:
        CHECK(0);
    }
}

/* Parses buf; if it parses, checks the header and the forwarded copy. */
static int check_parse(const uint8_t *buf, size_t len, md_rtp_hdr *h)
{
    static uint8_t fwd[MD_RTP_MAX + MD_SRTP_TRAILER];
    md_rtp_hdr back;

    memset(h, 0x5a, sizeof *h);
    if (md_rtp_parse(buf, len, h) < 0)
        return -1;
    CHECK(len >= 12 && (buf[0] >> 6) == 2);
    CHECK(h->hdr_len >= 12 + 4 * (size_t)(buf[0] & 0x0f) && h->hdr_len <= len);
    CHECK(h->payload_len <= len - h->hdr_len);
    CHECK(h->pt < 128 && (h->marker == 0 || h->marker == 1));
    if (!(buf[0] & 0x20))
        CHECK(h->hdr_len + h->payload_len == len);
    int n = md_rtp_build(fwd, MD_RTP_MAX, h->marker, h->pt, h->seq, h->ts, h->ssrc, buf + h->hdr_len,
                         h->payload_len);
    if (h->payload_len > MD_RTP_MAX - 12) {
        CHECK(n == -ENOSPC);
        return 0;
    }
    CHECK(n == (int)(12 + h->payload_len));
    CHECK(md_rtp_parse(fwd, (size_t)n, &back) == 0);
    CHECK(back.marker == h->marker && back.pt == h->pt && back.seq == h->seq && back.ts == h->ts &&
          back.ssrc == h->ssrc && back.hdr_len == 12 && back.payload_len == h->payload_len);
    CHECK(memcmp(fwd + 12, buf + h->hdr_len, h->payload_len) == 0);
    return 0;
}

/* What md_sess.c does with a datagram from the peer, then the round trip,
 * in the suite the last byte picks. */
static void check_srtp(const uint8_t *buf, size_t len, md_pkt_kind k)
{
    static uint8_t pkt[MD_RTP_MAX + MD_SRTP_TRAILER], enc[MD_RTP_MAX + MD_SRTP_TRAILER];
    int rtcp = k == MD_PKT_RTCP;

    if ((k != MD_PKT_RTP && !rtcp) || len > MD_RTP_MAX)
        return;
    size_t si = buf[len - 1] % NSUITES;
    md_srtp *in = in_ctx[si], *out = out_ctx[si];
    /* The datagram as received: forged, so refused, never a crash. */
    memcpy(pkt, buf, len);
    int n = (int)len;
    int r = rtcp ? md_srtp_unprotect_rtcp(in, pkt, &n) : md_srtp_unprotect(in, pkt, &n);
    CHECK(r == 0 || r == -EBADMSG || r == -EALREADY || r == -EINVAL);
    CHECK(n >= 0 && n <= (int)len);
    forget(in, buf + (rtcp ? 4 : 8));
    /* As if the peer had sent it with the right key. */
    memcpy(enc, buf, len);
    n = (int)len;
    r = rtcp ? md_srtp_protect_rtcp(out, enc, &n) : md_srtp_protect(out, enc, &n);
    if (r == 0) {
        CHECK(n > (int)len && n <= (int)len + MD_SRTP_TRAILER);
        if (!rtcp)
            CHECK(md_rtp_ssrc(enc) == md_rtp_ssrc(buf));
        r = rtcp ? md_srtp_unprotect_rtcp(in, enc, &n) : md_srtp_unprotect(in, enc, &n);
        CHECK(r == 0);
        CHECK(n == (int)len && memcmp(enc, buf, len) == 0);
    }
    forget(in, buf + (rtcp ? 4 : 8));
    forget(out, buf + (rtcp ? 4 : 8));
}

/* The bytes as (source, seq, ts, elapsed ms) steps through one listener's
 * switching context. */
static void check_switching(const uint8_t *d, size_t size)
{
    md_rw rw;
    uint64_t now = 1000, cur = UINT64_MAX;
    uint16_t off_seq = 0, max_seq;
    uint32_t off_ts = 0, max_ts;
    int started = 0;

    if (size < 6)
        return;
    md_rw_init(&rw, (uint16_t)(d[0] << 8 | d[1]), (uint32_t)d[2] << 24 | (uint32_t)d[3] << 16 | d[4] << 8 | d[5]);
    max_seq = (uint16_t)((d[0] << 8 | d[1]) - 1);
    max_ts = (uint32_t)d[2] << 24 | (uint32_t)d[3] << 16 | d[4] << 8 | d[5];
    for (size_t i = 6; i + 11 <= size && i < 6 + 11 * 256; i += 11) {
        const uint8_t *s = d + i;
        uint64_t src = s[0] & 3;
        uint16_t seq = (uint16_t)(s[1] << 8 | s[2]), oseq;
        uint32_t ts = (uint32_t)s[3] << 24 | (uint32_t)s[4] << 16 | s[5] << 8 | s[6], ots;
        uint32_t dt = (uint32_t)s[7] << 24 | (uint32_t)s[8] << 16 | s[9] << 8 | s[10];
        int marker = -1;
        now += dt;
        md_rw_map(&rw, src, seq, ts, now, &oseq, &ots, &marker);
        if (!started || src != cur) {
            CHECK(marker == 1);
            CHECK(oseq == (uint16_t)(max_seq + 1));
            if (started) {
                uint32_t adv = ots - max_ts;
                CHECK(adv >= MD_RTP_CLOCK / 50 && adv < 0x80000000u);
            } else {
                CHECK(ots == max_ts);
            }
            off_seq = (uint16_t)(oseq - seq);
            off_ts = ots - ts;
            cur = src;
            started = 1;
            max_seq = oseq;
            max_ts = ots;
        } else {
            CHECK(marker == 0);
            CHECK(oseq == (uint16_t)(seq + off_seq) && ots == ts + off_ts);
            if ((int16_t)(oseq - max_seq) > 0) {
                max_seq = oseq;
                max_ts = ots;
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    md_rtp_hdr h;
    md_pkt_kind k = md_rtp_classify(data, size);

    check_classify(data, size, k);
    check_parse(data, size, &h);
    check_srtp(data, size, k);
    check_switching(data, size);
    return 0;
}
