/* gw_frame.c -- client frame decoding and server frame encoding (see gw_frame.h).
 *
 * JSON frames are parsed with jansson into a tree, then every field is read
 * through one typed accessor that knows the limits, so a frame is either
 * entirely valid or rejected with the first problem found. Protobuf frames are
 * unpacked with protobuf-c and pass through the same validators.
 */
#include "gw_frame.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"

/* ---- validators --------------------------------------------------------------- */

static int valid_chars(const char *s, size_t maxlen, const char *extra)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= maxlen)
            return 0;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr(extra, c))
            return 0;
    }
    return n > 0;
}

int gw_valid_room(const char *s) { return valid_chars(s, GW_MAX_ROOM, "._:@/-"); }
int gw_valid_id(const char *s) { return valid_chars(s, GW_MAX_ID, "._:-"); }
int gw_valid_session(const char *s) { return valid_chars(s, GW_MAX_SESSION, "_-"); }
static int valid_epoch(const char *s) { return valid_chars(s, GW_MAX_EPOCH, "_-"); }

void gw_cframe_clear(gw_cframe *f)
{
    free(f->rooms);
    free(f->token);
    free(f->data);
    free(f->sdp);
    free(f->candidate);
    memset(f, 0, sizeof(*f));
}

/* ---- JSON decoding ---------------------------------------------------------------- */

typedef struct dec {
    const char *why;
    int code;
} dec;

static int fail(dec *d, int code, const char *why)
{
    if (!d->code) {
        d->code = code;
        d->why = why;
    }
    return -1;
}

/* Copies string field key of o into dst (size cap+1). required: missing is an error. */
static int get_str(dec *d, json_t *o, const char *key, char *dst, size_t cap, int required,
                   int (*valid)(const char *), const char *why)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return required ? fail(d, GW_E_INVALID, why) : 0;
    if (!json_is_string(v))
        return fail(d, GW_E_INVALID, why);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > cap || strlen(s) != n)
        return fail(d, GW_E_INVALID, why);
    memcpy(dst, s, n + 1);
    if (valid && !valid(dst))
        return fail(d, GW_E_INVALID, why);
    return 0;
}

static int get_dup(dec *d, json_t *o, const char *key, char **dst, size_t cap, int required, const char *why)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return required ? fail(d, GW_E_INVALID, why) : 0;
    if (!json_is_string(v) || json_string_length(v) > cap || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(d, GW_E_INVALID, why);
    *dst = strdup(json_string_value(v));
    return *dst ? 0 : fail(d, GW_E_INTERNAL, "out of memory");
}

static int get_num(dec *d, json_t *o, const char *key, double *dst, double max, const char *why)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(d, GW_E_INVALID, why);
    double x = json_number_value(v);
    if (!isfinite(x) || x < 0 || x > max)
        return fail(d, GW_E_INVALID, why);
    *dst = x;
    return 0;
}

/* Parses a position object ({} / {epoch, seq} / {seq: 0}). */
static int get_pos(dec *d, json_t *o, gw_pos *p)
{
    memset(p, 0, sizeof(*p));
    if (!o || json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return fail(d, GW_E_INVALID, "position must be an object");
    json_t *e = json_object_get(o, "epoch");
    json_t *s = json_object_get(o, "seq");
    if (s && !json_is_null(s)) {
        if (!json_is_integer(s) || json_integer_value(s) < 0)
            return fail(d, GW_E_INVALID, "seq must be a non-negative integer");
        p->seq = (uint64_t)json_integer_value(s);
    }
    if (e && !json_is_null(e)) {
        if (!json_is_string(e) || json_string_length(e) > GW_MAX_EPOCH ||
            strlen(json_string_value(e)) != json_string_length(e))
            return fail(d, GW_E_INVALID, "epoch must be a string");
        if (json_string_length(e) > 0) {
            memcpy(p->epoch, json_string_value(e), json_string_length(e) + 1);
            if (!valid_epoch(p->epoch))
                return fail(d, GW_E_INVALID, "epoch has invalid characters");
            if (!s || json_is_null(s))
                return fail(d, GW_E_INVALID, "epoch given without seq");
            p->kind = GW_POS_EXACT;
            return 0;
        }
    }
    if (s && !json_is_null(s)) {
        if (p->seq != 0)
            return fail(d, GW_E_INVALID, "seq > 0 needs the room's epoch");
        p->kind = GW_POS_OLDEST;
    }
    return 0;
}

static const struct {
    const char *name;
    gw_ctype type;
} type_names[] = {
    { "hello", GW_C_HELLO }, { "subscribe", GW_C_SUBSCRIBE }, { "unsubscribe", GW_C_UNSUBSCRIBE },
    { "publish", GW_C_PUBLISH }, { "ping", GW_C_PING }, { "pong", GW_C_PONG },
    { "refresh", GW_C_REFRESH }, { "quality", GW_C_QUALITY }, { "ptt", GW_C_PTT },
    { "media", GW_C_MEDIA }, { "bye", GW_C_BYE },
};

static int decode_fields(dec *d, json_t *o, const gw_limits *lim, gw_cframe *f)
{
    switch (f->type) {
    case GW_C_HELLO: {
        if (get_dup(d, o, "token", &f->token, 8192, 0, "token must be a string") < 0 ||
            get_str(d, o, "session", f->session, GW_MAX_SESSION, 0, gw_valid_session, "invalid session") < 0)
            return -1;
        json_t *cl = json_object_get(o, "client");
        if (json_is_string(cl))
            snprintf(f->client, sizeof(f->client), "%s", json_string_value(cl));
        json_t *rooms = json_object_get(o, "rooms");
        if (rooms && !json_is_null(rooms)) {
            if (!json_is_object(rooms))
                return fail(d, GW_E_INVALID, "rooms must be an object");
            size_t n = json_object_size(rooms);
            if (n > lim->max_rooms)
                return fail(d, GW_E_INVALID, "too many rooms");
            f->has_rooms = 1;
            f->rooms = calloc(n ? n : 1, sizeof(*f->rooms));
            if (!f->rooms)
                return fail(d, GW_E_INTERNAL, "out of memory");
            const char *k;
            json_t *v;
            json_object_foreach(rooms, k, v)
            {
                gw_room_pos *rp = &f->rooms[f->nrooms];
                if (strlen(k) > GW_MAX_ROOM || !gw_valid_room(k))
                    return fail(d, GW_E_INVALID, "invalid room name");
                strcpy(rp->room, k);
                if (get_pos(d, v, &rp->pos) < 0)
                    return -1;
                f->nrooms++;
            }
        }
        return 0;
    }
    case GW_C_SUBSCRIBE: {
        if (get_str(d, o, "room", f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0)
            return -1;
        /* The position may be given inline ({room, epoch, seq}). */
        json_t *pos = json_object();
        json_t *e = json_object_get(o, "epoch"), *s = json_object_get(o, "seq");
        if (e)
            json_object_set(pos, "epoch", e);
        if (s)
            json_object_set(pos, "seq", s);
        int r = get_pos(d, pos, &f->pos);
        json_decref(pos);
        return r;
    }
    case GW_C_UNSUBSCRIBE:
        return get_str(d, o, "room", f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name");
    case GW_C_PUBLISH: {
        if (get_str(d, o, "room", f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0 ||
            get_str(d, o, "id", f->id, GW_MAX_ID, 1, gw_valid_id, "invalid id") < 0)
            return -1;
        json_t *data = json_object_get(o, "data");
        if (!data)
            return fail(d, GW_E_INVALID, "data is required");
        f->data = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!f->data)
            return fail(d, GW_E_INTERNAL, "out of memory");
        f->data_len = strlen(f->data);
        if (f->data_len > GW_MAX_DATA)
            return fail(d, GW_E_TOO_LARGE, "data too large once serialised");
        return 0;
    }
    case GW_C_REFRESH:
        return get_dup(d, o, "token", &f->token, 8192, 1, "token is required");
    case GW_C_QUALITY:
        if (get_num(d, o, "rtt_ms", &f->rtt_ms, 600000, "rtt_ms must be a number >= 0") < 0 ||
            get_num(d, o, "loss_pct", &f->loss_pct, 100, "loss_pct must be 0..100") < 0 ||
            get_num(d, o, "jitter_ms", &f->jitter_ms, 600000, "jitter_ms must be a number >= 0") < 0 ||
            get_num(d, o, "bandwidth_kbps", &f->bandwidth_kbps, 1e9, "bandwidth_kbps must be >= 0") < 0)
            return -1;
        return 0;
    case GW_C_PTT:
        if (get_str(d, o, "room", f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0 ||
            get_str(d, o, "action", f->action, sizeof(f->action) - 1, 1, NULL, "invalid action") < 0)
            return -1;
        if (strcmp(f->action, "request") && strcmp(f->action, "release"))
            return fail(d, GW_E_INVALID, "action must be request or release");
        return 0;
    case GW_C_MEDIA:
        if (get_str(d, o, "room", f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0 ||
            get_str(d, o, "action", f->action, sizeof(f->action) - 1, 1, NULL, "invalid action") < 0)
            return -1;
        if (!strcmp(f->action, "offer"))
            return get_dup(d, o, "sdp", &f->sdp, 32768, 1, "offer needs sdp");
        if (!strcmp(f->action, "candidate")) {
            if (get_dup(d, o, "candidate", &f->candidate, 1024, 0, "candidate must be a string") < 0)
                return -1;
            json_t *mid = json_object_get(o, "mid");
            if (json_is_string(mid) && json_string_length(mid) < sizeof(f->mid))
                strcpy(f->mid, json_string_value(mid));
            return 0;
        }
        if (!strcmp(f->action, "leave"))
            return 0;
        return fail(d, GW_E_INVALID, "action must be offer, candidate or leave");
    default:
        return 0;
    }
}

int gw_decode_json(const char *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why)
{
    if (len <= lim->max_frame && gw_decode_json_fast(buf, len, out))
        return 0;
    return gw_decode_json_slow(buf, len, lim, out, why);
}

int gw_decode_json_slow(const char *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why)
{
    dec d = { 0 };
    memset(out, 0, sizeof(*out));
    if (len > lim->max_frame) {
        *why = "frame too large";
        return GW_E_TOO_LARGE;
    }
    json_error_t err;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!o) {
        *why = "not JSON";
        return GW_E_MALFORMED;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        *why = "not a JSON object";
        return GW_E_MALFORMED;
    }
    /* Read the id early: an error about a publish should name it. */
    json_t *idv = json_object_get(o, "id");
    if (json_is_string(idv) && json_string_length(idv) <= GW_MAX_ID)
        strcpy(out->id, json_string_value(idv));
    json_t *t = json_object_get(o, "type");
    if (!t || !json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t)) {
        json_decref(o);
        *why = "missing type";
        return GW_E_MALFORMED;
    }
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcmp(json_string_value(t), type_names[i].name) == 0)
            out->type = type_names[i].type;
    if (out->type == GW_C_NONE) {
        json_decref(o);
        *why = "unknown type";
        return GW_E_MALFORMED;
    }
    decode_fields(&d, o, lim, out);
    json_decref(o);
    if (d.code) {
        char keep[GW_MAX_ID + 1];
        strcpy(keep, out->id);
        gw_cframe_clear(out);
        strcpy(out->id, keep);
        *why = d.why;
        return d.code;
    }
    return 0;
}

/* ---- protobuf decoding --------------------------------------------------------- */

static int copy_checked(dec *d, const char *src, char *dst, size_t cap, int required, int (*valid)(const char *),
                        const char *why)
{
    if (!src || !*src)
        return required ? fail(d, GW_E_INVALID, why) : 0;
    size_t n = strlen(src);
    if (n > cap)
        return fail(d, GW_E_INVALID, why);
    memcpy(dst, src, n + 1);
    if (valid && !valid(dst))
        return fail(d, GW_E_INVALID, why);
    return 0;
}

static int pb_pos(dec *d, const Tether__V1__Position *p, gw_pos *out)
{
    memset(out, 0, sizeof(*out));
    if (!p || !p->has_seq)
        return 0;
    out->seq = p->seq;
    if (p->epoch && *p->epoch) {
        if (copy_checked(d, p->epoch, out->epoch, GW_MAX_EPOCH, 1, valid_epoch, "invalid epoch") < 0)
            return -1;
        out->kind = GW_POS_EXACT;
        return 0;
    }
    if (p->seq != 0)
        return fail(d, GW_E_INVALID, "seq > 0 needs the room's epoch");
    out->kind = GW_POS_OLDEST;
    return 0;
}

/* Validates JSON text and stores its compact form in f->data. */
static int pb_data(dec *d, const char *text, gw_cframe *f)
{
    if (!text || !*text)
        return fail(d, GW_E_INVALID, "data is required");
    if (gw_json_compact_fast(text, strlen(text), &f->data, &f->data_len))
        return 0;
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    if (!v)
        return fail(d, GW_E_INVALID, "data must be JSON text");
    f->data = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!f->data)
        return fail(d, GW_E_INTERNAL, "out of memory");
    f->data_len = strlen(f->data);
    if (f->data_len > GW_MAX_DATA)
        return fail(d, GW_E_TOO_LARGE, "data too large once serialised");
    return 0;
}

static int dup_field(dec *d, const char *src, char **dst, size_t cap, int required, const char *why)
{
    if (!src || !*src)
        return required ? fail(d, GW_E_INVALID, why) : 0;
    if (strlen(src) > cap)
        return fail(d, GW_E_INVALID, why);
    *dst = strdup(src);
    return *dst ? 0 : fail(d, GW_E_INTERNAL, "out of memory");
}

static int pb_fields(dec *d, const Tether__V1__ClientFrame *cf, const gw_limits *lim, gw_cframe *f)
{
    switch (cf->frame_case) {
    case TETHER__V1__CLIENT_FRAME__FRAME_HELLO: {
        const Tether__V1__Hello *h = cf->hello;
        f->type = GW_C_HELLO;
        if (dup_field(d, h->token, &f->token, 8192, 0, "token too long") < 0 ||
            copy_checked(d, h->session, f->session, GW_MAX_SESSION, 0, gw_valid_session, "invalid session") < 0)
            return -1;
        if (h->client)
            snprintf(f->client, sizeof(f->client), "%s", h->client);
        if (h->n_rooms > lim->max_rooms)
            return fail(d, GW_E_INVALID, "too many rooms");
        f->has_rooms = h->n_rooms > 0;
        if (h->n_rooms) {
            f->rooms = calloc(h->n_rooms, sizeof(*f->rooms));
            if (!f->rooms)
                return fail(d, GW_E_INTERNAL, "out of memory");
            for (size_t i = 0; i < h->n_rooms; i++) {
                gw_room_pos *rp = &f->rooms[f->nrooms];
                if (copy_checked(d, h->rooms[i]->key, rp->room, GW_MAX_ROOM, 1, gw_valid_room,
                                 "invalid room name") < 0 ||
                    pb_pos(d, h->rooms[i]->value, &rp->pos) < 0)
                    return -1;
                for (size_t j = 0; j < f->nrooms; j++)
                    if (!strcmp(f->rooms[j].room, rp->room))
                        return fail(d, GW_E_INVALID, "room listed twice");
                f->nrooms++;
            }
        }
        return 0;
    }
    case TETHER__V1__CLIENT_FRAME__FRAME_SUBSCRIBE:
        f->type = GW_C_SUBSCRIBE;
        if (copy_checked(d, cf->subscribe->room, f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0)
            return -1;
        return pb_pos(d, cf->subscribe->position, &f->pos);
    case TETHER__V1__CLIENT_FRAME__FRAME_UNSUBSCRIBE:
        f->type = GW_C_UNSUBSCRIBE;
        return copy_checked(d, cf->unsubscribe->room, f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name");
    case TETHER__V1__CLIENT_FRAME__FRAME_PUBLISH:
        f->type = GW_C_PUBLISH;
        if (copy_checked(d, cf->publish->id, f->id, GW_MAX_ID, 1, gw_valid_id, "invalid id") < 0 ||
            copy_checked(d, cf->publish->room, f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0)
            return -1;
        return pb_data(d, cf->publish->data, f);
    case TETHER__V1__CLIENT_FRAME__FRAME_PING:
        f->type = GW_C_PING;
        return 0;
    case TETHER__V1__CLIENT_FRAME__FRAME_PONG:
        f->type = GW_C_PONG;
        return 0;
    case TETHER__V1__CLIENT_FRAME__FRAME_BYE:
        f->type = GW_C_BYE;
        return 0;
    case TETHER__V1__CLIENT_FRAME__FRAME_REFRESH:
        f->type = GW_C_REFRESH;
        return dup_field(d, cf->refresh->token, &f->token, 8192, 1, "token is required");
    case TETHER__V1__CLIENT_FRAME__FRAME_QUALITY: {
        const Tether__V1__Quality *q = cf->quality;
        f->type = GW_C_QUALITY;
        if (!isfinite(q->rtt_ms) || q->rtt_ms < 0 || q->rtt_ms > 600000 || !isfinite(q->loss_pct) ||
            q->loss_pct < 0 || q->loss_pct > 100 || !isfinite(q->jitter_ms) || q->jitter_ms < 0 ||
            q->jitter_ms > 600000 || !isfinite(q->bandwidth_kbps) || q->bandwidth_kbps < 0 ||
            q->bandwidth_kbps > 1e9)
            return fail(d, GW_E_INVALID, "quality values out of range");
        f->rtt_ms = q->rtt_ms;
        f->loss_pct = q->loss_pct;
        f->jitter_ms = q->jitter_ms;
        f->bandwidth_kbps = q->bandwidth_kbps;
        return 0;
    }
    case TETHER__V1__CLIENT_FRAME__FRAME_PTT:
        f->type = GW_C_PTT;
        if (copy_checked(d, cf->ptt->room, f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0 ||
            copy_checked(d, cf->ptt->action, f->action, sizeof(f->action) - 1, 1, NULL, "invalid action") < 0)
            return -1;
        if (strcmp(f->action, "request") && strcmp(f->action, "release"))
            return fail(d, GW_E_INVALID, "action must be request or release");
        return 0;
    case TETHER__V1__CLIENT_FRAME__FRAME_MEDIA: {
        const Tether__V1__Media *m = cf->media;
        f->type = GW_C_MEDIA;
        if (copy_checked(d, m->room, f->room, GW_MAX_ROOM, 1, gw_valid_room, "invalid room name") < 0 ||
            copy_checked(d, m->action, f->action, sizeof(f->action) - 1, 1, NULL, "invalid action") < 0)
            return -1;
        if (!strcmp(f->action, "offer"))
            return dup_field(d, m->sdp, &f->sdp, 32768, 1, "offer needs sdp");
        if (!strcmp(f->action, "candidate")) {
            if (m->mid && strlen(m->mid) < sizeof(f->mid))
                strcpy(f->mid, m->mid);
            return dup_field(d, m->candidate, &f->candidate, 1024, 0, "candidate too long");
        }
        if (!strcmp(f->action, "leave"))
            return 0;
        return fail(d, GW_E_INVALID, "action must be offer, candidate or leave");
    }
    default:
        return fail(d, GW_E_MALFORMED, "unknown frame");
    }
}

int gw_decode_proto(const uint8_t *buf, size_t len, const gw_limits *lim, gw_cframe *out, const char **why)
{
    dec d = { 0 };
    memset(out, 0, sizeof(*out));
    if (len > lim->max_frame) {
        *why = "frame too large";
        return GW_E_TOO_LARGE;
    }
    Tether__V1__ClientFrame *cf = tether__v1__client_frame__unpack(NULL, len, buf);
    if (!cf) {
        *why = "not a ClientFrame";
        return GW_E_MALFORMED;
    }
    if (cf->frame_case == TETHER__V1__CLIENT_FRAME__FRAME_PUBLISH && cf->publish->id &&
        strlen(cf->publish->id) <= GW_MAX_ID)
        strcpy(out->id, cf->publish->id);
    pb_fields(&d, cf, lim, out);
    tether__v1__client_frame__free_unpacked(cf, NULL);
    if (d.code) {
        char keep[GW_MAX_ID + 1];
        strcpy(keep, out->id);
        gw_cframe_clear(out);
        strcpy(out->id, keep);
        *why = d.why;
        return d.code;
    }
    return 0;
}
