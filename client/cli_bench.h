/* cli_bench.h -- `tether bench`, the load generator: shared types.
 *
 * The parent process (cli_bench.c) parses options, forks --procs workers,
 * coordinates them through pipes and prints one JSON summary line. Each
 * worker (cli_bench_work.c) runs its share of the connections as tc_clients
 * on one loop (one lws context, one thread). cli_bench_stats.c has the
 * mergeable latency histogram and the /proc readers.
 *
 * Coordination, so that every measurement covers the same window:
 *   worker -> parent  'R'                  all its connections are ready
 *   parent -> worker  bench_go             go_us, start_us, end_us (CLOCK_MONOTONIC)
 *   worker -> parent  'D' + bench_result   when its work is done
 * The parent samples the servers' CPU and RSS at "all ready" and at the end.
 */
#ifndef TETHER_CLI_BENCH_H
#define TETHER_CLI_BENCH_H

#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

enum { BENCH_PUBLISH = 1, BENCH_FANOUT, BENCH_IDLE, BENCH_RECONNECT, BENCH_CHAOS };

#define BENCH_MAX_URLS 16
#define BENCH_MAX_PIDS 16

/* Log-linear histogram of microseconds: exact below 128, then 64 buckets
 * per power of two (about 1.6 % resolution), up to 2^40 us. Mergeable by
 * adding counts, so workers can ship it to the parent as is. */
#define BH_BUCKETS (128 + 34 * 64)
typedef struct bench_hist {
    uint64_t n, sum, max;
    uint64_t b[BH_BUCKETS];
} bench_hist;

/* Reconnection timelines: 10 ms buckets since `go`, up to 120 s. */
#define BT_BUCKET_MS 10
#define BT_BUCKETS 12000

typedef struct bench_cfg {
    int mode;
    const char *mode_name;
    cli_conn conn;
    const char *urls[BENCH_MAX_URLS];
    int nurls;
    const char *secret;          /* mint one token per connection (user bench-<i>) */
    const char *room;
    uint64_t conns, rate, duration_s, warmup_s, size, procs, window, rooms, ramp, timeout_s, drain_ms;
    pid_t server_pids[BENCH_MAX_PIDS];
    int npids;
    const char *log_path;        /* chaos: the event log ("-": stdout) */
    const char *user_prefix;     /* chaos: users are <prefix>-<i> */
    uint64_t churn_ms;           /* chaos: mean time between a client's departures, 0: none */
} bench_cfg;

typedef struct bench_go {
    uint64_t go_us, start_us, end_us;
} bench_go;

typedef struct bench_result {
    uint64_t conns, ready, failed;         /* connections: asked, ready, FAILED */
    uint64_t attempts, connects, drops;    /* drops: links lost after ready */
    uint64_t sent, acks, errors, rejected; /* publishes (in the window for sent/acks) */
    uint64_t delivered, gaps, dups;        /* fanout deliveries in the window */
    uint64_t pub_sent_window;              /* fanout: messages published in the window */
    uint64_t ready_us;                     /* when this worker was ready */
    uint64_t presence, presence_window;    /* presence frames received: all, in the window */
    uint64_t settle_us;                    /* from all subscribed to presence quiet */
    uint64_t first_down_us, back_us, last_resumed_us, resumed;
    uint32_t max_attempts_one;             /* most reconnection attempts of one client */
    double cpu_s;                          /* this worker's user+system CPU */
    bench_hist lat;                        /* fanout: publish-to-deliver latency */
    bench_hist ack;                        /* publish: ack latency; fanout: the publisher's */
    bench_hist resume;                     /* reconnect: resumed - go */
    uint32_t resume_tl[BT_BUCKETS];        /* reconnect: resumed, by time since go */
    uint32_t attempt_tl[BT_BUCKETS];       /* reconnect: attempts, by time since go */
} bench_result;

/* ---- cli_bench_stats.c ---------------------------------------------------------- */
void bh_add(bench_hist *h, uint64_t us);
void bh_merge(bench_hist *into, const bench_hist *from);
/* The value at quantile q (0..1), as the bucket's upper bound (0 when empty). */
uint64_t bh_quantile(const bench_hist *h, double q);
/* {"n":..,"mean":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..} in us. */
json_t *bh_json(const bench_hist *h);
/* This process's user+system CPU seconds. */
double bench_self_cpu(void);
/* A process's user+system CPU seconds, or -1. */
double bench_pid_cpu(pid_t pid);
/* A process's VmRSS in KiB, or -1. */
long bench_pid_rss_kb(pid_t pid);
/* 1 when GET /healthz on host:port answers 200 within ~250 ms. */
int bench_probe(const char *host, int port);
/* Splits "ws://host:port/path" into host and port. Returns 0 or -1. */
int bench_url_hostport(const char *url, char *host, size_t hl, int *port);

/* ---- cli_bench_work.c ---------------------------------------------------------------- */
/* Runs worker `index` of `nworkers` with the pipes to the parent; exits the
 * process with its status. */
void bench_worker(const bench_cfg *cfg, int index, int nworkers, int to_parent, int from_parent)
    __attribute__((noreturn));

/* ---- cli_bench_chaos.c --------------------------------------------------------------- */
/* Runs --mode chaos in this process until stdin says stop (or closes) or a
 * SIGINT/SIGTERM; returns the exit code. */
int bench_chaos(const bench_cfg *cfg);

#endif
