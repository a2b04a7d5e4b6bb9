/* quality.c -- connection quality classification (see quality.h). */
#include "quality.h"

/* Thresholds: a metric at or above 'fair' makes the link fair, at or above
 * 'poor' makes it poor. Bandwidth is the other way round. */
#define RTT_FAIR 150.0
#define RTT_POOR 400.0
#define LOSS_FAIR 1.0
#define LOSS_POOR 5.0
#define JITTER_FAIR 30.0
#define JITTER_POOR 80.0
#define BW_FAIR 128.0
#define BW_POOR 32.0

static void add(quality_out *o, const char *r)
{
    if (o->nrecs < QUALITY_MAX_RECS)
        o->recs[o->nrecs++] = r;
}

static void worse(quality_out *o, quality_level l)
{
    if (l > o->level)
        o->level = l;
}

void quality_classify(const quality_in *q, quality_out *o)
{
    o->level = QUALITY_GOOD;
    o->nrecs = 0;
    if (q->rtt_ms >= RTT_POOR) {
        worse(o, QUALITY_POOR);
        add(o, "high latency: move closer to the network access point or switch networks");
    } else if (q->rtt_ms >= RTT_FAIR) {
        worse(o, QUALITY_FAIR);
        add(o, "elevated latency: expect delayed delivery");
    }
    if (q->loss_pct >= LOSS_POOR) {
        worse(o, QUALITY_POOR);
        add(o, "heavy packet loss: switch to a wired or more stable network");
    } else if (q->loss_pct >= LOSS_FAIR) {
        worse(o, QUALITY_FAIR);
        add(o, "packet loss: enable forward error correction or lower the audio bitrate");
    }
    if (q->jitter_ms >= JITTER_POOR) {
        worse(o, QUALITY_POOR);
        add(o, "high jitter: increase the jitter buffer");
    } else if (q->jitter_ms >= JITTER_FAIR) {
        worse(o, QUALITY_FAIR);
        add(o, "jitter: a larger jitter buffer smooths audio");
    }
    if (q->bandwidth_kbps > 0 && q->bandwidth_kbps < BW_POOR) {
        worse(o, QUALITY_POOR);
        add(o, "very low bandwidth: lower the audio bitrate and pause large transfers");
    } else if (q->bandwidth_kbps > 0 && q->bandwidth_kbps < BW_FAIR) {
        worse(o, QUALITY_FAIR);
        add(o, "low bandwidth: lower the audio bitrate");
    }
}

const char *quality_name(quality_level l)
{
    switch (l) {
    case QUALITY_GOOD:
        return "good";
    case QUALITY_FAIR:
        return "fair";
    default:
        return "poor";
    }
}
