/* tc_frame.h -- tether.v1.json frames for the client (pure, jansson only).
 *
 * Encoders return the text of one client frame (malloc'd, NUL-terminated,
 * free()), or NULL on bad input or no memory. The decoder turns the text of
 * one server frame into a tc_sframe whose string fields point into the
 * parsed document; it checks the fields the client relies on and rejects a
 * frame that lacks them (input from the network is untrusted).
 */
#ifndef TETHER_TC_FRAME_H
#define TETHER_TC_FRAME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_rooms.h"

/* Limits from docs/protocol.md. */
#define TC_MAX_ROOM 128
#define TC_MAX_ID 64

/* Non-zero when s is a valid room name: 1..128 of [A-Za-z0-9._:@/-]. */
int tc_valid_room(const char *s);
/* Non-zero when s is a valid id: 1..64 of [A-Za-z0-9._:-]. */
int tc_valid_id(const char *s);
/* Parses JSON text (any value) and returns it re-encoded compactly (free()),
 * or NULL when it is not JSON. */
char *tc_json_compact(const char *text);

typedef struct tc_hello_room {
    const char *room;
    tc_pos pos;
} tc_hello_room;

char *tc_frame_hello(const char *token, const char *session, const char *client, const tc_hello_room *rooms,
                     size_t nrooms);
char *tc_frame_subscribe(const char *room, const tc_pos *pos);
char *tc_frame_unsubscribe(const char *room);
/* data: compact JSON text (embedded as is). */
char *tc_frame_publish(const char *room, const char *id, const char *data);
/* "ping", "pong" or "bye". */
char *tc_frame_simple(const char *type);
char *tc_frame_refresh(const char *token);
/* action: "request" or "release". */
char *tc_frame_ptt(const char *room, const char *action);
char *tc_frame_quality(uint32_t rtt_ms, double loss_pct, uint32_t jitter_ms, uint32_t bandwidth_kbps);

typedef enum tc_stype {
    TC_S_UNKNOWN = 0,
    TC_S_WELCOME,
    TC_S_SUBSCRIBED,
    TC_S_MESSAGE,
    TC_S_ACK,
    TC_S_GAP,
    TC_S_ERROR,
    TC_S_PING,
    TC_S_PONG,
    TC_S_PTT,
    TC_S_RECONNECT,
    TC_S_OTHER,          /* presence, quality, media, and any future type */
} tc_stype;

typedef struct tc_sframe {
    tc_stype type;
    const char *type_name;
    json_t *root;
    /* welcome */
    const char *session, *user;
    int resumed;
    uint64_t disconnected_ms, heartbeat_ms, session_ttl_ms;
    int64_t token_expires_in_ms;  /* -1: not given */
    /* subscribed, message, ack, gap, ptt */
    const char *room, *epoch, *id, *from;
    uint64_t seq, missed;
    int recovered, has_gap;
    uint64_t gap_from, gap_first_available;
    int64_t ts;
    const char *data;             /* message: the JSON value as text (in own) */
    size_t data_len;
    char *own;                    /* storage behind the fast path's strings */
    int duplicate;
    uint64_t gap_to;              /* gap frame: gap_from..gap_to */
    /* error */
    int code;
    const char *reason;
    /* reconnect */
    uint64_t after_ms;
    /* ptt */
    const char *state, *holder;
    uint64_t max_ms;
} tc_sframe;

/* Parses len bytes. Returns 0 (release with tc_sframe_clear) or -EINVAL (f
 * is left cleared). `message` frames, the ones that come by the hundred
 * thousand, take a fast path that copies the frame once and slices it
 * (root stays NULL); anything it does not expect falls back to jansson. */
int tc_sframe_parse(const char *buf, size_t len, tc_sframe *f);
/* The fast path alone (for tests): 0, or -EINVAL when it declines. */
int tc_sframe_parse_message_fast(const char *buf, size_t len, tc_sframe *f);
void tc_sframe_clear(tc_sframe *f);

#endif
