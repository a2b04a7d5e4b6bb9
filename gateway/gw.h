/* gw.h -- the gateway's state shared by its modules.
 *
 * The gateway accepts TCP on its public port itself (gw_listen.c): WebSocket
 * upgrades are answered there and their connections framed by gw_ws.c (RFC
 * 6455 on lib/wsframe); every other request is handed, unread, to lib/http,
 * which gw_http.c serves (health, metrics, REST API). gw_conn.c authenticates
 * connections and runs the client protocol, and gw_room.c keeps one gw_room
 * per room that has local subscribers, its ordering (epoch, head, ring of
 * recent messages, gap repair) in the pure core gw_order.c, and gw_sub.c
 * catches subscribers up (resume, range reads). main.c
 * wires config, the loop, the bus and the replayd client together.
 *
 * Everything runs on one thread: lib/loop, one epoll loop.
 */
#ifndef TETHER_GW_H
#define TETHER_GW_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "gw_frame.h"
#include "gw_order.h"
#include "hmap.h"
#include "jwtcheck.h"
#include "list.h"
#include "loop.h"
#include "rpc.h"
#include "u64map.h"
#include "wsframe.h"

typedef struct gw_conn gw_conn;
typedef struct gw_room gw_room;
typedef struct gw_sub gw_sub;

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
    const char *admin_http;   /* TETHER_ADMIN_HTTP: the standard routes there, /metrics not public */
    uint32_t per_ip_conns;    /* concurrent sockets from one address */
    uint32_t per_ip_rate;     /* new sockets per second from one address (burst 2x) */
    uint32_t max_preauth;     /* sockets before their head, plus upgraded ones before hello */
    uint32_t head_timeout_ms; /* the request head must be complete by then */
    char **origins;           /* TETHER_ALLOWED_ORIGINS; NULL: any */
    size_t norigins;
    const char *web_root;     /* static files served at / (the web console) */
    int dev_tokens;           /* GET /dev/token mints tokens: local dev only */
    int sessiond_enabled;
    gw_limits lim;
} gw_config;

typedef struct gw_stats {
    unsigned long long conns_opened, conns_closed, frames_in, frames_out, bytes_out, writes, malformed, publishes,
        acks, publish_errors, delivered, gaps_repaired, gaps_unrepaired, resumes, slow_closes, auth_failures,
        range_requests, epoch_changes, refused_per_ip, refused_rate, refused_preauth, head_timeouts,
        upgrades_refused, protocol_closes;
} gw_stats;

typedef struct gw {
    loop *l;
    struct http_server *http;      /* serves what gw_listen.c hands over */
    struct http_server *admin;     /* TETHER_ADMIN_HTTP, or NULL */
    ws_inflater *inflater;         /* one for every connection */
    bus *bus;
    rpc_client *replayd;
    rpc_client *sessiond;
    jwtv *jwt;
    gw_config cfg;
    hmap *rooms;      /* name -> gw_room */
    u64map *conns;    /* id -> gw_conn */
    hmap *sessions;   /* session id -> gw_conn */
    list_node conn_list;           /* every gw_conn (link), newest first */
    list_node dirty;               /* connections with frames to write (dlink) */
    int flush_deferred;
    unsigned nconns;               /* every WebSocket connection */
    unsigned nhello;               /* those past hello (TETHER_MAX_CONNS) */
    unsigned npreauth;             /* pre-head sockets + upgraded before hello */
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
    int fd;
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
    list_node link;           /* on G.conn_list */
    list_node dlink;          /* on G.dirty: frames queued, not yet written */
    unsigned rx_paused : 1;   /* the hello is pending: not reading */
    unsigned deflate : 1;     /* permessage-deflate negotiated */
    unsigned preauth : 1;     /* counted in G.npreauth (before hello) */
    unsigned counted : 1;     /* counted in G.nhello */
    unsigned close_sent : 1;  /* our close frame is queued or out */
    unsigned close_rcvd : 1;  /* the peer's close frame arrived */
    unsigned close_wait : 1;  /* our close frame is out: waiting for the peer's */
    unsigned dying : 1;       /* the socket is closed at the next chance */
    unsigned events;          /* what the loop watches on fd */
    char peer[64];            /* the source address (gw_listen.c's key) */
    /* Receiving (gw_ws.c): the frame being read, the message it belongs to. */
    unsigned char hdr[WS_MAX_HDR];
    size_t hdrlen;
    ws_hdr fh;                /* valid while in_frame */
    unsigned in_frame : 1;
    unsigned msg_open : 1;    /* a fragmented message is in progress */
    unsigned msg_first : 1;   /* the next data chunk starts the message */
    unsigned msg_binary : 1;
    unsigned msg_deflated : 1;
    int utf8;                 /* ws_utf8_step state of a text message */
    uint64_t fpos;            /* payload bytes of the frame read so far */
    unsigned char ctl[WS_MAX_CONTROL];
    unsigned char *z;         /* a compressed message being gathered */
    size_t zlen, zcap;
    /* Sending: the bytes one send() could not take; nothing else is written
     * and nothing read until they are out. */
    unsigned char *tail;
    size_t taillen, tailoff;
    loop_timer close_timer;
};

/* Called by gw_ws.c. */
gw_conn *gw_conn_open(int fd, int proto);
void gw_conn_closed(gw_conn *c);
void gw_conn_rx(gw_conn *c, const void *in, size_t len, int first, int final, int binary);
/* The socket is writable again: writes what is queued. */
void gw_conn_writable(gw_conn *c);
/* Writes the queued frames of every connection that has some. Called at the
 * end of each batch of work (gw_ws.c), and deferred from gw_conn_send. */
void gw_conn_flush_all(void);
/* Stops (paused 1) or resumes reading from c's client (the hello wait). */
void gw_conn_rx_pause(gw_conn *c, int paused);

/* ---- sockets (gw_listen.c, gw_ws.c) ---------------------------------------------- */

/* Listens on TETHER_HTTP. Returns 0 or -errno. */
int gw_listen_start(void);
void gw_listen_stop(void);
/* A socket from peer has gone (WebSocket closed): the per-address count. */
void gw_listen_release(const char *peer);
/* Once a second: expires idle per-address entries. */
void gw_listen_sweep(void);
/* Takes over fd, an upgraded WebSocket (the 101 is sent). Returns the new
 * connection or NULL (fd closed). */
gw_conn *gw_ws_adopt(int fd, const char *peer, int proto, int deflate);
/* Sends p[0..n) now, keeping what the socket does not take as c's tail.
 * Returns 0, or -1 when the socket failed (c is then dying). */
int gw_ws_write(gw_conn *c, const void *p, size_t n);
/* Re-evaluates what the loop watches on c's socket. */
void gw_ws_events(gw_conn *c);
/* Closes c's socket at the next safe point (a zero timer): never frees c
 * from under its caller. */
void gw_ws_kill(gw_conn *c);
/* Re-arms c's close deadline: the socket goes ms from now whatever happens. */
void gw_ws_deadline(gw_conn *c, uint64_t ms);

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
/* n bytes from getrandom (gw_session.c); aborts if the kernel gives none. */
void gw_random(void *p, size_t n);
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

/* ---- rooms (gw_room.c) and subscribers (gw_sub.c) --------------------------------- */

/* What rooms and subscriptions tell the rest of the gateway, registered once
 * (main.c) so that room code does not know which modules listen. Any hook
 * may be NULL. */
typedef struct gw_room_hooks {
    void (*room_open)(gw_room *r);    /* a room gets its first subscriber */
    void (*room_close)(gw_room *r);   /* ... and loses its last one */
    void (*sub_created)(gw_sub *s);   /* s joined its room, nothing sent yet */
    void (*sub_announced)(gw_sub *s); /* `subscribed` was sent for s */
    void (*sub_stopping)(gw_sub *s);  /* s is about to be freed */
} gw_room_hooks;
void gw_room_set_hooks(const gw_room_hooks *h);

struct gw_sub {
    gw_room *room;
    gw_conn *conn;
    gw_sub *rnext, *rprev;
    uint64_t pos;        /* last seq this connection received (room epoch) */
    uint64_t gen;
    gw_pos want;         /* the position asked for */
    unsigned announced : 1;  /* `subscribed` sent */
    unsigned reading : 1;    /* a range read for this sub is in flight */
    unsigned held : 1;       /* another module holds the first read (members being
                              * fetched); it calls gw_sub_resume_read() when done */
    struct gw_sub_presence *presence; /* the session module's (gw_session.c), or NULL */
};

struct gw_room {
    char name[GW_MAX_ROOM + 1];
    char topic[GW_MAX_ROOM + 8];
    char ptopic[GW_MAX_ROOM + 12];   /* presence.<name> */
    gw_order *order;         /* epoch, head, ring, pending (gw_order.c) */
    int bus_ready;           /* our own probe came back on room.<name> */
    loop_timer probe_timer;
    gw_sub *subs;
    uint32_t nsubs;
    uint64_t repair_req;
    loop_timer repair_timer;
    uint64_t gen;
};

/* Subscribes c to room at position want (re-subscribing moves the position).
 * The `subscribed` frame and missed messages follow asynchronously. Returns 0
 * or a docs/protocol.md error code. */
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
/* The room's epoch as this gateway knows it ("" until known). */
const char *gw_room_epoch(const gw_room *r);
/* What this gateway delivered in room: 1, its epoch (copied into epoch,
 * cap bytes) and the seq delivered up to; 0 when it holds nothing there. A
 * publish carries it to replayd as a floor (AppendReq.floor_*). */
int gw_room_floor(const char *room, char *epoch, size_t cap, uint64_t *seq);

#endif
