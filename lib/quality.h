/* quality.h -- connection quality classification (good / fair / poor).
 *
 * A pure function of the metrics a client reports (and the RTT the gateway
 * measures itself), shared by the gateway and sessiond so that both always
 * agree. The thresholds are documented in docs/protocol.md; they follow the
 * usual VoIP guidance (ITU-T G.114: one-way delay under 150 ms is good, over
 * 400 ms unacceptable; Opus tolerates a few per cent of loss with FEC).
 */
#ifndef TETHER_QUALITY_H
#define TETHER_QUALITY_H

#include <stddef.h>

typedef struct quality_in {
    double rtt_ms, loss_pct, jitter_ms, bandwidth_kbps; /* < 0 or 0 bandwidth: unknown */
} quality_in;

typedef enum { QUALITY_GOOD = 0, QUALITY_FAIR = 1, QUALITY_POOR = 2 } quality_level;

#define QUALITY_MAX_RECS 5

typedef struct quality_out {
    quality_level level;
    const char *recs[QUALITY_MAX_RECS]; /* static strings */
    size_t nrecs;
} quality_out;

/* Classifies q; the worst metric decides. */
void quality_classify(const quality_in *q, quality_out *out);
const char *quality_name(quality_level l);

#endif
