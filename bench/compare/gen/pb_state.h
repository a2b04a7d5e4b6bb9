/* pb_state.h -- the state of one peerbench run, shared by pb_run.c (the
 * phases and the callbacks of the protocol layers) and pb_report.c (the JSON
 * summary). Single-threaded, one run per process.
 */
#ifndef PB_STATE_H
#define PB_STATE_H

#include <jansson.h>

#include "pb.h"

#define PB_MAX_WHY 8

/* A measurement window: deliveries are counted by the time they arrive
 * inside [t0, t1); latency is kept for messages published inside it, also
 * when they arrive after it closed. */
typedef struct pb_window {
    uint64_t t0, t1;
    int open;
    uint64_t delivered, published, expected;
    uint64_t answered;        /* publish answers (Tether ack, nchan 201/202) read in the window */
    pb_hist lat;
    pb_hist answer_lat;       /* publish written -> its answer read, for publishes sent in the window */
    double srv_cpu0[64], srv_cpu1[64];
    double self0, self1;
} pb_window;

enum {
    P_CONNECT = 1, P_PRIME, P_WARMUP, P_WINDOW, P_DRAIN, P_HOLD, P_STEADY, P_STORM, P_LIVE,
    P_SWEEP_PRE, P_SWEEP_WARM, P_SWEEP_WIN, P_SWEEP_DRAIN, P_DONE,
};

typedef struct pb_state {
    pb_conn *subs, *pubs;
    uint32_t nsubs, npubs;
    uint64_t *top;            /* per room: the last sequence number published */
    uint32_t *members;        /* per room: subscribers */

    /* publishing: an open loop paced by a 1 ms timer */
    int publishing;
    double rate;
    uint64_t pace_t0, pace_sent;
    uint32_t next_room;
    uint64_t published, pub_ok, pub_fail, pub_skipped;
    uint64_t pub_unanswered_lost;   /* unanswered on a publisher connection when it closed */
    uint64_t pub_resent;            /* of those, sent again once it was back */
    loop_timer pub_timer, ctl_timer;

    /* setting up */
    uint32_t next_start, handshaking, joined, primed, pubs_ready;
    uint64_t connect_failures;

    /* traffic */
    uint32_t gaps_logged;
    uint64_t delivered, dup_total, presence, last_presence_ns, errors, foreign;
    char first_errors[4][200];
    int nerr_kept;

    /* connections that ended without us ending them */
    uint64_t server_closes;
    char why[PB_MAX_WHY][64];
    uint64_t why_n[PB_MAX_WHY];
    int nwhy;

    pb_window w;

    /* the storm */
    uint64_t t_drop, t_all_resumed, reconnects;
    uint32_t lost_now, resumed, rec_yes, rec_no, rec_unknown;
    pb_hist resume_us;        /* from the drop to resumed */
    pb_hist handshake_us;     /* from the successful attempt's connect() to resumed */
    pb_hist catchup_us;       /* from the drop to having every message published before the resume */
    uint32_t caught;          /* resumed subscribers that caught up */
    uint64_t t_all_caught;

    /* phases */
    int phase, exit_code;
    uint64_t t_start, phase_t0;
    double connect_s, prime_s;
    const char *fail_reason;
    json_t *steps;            /* sweep: one object per rate tried */
    double sweep_lo, sweep_hi;
    int sweep_best;           /* index in steps of the best sustained step, -1 none */
    uint64_t missing_before;  /* sweep: missing total before the step */

    /* memory of the servers before any connection (idle) */
    long rss0[64], pss0[64];
} pb_state;

extern pb_state PB;

/* Missing messages over all subscribers, up to each room's last publish. */
uint64_t pb__missing_total(void);
/* Publishes not answered (yet). */
uint64_t pb__unanswered(void);
/* Server CPU seconds in the window (sum over --server-pid). */
double pb__window_srv_cpu(const pb_window *w);
/* The summary of the run as a new JSON object. */
json_t *pb__report(void);
/* The numbers of one window as a new JSON object. */
json_t *pb__window_json(const pb_window *w, double target_rate);

#endif
