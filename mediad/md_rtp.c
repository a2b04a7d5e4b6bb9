/* md_rtp.c -- RTP/RTCP parsing and the switching context (see md_rtp.h). */
#include "md_rtp.h"

#include <errno.h>
#include <string.h>

md_pkt_kind md_rtp_classify(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return MD_PKT_OTHER;
    uint8_t b = buf[0];
    if (b >= 20 && b <= 63)
        return MD_PKT_DTLS;
    if (b >= 128 && b <= 191 && len >= 8) {
        /* RFC 5761: RTCP packet types 192..223 never collide with the RTP
         * payload types mediad answers with (Opus, dynamic, below 64 or
         * above 95 once the marker bit is counted). */
        uint8_t pt = buf[1];
        if (pt >= 192 && pt <= 223)
            return MD_PKT_RTCP;
        return len >= 12 ? MD_PKT_RTP : MD_PKT_OTHER;
    }
    return MD_PKT_OTHER;
}

int md_rtp_parse(const uint8_t *buf, size_t len, md_rtp_hdr *h)
{
    if (len < 12 || (buf[0] >> 6) != 2)
        return -EINVAL;
    size_t cc = buf[0] & 0x0f, off = 12 + 4 * cc;
    if (off > len)
        return -EINVAL;
    if (buf[0] & 0x10) {
        if (off + 4 > len)
            return -EINVAL;
        size_t xl = 4 * ((size_t)buf[off + 2] << 8 | buf[off + 3]);
        off += 4 + xl;
        if (off > len)
            return -EINVAL;
    }
    size_t pad = 0;
    if (buf[0] & 0x20) {
        pad = buf[len - 1];
        if (pad == 0 || off + pad > len)
            return -EINVAL;
    }
    h->marker = buf[1] >> 7;
    h->pt = buf[1] & 0x7f;
    h->seq = (uint16_t)(buf[2] << 8 | buf[3]);
    h->ts = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 | buf[7];
    h->ssrc = md_rtp_ssrc(buf);
    h->hdr_len = off;
    h->payload_len = len - off - pad;
    return 0;
}

void md_rw_init(md_rw *rw, uint16_t seq0, uint32_t ts0)
{
    memset(rw, 0, sizeof(*rw));
    /* "last sent" is one before the first packet to come. */
    rw->last_seq = (uint16_t)(seq0 - 1);
    rw->last_ts = ts0;
}

void md_rw_map(md_rw *rw, uint64_t src, uint16_t seq, uint32_t ts, uint64_t now_ms, uint16_t *out_seq,
               uint32_t *out_ts, int *marker)
{
    *marker = 0;
    if (!rw->started || src != rw->src) {
        uint16_t next_seq = (uint16_t)(rw->last_seq + 1);
        uint32_t next_ts = rw->last_ts;
        if (rw->started) {
            /* Advance by the time that passed, at least one 20 ms frame, so
             * the receiver's playout clock stays in step with reality. */
            uint64_t gap = now_ms > rw->last_ms ? now_ms - rw->last_ms : 0;
            uint64_t adv = gap * (MD_RTP_CLOCK / 1000);
            if (adv < MD_RTP_CLOCK / 50)
                adv = MD_RTP_CLOCK / 50;
            /* RTP timestamps compare modulo 2^32: an advance of 2^31 or more
             * (a silence over 12.4 hours) would read as a step back. */
            if (adv > MD_RW_MAX_ADVANCE)
                adv = MD_RW_MAX_ADVANCE;
            next_ts += (uint32_t)adv;
        }
        rw->seq_off = (uint16_t)(next_seq - seq);
        rw->ts_off = next_ts - ts;
        rw->src = src;
        rw->started = 1;
        *marker = 1;
        *out_seq = next_seq;
        *out_ts = next_ts;
        rw->last_seq = next_seq;
        rw->last_ts = next_ts;
        rw->last_ms = now_ms;
        return;
    }
    *out_seq = (uint16_t)(seq + rw->seq_off);
    *out_ts = ts + rw->ts_off;
    /* Track the newest packet only: a reordered older one maps correctly
     * but must not pull the next switch backwards. */
    if ((int16_t)(*out_seq - rw->last_seq) > 0) {
        rw->last_seq = *out_seq;
        rw->last_ts = *out_ts;
        rw->last_ms = now_ms;
    }
}

static void be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int md_rtp_build(uint8_t *out, size_t cap, int marker, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc,
                 const uint8_t *payload, size_t n)
{
    if (cap < 12 || n > cap - 12)
        return -ENOSPC;
    out[0] = 0x80;
    out[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    be16(out + 2, seq);
    be32(out + 4, ts);
    be32(out + 8, ssrc);
    memcpy(out + 12, payload, n);
    return (int)(12 + n);
}

/* An SDES chunk with one CNAME item, padded to 32 bits. */
static int sdes(uint8_t *out, size_t cap, uint32_t ssrc, const char *cname)
{
    size_t cl = strlen(cname);
    if (cl > 255)
        cl = 255;
    size_t body = 4 + 2 + cl + 1;              /* ssrc, type+len, text, end */
    size_t len = 4 + ((body + 3) & ~(size_t)3);
    if (len > cap)
        return -ENOSPC;
    memset(out, 0, len);
    out[0] = 0x81;
    out[1] = 202;
    be16(out + 2, (uint16_t)(len / 4 - 1));
    be32(out + 4, ssrc);
    out[8] = 1;
    out[9] = (uint8_t)cl;
    memcpy(out + 10, cname, cl);
    return (int)len;
}

int md_rtcp_sr(uint8_t *out, size_t cap, uint32_t ssrc, uint64_t ntp_ms, uint32_t rtp_ts, uint32_t packets,
               uint32_t octets, const char *cname)
{
    if (cap < 28)
        return -ENOSPC;
    out[0] = 0x80;
    out[1] = 200;
    be16(out + 2, 6);
    be32(out + 4, ssrc);
    /* NTP: seconds since 1900 and a 32-bit fraction. */
    uint64_t secs = ntp_ms / 1000 + 2208988800ULL;
    uint64_t frac = ((ntp_ms % 1000) << 32) / 1000;
    be32(out + 8, (uint32_t)secs);
    be32(out + 12, (uint32_t)frac);
    be32(out + 16, rtp_ts);
    be32(out + 20, packets);
    be32(out + 24, octets);
    int n = sdes(out + 28, cap - 28, ssrc, cname);
    return n < 0 ? n : 28 + n;
}

int md_rtcp_rr(uint8_t *out, size_t cap, uint32_t ssrc, uint32_t src, uint32_t ext_seq, const char *cname)
{
    if (cap < 32)
        return -ENOSPC;
    memset(out, 0, 32);
    out[0] = 0x81;
    out[1] = 201;
    be16(out + 2, 7);
    be32(out + 4, ssrc);
    be32(out + 8, src);
    be32(out + 16, ext_seq);
    int n = sdes(out + 32, cap - 32, ssrc, cname);
    return n < 0 ? n : 32 + n;
}
