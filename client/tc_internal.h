/* tc_internal.h -- what the SDK's lws-facing files share (not installed).
 *
 * tc_loop.c owns the lws context, timers and the protocol callback, and
 * routes WebSocket events to tc_link.c, which owns one client's socket: the
 * connection attempt, the send queue, frame reassembly and close codes.
 * tc_link.c reports upward to tc_client.c, which is the state machine and
 * the glue to the pure modules (backoff, outbox, rooms, floor, audio).
 */
#ifndef TETHER_TC_INTERNAL_H
#define TETHER_TC_INTERNAL_H

#include <libwebsockets.h>

#include "tc_audio.h"
#include "tc_backoff.h"
#include "tc_floor.h"
#include "tc_frame.h"
#include "tc_outbox.h"
#include "tc_rooms.h"
#include "tether_client.h"

#define TC_MAX_SESSION 128
#define TC_MAX_RX (1u << 20)

typedef struct tc_sq tc_sq;
struct tc_sq {
    tc_sq *next;
    size_t len;
    unsigned char buf[];   /* LWS_PRE bytes of headroom, then the frame */
};

struct tc_client {
    tc_loop *loop;
    tc_client *lnext, *lprev;      /* the loop's client list */
    tc_options o;
    char *url, *token, *client_name;
    /* parsed url */
    char host[256];
    char hostport[272];
    char path[512];
    int port, tls;

    tc_state state;
    /* the link (one socket at a time) */
    struct lws *wsi;
    int link_active;               /* an attempt or a link exists (reported down once) */
    int in_connect;                /* inside lws_client_connect_via_info */
    int established;               /* WebSocket open */
    int welcomed;
    int app_closing;               /* tc_disconnect in progress */
    int bye_sent;
    int local_code;                /* != 0: we are closing the link with this */
    char local_reason[96];
    int peer_code;                 /* close code received from the server */
    char peer_reason[124];
    tc_sq *sq_head, *sq_tail;
    unsigned sq_len;
    unsigned char *rx;
    size_t rxlen, rxcap;

    /* timing */
    uint64_t attempt_started_ms, last_rx_ms, down_since_ms, refresh_at_ms;
    uint32_t heartbeat_ms;
    int hint_valid;
    uint32_t hint_after_ms;
    int awaiting_token;
    unsigned token_streak;         /* consecutive 4502 closes */
    int gave_up;                   /* the FAILED being reported is max_attempts */
    lws_sorted_usec_list_t sul_retry, sul_pump, sul_audio;

    char session[TC_MAX_SESSION + 1];
    tc_backoff bo;
    tc_rng rng;
    tc_rooms *rooms;
    tc_outbox *ob;
    tc_floor *floor;
    tc_audio *audio;
    char id_prefix[16];
    uint64_t id_counter;
    tc_stats st;
};

/* ---- tc_loop.c ------------------------------------------------------------------ */
struct lws_context *tc_loop__ctx(tc_loop *l);
void tc_loop__add(tc_loop *l, tc_client *c);
void tc_loop__remove(tc_loop *l, tc_client *c);
/* 1 when tc_link.c writes the WebSocket framing itself (no deflate offered). */
int tc_loop__frames_ours(tc_loop *l);
/* A buffer of at least n bytes, the loop's, valid until the next call; NULL
 * when out of memory. */
unsigned char *tc_loop__scratch(tc_loop *l, size_t n);
/* Fills key with a fresh masking key. Returns 0 or -EIO. */
int tc_loop__mask_key(tc_loop *l, unsigned char key[4]);

/* ---- tc_link.c ------------------------------------------------------------------ */
/* Parses c->url into host/port/path/tls. Returns 0 or -EINVAL. */
int tc_link__parse_url(tc_client *c);
/* Starts a connection attempt. Returns 0, or -errno when it failed at once
 * (tc_client__link_down has then already run). */
int tc_link__connect(tc_client *c);
/* Queues one text frame (takes over text, a malloc'd string). Returns 0 or
 * -ENOTCONN/-ENOMEM (text freed either way). */
int tc_link__send(tc_client *c, char *text);
/* Closes the link with code (sent to the server when the socket still
 * works; the link is torn down at once when hard != 0). */
void tc_link__close(tc_client *c, int code, const char *reason, int hard);
/* Forgets the socket without any callback (tc_client_free). */
void tc_link__abandon(tc_client *c);
/* The protocol callback's WebSocket part. */
int tc_link__callback(struct lws *wsi, enum lws_callback_reasons reason, void *in, size_t len);

/* ---- tc_client.c ---------------------------------------------------------------- */
/* Changes state and tells the application. */
void tc_client__set_state(tc_client *c, tc_state s, int code, const char *reason, uint32_t delay_ms, int hinted,
                          int resumed, uint64_t disconnected_ms);
/* Schedules the refresh of a token that expires in exp_in_ms (< 0: unknown). */
void tc_client__plan_refresh(tc_client *c, int64_t exp_in_ms);

/* ---- tc_session.c ----------------------------------------------------------------- */
/* Sends what the outbox may send now (when welcomed). */
void tc_session__pump(tc_client *c);
/* After `welcome`: stale ptt requests dropped, outbox flushed, floors of
 * rooms we do not subscribe restored, the audio FIFO draining again. */
void tc_session__welcomed(tc_client *c);
/* The link dropped: rooms, outbox and floors go back to "not on a link". */
void tc_session__link_down(tc_client *c);
/* Handles one parsed server frame other than welcome. */
void tc_session__frame(tc_client *c, tc_sframe *f, const char *buf, size_t len);

/* ---- tc_client.c (called by tc_link.c and tc_loop.c) --------------------------- */
void tc_client__on_open(tc_client *c);
void tc_client__on_frame(tc_client *c, const char *buf, size_t len);
/* The link is gone (once per link). code: the close code that explains it. */
void tc_client__link_down(tc_client *c, int code, const char *reason);
/* Once a second: connect timeout, watchdog, token refresh. */
void tc_client__sweep(tc_client *c, uint64_t now_ms);

#endif
