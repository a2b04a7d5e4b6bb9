/* tether_client.h -- the Tether client SDK (C, on libwebsockets).
 *
 * A tc_client is one logical connection to a Tether gateway speaking
 * tether.v1.json (docs/protocol.md). It survives the loss of its socket:
 * it reconnects with backoff and jitter, resumes its session and every room
 * from the last delivered (epoch, seq) in one `hello`, re-sends unacked
 * publishes with their original ids, restores the push-to-talk floor it held,
 * and delivers each room's messages to the application exactly once, in seq
 * order, saying so (recovered: false, gap) when the server could not fill a
 * hole. The application sees the life of the connection as five states:
 *
 *   CONNECTING    first connection attempt (or one after tc_connect again)
 *   CONNECTED     `welcome` received; rooms are being (re)subscribed
 *   RECONNECTING  the link dropped or an attempt failed; next attempt after
 *                 next_delay_ms (or waiting for a fresh token after 4502)
 *   DISCONNECTED  closed cleanly by the application (tc_disconnect)
 *   FAILED        not allowed to retry (1000 from the server, 4006, 45xx,
 *                 1008) or max_attempts exhausted; tc_connect starts over
 *
 * Threads and loops. Everything runs on one thread, the one that drives the
 * tc_loop: every tc_* function must be called there, and every callback runs
 * there, with two exceptions that are safe from any thread: tc_loop_post()
 * (run a function on the loop thread) and tc_loop_stop(). A tc_loop owns one
 * libwebsockets client context that any number of tc_clients share (the load
 * generator runs 10,000 in one). Three ways to drive it:
 *   - tc_loop_run(l): until tc_loop_stop(l);
 *   - tc_loop_service(l, timeout_ms): one iteration, for a program's own loop;
 *   - embedding: a program that already runs a libwebsockets context (with
 *     lws's poll loop or a foreign libuv/glib loop) lists tc_lws_protocol() in
 *     its protocols and wraps the context with tc_loop_wrap(); lws's service
 *     then drives the clients, and the program never calls tc_loop_service.
 * Callbacks may call tc_* functions of their own client, except
 * tc_client_free(); free a client from outside its callbacks (or post it).
 *
 * Ownership. Strings passed in are borrowed (copied when kept). Pointers in
 * callback arguments are valid only during the callback.
 *
 * Errors: functions return 0 or a negative errno (-EINVAL bad argument,
 * -ENOBUFS outbox full, -ENOMEM, -ENOTCONN operation needs a connection).
 * tc_publish, tc_audio_send, tc_ptt_request and tc_ptt_release queue while
 * the client is CONNECTING, CONNECTED or RECONNECTING; they return -ENOTCONN
 * when it is DISCONNECTED (never connected, or tc_disconnect) or FAILED,
 * since nothing would ever send what they queued (call tc_connect first).
 */
#ifndef TETHER_CLIENT_H
#define TETHER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct lws_context;
struct lws_protocols;

typedef struct tc_loop tc_loop;
typedef struct tc_client tc_client;
typedef struct tc_timer tc_timer;

/* ---- connection states -------------------------------------------------------- */

typedef enum tc_state {
    TC_CONNECTING = 0,
    TC_CONNECTED,
    TC_RECONNECTING,
    TC_DISCONNECTED,
    TC_FAILED,
} tc_state;

/* "connecting", "connected", ... */
const char *tc_state_name(tc_state s);

/* Passed to the state callback. */
typedef struct tc_state_info {
    tc_state state, prev;
    int code;               /* close code behind the change (1006: dropped without one; 0: none) */
    const char *reason;     /* why, for humans */
    unsigned attempt;       /* RECONNECTING/CONNECTING: number of the attempt to come (1 = first retry) */
    uint32_t next_delay_ms; /* RECONNECTING: delay before that attempt (UINT32_MAX: waiting for a token) */
    int hinted;             /* RECONNECTING: next_delay_ms comes from the server's `reconnect` hint */
    int gave_up;            /* FAILED: max_attempts were used up (else: not allowed to retry) */
    int resumed;            /* CONNECTED: the server knew the session (welcome.resumed) */
    uint64_t disconnected_ms; /* CONNECTED after a drop: how long the link was down (client's clock) */
    const char *session;    /* CONNECTED: the session id */
} tc_state_info;

/* ---- reconnection policy ------------------------------------------------------ */

typedef enum tc_jitter {
    TC_JITTER_FULL = 0, /* delay uniform in [0, ceiling] (default) */
    TC_JITTER_ADD,      /* ceiling + uniform [0, jitter_ms] */
    TC_JITTER_NONE,     /* exactly the ceiling (tests, demos) */
} tc_jitter;

/* Attempt n (1-based) waits ceiling(n) = min(max_ms, initial_ms * 2^(n-1)),
 * jittered. The count goes back to 0 only when a connection has been up for
 * stable_ms, so a server that accepts and drops at once still sees the
 * delays grow. */
typedef struct tc_backoff_cfg {
    uint32_t initial_ms;   /* 1000 */
    uint32_t max_ms;       /* 30000 */
    tc_jitter jitter;      /* TC_JITTER_FULL */
    uint32_t jitter_ms;    /* 500, for TC_JITTER_ADD */
    uint32_t max_attempts; /* 0: unlimited */
    uint32_t stable_ms;    /* 10000 */
} tc_backoff_cfg;

/* ---- what the application receives ----------------------------------------- */

typedef struct tc_message {
    const char *room, *epoch, *id, *from;
    uint64_t seq;
    int64_t ts;           /* ms since the Unix epoch, set by the server when sequenced */
    const char *data;     /* the JSON value as text, as the server sent it (the gateway sends it compact) */
    size_t data_len;
} tc_message;

typedef struct tc_subscribed {
    const char *room, *epoch;
    uint64_t seq;         /* the room's top */
    uint64_t missed;      /* messages that follow before any live one */
    int recovered;        /* 0: the position could not be served whole */
    int has_gap;
    uint64_t gap_from, gap_first_available;
    int resubscribe;      /* this follows a reconnection (or a 4003 session loss) */
    int epoch_changed;    /* the room's history was lost since our last position */
} tc_subscribed;

typedef struct tc_gap {
    const char *room;
    uint64_t from, to;    /* missing seqs, inclusive */
    int by_client;        /* 1: the client saw a jump the server did not announce */
} tc_gap;

typedef struct tc_ack {
    const char *id, *room;
    uint64_t seq;
    int duplicate;        /* the server had it already: seq is the first one's */
    int error;            /* != 0: the publish failed for good with this code (not retried) */
    const char *reason;
    uint64_t latency_us;  /* first send to ack (includes time spent offline) */
} tc_ack;

typedef enum tc_floor_state {
    TC_FLOOR_IDLE = 0,    /* nobody holds it (or we do not know) */
    TC_FLOOR_REQUESTING,  /* we asked */
    TC_FLOOR_GRANTED,     /* we hold it */
    TC_FLOOR_TAKEN,       /* someone else holds it */
    TC_FLOOR_DENIED,      /* our request was refused */
    TC_FLOOR_REVOKED,     /* it was taken back from us */
    TC_FLOOR_SUSPENDED,   /* we held it when the link dropped; asked again after resume */
    TC_FLOOR_EXPIRED,     /* our request went stale while offline and was dropped */
} tc_floor_state;

const char *tc_floor_state_name(tc_floor_state s);

typedef struct tc_floor_info {
    const char *room;
    tc_floor_state state;
    const char *holder;   /* may be NULL */
    uint32_t max_ms;      /* GRANTED: longest talk time, 0 unknown */
    const char *reason;   /* may be NULL */
} tc_floor_info;

typedef enum tc_token_why {
    TC_TOKEN_EXPIRED = 1, /* the server closed with 4502: no reconnection until a token is set */
    TC_TOKEN_REFRESH,     /* the token expires soon: a token set now is sent in-band (`refresh`) */
} tc_token_why;

typedef struct tc_callbacks {
    void (*state)(tc_client *c, const tc_state_info *si, void *arg);
    void (*message)(tc_client *c, const tc_message *m, void *arg);
    void (*subscribed)(tc_client *c, const tc_subscribed *s, void *arg);
    void (*gap)(tc_client *c, const tc_gap *g, void *arg);
    void (*ack)(tc_client *c, const tc_ack *a, void *arg);
    /* An `error` frame that is not about one of our publishes. */
    void (*error)(tc_client *c, int code, const char *reason, void *arg);
    void (*floor)(tc_client *c, const tc_floor_info *f, void *arg);
    /* Asked for a fresh token. Call tc_set_token() now or later and return 0;
     * return a negative value when no token will come (after 4502 the client
     * then goes FAILED). Without this callback a 4502 means FAILED. */
    int (*token)(tc_client *c, tc_token_why why, void *arg);
    /* Any other frame (presence, quality, media, pong, reconnect...), as JSON
     * text, for applications that want them. */
    void (*frame)(tc_client *c, const char *type, const char *json, void *arg);
} tc_callbacks;

/* ---- options ------------------------------------------------------------------ */

typedef struct tc_options {
    const char *url;            /* ws://host:port/path or wss://...; default ws://127.0.0.1:8080/ws */
    const char *token;          /* JWT sent in `hello`; NULL: none yet (set one before tc_connect) */
    const char *client_name;    /* `client` in hello; default "tether-c/1" */
    tc_backoff_cfg backoff;
    uint32_t outbox_max;        /* 100: unacked publishes + queued ptt requests */
    uint32_t ptt_stale_ms;      /* 2000: queued ptt requests older than this are dropped */
    uint32_t audio_max_chunks;  /* 100 */
    uint32_t audio_pacing_ms;   /* 10: gap between buffered chunks flushed after reconnect */
    uint32_t watchdog_grace_ms; /* 10000: reconnect after heartbeat_ms + this without a frame */
    uint32_t connect_timeout_ms;/* 10000: socket + upgrade + welcome */
    uint32_t publish_retry_ms;  /* 1000: re-send after a retryable error (4500, 4429) */
    int no_refresh;             /* 1: never ask for a token before exp */
    const tc_callbacks *cb;     /* borrowed; must outlive the client */
    void *arg;                  /* passed to every callback */
} tc_options;

/* Fills o with the defaults above. */
void tc_options_init(tc_options *o);

/* ---- the loop ------------------------------------------------------------------- */

/* A new loop with its own libwebsockets context (no listener; TLS ready for
 * wss://; permessage-deflate offered only when the environment has
 * TETHER_CLIENT_DEFLATE=1, since compressing small frames costs CPU on both
 * ends for little gain). Returns NULL on failure. */
tc_loop *tc_loop_new(void);
/* A loop over an lws context the application created and services itself.
 * Its protocols must include tc_lws_protocol() (copy the struct into your
 * array). The context is borrowed: free the tc_loop first, then the context. */
tc_loop *tc_loop_wrap(struct lws_context *ctx);
/* The protocol entry the clients' connections use ("tether-client"). */
const struct lws_protocols *tc_lws_protocol(void);
/* The lws context (new or wrapped). */
struct lws_context *tc_loop_context(tc_loop *l);
/* Frees the loop. Free its clients first. NULL is a no-op. */
void tc_loop_free(tc_loop *l);

/* One iteration: waits for network activity or a timer, at most timeout_ms
 * (negative: until something happens), and runs what is due. Returns 0, or
 * -ECANCELED once tc_loop_stop() was called. */
int tc_loop_service(tc_loop *l, int timeout_ms);
/* Services until tc_loop_stop(). Returns 0. */
int tc_loop_run(tc_loop *l);
/* Makes tc_loop_run return. Thread-safe and async-signal-safe. */
void tc_loop_stop(tc_loop *l);
/* Runs fn(l, arg) on the loop thread soon. Thread-safe. Returns 0 or -ENOMEM. */
int tc_loop_post(tc_loop *l, void (*fn)(tc_loop *l, void *arg), void *arg);
/* Calls cb(arg, fd) on the loop thread whenever fd is readable (stdin, a
 * pipe), until cb returns a negative value: then the watch ends and lws
 * closes fd. Returns 0 or -errno. */
int tc_loop_watch_fd(tc_loop *l, int fd, int (*cb)(void *arg, int fd), void *arg);

/* One-shot timers on the loop. */
tc_timer *tc_timer_new(tc_loop *l, void (*cb)(tc_timer *t, void *arg), void *arg);
/* (Re)arms t to fire once after ms milliseconds. */
void tc_timer_start(tc_timer *t, uint64_t ms);
void tc_timer_stop(tc_timer *t);
void tc_timer_free(tc_timer *t);

/* Monotonic milliseconds / microseconds (the clock of every *_ms above). */
uint64_t tc_now_ms(void);
uint64_t tc_now_us(void);

/* ---- clients -------------------------------------------------------------------- */

/* A new client (state DISCONNECTED until tc_connect). Copies o and the
 * strings it points to (cb is borrowed). Returns NULL on bad options (an
 * unparsable url) or no memory. */
tc_client *tc_client_new(tc_loop *l, const tc_options *o);
/* Closes the socket (no callback runs) and frees everything. NULL is a no-op. */
void tc_client_free(tc_client *c);

/* Starts connecting (from DISCONNECTED or FAILED; a no-op otherwise).
 * Rooms, positions and the outbox are kept. */
int tc_connect(tc_client *c);
/* Closes cleanly (1000) and goes DISCONNECTED; nothing reconnects. bye != 0
 * first sends `bye` (the session ends now and presence says offline at once);
 * bye == 0 keeps the session resumable for its TTL. */
int tc_disconnect(tc_client *c, int bye);

/* Subscribes to room, now or (when offline) in the next hello. Positions:
 * epoch NULL and has_seq 0: live only; epoch NULL, seq 0, has_seq 1: from the
 * oldest buffered message; epoch and seq: everything after seq. Subscribing
 * again to a known room is a no-op returning -EALREADY. */
int tc_subscribe(tc_client *c, const char *room, const char *epoch, int has_seq, uint64_t seq);
int tc_unsubscribe(tc_client *c, const char *room);
/* The last delivered position of room: epoch into epoch_buf (may be empty
 * before the first `subscribed`) and seq. -ENOENT when not subscribed. */
int tc_position(tc_client *c, const char *room, char *epoch_buf, size_t epoch_len, uint64_t *seq);

/* Publishes data (JSON text, validated here) to room. id: the idempotency key
 * (1..64 of [A-Za-z0-9._:-]); NULL: a unique one is generated and copied into
 * id_out (id_len >= 65) when given. The publish stays in the outbox until its
 * ack (the ack callback) and is re-sent with the same id after a
 * reconnection. -ENOBUFS when the outbox is full. */
int tc_publish(tc_client *c, const char *room, const char *data, const char *id, char *id_out, size_t id_len);

/* Push-to-talk floor (docs/protocol.md `ptt`). A request made offline waits in
 * the outbox and is dropped (state EXPIRED) if still unsent after
 * ptt_stale_ms. A floor held when the link drops is requested again after
 * the room is resumed (state SUSPENDED, then REQUESTING). */
int tc_ptt_request(tc_client *c, const char *room);
int tc_ptt_release(tc_client *c, const char *room);
tc_floor_state tc_floor_state_of(tc_client *c, const char *room);

/* Audio that must not be lost: the chunk is deep-copied into a FIFO of
 * audio_max_chunks (the oldest is dropped when full, and counted), then
 * published to room as {"audio":"<base64>","n":<chunk number>}, one every
 * audio_pacing_ms while the FIFO drains (it only builds up while offline). */
int tc_audio_send(tc_client *c, const char *room, const void *chunk, size_t len);

/* Sets the token for the next hello (and sends `refresh` when connected).
 * After a 4502 this triggers the reconnection. */
int tc_set_token(tc_client *c, const char *token);

/* Sends a `quality` report. -ENOTCONN when offline (reports are not queued). */
int tc_send_quality(tc_client *c, uint32_t rtt_ms, double loss_pct, uint32_t jitter_ms, uint32_t bandwidth_kbps);

tc_state tc_get_state(const tc_client *c);
/* The session id ("" before the first welcome). */
const char *tc_session(const tc_client *c);
/* The gateway's heartbeat interval (from welcome; 25000 before). */
uint32_t tc_heartbeat_ms(const tc_client *c);
void *tc_client_arg(const tc_client *c);

typedef struct tc_stats {
    uint64_t connects;           /* links that reached `welcome` */
    uint64_t attempts;           /* connection attempts started */
    uint64_t messages;           /* delivered to the app */
    uint64_t duplicates_dropped; /* messages with a seq already delivered */
    uint64_t gaps;               /* gap events (server or client detected) */
    uint32_t outbox_len;         /* entries: queued + in flight */
    uint32_t outbox_inflight;    /* publishes sent, not acked */
    uint64_t publishes_acked;
    uint64_t publishes_resent;   /* re-sends after a reconnection or retryable error */
    uint64_t publishes_rejected; /* tc_publish refused: outbox full */
    uint64_t ptt_stale_dropped;  /* requests older than ptt_stale_ms when flushed */
    uint64_t ptt_full_dropped;   /* ptt requests refused or evicted: outbox full */
    uint32_t audio_buffered;
    uint64_t audio_dropped;      /* oldest chunks dropped from a full FIFO */
    uint64_t audio_sent;
} tc_stats;

void tc_get_stats(const tc_client *c, tc_stats *st);

#endif
