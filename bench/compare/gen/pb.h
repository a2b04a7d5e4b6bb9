/* pb.h -- peerbench: one load generator for Tether, nginx + nchan and
 * Socket.IO, so that the three are measured by the same code.
 *
 * One process, one thread, one lib/loop.h event loop (epoll), plain
 * non-blocking sockets. The WebSocket client and the HTTP/1.1 client are our
 * own (pb_net.c): no per-dialect library, the same framing cost for every
 * system. pb_dialect.c speaks the three protocols (Tether's JSON protocol,
 * nchan's WebSocket subscriber + HTTP POST publisher, Engine.IO v4 /
 * Socket.IO v5 over WebSocket); pb_run.c drives the workloads; pb_stats.c
 * measures. Every message carries the generator's own room index, sequence
 * number and CLOCK_MONOTONIC send time in its payload, so latency, loss and
 * duplicates are counted the same way whatever the server says.
 */
#ifndef PB_H
#define PB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"

/* ---- stats (pb_stats.c) ------------------------------------------------------------------ */

#define PB_HIST_BUCKETS (128 + 34 * 64)

/* Log-linear histogram of microseconds (1.6 % resolution above 128 us). */
typedef struct pb_hist {
    uint64_t b[PB_HIST_BUCKETS];
    uint64_t n, sum, max;
} pb_hist;

void pb_hist_add(pb_hist *h, uint64_t us);
/* The value at quantile q (0..1), 0 when empty. */
uint64_t pb_hist_q(const pb_hist *h, double q);

/* What one subscriber got of its room's sequence numbers (the generator's
 * own, from the payload). Counting starts at the first message it gets. */
typedef struct pb_track {
    uint64_t base, last;       /* 0: nothing yet */
    uint64_t recv, dup, missing, reordered;
    uint64_t ring[16];         /* seen bits for last-1023 .. last */
} pb_track;

/* Records seq; returns 1 if it was new, 0 for a duplicate. */
int pb_track_see(pb_track *t, uint64_t seq);
/* Messages missing up to top (the last one published to the room). */
uint64_t pb_track_missing(const pb_track *t, uint64_t top);

/* CPU seconds (user + system) and VmRSS / Pss in KiB of a process; -1 when gone. */
double pb_proc_cpu_s(pid_t pid);
long pb_proc_rss_kb(pid_t pid);
long pb_proc_pss_kb(pid_t pid);
/* This process's CPU seconds. */
double pb_self_cpu_s(void);

uint64_t pb_now_ns(void);

/* ---- publishes waiting for an answer (pb_outbox.c) ------------------------------------------ */

#define PB_OUTBOX_CAP 1024

typedef struct pb_out {
    uint64_t id, seq, t_ns;
    uint32_t room;
    uint8_t live;
} pb_out;

typedef struct pb_outbox {
    pb_out slot[PB_OUTBOX_CAP];
    uint64_t next, oldest;     /* ids: next to give, oldest maybe unanswered */
    uint32_t live;             /* unanswered */
} pb_outbox;

pb_outbox *pb_outbox_new(void);
void pb_outbox_free(pb_outbox *o);
/* Records a publish; *id is its id. -EAGAIN when PB_OUTBOX_CAP are unanswered. */
int pb_outbox_add(pb_outbox *o, uint32_t room, uint64_t seq, uint64_t t_ns, uint64_t *id);
/* Answered: by id (Tether acks), or the oldest (HTTP answers come in order). 0 or -ENOENT. */
int pb_outbox_done(pb_outbox *o, uint64_t id, uint64_t *t_ns);
int pb_outbox_done_oldest(pb_outbox *o, uint64_t *t_ns);
/* Calls cb for each unanswered publish, oldest first. */
void pb_outbox_each(pb_outbox *o, void (*cb)(const pb_out *e, void *arg), void *arg);

/* The payload of message seq of room sent at t_ns, PB_CFG.size bytes:
 * "<room>:<seq>:<t_ns>:xxx...". Returns its length. */
size_t pb_payload(char *buf, size_t cap, uint32_t room, uint64_t seq, uint64_t t_ns);

/* ---- connections (pb_net.c) ---------------------------------------------------------------- */

enum { PB_TETHER = 1, PB_NCHAN, PB_SIO };
enum { PB_SUB = 1, PB_PUB };
enum {
    PB_S_IDLE = 0,     /* no socket (not started, or lost and waiting to come back) */
    PB_S_CONNECTING,   /* TCP connect in progress */
    PB_S_UPGRADING,    /* upgrade request sent, waiting for 101 */
    PB_S_OPEN,         /* WebSocket (or HTTP keep-alive) up, protocol handshake running */
    PB_S_JOINED,       /* subscribed / joined / ready to publish */
};

typedef struct pb_conn {
    int fd;
    uint32_t idx;          /* index among subs or pubs */
    uint8_t kind, state;
    uint8_t http;          /* plain HTTP/1.1 keep-alive (nchan publisher), no upgrade */
    uint8_t ever_joined;   /* joined once: a new connection is a resume */
    uint8_t lost;          /* dropped after joining, not yet resumed */
    uint8_t recovered_ok;  /* the last resume was confirmed whole */
    uint32_t room;
    uint32_t attempts;     /* connection attempts since the last join */
    pb_outbox *ob;         /* publisher (tether, nchan): publishes not answered yet */
    char *in;              /* bytes of an incomplete frame / response */
    uint32_t in_len, in_cap;
    char *out;             /* bytes not written yet */
    uint32_t out_len, out_cap;
    char *frag;            /* a fragmented WebSocket message being assembled */
    uint32_t frag_len, frag_cap;
    uint8_t resuming;      /* this connection is a resume attempt */
    uint8_t rejoin;        /* sio: recovery refused, joining the room again */
    uint8_t paced;         /* counted among the set-ups in progress */
    char session[64];      /* tether: session id; sio: pid */
    char epoch[48];        /* tether: the room's epoch */
    uint64_t pos;          /* tether: last room seq seen */
    char last_id[64];      /* nchan: last message id; sio: last offset */
    uint64_t t_lost_ns, t_resumed_ns;
    uint64_t t_attempt_ns;     /* when the current connection attempt started */
    uint64_t catch_target;     /* after a resume: the room's top then; 0 when caught up */
    loop_timer retry;
    pb_track tr;
} pb_conn;

/* Starts connecting c (state must be IDLE). Returns 0 or -errno. */
int pb_conn_start(pb_conn *c);
/* Queues a masked WebSocket text frame (borrowed data, copied). */
void pb_conn_send_text(pb_conn *c, const char *s, size_t n);
/* Queues raw bytes (HTTP). */
void pb_conn_send_raw(pb_conn *c, const char *s, size_t n);
/* Bytes queued but not written. */
size_t pb_conn_backlog(const pb_conn *c);
/* Closes c now: abort = 1 resets the TCP connection (SO_LINGER 0), as a
 * dropped network would. No callback runs; state becomes IDLE. */
void pb_conn_close(pb_conn *c, int abort);

/* ---- dialects (pb_dialect.c) ------------------------------------------------------------- */

/* The request path and WebSocket sub-protocol (NULL: none) for c. */
void pb_d_request(const pb_conn *c, char *path, size_t n, const char **subproto);
/* The WebSocket (or, for http conns, the TCP connection) is up. */
void pb_d_on_open(pb_conn *c);
/* One complete text or binary message. p is writable and may be modified. */
void pb_d_on_message(pb_conn *c, char *p, size_t n);
/* One HTTP response on an http conn (nchan publisher). */
void pb_d_on_http(pb_conn *c, int status);
/* Publishes message seq of room (sent at t_ns) through pub. Returns 0, or
 * -EAGAIN when pub has too much in flight. */
int pb_d_publish(pb_conn *pub, uint32_t room, uint64_t seq, uint64_t t_ns);
/* pub is (again) ready: sends what it had unanswered when it lost its
 * connection. Returns how many. */
uint32_t pb_d_resend(pb_conn *pub);
const char *pb_d_name(int dialect);

/* ---- the run (pb_run.c), called by the layers above ------------------------------------------ */

typedef struct pb_cfg {
    int dialect;
    const char *mode;          /* fanout, sweep, rooms, idle, storm */
    const char *host;
    int port;
    const char *secret;        /* tether: HS256 secret */
    uint32_t subs, rooms, pubs;
    double rate;               /* total msg/s */
    uint32_t size;             /* payload bytes */
    double warmup_s, duration_s, drain_s, timeout_s, hold_s, quiet_s;
    uint32_t jitter_ms;        /* storm: reconnect delay uniform in [0, jitter] */
    int drop_server;           /* storm: the runner kills the server instead of us resetting sockets */
    uint32_t max_handshakes;   /* connections being set up at once */
    double sweep_start, sweep_max, sweep_step_s;
    int nchan_meta;            /* nchan: ws+meta.nchan (message ids, needed to resume) */
    pid_t pids[64];
    int npids;
    const char *pid_names[64];
} pb_cfg;

extern pb_cfg PB_CFG;
extern loop *PB_LOOP;

/* recovered: 1 the server confirmed a whole recovery, 0 it said it could
 * not, -1 the protocol does not say (nchan). */
void pb_sub_joined(pb_conn *c, int recovered);
void pb_sub_message(pb_conn *c, const char *payload, size_t n);
void pb_pub_ready(pb_conn *c);
void pb_pub_answered(pb_conn *c, int ok, uint64_t t_sent_ns);
void pb_presence_seen(void);
void pb_server_error(pb_conn *c, const char *what, size_t n);
/* c's connection ended (closed by the server, reset, failed to connect). */
void pb_conn_lost(pb_conn *c, const char *why);

/* Runs the configured workload; prints the JSON summary. Returns the exit code. */
int pb_run(void);

#endif
