/* tc_frame.c -- tether.v1.json frames for the client (see tc_frame.h).
 *
 * Client frames are built with jansson so that every string is escaped
 * correctly, except `publish`, whose room and id are validated to a charset
 * that needs no escaping and whose data is already compact JSON: it is
 * assembled directly, because it is the frame sent most often.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_frame.h"

static int valid_chars(const char *s, size_t max, const char *extra)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= max)
            return 0;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr(extra, c))
            return 0;
    }
    return n > 0;
}

int tc_valid_room(const char *s) { return valid_chars(s, TC_MAX_ROOM, "._:@/-"); }
int tc_valid_id(const char *s) { return valid_chars(s, TC_MAX_ID, "._:-"); }

char *tc_json_compact(const char *text)
{
    json_error_t err;
    if (!text)
        return NULL;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        return NULL;
    char *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return out;
}

/* Dumps o compactly and drops it. */
static char *dump(json_t *o)
{
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static json_t *pos_obj(const tc_pos *p)
{
    json_t *o = json_object();
    if (!o || !p)
        return o;
    if (p->epoch)
        json_object_set_new(o, "epoch", json_string(p->epoch));
    if (p->has_seq)
        json_object_set_new(o, "seq", json_integer((json_int_t)p->seq));
    return o;
}

char *tc_frame_hello(const char *token, const char *session, const char *client, const tc_hello_room *rooms,
                     size_t nrooms)
{
    json_t *o = json_pack("{s:s}", "type", "hello");
    if (!o)
        return NULL;
    if (token && *token)
        json_object_set_new(o, "token", json_string(token));
    if (session && *session)
        json_object_set_new(o, "session", json_string(session));
    if (client && *client)
        json_object_set_new(o, "client", json_string(client));
    if (nrooms) {
        json_t *r = json_object();
        for (size_t i = 0; r && i < nrooms; i++)
            json_object_set_new(r, rooms[i].room, pos_obj(&rooms[i].pos));
        json_object_set_new(o, "rooms", r);
    }
    return dump(o);
}

char *tc_frame_subscribe(const char *room, const tc_pos *pos)
{
    json_t *o = json_pack("{s:s,s:s}", "type", "subscribe", "room", room);
    if (o && pos) {
        if (pos->epoch)
            json_object_set_new(o, "epoch", json_string(pos->epoch));
        if (pos->has_seq)
            json_object_set_new(o, "seq", json_integer((json_int_t)pos->seq));
    }
    return dump(o);
}

char *tc_frame_unsubscribe(const char *room)
{
    return dump(json_pack("{s:s,s:s}", "type", "unsubscribe", "room", room));
}

char *tc_frame_publish(const char *room, const char *id, const char *data)
{
    if (!tc_valid_room(room) || !tc_valid_id(id) || !data)
        return NULL;
    size_t n = strlen(room) + strlen(id) + strlen(data) + 48;
    char *s = malloc(n);
    if (!s)
        return NULL;
    snprintf(s, n, "{\"type\":\"publish\",\"room\":\"%s\",\"id\":\"%s\",\"data\":%s}", room, id, data);
    return s;
}

char *tc_frame_simple(const char *type)
{
    return dump(json_pack("{s:s}", "type", type));
}

char *tc_frame_refresh(const char *token)
{
    return dump(json_pack("{s:s,s:s}", "type", "refresh", "token", token));
}

char *tc_frame_ptt(const char *room, const char *action)
{
    return dump(json_pack("{s:s,s:s,s:s}", "type", "ptt", "room", room, "action", action));
}

char *tc_frame_quality(uint32_t rtt_ms, double loss_pct, uint32_t jitter_ms, uint32_t bandwidth_kbps)
{
    return dump(json_pack("{s:s,s:I,s:f,s:I,s:I}", "type", "quality", "rtt_ms", (json_int_t)rtt_ms, "loss_pct",
                          loss_pct, "jitter_ms", (json_int_t)jitter_ms, "bandwidth_kbps",
                          (json_int_t)bandwidth_kbps));
}

/* ---- decoding ------------------------------------------------------------------- */

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* A non-negative integer field into *v. Returns 1 if present and valid. */
static int uint_field(json_t *o, const char *k, uint64_t *v)
{
    json_t *j = json_object_get(o, k);
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return 0;
    *v = (uint64_t)json_integer_value(j);
    return 1;
}

static int bool_field(json_t *o, const char *k)
{
    return json_is_true(json_object_get(o, k));
}

static const struct {
    const char *name;
    tc_stype type;
} types[] = {
    { "message", TC_S_MESSAGE }, { "ack", TC_S_ACK },       { "ping", TC_S_PING },
    { "pong", TC_S_PONG },       { "welcome", TC_S_WELCOME }, { "subscribed", TC_S_SUBSCRIBED },
    { "gap", TC_S_GAP },         { "error", TC_S_ERROR },   { "ptt", TC_S_PTT },
    { "reconnect", TC_S_RECONNECT },
};

static int parse_fields(tc_sframe *f)
{
    json_t *o = f->root;
    uint64_t v;
    switch (f->type) {
    case TC_S_WELCOME:
        f->session = str(o, "session");
        f->user = str(o, "user");
        f->resumed = bool_field(o, "resumed");
        uint_field(o, "disconnected_ms", &f->disconnected_ms);
        if (!uint_field(o, "heartbeat_ms", &f->heartbeat_ms))
            f->heartbeat_ms = 25000;
        uint_field(o, "session_ttl_ms", &f->session_ttl_ms);
        f->token_expires_in_ms = uint_field(o, "token_expires_in_ms", &v) ? (int64_t)v : -1;
        return f->session && *f->session ? 0 : -EINVAL;
    case TC_S_SUBSCRIBED: {
        f->room = str(o, "room");
        f->epoch = str(o, "epoch");
        f->recovered = bool_field(o, "recovered");
        if (!f->room || !f->epoch || !uint_field(o, "seq", &f->seq))
            return -EINVAL;
        uint_field(o, "missed", &f->missed);
        json_t *g = json_object_get(o, "gap");
        if (json_is_object(g)) {
            f->has_gap = 1;
            uint_field(g, "from", &f->gap_from);
            uint_field(g, "first_available", &f->gap_first_available);
        }
        return 0;
    }
    case TC_S_MESSAGE: {
        f->room = str(o, "room");
        f->epoch = str(o, "epoch");
        f->id = str(o, "id");
        f->from = str(o, "from");
        json_t *ts = json_object_get(o, "ts");
        f->ts = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0;
        if (!f->room || !uint_field(o, "seq", &f->seq) || f->seq == 0)
            return -EINVAL;
        json_t *d = json_object_get(o, "data");
        f->own = json_dumps(d ? d : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        if (!f->own)
            return -EINVAL;
        f->data = f->own;
        f->data_len = strlen(f->own);
        return 0;
    }
    case TC_S_ACK:
        f->id = str(o, "id");
        f->room = str(o, "room");
        f->duplicate = bool_field(o, "duplicate");
        return f->id && uint_field(o, "seq", &f->seq) ? 0 : -EINVAL;
    case TC_S_GAP:
        f->room = str(o, "room");
        if (!f->room || !uint_field(o, "from", &f->gap_from) || !uint_field(o, "to", &f->gap_to))
            return -EINVAL;
        return f->gap_to >= f->gap_from ? 0 : -EINVAL;
    case TC_S_ERROR: {
        json_t *c = json_object_get(o, "code");
        f->code = json_is_integer(c) ? (int)json_integer_value(c) : 0;
        f->reason = str(o, "reason");
        f->id = str(o, "id");
        return 0;
    }
    case TC_S_RECONNECT:
        uint_field(o, "after_ms", &f->after_ms);
        f->reason = str(o, "reason");
        return 0;
    case TC_S_PTT:
        f->room = str(o, "room");
        f->state = str(o, "state");
        f->holder = str(o, "holder");
        f->reason = str(o, "reason");
        uint_field(o, "max_ms", &f->max_ms);
        return f->room && f->state ? 0 : -EINVAL;
    default:
        return 0;
    }
}

/* ---- the message fast path ------------------------------------------------------------ */

#define FAST_MAX_DEPTH 64

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int hex_val(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The code unit of the four hex digits at s[i] (i + 4 <= n), or -1. */
static long hex4(const char *s, size_t i, size_t n)
{
    long v = 0;
    if (i + 4 > n)
        return -1;
    for (size_t k = i; k < i + 4; k++) {
        int h = hex_val(s[k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* The length of the UTF-8 sequence at p (avail bytes), 0 when it is not one
 * jansson accepts: no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t len;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[k] & 0x3f);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string starting at s[i] == '"'. Returns the index after the closing
 * quote, or 0 when malformed or when jansson would refuse it (invalid UTF-8,
 * "\u0000", a lone surrogate): the fast path must accept nothing jansson
 * does not. *escaped tells whether it had escapes. */
static size_t skip_string(const char *s, size_t i, size_t n, int *escaped)
{
    i++;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)s + i, n - i);
            if (!k)
                return 0;
            i += k;
            continue;
        }
        if (c == '\\') {
            if (escaped)
                *escaped = 1;
            if (++i >= n)
                return 0;
            if (s[i] == 'u') {
                long u = hex4(s, i + 1, n), lo;
                if (u <= 0 || (u >= 0xdc00 && u <= 0xdfff))
                    return 0;
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (i + 6 >= n || s[i + 5] != '\\' || s[i + 6] != 'u' || (lo = hex4(s, i + 7, n)) < 0xdc00 ||
                        lo > 0xdfff)
                        return 0;
                    i += 6;
                }
                i += 4;
            } else if (!s[i] || !strchr("\"\\/bfnrt", s[i])) { /* strchr finds the NUL too */
                return 0;
            }
        }
        i++;
    }
    return 0;
}

/* JSON's number grammar exactly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * and what jansson can hold: an integer within int64, a real that does not
 * overflow a double. (s is NUL-terminated after n.) */
static size_t skip_number(const char *s, size_t i, size_t n)
{
    size_t start, first = i;
    int real = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0') {
        i++;
    } else {
        start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    if (i < n && s[i] == '.') {
        real = 1;
        start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        real = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    errno = 0;
    if (real) {
        double d = strtod(s + first, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            return 0;
    } else {
        strtoll(s + first, NULL, 10);
        if (errno == ERANGE)
            return 0;
    }
    return i;
}

/* Any JSON value at s[i]; returns the index after it, or 0 when malformed. */
static size_t skip_value(const char *s, size_t i, size_t n, int depth)
{
    if (i >= n || depth > FAST_MAX_DEPTH)
        return 0;
    switch (s[i]) {
    case '"':
        return skip_string(s, i, n, NULL);
    case '{':
    case '[': {
        char close = s[i] == '{' ? '}' : ']';
        int obj = s[i] == '{';
        i = skip_ws(s, i + 1, n);
        if (i < n && s[i] == close)
            return i + 1;
        for (;;) {
            if (obj) {
                if (i >= n || s[i] != '"' || !(i = skip_string(s, i, n, NULL)))
                    return 0;
                i = skip_ws(s, i, n);
                if (i >= n || s[i] != ':')
                    return 0;
                i = skip_ws(s, i + 1, n);
            }
            if (!(i = skip_value(s, i, n, depth + 1)))
                return 0;
            i = skip_ws(s, i, n);
            if (i >= n)
                return 0;
            if (s[i] == close)
                return i + 1;
            if (s[i] != ',')
                return 0;
            i = skip_ws(s, i + 1, n);
        }
    }
    case 't':
        return i + 4 <= n && !memcmp(s + i, "true", 4) ? i + 4 : 0;
    case 'f':
        return i + 5 <= n && !memcmp(s + i, "false", 5) ? i + 5 : 0;
    case 'n':
        return i + 4 <= n && !memcmp(s + i, "null", 4) ? i + 4 : 0;
    default:
        return skip_number(s, i, n);
    }
}

/* Digits at s[a..b) as a number up to INT64_MAX (what jansson holds). */
static int parse_u64(const char *s, size_t a, size_t b, uint64_t *v)
{
    uint64_t x = 0;
    if (a == b || b - a > 19)
        return -1;
    for (size_t i = a; i < b; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > INT64_MAX)
        return -1;
    *v = x;
    return 0;
}

int tc_sframe_parse_message_fast(const char *buf, size_t len, tc_sframe *f)
{
    /* Terminators are written only once the whole frame is known good,
     * so that scanning never meets one of its own NULs. */
    size_t ends[8], nends = 0, i, data_a = 0, data_b = 0;
    int have_seq = 0, is_message = 0;
    memset(f, 0, sizeof(*f));
    f->token_expires_in_ms = -1;
    char *s = malloc(len + 1);
    if (!s)
        return -EINVAL;
    memcpy(s, buf, len);
    s[len] = 0;
    i = skip_ws(s, 0, len);
    if (i >= len || s[i] != '{')
        goto bad;
    i = skip_ws(s, i + 1, len);
    while (i < len && s[i] != '}') {
        int esc = 0;
        size_t ka = i + 1, kb, va, vb;
        if (s[i] != '"' || !(kb = skip_string(s, i, len, &esc)) || esc)
            goto bad;
        size_t klen = kb - 1 - ka;
        i = skip_ws(s, kb, len);
        if (i >= len || s[i] != ':')
            goto bad;
        va = skip_ws(s, i + 1, len);
        if (!(vb = skip_value(s, va, len, 1)))
            goto bad;
#define KEY(name) (klen == sizeof(name) - 1 && !memcmp(s + ka, name, klen))
        if (KEY("type") || KEY("room") || KEY("epoch") || KEY("id") || KEY("from")) {
            esc = 0;
            if (s[va] != '"' || (skip_string(s, va, len, &esc), esc) || nends == 8)
                goto bad; /* escaped names: let jansson decode them */
            const char *str = s + va + 1;
            ends[nends++] = vb - 1;
            if (KEY("type")) {
                if (vb - va - 2 != 7 || memcmp(str, "message", 7))
                    goto bad;
                is_message = 1;
                f->type_name = str;
            } else if (KEY("room")) {
                f->room = str;
            } else if (KEY("epoch")) {
                f->epoch = str;
            } else if (KEY("id")) {
                f->id = str;
            } else {
                f->from = str;
            }
        } else if (KEY("seq")) {
            if (parse_u64(s, va, vb, &f->seq) < 0)
                goto bad;
            have_seq = 1;
        } else if (KEY("ts")) {
            uint64_t t;
            if (parse_u64(s, va + (s[va] == '-'), vb, &t) < 0)
                goto bad;
            f->ts = s[va] == '-' ? -(int64_t)t : (int64_t)t;
        } else if (KEY("data")) {
            data_a = va;
            data_b = vb;
        }
#undef KEY
        i = skip_ws(s, vb, len);
        if (i < len && s[i] == ',') {
            /* A member must follow: no trailing comma (jansson has none). */
            i = skip_ws(s, i + 1, len);
            if (i >= len || s[i] != '"')
                goto bad;
        } else if (i >= len || s[i] != '}') {
            goto bad;
        }
    }
    if (i >= len || skip_ws(s, i + 1, len) != len || !is_message || !f->room || !have_seq || f->seq == 0)
        goto bad;
    for (size_t k = 0; k < nends; k++)
        s[ends[k]] = 0;
    if (data_b) {
        /* The byte after the value is ',', '}' or a blank: never part of it. */
        s[data_b] = 0;
        f->data = s + data_a;
        f->data_len = data_b - data_a;
    } else {
        f->data = "null";
        f->data_len = 4;
    }
    f->type = TC_S_MESSAGE;
    f->own = s;
    return 0;
bad:
    free(s);
    memset(f, 0, sizeof(*f));
    f->token_expires_in_ms = -1;
    return -EINVAL;
}

int tc_sframe_parse(const char *buf, size_t len, tc_sframe *f)
{
    json_error_t err;
    static const char msg_prefix[] = "{\"type\":\"message\"";
    if (len > sizeof(msg_prefix) && !memcmp(buf, msg_prefix, sizeof(msg_prefix) - 1) &&
        tc_sframe_parse_message_fast(buf, len, f) == 0)
        return 0;
    memset(f, 0, sizeof(*f));
    f->token_expires_in_ms = -1;
    f->root = json_loadb(buf, len, 0, &err);
    if (!json_is_object(f->root))
        goto bad;
    f->type_name = str(f->root, "type");
    if (!f->type_name)
        goto bad;
    f->type = TC_S_OTHER;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(types[i].name, f->type_name) == 0) {
            f->type = types[i].type;
            break;
        }
    }
    if (parse_fields(f) < 0)
        goto bad;
    return 0;
bad:
    tc_sframe_clear(f);
    return -EINVAL;
}

void tc_sframe_clear(tc_sframe *f)
{
    json_decref(f->root);
    free(f->own);
    memset(f, 0, sizeof(*f));
    f->token_expires_in_ms = -1;
}
