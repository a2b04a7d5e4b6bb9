/* md_rtp.h -- RTP/RTCP parsing and the per-listener switching context.
 *
 * Pure functions on byte buffers (unit-tested). The switching context is
 * what makes a room's audio look like one continuous stream to a listener
 * while the talker changes (Janus's "switching context"): each listener has
 * its own SSRC, and sequence numbers and timestamps are rebased whenever the
 * source changes, so the next packet follows the last one sent (seq + 1,
 * timestamp advanced by the wall time that passed), with the marker bit set
 * to tell the jitter buffer a talk spurt starts.
 */
#ifndef TETHER_MD_RTP_H
#define TETHER_MD_RTP_H

#include <stddef.h>
#include <stdint.h>

#define MD_RTP_CLOCK 48000u   /* Opus's RTP clock, always (RFC 7587) */
#define MD_RTP_MAX 1500
/* The most a listener's timestamp advances across a source change: 2^30
 * ticks, 6.2 hours at 48 kHz, well inside the half of the 32-bit space
 * that reads as "later". */
#define MD_RW_MAX_ADVANCE (1u << 30)

/* Demultiplexing of a datagram on the ICE transport (RFC 7983). */
typedef enum md_pkt_kind { MD_PKT_OTHER = 0, MD_PKT_DTLS, MD_PKT_RTP, MD_PKT_RTCP } md_pkt_kind;
md_pkt_kind md_rtp_classify(const uint8_t *buf, size_t len);

typedef struct md_rtp_hdr {
    int marker;
    uint8_t pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    size_t hdr_len;     /* fixed header + CSRCs + extension */
    size_t payload_len; /* without padding */
} md_rtp_hdr;

/* Parses an RTP header (after SRTP unprotect). Returns 0 or -EINVAL. */
int md_rtp_parse(const uint8_t *buf, size_t len, md_rtp_hdr *h);
/* The SSRC of an RTP packet still protected (it is in the clear). */
static inline uint32_t md_rtp_ssrc(const uint8_t *buf)
{
    return (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
}

typedef struct md_rw {
    int started;
    uint64_t src;        /* identity of the current source (talk burst + SSRC) */
    uint16_t seq_off;
    uint32_t ts_off;
    uint16_t last_seq;   /* highest sequence number sent */
    uint32_t last_ts;    /* its timestamp */
    uint64_t last_ms;    /* when it was sent */
} md_rw;

/* Initialises a context whose first packet will carry seq0/ts0 (random
 * values, so a listener's stream does not start predictably). */
void md_rw_init(md_rw *rw, uint16_t seq0, uint32_t ts0);
/* Maps a source packet to the listener's numbering. src identifies the
 * source; now_ms is the current time. Sets *marker when a new source starts. */
void md_rw_map(md_rw *rw, uint64_t src, uint16_t seq, uint32_t ts, uint64_t now_ms, uint16_t *out_seq,
               uint32_t *out_ts, int *marker);

/* Writes a forwarded packet into out (cap bytes): a 12-byte header (no CSRC,
 * no extension, no padding) with pt/seq/ts/ssrc/marker, then payload.
 * Returns the length or -ENOSPC. */
int md_rtp_build(uint8_t *out, size_t cap, int marker, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc,
                 const uint8_t *payload, size_t n);

/* An RTCP sender report for ssrc (no report blocks) plus an SDES CNAME,
 * as a compound packet. ntp_ms: wall clock. Returns the length or -ENOSPC. */
int md_rtcp_sr(uint8_t *out, size_t cap, uint32_t ssrc, uint64_t ntp_ms, uint32_t rtp_ts, uint32_t packets,
               uint32_t octets, const char *cname);
/* An RTCP receiver report from ssrc about media ssrc src (fraction lost and
 * jitter 0, highest sequence ext_seq) plus an SDES CNAME. */
int md_rtcp_rr(uint8_t *out, size_t cap, uint32_t ssrc, uint32_t src, uint32_t ext_seq, const char *cname);

#endif
