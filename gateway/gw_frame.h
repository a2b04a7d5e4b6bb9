/* gw_frame.h -- the client wire format: decoding client frames and encoding
 * server frames, for both sub-protocols (tether.v1.json and tether.v1.proto).
 *
 * Decoding turns one frame into a gw_cframe whatever the sub-protocol, with
 * every field validated against the protocol's limits; the rest of the gateway
 * never sees raw input. Encoding produces ready-to-send gw_buf frames with
 * GW_PRE bytes of headroom, shareable between connections (refcounted), so a
 * room message is encoded once per format and fanned out.
 *
 * Pure functions of their input: no I/O, no globals besides the limits, so the
 * decoders are fuzzed directly (tests/fuzz/fuzz_frame.c).
 */
#ifndef TETHER_GW_FRAME_H
#define TETHER_GW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define GW_MAX_ROOM 128
#define GW_MAX_ID 64
#define GW_MAX_USER 128
#define GW_MAX_SESSION 64
#define GW_MAX_EPOCH 64
/* A publish's data once re-serialised as compact JSON: replayd's limit too. */
#define GW_MAX_DATA 65536

/* Error codes of docs/protocol.md. */
enum {
    GW_E_INVALID = 4400,
    GW_E_NOT_FOUND = 4404,
    GW_E_TOO_LARGE = 4413,
    GW_E_RATE = 4429,
    GW_E_INTERNAL = 4500,
    GW_E_AUTH = 4501,
    GW_E_EXPIRED = 4502,
    GW_E_FORBIDDEN = 4503,
    GW_E_TOO_MANY = 4504,
    GW_E_MALFORMED = 4505,
    GW_E_HELLO_TIMEOUT = 4508,
};

typedef enum gw_ctype {
    GW_C_NONE = 0,
    GW_C_HELLO,
    GW_C_SUBSCRIBE,
    GW_C_UNSUBSCRIBE,
    GW_C_PUBLISH,
    GW_C_PING,
    GW_C_PONG,
    GW_C_REFRESH,
    GW_C_QUALITY,
    GW_C_PTT,
    GW_C_MEDIA,
    GW_C_BYE,
} gw_ctype;

/* A subscription position. */
typedef enum gw_pos_kind {
    GW_POS_LIVE = 0,     /* {}: live only */
    GW_POS_EXACT,        /* {epoch, seq} */
    GW_POS_OLDEST,       /* {seq: 0} without epoch */
} gw_pos_kind;

typedef struct gw_pos {
    gw_pos_kind kind;
    char epoch[GW_MAX_EPOCH + 1];
    uint64_t seq;
} gw_pos;

typedef struct gw_room_pos {
    char room[GW_MAX_ROOM + 1];
    gw_pos pos;
} gw_room_pos;

/* A decoded client frame. Strings are NUL-terminated copies; heap fields
 * (token, data, rooms, sdp, candidate) are owned and released by
 * gw_cframe_clear. */
typedef struct gw_cframe {
    gw_ctype type;
    char room[GW_MAX_ROOM + 1];
    char id[GW_MAX_ID + 1];
    char session[GW_MAX_SESSION + 1];
    char action[16];
    char mid[32];
    char client[64];
    gw_pos pos;                 /* subscribe */
    gw_room_pos *rooms;         /* hello */
    size_t nrooms;
    int has_rooms;
    char *token;                /* hello, refresh */
    char *data;                 /* publish: compact JSON text */
    size_t data_len;
    char *sdp;                  /* media offer */
    char *candidate;            /* media candidate */
    double rtt_ms, loss_pct, jitter_ms, bandwidth_kbps;
} gw_cframe;

/* Limits applied by the decoders (defaults from docs/protocol.md). */
typedef struct gw_limits {
    size_t max_frame;     /* bytes, 64 KiB */
    size_t max_rooms;     /* per connection, 256 */
} gw_limits;

/* Decodes one frame. Returns 0, or a docs/protocol.md error code (4505 malformed,
 * 4400 invalid field, 4413 too large) with *why set to a static reason and
 * *id set to the frame's `id` when one could be read (for the error frame).
 * On error, out is cleared. */
int gw_decode_json(const char *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why);
int gw_decode_proto(const uint8_t *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why);
void gw_cframe_clear(gw_cframe *f);

/* The fast path of gw_decode_json for the common publish frame (see
 * gw_frame_fast.c): 1 when it decoded buf into out, exactly as the jansson
 * path would; 0 when it leaves the frame to that path (out untouched). */
int gw_decode_json_fast(const char *buf, size_t len, gw_cframe *out);
/* gw_decode_json without its fast path (the differential fuzzer and unit
 * tests compare the two). */
int gw_decode_json_slow(const char *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why);
/* The compact form of the JSON text buf, exactly as jansson would dump it,
 * in *out (malloc'd, NUL-terminated; at most GW_MAX_DATA bytes): 1; or 0 when
 * the text is outside what the fast path vouches for. */
int gw_json_compact_fast(const char *buf, size_t len, char **out, size_t *out_len);

/* Validators (exposed for the HTTP API and tests). */
int gw_valid_room(const char *s);
int gw_valid_id(const char *s);
int gw_valid_session(const char *s);

/* ---- server frames ---------------------------------------------------------- */

/* A frame ready to send: 'len' payload bytes at data + GW_PRE.
 * Refcounted: gw_buf_ref / gw_buf_unref. binary: send as a binary frame. */
#define GW_PRE 16   /* headroom before the payload */
typedef struct gw_buf {
    unsigned refs;
    unsigned binary;
    size_t len;
    unsigned char data[];
} gw_buf;

/* Returns a buffer with room for len payload bytes (refs = 1), or NULL. */
gw_buf *gw_buf_new(size_t len, int binary);
gw_buf *gw_buf_ref(gw_buf *b);
void gw_buf_unref(gw_buf *b);
static inline unsigned char *gw_buf_payload(gw_buf *b) { return b->data + GW_PRE; }

/* A room message as the gateway holds it. */
typedef struct gw_msgv {
    const char *room, *epoch, *id, *from, *data;
    uint64_t seq;
    int64_t ts;
} gw_msgv;

typedef struct gw_gapv {
    uint64_t from, first_available;
} gw_gapv;

/* Encoders: proto != 0 selects tether.v1.proto. All return a new buffer or NULL. */
gw_buf *gw_enc_message(int proto, const gw_msgv *m);
gw_buf *gw_enc_welcome(int proto, const char *session, const char *user, int resumed, int64_t disconnected_ms,
                       uint32_t heartbeat_ms, uint32_t session_ttl_ms, int64_t token_expires_in_ms);
gw_buf *gw_enc_subscribed(int proto, const char *room, const char *epoch, uint64_t seq, int recovered,
                          uint32_t missed, const gw_gapv *gap);
gw_buf *gw_enc_ack(int proto, const char *id, const char *room, uint64_t seq, int duplicate);
gw_buf *gw_enc_gap(int proto, const char *room, uint64_t from, uint64_t to);
gw_buf *gw_enc_error(int proto, int code, const char *reason, const char *id);
gw_buf *gw_enc_simple(int proto, gw_ctype type); /* ping / pong */
gw_buf *gw_enc_reconnect(int proto, uint32_t after_ms, const char *reason);
gw_buf *gw_enc_quality(int proto, const char *quality, const char *const *recs, size_t nrecs);
/* presence: either user+state (members NULL) or the members list. */
typedef struct gw_member {
    const char *user, *state;
} gw_member;
gw_buf *gw_enc_presence(int proto, const char *room, const char *user, const char *state,
                        const gw_member *members, size_t nmembers);
gw_buf *gw_enc_ptt(int proto, const char *room, const char *state, const char *holder, uint32_t max_ms,
                   const char *reason);
gw_buf *gw_enc_media(int proto, const char *room, const char *action, const char *sdp, const char *candidate,
                     const char *mid, const char *reason);

#endif
