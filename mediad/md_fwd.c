/* md_fwd.c -- forwarding the floor holder's audio (the hot path).
 *
 * One talker per room (the floor holder's session); each packet it sends is
 * decrypted once (md_sess.c), then for every other member that can receive:
 * a fresh 12-byte header with the listener's SSRC, payload type, and the
 * sequence number and timestamp of its switching context, the Opus payload
 * copied behind it, SRTP-protected with the listener's key and sent on its
 * ICE transport. Header extensions are dropped: the answers negotiate none.
 * Nothing here allocates or logs per packet.
 */
#include <string.h>

#include "md_room.h"

static uint64_t burst_source(const md_room *r, uint32_t ssrc)
{
    /* A talk burst (floor grant) and the talker's SSRC identify a source: a
     * new grant to the same talker is a new source too, so the packets it
     * sent while not holding the floor do not show up as a loss. */
    return r->burst << 32 ^ ssrc;
}

void md_fwd_rtp(md_room *r, md_sess *from, const uint8_t *pkt, const md_rtp_hdr *h)
{
    uint8_t out[MD_RTP_MAX + MD_SRTP_TRAILER];
    if (md_room_talker(r) != from) {
        metrics_inc(md_m.drop_not_holder);
        return;
    }
    uint64_t now = loop_mono_ms();
    uint64_t src = burst_source(r, h->ssrc);
    const uint8_t *payload = pkt + h->hdr_len;
    unsigned sent = 0;
    double bytes = 0;
    list_node *ln;
    list_foreach(ln, &r->members) {
        md_sess *l = list_entry(ln, md_sess, link);
        if (l == from || !md_sess_can_forward(l))
            continue;
        uint16_t seq;
        uint32_t ts;
        int marker;
        md_rw_map(&l->rw, src, h->seq, h->ts, now, &seq, &ts, &marker);
        int n = md_rtp_build(out, MD_RTP_MAX, marker || h->marker, l->out_pt, seq, ts, l->out_ssrc, payload,
                             h->payload_len);
        if (n < 0) {
            metrics_inc(md_m.drop_malformed);
            return;
        }
        if (md_sess_send_rtp(l, out, n) == 0) {
            sent++;
            bytes += n;
        } else {
            metrics_inc(md_m.drop_send);
        }
    }
    metrics_add(md_m.rtp_out, sent);
    metrics_add(md_m.bytes_out, bytes);
}

void md_fwd_reports(md_room *r)
{
    uint8_t buf[256 + MD_SRTP_TRAILER];
    uint64_t now = loop_mono_ms();
    int64_t wall = loop_wall_ms();
    md_sess *talker = md_room_talker(r);
    list_node *ln;
    list_foreach(ln, &r->members) {
        md_sess *l = list_entry(ln, md_sess, link);
        if (l->dead || !l->out || !md_sess_can_forward(l))
            continue;
        int n;
        if (l->rtp_out) {
            /* The RTP time of "now" on the listener's clock, so its NTP/RTP
             * mapping stays right between bursts. */
            uint32_t rtp_now = l->rw.last_ts + (uint32_t)((now - l->rw.last_ms) * (MD_RTP_CLOCK / 1000));
            n = md_rtcp_sr(buf, 256, l->out_ssrc, (uint64_t)wall, rtp_now, (uint32_t)l->rtp_out,
                           (uint32_t)l->octets_out, l->cname);
            if (n > 0)
                md_sess_send_rtcp(l, buf, n);
        }
        if (l == talker && l->latched) {
            n = md_rtcp_rr(buf, 256, l->out_ssrc, l->latched, l->in_ext_seq, l->cname);
            if (n > 0)
                md_sess_send_rtcp(l, buf, n);
        }
    }
}
