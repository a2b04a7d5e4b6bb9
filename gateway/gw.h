/* gw.h -- the gateway's state shared by its modules.
 *
 * The gateway terminates client WebSockets (gw_ws.c), authenticates them and
 * runs the client protocol (gw_conn.c), and keeps one gw_room per room that
 * has local subscribers (gw_room.c): the room's epoch and head, a ring of
 * recent messages, and the ordering, gap repair and resume logic. Plain HTTP
 * (health, metrics, REST API) is gw_http.c. main.c wires config, the loop,
 * libwebsockets, the bus and the replayd client together.
 *
 * Everything runs on one thread: libwebsockets' service loop, into which the
 * process's lib/loop is embedded through its epoll fd.
 */
#ifndef TETHER_GW_H
#define TETHER_GW_H

#include <libwebsockets.h>
#include <stdint.h>

#include "bus.h"
#include "gw_frame.h"
#include "hmap.h"
#include "jwtcheck.h"
#include "loop.h"
#include "rpc.h"

typedef struct gw_conn gw_conn;
typedef struct gw_room gw_room;
typedef struct gw_sub gw_sub;
typedef struct gw_msg gw_msg;

typedef struct gw_config {
    char http_host[128];
    int http_port;
    const char *bus_in, *bus_out, *replayd, *sessiond, *mediad;
    uint32_t heartbeat_ms;
    uint32_t session_ttl_ms;
    uint32_t hello_timeout_ms;
    uint32_t drain_ms;
    size_t outq_max_bytes;
    uint32_t ring_size;
    uint32_t max_conns;
    uint32_t max_inflight_publish;
    uint32_t publish_timeout_ms;
    uint32_t publish_attempts;
    const char *web_root;     /* static files served at / (the web console) */
    int dev_tokens;           /* GET /dev/token mints tokens: local dev only */
    int sessiond_enabled;
    gw_limits lim;
} gw_config;

typedef struct gw_stats {
    unsigned long long conns_opened, conns_closed, frames_in, frames_out, bytes_out, writes, malformed, publishes,
        acks, publish_errors, delivered, gaps_repaired, gaps_unrepaired, resumes, slow_closes, auth_failures,
        range_requests, epoch_changes;
} gw_stats;

typedef struct gw {
    loop *l;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    bus *bus;
    rpc_client *replayd;
    rpc_client *sessiond;
    jwtv *jwt;
    gw_config cfg;
    hmap *rooms;      /* name -> gw_room */
    hmap *conns;      /* "%llx" id -> gw_conn */
    hmap *sessions;   /* session id -> gw_conn */
    gw_conn *conn_list;
    gw_conn *dirty;                /* connections with frames to write */
    int flush_deferred;
    unsigned nconns;
    uint64_t next_conn_id;
    int draining;
    uint64_t drain_deadline;
    loop_timer sweep;
    loop_timer probe;
    uint64_t last_replayd_ok_ms;
    uint64_t last_bus_probe_ms;
    uint64_t probe_seq;
    gw_stats st;
} gw;

extern gw G;

/* ---- connections (gw_conn.c) ------------------------------------------------- */

struct gw_conn {
    struct lws *wsi;
    uint64_t id;
    unsigned proto : 1;       /* tether.v1.proto */
    unsigned authed : 1;      /* a valid token was seen (header or hello) */
    unsigned ready : 1;       /* hello accepted, welcome sent */
    unsigned rx_skipping : 1; /* discarding the rest of an oversized frame */
    unsigned hello_pending : 1; /* waiting for sessiond before welcome */
    unsigned bye : 1;         /* the client said bye: the session ends now */
    int close_code;           /* != 0: closing with this code */
    char close_reason[64];
    jwt_claims claims;
    char session[GW_MAX_SESSION + 1];
    gw_sub **subs;
    uint32_t nsubs, capsubs;
    gw_buf **q;               /* outbound ring */
    uint32_t qhead, qlen, qcap;
    size_t qbytes;
    unsigned char *rx;        /* reassembly of fragmented frames */
    size_t rxlen, rxcap;
    size_t rx_skipped;
    uint32_t bad_count;
    uint64_t bad_window_ms;
    uint64_t created_ms, last_rx_ms, last_ping_ms;
    uint64_t ping_sent_ms;    /* the last server ping not yet answered */
    double rtt_ms;            /* measured from ping/pong (0: unknown) */
    gw_buf *held[16];         /* frames received while the hello was pending */
    uint32_t nheld;
    char client[64];
    uint32_t inflight_pub;
    gw_conn *next, *prev;
    gw_conn *dnext, *dprev;   /* on G.dirty: frames queued, not yet written */
    unsigned dirty : 1;
    unsigned rx_paused : 1;   /* lws holds an unsent tail: not reading (gw_conn.c) */
};

/* Called by gw_ws.c. */
gw_conn *gw_conn_open(struct lws *wsi, int proto);
void gw_conn_closed(gw_conn *c);
void gw_conn_rx(gw_conn *c, const void *in, size_t len, int first, int final, int binary);
/* The writable callback: writes what is queued; returns -1 when the
 * connection must close. */
int gw_conn_writable(gw_conn *c);
/* Writes the queued frames of every connection that has some. Called at the
 * end of each batch of work (gw_ws.c), and deferred from gw_conn_send. */
void gw_conn_flush_all(void);

/* Queues b (a new reference is taken); it is written at the end of the
 * current batch of work, coalesced with the other frames queued for c.
 * Closes the connection with 4002 when the queue is over its byte limit. */
void gw_conn_send(gw_conn *c, gw_buf *b);
/* Queues b and drops the caller's reference. NULL b is ignored. */
void gw_conn_send_take(gw_conn *c, gw_buf *b);
void gw_conn_error(gw_conn *c, int code, const char *reason, const char *id);
/* Starts closing c with code/reason (after what is queued is flushed). */
void gw_conn_close(gw_conn *c, int code, const char *reason);
gw_conn *gw_conn_find(uint64_t id);
/* Once a second: hello timeout, heartbeat, dead peers, token expiry, drain. */
void gw_conn_sweep(void);
/* SIGTERM: hints every connection to reconnect, spread over the drain window. */
void gw_conn_drain_all(void);
/* Verifies a token from the upgrade's Authorization header. Returns 0 or the
 * close code. */
int gw_conn_auth_header(gw_conn *c, const char *token);
/* Releases the reassembly buffer after a fragmented frame was handled. */
void gw_conn_rx_done(gw_conn *c);
/* Handles the frames held back while the hello was pending. */
void gw_conn_replay_held(gw_conn *c);
/* ---- appends to replayd (gw_append.c) ------------------------------------------- */

/* Queues an append for replayd; the iteration's appends leave together
 * (retried on timeout) and cb gets the item's own reply envelope (AppendRep
 * or ErrorRep) or a status < 0. Strings are copied. Returns 0 when out of
 * memory (cb will not run), nonzero otherwise. */
uint64_t gw_append(const char *user, const char *room, const char *id, const char *data, rpc_reply_cb *cb,
                   void *arg);
/* Sends the queued appends now (called at the end of each batch of work). */
void gw_append_flush(void);

/* ---- rooms (gw_room.c) ---------------------------------------------------------- */

struct gw_sub {
    gw_room *room;
    gw_conn *conn;
    gw_sub *rnext, *rprev;
    uint64_t pos;        /* last seq this connection received (room epoch) */
    uint64_t gen;
    gw_pos want;         /* the position asked for */
    unsigned announced : 1;  /* `subscribed` sent */
    unsigned reading : 1;    /* a range read for this sub is in flight */
    unsigned presence_pending : 1; /* members asked from sessiond, not yet answered */
    unsigned presence_resync : 1;  /* more changes came than pre_events holds: fetch members again */
    gw_buf *members;         /* presence {members} to send after `subscribed` */
    gw_buf *pre_events[16];  /* presence changes seen before `subscribed` */
    uint32_t npre;
};

struct gw_msg {
    unsigned refs;
    uint64_t seq;
    int64_t ts;
    char *id, *from, *data;
    gw_buf *enc[2];      /* lazily encoded: [0] JSON, [1] proto */
};

struct gw_room {
    char name[GW_MAX_ROOM + 1];
    char topic[GW_MAX_ROOM + 8];
    char ptopic[GW_MAX_ROOM + 12];   /* presence.<name> */
    char epoch[GW_MAX_EPOCH + 1];
    int known;               /* epoch/head learned from replayd */
    int resync;              /* a newer epoch was seen: re-read the room's head */
    int bus_ready;           /* our own probe came back on room.<name> */
    loop_timer probe_timer;
    uint64_t head;           /* highest contiguous seq delivered */
    uint64_t max_seen;       /* highest seq known to exist */
    gw_msg **ring;           /* recent messages, by seq % ring_size */
    gw_msg **pend;           /* out of order, ascending seq */
    uint32_t npend;
    char pend_epoch[GW_MAX_EPOCH + 1]; /* before the room is known: the epoch of pend */
    gw_sub *subs;
    uint32_t nsubs;
    int repairing;
    uint64_t repair_req;
    loop_timer repair_timer;
    uint64_t gen;
};

/* Subscribes c to room at position want (re-subscribing moves the position).
 * The `subscribed` frame and missed messages follow asynchronously. Returns 0
 * or a PROTOCOL.md error code. */
int gw_sub_start(gw_conn *c, const char *room, const gw_pos *want);
/* Starts several subscriptions with one batched range read (hello). */
void gw_sub_start_many(gw_conn *c, const gw_room_pos *rooms, size_t n);
void gw_sub_stop(gw_sub *s);
/* Starts s's first read once what it waited for (members) is there. */
void gw_sub_resume_read(gw_sub *s);
gw_sub *gw_conn_find_sub(gw_conn *c, const char *room);
/* Bus events. */
void gw_room_on_bus(const bus_env *env);
unsigned gw_room_count(void);
/* What this gateway delivered in room: 1, its epoch (copied into epoch,
 * cap bytes) and the seq delivered up to; 0 when it holds nothing there. A
 * publish carries it to replayd as a floor (AppendReq.floor_*). */
int gw_room_floor(const char *room, char *epoch, size_t cap, uint64_t *seq);

#endif
