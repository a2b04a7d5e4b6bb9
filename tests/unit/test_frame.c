/* test_frame.c -- the client wire format (gateway/gw_frame*.c), cmocka.
 *
 * Decoding: every client frame type of docs/protocol.md in JSON and in protobuf
 * decodes to the right fields, and every validation rule answers with its
 * code (4400 invalid field, 4505 malformed, 4413 too large), keeping the
 * publish id for the error frame. Encoding: the hand-written `message` JSON is
 * compared byte for byte, the jansson-built frames are parsed back and their
 * fields asserted, and every protobuf frame is unpacked back. The publish
 * fast path (gw_frame_fast.c) agrees with the jansson path on the inputs it
 * takes and declines the ones it must leave to it.
 *
 * The gateway is a daemon, not part of libtether.a, so its two frame sources
 * are compiled into this test directly.
 */
/* Before cmocka.h: gw_frame.c has a static fail(), cmocka a fail() macro. */
#include "gateway/gw_frame.c"
#include "gateway/gw_frame_enc.c"
#include "gateway/gw_frame_fast.c"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

static const gw_limits lim = { .max_frame = 65536, .max_rooms = 256 };
static const char *why;

/* ---- helpers -------------------------------------------------------------------- */

static int dj(const char *s, gw_cframe *f)
{
    why = NULL;
    int rc = gw_decode_json(s, strlen(s), &lim, f, &why);
    if (rc)
        assert_non_null(why);
    return rc;
}

/* Decodes s and expects rejection with code; the frame is left cleared. */
static void dj_fail(const char *s, int code)
{
    gw_cframe f;
    int rc = dj(s, &f);
    if (rc != code)
        fail_msg("%s: got %d (%s), want %d", s, rc, why ? why : "-", code);
    assert_null(f.data);
    assert_null(f.token);
    assert_null(f.rooms);
    assert_int_equal(f.type, GW_C_NONE);
    gw_cframe_clear(&f);
}

static void dj_ok(const char *s, gw_cframe *f)
{
    int rc = dj(s, f);
    if (rc)
        fail_msg("%s: rejected with %d (%s)", s, rc, why);
}

static int dp(const Tether__V1__ClientFrame *cf, gw_cframe *f)
{
    uint8_t buf[70000];
    size_t n = tether__v1__client_frame__get_packed_size(cf);
    assert_true(n <= sizeof(buf));
    tether__v1__client_frame__pack(cf, buf);
    why = NULL;
    return gw_decode_proto(buf, n, &lim, f, &why);
}

/* A string of n copies of c (static, so one at a time). */
static const char *rep(char c, size_t n)
{
    static char s[70000];
    assert_true(n < sizeof(s));
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    return s;
}

/* The JSON frame in b, parsed (the buffer is released). */
static json_t *parsed(gw_buf *b)
{
    assert_non_null(b);
    assert_int_equal(b->binary, 0);
    json_error_t err;
    json_t *o = json_loadb((const char *)gw_buf_payload(b), b->len, JSON_REJECT_DUPLICATES, &err);
    if (!o)
        fail_msg("invalid JSON (%s): %.*s", err.text, (int)b->len, (const char *)gw_buf_payload(b));
    assert_true(json_is_object(o));
    gw_buf_unref(b);
    return o;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        fail_msg("field %s is not a string", k);
    return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        fail_msg("field %s is not an integer", k);
    return json_integer_value(v);
}

static int jbool(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_boolean(v))
        fail_msg("field %s is not a boolean", k);
    return json_is_true(v);
}

/* The protobuf frame in b, unpacked (the buffer is released). */
static Tether__V1__ServerFrame *unpacked(gw_buf *b, Tether__V1__ServerFrame__FrameCase want)
{
    assert_non_null(b);
    assert_int_equal(b->binary, 1);
    Tether__V1__ServerFrame *f = tether__v1__server_frame__unpack(NULL, b->len, gw_buf_payload(b));
    assert_non_null(f);
    assert_int_equal(f->frame_case, want);
    gw_buf_unref(b);
    return f;
}

/* ---- JSON: every frame type ----------------------------------------------------- */

static void test_json_hello(void **state)
{
    (void)state;
    gw_cframe f;
    dj_ok("{\"type\":\"hello\",\"token\":\"a.b.c\",\"session\":\"s_1-x\",\"client\":\"web/1\","
          "\"rooms\":{\"a\":{},\"b/c\":{\"epoch\":\"E-1\",\"seq\":7},\"d\":{\"seq\":0},\"e\":null}}",
          &f);
    assert_int_equal(f.type, GW_C_HELLO);
    assert_string_equal(f.token, "a.b.c");
    assert_string_equal(f.session, "s_1-x");
    assert_string_equal(f.client, "web/1");
    assert_true(f.has_rooms);
    assert_int_equal(f.nrooms, 4);
    assert_string_equal(f.rooms[0].room, "a");
    assert_int_equal(f.rooms[0].pos.kind, GW_POS_LIVE);
    assert_string_equal(f.rooms[1].room, "b/c");
    assert_int_equal(f.rooms[1].pos.kind, GW_POS_EXACT);
    assert_string_equal(f.rooms[1].pos.epoch, "E-1");
    assert_int_equal(f.rooms[1].pos.seq, 7);
    assert_string_equal(f.rooms[2].room, "d");
    assert_int_equal(f.rooms[2].pos.kind, GW_POS_OLDEST);
    assert_int_equal(f.rooms[3].pos.kind, GW_POS_LIVE);
    gw_cframe_clear(&f);

    /* Everything optional: a bare hello (token on the upgrade request). */
    dj_ok("{\"type\":\"hello\"}", &f);
    assert_int_equal(f.type, GW_C_HELLO);
    assert_null(f.token);
    assert_false(f.has_rooms);
    assert_string_equal(f.session, "");
    gw_cframe_clear(&f);
    dj_ok("{\"type\":\"hello\",\"rooms\":{}}", &f);
    assert_true(f.has_rooms);
    assert_int_equal(f.nrooms, 0);
    gw_cframe_clear(&f);

    dj_fail("{\"type\":\"hello\",\"token\":5}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"token\":\"\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"session\":\"a.b\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"rooms\":[\"a\"]}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"rooms\":{\"a b\":{}}}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"rooms\":{\"a\":{\"seq\":5}}}", GW_E_INVALID);
    dj_fail("{\"type\":\"hello\",\"rooms\":{\"a\":5}}", GW_E_INVALID);
    /* A duplicated room is a duplicate key. */
    dj_fail("{\"type\":\"hello\",\"rooms\":{\"a\":{},\"a\":{}}}", GW_E_MALFORMED);
}

static void test_json_hello_room_limit(void **state)
{
    (void)state;
    for (int n = 256; n <= 257; n++) {
        size_t cap = 64 + (size_t)n * 16, off = 0;
        char *s = malloc(cap);
        assert_non_null(s);
        off += (size_t)snprintf(s + off, cap - off, "{\"type\":\"hello\",\"rooms\":{");
        for (int i = 0; i < n; i++)
            off += (size_t)snprintf(s + off, cap - off, "%s\"r%d\":{}", i ? "," : "", i);
        snprintf(s + off, cap - off, "}}");
        gw_cframe f;
        int rc = dj(s, &f);
        if (n == 256) {
            assert_int_equal(rc, 0);
            assert_int_equal(f.nrooms, 256);
            assert_string_equal(f.rooms[255].room, "r255");
        } else {
            assert_int_equal(rc, GW_E_INVALID);
            assert_null(f.rooms);
        }
        gw_cframe_clear(&f);
        free(s);
    }
}

static void test_json_subscribe_positions(void **state)
{
    (void)state;
    gw_cframe f;
    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\"}", &f);
    assert_int_equal(f.type, GW_C_SUBSCRIBE);
    assert_string_equal(f.room, "r");
    assert_int_equal(f.pos.kind, GW_POS_LIVE);
    gw_cframe_clear(&f);

    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"ep_1-A\",\"seq\":42}", &f);
    assert_int_equal(f.pos.kind, GW_POS_EXACT);
    assert_string_equal(f.pos.epoch, "ep_1-A");
    assert_int_equal(f.pos.seq, 42);
    gw_cframe_clear(&f);

    /* N = 0 with an epoch is exact (from seq 1), not "oldest". */
    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\",\"seq\":0}", &f);
    assert_int_equal(f.pos.kind, GW_POS_EXACT);
    assert_int_equal(f.pos.seq, 0);
    gw_cframe_clear(&f);

    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\",\"seq\":0}", &f);
    assert_int_equal(f.pos.kind, GW_POS_OLDEST);
    assert_string_equal(f.pos.epoch, "");
    gw_cframe_clear(&f);

    /* Explicit nulls are "not given". */
    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":null,\"seq\":null}", &f);
    assert_int_equal(f.pos.kind, GW_POS_LIVE);
    gw_cframe_clear(&f);

    /* Largest seq a JSON integer holds. */
    dj_ok("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\",\"seq\":9223372036854775807}", &f);
    assert_int_equal(f.pos.seq, INT64_MAX);
    gw_cframe_clear(&f);

    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"seq\":5}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"\",\"seq\":5}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\",\"seq\":-1}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"seq\":-1}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\",\"seq\":1.5}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\",\"seq\":\"3\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":7,\"seq\":1}", GW_E_INVALID);
    dj_fail("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"e.1\",\"seq\":1}", GW_E_INVALID);
    char *s = xfmt("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"%s\",\"seq\":1}", rep('e', GW_MAX_EPOCH));
    dj_ok(s, &f);
    assert_int_equal(strlen(f.pos.epoch), GW_MAX_EPOCH);
    gw_cframe_clear(&f);
    free(s);
    s = xfmt("{\"type\":\"subscribe\",\"room\":\"r\",\"epoch\":\"%s\",\"seq\":1}", rep('e', GW_MAX_EPOCH + 1));
    dj_fail(s, GW_E_INVALID);
    free(s);
    dj_fail("{\"type\":\"subscribe\"}", GW_E_INVALID);
}

static void test_json_unsubscribe_ping_pong_bye(void **state)
{
    (void)state;
    gw_cframe f;
    dj_ok("{\"type\":\"unsubscribe\",\"room\":\"x.y\"}", &f);
    assert_int_equal(f.type, GW_C_UNSUBSCRIBE);
    assert_string_equal(f.room, "x.y");
    gw_cframe_clear(&f);
    dj_fail("{\"type\":\"unsubscribe\"}", GW_E_INVALID);

    static const struct {
        const char *s;
        gw_ctype t;
    } simple[] = {
        { "{\"type\":\"ping\"}", GW_C_PING },
        { "{\"type\":\"pong\"}", GW_C_PONG },
        { " {\"type\" : \"bye\"} ", GW_C_BYE },
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        dj_ok(simple[i].s, &f);
        assert_int_equal(f.type, simple[i].t);
        gw_cframe_clear(&f);
    }
}

static void test_json_refresh_quality(void **state)
{
    (void)state;
    gw_cframe f;
    dj_ok("{\"type\":\"refresh\",\"token\":\"x.y.z\"}", &f);
    assert_int_equal(f.type, GW_C_REFRESH);
    assert_string_equal(f.token, "x.y.z");
    gw_cframe_clear(&f);
    dj_fail("{\"type\":\"refresh\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"refresh\",\"token\":\"\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"refresh\",\"token\":[]}", GW_E_INVALID);
    char *s = xfmt("{\"type\":\"refresh\",\"token\":\"%s\"}", rep('t', 8193));
    dj_fail(s, GW_E_INVALID);
    free(s);

    dj_ok("{\"type\":\"quality\",\"rtt_ms\":42.5,\"loss_pct\":100,\"jitter_ms\":3,\"bandwidth_kbps\":1200}", &f);
    assert_int_equal(f.type, GW_C_QUALITY);
    assert_true(f.rtt_ms == 42.5 && f.loss_pct == 100 && f.jitter_ms == 3 && f.bandwidth_kbps == 1200);
    gw_cframe_clear(&f);
    dj_ok("{\"type\":\"quality\"}", &f);
    assert_true(f.rtt_ms == 0 && f.loss_pct == 0);
    gw_cframe_clear(&f);
    dj_fail("{\"type\":\"quality\",\"rtt_ms\":-1}", GW_E_INVALID);
    dj_fail("{\"type\":\"quality\",\"loss_pct\":100.5}", GW_E_INVALID);
    dj_fail("{\"type\":\"quality\",\"jitter_ms\":\"3\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"quality\",\"bandwidth_kbps\":1e10}", GW_E_INVALID);
}

static void test_json_ptt_media(void **state)
{
    (void)state;
    gw_cframe f;
    dj_ok("{\"type\":\"ptt\",\"room\":\"talk\",\"action\":\"request\"}", &f);
    assert_int_equal(f.type, GW_C_PTT);
    assert_string_equal(f.room, "talk");
    assert_string_equal(f.action, "request");
    gw_cframe_clear(&f);
    dj_ok("{\"type\":\"ptt\",\"room\":\"talk\",\"action\":\"release\"}", &f);
    assert_string_equal(f.action, "release");
    gw_cframe_clear(&f);
    dj_fail("{\"type\":\"ptt\",\"room\":\"talk\",\"action\":\"grab\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"ptt\",\"room\":\"talk\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"ptt\",\"action\":\"request\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"ptt\",\"room\":\"talk\",\"action\":\"requestrequestrequest\"}", GW_E_INVALID);

    dj_ok("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"offer\",\"sdp\":\"v=0\\r\\n\"}", &f);
    assert_int_equal(f.type, GW_C_MEDIA);
    assert_string_equal(f.action, "offer");
    assert_string_equal(f.sdp, "v=0\r\n");
    gw_cframe_clear(&f);
    dj_ok("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"candidate\",\"candidate\":\"c1\",\"mid\":\"0\"}", &f);
    assert_string_equal(f.action, "candidate");
    assert_string_equal(f.candidate, "c1");
    assert_string_equal(f.mid, "0");
    gw_cframe_clear(&f);
    /* End of candidates: no candidate. */
    dj_ok("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"candidate\"}", &f);
    assert_null(f.candidate);
    gw_cframe_clear(&f);
    dj_ok("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"leave\"}", &f);
    assert_string_equal(f.action, "leave");
    gw_cframe_clear(&f);
    dj_fail("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"offer\"}", GW_E_INVALID);
    dj_fail("{\"type\":\"media\",\"room\":\"talk\",\"action\":\"answer\",\"sdp\":\"x\"}", GW_E_INVALID);
    char *s = xfmt("{\"type\":\"media\",\"room\":\"t\",\"action\":\"candidate\",\"candidate\":\"%s\"}", rep('c', 1025));
    dj_fail(s, GW_E_INVALID);
    free(s);
}

/* ---- JSON: room and id rules ------------------------------------------------------ */

static void test_json_room_rules(void **state)
{
    (void)state;
    gw_cframe f;
    const char *good[] = { "a", "Z", "0", "a.b_c:d@e/f-g", "room.A-9_x:y@z/w", NULL };
    for (size_t i = 0; good[i]; i++) {
        char *s = xfmt("{\"type\":\"unsubscribe\",\"room\":\"%s\"}", good[i]);
        dj_ok(s, &f);
        assert_string_equal(f.room, good[i]);
        gw_cframe_clear(&f);
        free(s);
    }
    char *s = xfmt("{\"type\":\"unsubscribe\",\"room\":\"%s\"}", rep('r', GW_MAX_ROOM));
    dj_ok(s, &f);
    assert_int_equal(strlen(f.room), GW_MAX_ROOM);
    gw_cframe_clear(&f);
    free(s);
    s = xfmt("{\"type\":\"unsubscribe\",\"room\":\"%s\"}", rep('r', GW_MAX_ROOM + 1));
    dj_fail(s, GW_E_INVALID);
    free(s);

    const char *bad[] = { "", "a b", "a#b", "a+b", "a?b", "a,b", "a\\\\b", "a\\\"b", "\\u00e9", "a\\tb", "a%20b", NULL };
    for (size_t i = 0; bad[i]; i++) {
        s = xfmt("{\"type\":\"unsubscribe\",\"room\":\"%s\"}", bad[i]);
        dj_fail(s, GW_E_INVALID);
        free(s);
    }
    dj_fail("{\"type\":\"unsubscribe\",\"room\":5}", GW_E_INVALID);
    dj_fail("{\"type\":\"unsubscribe\",\"room\":null}", GW_E_INVALID);
    /* A NUL inside the name never passes for a shorter name: refused as not
     * JSON (4505) without JSON_ALLOW_NUL, as an invalid room (4400) with it. */
    int rc = dj("{\"type\":\"unsubscribe\",\"room\":\"a\\u0000b\"}", &f);
    assert_true(rc == GW_E_MALFORMED || rc == GW_E_INVALID);
    assert_string_equal(f.room, "");
    gw_cframe_clear(&f);

    assert_true(gw_valid_room("a.b_c:d@e/f-g"));
    assert_false(gw_valid_room(""));
    assert_false(gw_valid_room(rep('x', GW_MAX_ROOM + 1)));
    assert_true(gw_valid_room(rep('x', GW_MAX_ROOM)));
}

static void test_json_id_rules(void **state)
{
    (void)state;
    gw_cframe f;
    const char *good[] = { "1", "a.b_c:d-E", NULL };
    for (size_t i = 0; good[i]; i++) {
        char *s = xfmt("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"%s\",\"data\":1}", good[i]);
        dj_ok(s, &f);
        assert_string_equal(f.id, good[i]);
        gw_cframe_clear(&f);
        free(s);
    }
    char *s = xfmt("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"%s\",\"data\":1}", rep('i', GW_MAX_ID));
    dj_ok(s, &f);
    assert_int_equal(strlen(f.id), GW_MAX_ID);
    gw_cframe_clear(&f);
    free(s);
    s = xfmt("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"%s\",\"data\":1}", rep('i', GW_MAX_ID + 1));
    dj_fail(s, GW_E_INVALID);
    free(s);
    /* '@' and '/' are room characters, not id characters. */
    const char *bad[] = { "", "a@b", "a/b", "a b", "a#", "\\u00e9", NULL };
    for (size_t i = 0; bad[i]; i++) {
        s = xfmt("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"%s\",\"data\":1}", bad[i]);
        dj_fail(s, GW_E_INVALID);
        free(s);
    }
    dj_fail("{\"type\":\"publish\",\"room\":\"r\",\"id\":7,\"data\":1}", GW_E_INVALID);
    dj_fail("{\"type\":\"publish\",\"room\":\"r\",\"data\":1}", GW_E_INVALID);
    assert_false(gw_valid_id(rep('i', GW_MAX_ID + 1)));
    assert_true(gw_valid_session("S_1-z"));
    assert_false(gw_valid_session("s.1"));
}

/* ---- JSON: publish data and the error path ----------------------------------------------- */

static void test_json_publish_data_kinds(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "{ \"b\" : 1 , \"a\" : [ 1 , { } ] , \"c\" : { \"d\" : null } }", "{\"b\":1,\"a\":[1,{}],\"c\":{\"d\":null}}" },
        { "[ 1, \"two\" , [ ] , 3.5 ]", "[1,\"two\",[],3.5]" },
        { "\"h\\u00e9 \\\"q\\\" \\\\ \\n \\u0001\"", "\"h\xc3\xa9 \\\"q\\\" \\\\ \\n \\u0001\"" },
        { "-17", "-17" },
        { "1e3", "1000.0" },
        { "0.5", "0.5" },
        { "true", "true" },
        { "false", "false" },
        { "null", "null" },
        { "{}", "{}" },
        { "\"\"", "\"\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = xfmt("{\"type\":\"publish\",\"room\":\"chat\",\"id\":\"m-%zu\",\"data\":%s}", i, cases[i].in);
        gw_cframe f;
        dj_ok(s, &f);
        assert_int_equal(f.type, GW_C_PUBLISH);
        assert_string_equal(f.room, "chat");
        assert_non_null(f.data);
        assert_string_equal(f.data, cases[i].out);
        assert_int_equal(f.data_len, strlen(cases[i].out));
        gw_cframe_clear(&f);
        free(s);
    }
    dj_fail("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"1\"}", GW_E_INVALID);
    /* Duplicate keys are refused anywhere in the frame, data included. */
    dj_fail("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"1\",\"data\":{\"k\":1,\"k\":2}}", GW_E_MALFORMED);
}

static void test_json_error_keeps_id(void **state)
{
    (void)state;
    static const char *frames[] = {
        "{\"type\":\"publish\",\"id\":\"m-7\",\"room\":\"bad room\",\"data\":1}",
        "{\"type\":\"publish\",\"id\":\"m-7\",\"room\":\"r\"}",
        "{\"type\":\"publish\",\"id\":\"m-7\",\"data\":1}",
        "{\"id\":\"m-7\",\"type\":\"publish\",\"room\":7,\"data\":{}}",
    };
    gw_cframe f;
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        assert_int_equal(dj(frames[i], &f), GW_E_INVALID);
        assert_string_equal(f.id, "m-7");
        assert_null(f.data);
        assert_int_equal(f.type, GW_C_NONE);
        gw_cframe_clear(&f);
    }
    /* An invalid id is echoed as sent, so the client can match the error. */
    assert_int_equal(dj("{\"type\":\"publish\",\"id\":\"a b\",\"room\":\"r\",\"data\":1}", &f), GW_E_INVALID);
    assert_string_equal(f.id, "a b");
    gw_cframe_clear(&f);
    /* Also for a frame with an unknown type: the client learns which one failed. */
    assert_int_equal(dj("{\"type\":\"publsh\",\"id\":\"q1\"}", &f), GW_E_MALFORMED);
    assert_string_equal(f.id, "q1");
    gw_cframe_clear(&f);
    /* An id too long to be one is not kept. */
    char *s = xfmt("{\"type\":\"publish\",\"id\":\"%s\",\"room\":\"r\",\"data\":1}", rep('i', GW_MAX_ID + 1));
    assert_int_equal(dj(s, &f), GW_E_INVALID);
    assert_string_equal(f.id, "");
    gw_cframe_clear(&f);
    free(s);
}

static void test_json_malformed(void **state)
{
    (void)state;
    dj_fail("", GW_E_MALFORMED);
    dj_fail("hello", GW_E_MALFORMED);
    dj_fail("{\"type\":\"ping\"", GW_E_MALFORMED);
    dj_fail("{\"type\":\"ping\"} x", GW_E_MALFORMED);
    dj_fail("[{\"type\":\"ping\"}]", GW_E_MALFORMED);
    dj_fail("\"ping\"", GW_E_MALFORMED);
    dj_fail("42", GW_E_MALFORMED);
    dj_fail("null", GW_E_MALFORMED);
    dj_fail("{\"type\":\"teleport\"}", GW_E_MALFORMED);
    dj_fail("{\"type\":\"PING\"}", GW_E_MALFORMED);
    dj_fail("{\"type\":\"\"}", GW_E_MALFORMED);
    dj_fail("{\"room\":\"r\"}", GW_E_MALFORMED);
    dj_fail("{\"type\":5}", GW_E_MALFORMED);
    dj_fail("{\"type\":null}", GW_E_MALFORMED);
    dj_fail("{\"type\":\"ping\",\"type\":\"ping\"}", GW_E_MALFORMED);
    dj_fail("{\"type\":\"ping\",\"x\":\"\xff\"}", GW_E_MALFORMED); /* not UTF-8 */

    /* Frame size: 65536 bytes is accepted, one more is 4413 before parsing. */
    const char *head = "{\"type\":\"publish\",\"room\":\"r\",\"id\":\"1\",\"data\":\"";
    size_t fill = lim.max_frame - strlen(head) - 2;
    char *s = xfmt("%s%s\"}", head, rep('x', fill));
    assert_int_equal(strlen(s), lim.max_frame);
    gw_cframe f;
    dj_ok(s, &f);
    assert_int_equal(f.data_len, fill + 2);
    gw_cframe_clear(&f);
    free(s);
    s = xfmt("%s%s\"}", head, rep('x', fill + 1));
    dj_fail(s, GW_E_TOO_LARGE);
    free(s);
}

/* ---- protobuf decoding ------------------------------------------------------------ */

/* Protobuf-c string fields are char *; literals are const here (-Wwrite-strings). */
#define S(lit) ((char *)(lit))

/* NOLINTBEGIN(bugprone-macro-parentheses): var and field are names, not expressions */
#define CF(var, kind, field, ptr)                                  \
    Tether__V1__ClientFrame var = TETHER__V1__CLIENT_FRAME__INIT; \
    var.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_##kind;      \
    var.field = (ptr)
/* NOLINTEND(bugprone-macro-parentheses) */

/* ---- the publish fast path --------------------------------------------------------- */

/* s is taken by the fast path, with the data jansson would produce (want). */
static void fast_takes(const char *s, const char *want)
{
    gw_cframe fa, sl;
    const char *w = NULL;
    assert_int_equal(gw_decode_json_fast(s, strlen(s), &fa), 1);
    assert_int_equal(gw_decode_json_slow(s, strlen(s), &lim, &sl, &w), 0);
    assert_int_equal(fa.type, GW_C_PUBLISH);
    assert_string_equal(fa.room, sl.room);
    assert_string_equal(fa.id, sl.id);
    assert_string_equal(fa.data, sl.data);
    assert_string_equal(fa.data, want);
    assert_int_equal(fa.data_len, strlen(want));
    gw_cframe_clear(&fa);
    gw_cframe_clear(&sl);
}

static void fast_declines(const char *s)
{
    gw_cframe fa;
    memset(&fa, 0x5a, sizeof(fa));
    assert_int_equal(gw_decode_json_fast(s, strlen(s), &fa), 0);
    assert_int_equal(((unsigned char *)&fa)[0], 0x5a); /* untouched */
}

static void test_fast_publish(void **state)
{
    (void)state;
    fast_takes("{\"type\":\"publish\",\"room\":\"r1\",\"id\":\"a-1\",\"data\":{\"t\":1,\"p\":\"xx\"}}",
               "{\"t\":1,\"p\":\"xx\"}");
    fast_takes(" { \"data\" : [ 1 , -2 , true , false , null , { } , [ ] , \"\" ] ,\n\t\"id\":\"x\", \"room\":\"a.b:c@d/e-f_g\","
               "\"type\":\"publish\" } \r\n",
               "[1,-2,true,false,null,{},[],\"\"]");
    fast_takes("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":\"q\\\"b\\\\s\\n\\t\\r\\b\\f \xc3\xa9 \xf0\x9f\x98\x80\"}",
               "\"q\\\"b\\\\s\\n\\t\\r\\b\\f \xc3\xa9 \xf0\x9f\x98\x80\"");
    fast_takes("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":123456789012345678}", "123456789012345678");
    fast_takes("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":{\"a\":{\"a\":1},\"b\":{\"a\":2}}}",
               "{\"a\":{\"a\":1},\"b\":{\"a\":2}}");

    /* Left to jansson: its output would differ, or it has an error to report. */
    const char *pre = "{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":";
    const char *datas[] = {
        "1.5", "1e3", "-0", "1234567890123456789", "01", "\"\\u0041\"", "\"a\\/b\"", "\"\x01\"", "\"\xc0\x80\"",
        "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "{\"a\":1,\"a\":2}", "tru", "[1,]", "{\"a\" 1}", "",
    };
    char buf[256];
    for (size_t i = 0; i < sizeof(datas) / sizeof(datas[0]); i++) {
        snprintf(buf, sizeof(buf), "%s%s}", pre, datas[i]);
        fast_declines(buf);
    }
    fast_declines("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":1,\"x\":1}");
    fast_declines("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":1,\"id\":\"j\"}");
    fast_declines("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\"}");
    fast_declines("{\"type\":\"publish\",\"room\":\"r r\",\"id\":\"i\",\"data\":1}");
    fast_declines("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"\",\"data\":1}");
    fast_declines("{\"type\":\"publ\\u0069sh\",\"room\":\"r\",\"id\":\"i\",\"data\":1}");
    fast_declines("{\"type\":\"subscribe\",\"room\":\"r\",\"id\":\"i\",\"data\":1}");
    fast_declines("{\"type\":\"publish\",\"room\":\"r\",\"id\":\"i\",\"data\":1} x");
    /* Deeper than 32 levels. */
    char deep[200];
    int o = snprintf(deep, sizeof(deep), "%s", pre);
    for (int i = 0; i < 40; i++)
        deep[o++] = '[';
    for (int i = 0; i < 40; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = 0;
    fast_declines(deep);

    /* The compactor alone (protobuf publishes). */
    char *c = NULL;
    size_t cl = 0;
    assert_int_equal(gw_json_compact_fast(" { \"a\" : [ 1 , 2 ] } ", 21, &c, &cl), 1);
    assert_string_equal(c, "{\"a\":[1,2]}");
    assert_int_equal(cl, 11);
    free(c);
    assert_int_equal(gw_json_compact_fast("0.1", 3, &c, &cl), 0);
    assert_int_equal(gw_json_compact_fast("1 2", 3, &c, &cl), 0);
}

static void test_pb_hello(void **state)
{
    (void)state;
    Tether__V1__Position p1 = TETHER__V1__POSITION__INIT, p2 = TETHER__V1__POSITION__INIT;
    p1.epoch = S("E-1");
    p1.seq = 7;
    p1.has_seq = 1;
    p2.has_seq = 1;
    Tether__V1__Hello__RoomsEntry e[3] = { TETHER__V1__HELLO__ROOMS_ENTRY__INIT, TETHER__V1__HELLO__ROOMS_ENTRY__INIT,
                                           TETHER__V1__HELLO__ROOMS_ENTRY__INIT };
    e[0].key = S("a");
    e[1].key = S("b/c");
    e[1].value = &p1;
    e[2].key = S("d");
    e[2].value = &p2;
    Tether__V1__Hello__RoomsEntry *ep[3] = { &e[0], &e[1], &e[2] };
    Tether__V1__Hello h = TETHER__V1__HELLO__INIT;
    h.token = S("a.b.c");
    h.session = S("s_1");
    h.client = S("cli");
    h.n_rooms = 3;
    h.rooms = ep;
    CF(cf, HELLO, hello, &h);
    gw_cframe f;
    assert_int_equal(dp(&cf, &f), 0);
    assert_int_equal(f.type, GW_C_HELLO);
    assert_string_equal(f.token, "a.b.c");
    assert_string_equal(f.session, "s_1");
    assert_string_equal(f.client, "cli");
    assert_int_equal(f.nrooms, 3);
    assert_int_equal(f.rooms[0].pos.kind, GW_POS_LIVE);
    assert_string_equal(f.rooms[1].room, "b/c");
    assert_int_equal(f.rooms[1].pos.kind, GW_POS_EXACT);
    assert_string_equal(f.rooms[1].pos.epoch, "E-1");
    assert_int_equal(f.rooms[1].pos.seq, 7);
    assert_int_equal(f.rooms[2].pos.kind, GW_POS_OLDEST);
    gw_cframe_clear(&f);

    e[2].key = S("a");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    assert_null(f.rooms);
    e[2].key = S("a b");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    e[2].key = S("");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    e[2].key = S("d");
    p2.seq = 5;
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    p2.seq = 0;
    h.session = S("bad.session");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    h.session = S("");
    h.token = (char *)rep('t', 8193);
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    gw_cframe_clear(&f);

    /* The room limit. */
    Tether__V1__Hello__RoomsEntry *many = calloc(257, sizeof(*many));
    Tether__V1__Hello__RoomsEntry **mp = calloc(257, sizeof(*mp));
    char(*names)[8] = calloc(257, sizeof(*names));
    assert_true(many && mp && names);
    for (size_t i = 0; i < 257; i++) {
        tether__v1__hello__rooms_entry__init(&many[i]);
        snprintf(names[i], sizeof(names[i]), "r%zu", i);
        many[i].key = names[i];
        mp[i] = &many[i];
    }
    Tether__V1__Hello h2 = TETHER__V1__HELLO__INIT;
    h2.rooms = mp;
    h2.n_rooms = 256;
    CF(cf2, HELLO, hello, &h2);
    assert_int_equal(dp(&cf2, &f), 0);
    assert_int_equal(f.nrooms, 256);
    gw_cframe_clear(&f);
    h2.n_rooms = 257;
    assert_int_equal(dp(&cf2, &f), GW_E_INVALID);
    gw_cframe_clear(&f);
    free(many);
    free(mp);
    free(names);
}

static void test_pb_subscribe(void **state)
{
    (void)state;
    Tether__V1__Subscribe s = TETHER__V1__SUBSCRIBE__INIT;
    s.room = S("a:b@c/d-e_f.g");
    CF(cf, SUBSCRIBE, subscribe, &s);
    gw_cframe f;
    assert_int_equal(dp(&cf, &f), 0);
    assert_int_equal(f.type, GW_C_SUBSCRIBE);
    assert_string_equal(f.room, "a:b@c/d-e_f.g");
    assert_int_equal(f.pos.kind, GW_POS_LIVE);
    gw_cframe_clear(&f);

    Tether__V1__Position p = TETHER__V1__POSITION__INIT;
    s.position = &p;
    assert_int_equal(dp(&cf, &f), 0); /* has_seq false: live */
    assert_int_equal(f.pos.kind, GW_POS_LIVE);
    p.has_seq = 1;
    assert_int_equal(dp(&cf, &f), 0);
    assert_int_equal(f.pos.kind, GW_POS_OLDEST);
    p.epoch = S("ep");
    p.seq = UINT64_MAX;
    assert_int_equal(dp(&cf, &f), 0);
    assert_int_equal(f.pos.kind, GW_POS_EXACT);
    assert_string_equal(f.pos.epoch, "ep");
    assert_true(f.pos.seq == UINT64_MAX);
    p.epoch = S("");
    p.seq = 5;
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    p.epoch = S("e/1");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    p.epoch = (char *)rep('e', GW_MAX_EPOCH + 1);
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    p.epoch = S("e");
    s.room = S("");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    s.room = (char *)rep('r', GW_MAX_ROOM + 1);
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    s.room = (char *)rep('r', GW_MAX_ROOM);
    assert_int_equal(dp(&cf, &f), 0);
    gw_cframe_clear(&f);

    Tether__V1__Unsubscribe u = TETHER__V1__UNSUBSCRIBE__INIT;
    u.room = S("x");
    CF(cf2, UNSUBSCRIBE, unsubscribe, &u);
    assert_int_equal(dp(&cf2, &f), 0);
    assert_int_equal(f.type, GW_C_UNSUBSCRIBE);
    assert_string_equal(f.room, "x");
    u.room = S("x y");
    assert_int_equal(dp(&cf2, &f), GW_E_INVALID);
    gw_cframe_clear(&f);
}

static void test_pb_publish(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "{ \"b\" : 1, \"a\" : [ true ] }", "{\"b\":1,\"a\":[true]}" },
        { "[1, 2]", "[1,2]" },
        { "\"s\\\"\"", "\"s\\\"\"" },
        { "2.5", "2.5" },
        { "true", "true" },
        { "false", "false" },
        { " null ", "null" },
    };
    Tether__V1__Publish p = TETHER__V1__PUBLISH__INIT;
    p.room = S("chat");
    p.id = S("m-1");
    CF(cf, PUBLISH, publish, &p);
    gw_cframe f;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        p.data = (char *)cases[i].in;
        assert_int_equal(dp(&cf, &f), 0);
        assert_int_equal(f.type, GW_C_PUBLISH);
        assert_string_equal(f.room, "chat");
        assert_string_equal(f.id, "m-1");
        assert_string_equal(f.data, cases[i].out);
        assert_int_equal(f.data_len, strlen(cases[i].out));
        gw_cframe_clear(&f);
    }
    /* Errors keep the id. */
    const char *bad_data[] = { "", "{", "nul", "1 2", NULL };
    for (size_t i = 0; bad_data[i]; i++) {
        p.data = (char *)bad_data[i];
        assert_int_equal(dp(&cf, &f), GW_E_INVALID);
        assert_string_equal(f.id, "m-1");
        assert_null(f.data);
    }
    p.data = S("1");
    p.room = S("no room");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    assert_string_equal(f.id, "m-1");
    p.room = S("r");
    p.id = S("a@b");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    assert_string_equal(f.id, "a@b"); /* echoed as sent, so the client can match it */
    p.id = S("");
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    p.id = (char *)rep('i', GW_MAX_ID + 1);
    assert_int_equal(dp(&cf, &f), GW_E_INVALID);
    assert_string_equal(f.id, "");
    p.id = (char *)rep('i', GW_MAX_ID);
    assert_int_equal(dp(&cf, &f), 0);
    gw_cframe_clear(&f);
}

static void test_pb_other_frames(void **state)
{
    (void)state;
    gw_cframe f;
    Tether__V1__Empty e = TETHER__V1__EMPTY__INIT;
    CF(ping, PING, ping, &e);
    assert_int_equal(dp(&ping, &f), 0);
    assert_int_equal(f.type, GW_C_PING);
    CF(pong, PONG, pong, &e);
    assert_int_equal(dp(&pong, &f), 0);
    assert_int_equal(f.type, GW_C_PONG);
    CF(bye, BYE, bye, &e);
    assert_int_equal(dp(&bye, &f), 0);
    assert_int_equal(f.type, GW_C_BYE);

    Tether__V1__Refresh r = TETHER__V1__REFRESH__INIT;
    CF(ref, REFRESH, refresh, &r);
    assert_int_equal(dp(&ref, &f), GW_E_INVALID);
    r.token = S("t.o.k");
    assert_int_equal(dp(&ref, &f), 0);
    assert_int_equal(f.type, GW_C_REFRESH);
    assert_string_equal(f.token, "t.o.k");
    gw_cframe_clear(&f);

    Tether__V1__Quality q = TETHER__V1__QUALITY__INIT;
    q.rtt_ms = 10;
    q.loss_pct = 2.5;
    q.jitter_ms = 1;
    q.bandwidth_kbps = 500;
    CF(qf, QUALITY, quality, &q);
    assert_int_equal(dp(&qf, &f), 0);
    assert_int_equal(f.type, GW_C_QUALITY);
    assert_true(f.rtt_ms == 10 && f.loss_pct == 2.5 && f.jitter_ms == 1 && f.bandwidth_kbps == 500);
    q.loss_pct = 101;
    assert_int_equal(dp(&qf, &f), GW_E_INVALID);
    q.loss_pct = NAN;
    assert_int_equal(dp(&qf, &f), GW_E_INVALID);
    q.loss_pct = 0;
    q.jitter_ms = -1;
    assert_int_equal(dp(&qf, &f), GW_E_INVALID);
    q.jitter_ms = 0;
    q.rtt_ms = INFINITY;
    assert_int_equal(dp(&qf, &f), GW_E_INVALID);

    Tether__V1__Ptt t = TETHER__V1__PTT__INIT;
    t.room = S("talk");
    t.action = S("release");
    CF(pf, PTT, ptt, &t);
    assert_int_equal(dp(&pf, &f), 0);
    assert_int_equal(f.type, GW_C_PTT);
    assert_string_equal(f.action, "release");
    t.action = S("steal");
    assert_int_equal(dp(&pf, &f), GW_E_INVALID);

    Tether__V1__Media m = TETHER__V1__MEDIA__INIT;
    m.room = S("talk");
    m.action = S("offer");
    CF(mf, MEDIA, media, &m);
    assert_int_equal(dp(&mf, &f), GW_E_INVALID);
    m.sdp = S("v=0");
    assert_int_equal(dp(&mf, &f), 0);
    assert_int_equal(f.type, GW_C_MEDIA);
    assert_string_equal(f.sdp, "v=0");
    gw_cframe_clear(&f);
    m.action = S("candidate");
    m.candidate = S("cand");
    m.mid = S("audio");
    assert_int_equal(dp(&mf, &f), 0);
    assert_string_equal(f.candidate, "cand");
    assert_string_equal(f.mid, "audio");
    gw_cframe_clear(&f);
    m.action = S("leave");
    assert_int_equal(dp(&mf, &f), 0);
    m.action = S("dance");
    assert_int_equal(dp(&mf, &f), GW_E_INVALID);
    gw_cframe_clear(&f);
}

static void test_pb_malformed(void **state)
{
    (void)state;
    gw_cframe f;
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
    assert_int_equal(gw_decode_proto(garbage, sizeof(garbage), &lim, &f, &why), GW_E_MALFORMED);
    const uint8_t truncated[] = { 0x22, 0x10, 0x0a, 0x04, 'c' }; /* publish, length past the end */
    assert_int_equal(gw_decode_proto(truncated, sizeof(truncated), &lim, &f, &why), GW_E_MALFORMED);
    const uint8_t json[] = "{\"type\":\"ping\"}";
    assert_int_equal(gw_decode_proto(json, sizeof(json) - 1, &lim, &f, &why), GW_E_MALFORMED);
    /* An empty frame is a valid ClientFrame with no frame set. */
    assert_int_equal(gw_decode_proto((const uint8_t *)"", 0, &lim, &f, &why), GW_E_MALFORMED);
    Tether__V1__ClientFrame none = TETHER__V1__CLIENT_FRAME__INIT;
    assert_int_equal(dp(&none, &f), GW_E_MALFORMED);
    /* An unknown field number (a newer client's frame kind) alone is also no frame. */
    const uint8_t unknown[] = { 0xa2, 0x06, 0x00 }; /* field 100, empty bytes */
    assert_int_equal(gw_decode_proto(unknown, sizeof(unknown), &lim, &f, &why), GW_E_MALFORMED);

    static uint8_t big[65537];
    assert_int_equal(gw_decode_proto(big, sizeof(big), &lim, &f, &why), GW_E_TOO_LARGE);
    assert_string_equal(why, "frame too large");
}

/* ---- encoders ------------------------------------------------------------------- */

static void test_enc_message(void **state)
{
    (void)state;
    gw_msgv m = {
        .room = "chat/1", .epoch = "e-1", .id = "m:1", .from = "a\"b\\c\n\x01\x1f/\xc3\xa9",
        .data = "{\"x\":[1,\"y\"]}", .seq = 42, .ts = 1700000000123LL,
    };
    gw_buf *b = gw_enc_message(0, &m);
    assert_non_null(b);
    const char *want = "{\"type\":\"message\",\"room\":\"chat/1\",\"seq\":42,\"epoch\":\"e-1\",\"id\":\"m:1\","
                       "\"from\":\"a\\\"b\\\\c\\u000a\\u0001\\u001f/\xc3\xa9\",\"ts\":1700000000123,"
                       "\"data\":{\"x\":[1,\"y\"]}}";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(gw_buf_payload(b), want, strlen(want));
    json_t *o = parsed(gw_buf_ref(b));
    assert_string_equal(jstr(o, "from"), m.from);
    assert_int_equal(jint(o, "seq"), 42);
    json_decref(o);
    assert_int_equal(b->refs, 1);
    gw_buf_unref(b);

    /* Every data kind, and the extremes of seq and ts. */
    const char *datas[] = { "\"s\"", "1.5", "true", "false", "null", "[]", NULL };
    for (size_t i = 0; datas[i]; i++) {
        m.data = datas[i];
        m.seq = (uint64_t)INT64_MAX;
        m.ts = INT64_MIN;
        o = parsed(gw_enc_message(0, &m));
        char *d = json_dumps(json_object_get(o, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        assert_string_equal(d, datas[i]);
        assert_int_equal(jint(o, "ts"), INT64_MIN);
        assert_true(jint(o, "seq") == INT64_MAX);
        free(d);
        json_decref(o);
    }

    m.data = "{\"x\":1}";
    Tether__V1__ServerFrame *f = unpacked(gw_enc_message(1, &m), TETHER__V1__SERVER_FRAME__FRAME_MESSAGE);
    assert_string_equal(f->message->room, "chat/1");
    assert_string_equal(f->message->epoch, "e-1");
    assert_string_equal(f->message->id, "m:1");
    assert_string_equal(f->message->from, m.from);
    assert_string_equal(f->message->data, "{\"x\":1}");
    assert_true(f->message->seq == (uint64_t)INT64_MAX);
    assert_true(f->message->ts == INT64_MIN);
    tether__v1__server_frame__free_unpacked(f, NULL);
}

static void test_enc_welcome_subscribed(void **state)
{
    (void)state;
    json_t *o = parsed(gw_enc_welcome(0, "sess-1", "u\"1", 0, 999, 25000, 120000, 3600000));
    assert_string_equal(jstr(o, "type"), "welcome");
    assert_string_equal(jstr(o, "session"), "sess-1");
    assert_string_equal(jstr(o, "user"), "u\"1");
    assert_false(jbool(o, "resumed"));
    assert_null(json_object_get(o, "disconnected_ms"));
    assert_int_equal(jint(o, "heartbeat_ms"), 25000);
    assert_int_equal(jint(o, "session_ttl_ms"), 120000);
    assert_int_equal(jint(o, "token_expires_in_ms"), 3600000);
    json_decref(o);
    o = parsed(gw_enc_welcome(0, "sess-1", "u1", 1, 1234, 25000, 120000, 5));
    assert_true(jbool(o, "resumed"));
    assert_int_equal(jint(o, "disconnected_ms"), 1234);
    json_decref(o);
    Tether__V1__ServerFrame *f = unpacked(gw_enc_welcome(1, "sess-1", "u1", 1, 1234, 25000, 120000, 5),
                                          TETHER__V1__SERVER_FRAME__FRAME_WELCOME);
    assert_string_equal(f->welcome->session, "sess-1");
    assert_string_equal(f->welcome->user, "u1");
    assert_true(f->welcome->resumed);
    assert_int_equal(f->welcome->disconnected_ms, 1234);
    assert_int_equal(f->welcome->heartbeat_ms, 25000);
    assert_int_equal(f->welcome->session_ttl_ms, 120000);
    assert_int_equal(f->welcome->token_expires_in_ms, 5);
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_subscribed(0, "r", "e1", 10, 1, 3, NULL));
    assert_string_equal(jstr(o, "type"), "subscribed");
    assert_string_equal(jstr(o, "room"), "r");
    assert_string_equal(jstr(o, "epoch"), "e1");
    assert_int_equal(jint(o, "seq"), 10);
    assert_true(jbool(o, "recovered"));
    assert_int_equal(jint(o, "missed"), 3);
    assert_null(json_object_get(o, "gap"));
    json_decref(o);
    gw_gapv gap = { .from = 2, .first_available = 6 };
    o = parsed(gw_enc_subscribed(0, "r", "e2", 10, 0, 5, &gap));
    assert_false(jbool(o, "recovered"));
    json_t *g = json_object_get(o, "gap");
    assert_true(json_is_object(g));
    assert_int_equal(jint(g, "from"), 2);
    assert_int_equal(jint(g, "first_available"), 6);
    json_decref(o);
    f = unpacked(gw_enc_subscribed(1, "r", "e2", 10, 0, 5, &gap), TETHER__V1__SERVER_FRAME__FRAME_SUBSCRIBED);
    assert_string_equal(f->subscribed->room, "r");
    assert_string_equal(f->subscribed->epoch, "e2");
    assert_int_equal(f->subscribed->seq, 10);
    assert_false(f->subscribed->recovered);
    assert_int_equal(f->subscribed->missed, 5);
    assert_non_null(f->subscribed->gap);
    assert_int_equal(f->subscribed->gap->from, 2);
    assert_int_equal(f->subscribed->gap->first_available, 6);
    tether__v1__server_frame__free_unpacked(f, NULL);
    f = unpacked(gw_enc_subscribed(1, "r", "e2", 10, 1, 0, NULL), TETHER__V1__SERVER_FRAME__FRAME_SUBSCRIBED);
    assert_null(f->subscribed->gap);
    assert_true(f->subscribed->recovered);
    tether__v1__server_frame__free_unpacked(f, NULL);
}

static void test_enc_ack_error_gap(void **state)
{
    (void)state;
    json_t *o = parsed(gw_enc_ack(0, "m-1", "r", 77, 1));
    assert_string_equal(jstr(o, "type"), "ack");
    assert_string_equal(jstr(o, "id"), "m-1");
    assert_string_equal(jstr(o, "room"), "r");
    assert_int_equal(jint(o, "seq"), 77);
    assert_true(jbool(o, "duplicate"));
    json_decref(o);
    Tether__V1__ServerFrame *f = unpacked(gw_enc_ack(1, "m-1", "r", 77, 0), TETHER__V1__SERVER_FRAME__FRAME_ACK);
    assert_string_equal(f->ack->id, "m-1");
    assert_string_equal(f->ack->room, "r");
    assert_int_equal(f->ack->seq, 77);
    assert_false(f->ack->duplicate);
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_error(0, GW_E_INVALID, "bad \"room\"\n", "m-2"));
    assert_string_equal(jstr(o, "type"), "error");
    assert_int_equal(jint(o, "code"), 4400);
    assert_string_equal(jstr(o, "reason"), "bad \"room\"\n");
    assert_string_equal(jstr(o, "id"), "m-2");
    json_decref(o);
    o = parsed(gw_enc_error(0, GW_E_MALFORMED, "not JSON", NULL));
    assert_null(json_object_get(o, "id"));
    json_decref(o);
    o = parsed(gw_enc_error(0, GW_E_MALFORMED, "not JSON", ""));
    assert_null(json_object_get(o, "id"));
    json_decref(o);
    f = unpacked(gw_enc_error(1, GW_E_TOO_LARGE, "frame too large", NULL), TETHER__V1__SERVER_FRAME__FRAME_ERROR);
    assert_int_equal(f->error->code, 4413);
    assert_string_equal(f->error->reason, "frame too large");
    assert_string_equal(f->error->id, "");
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_gap(0, "r", 5, 9));
    assert_string_equal(jstr(o, "type"), "gap");
    assert_string_equal(jstr(o, "room"), "r");
    assert_int_equal(jint(o, "from"), 5);
    assert_int_equal(jint(o, "to"), 9);
    json_decref(o);
    f = unpacked(gw_enc_gap(1, "r", 5, 9), TETHER__V1__SERVER_FRAME__FRAME_GAP);
    assert_string_equal(f->gap->room, "r");
    assert_int_equal(f->gap->from, 5);
    assert_int_equal(f->gap->to, 9);
    tether__v1__server_frame__free_unpacked(f, NULL);
}

static void test_enc_presence_ptt(void **state)
{
    (void)state;
    json_t *o = parsed(gw_enc_presence(0, "r", "u1", "online", NULL, 0));
    assert_string_equal(jstr(o, "type"), "presence");
    assert_string_equal(jstr(o, "room"), "r");
    assert_string_equal(jstr(o, "user"), "u1");
    assert_string_equal(jstr(o, "state"), "online");
    assert_null(json_object_get(o, "members"));
    json_decref(o);
    gw_member mem[] = { { "u1", "online" }, { "u\"2", "reconnecting" } };
    o = parsed(gw_enc_presence(0, "r", NULL, NULL, mem, 2));
    json_t *a = json_object_get(o, "members");
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(jstr(json_array_get(a, 1), "user"), "u\"2");
    assert_string_equal(jstr(json_array_get(a, 1), "state"), "reconnecting");
    assert_null(json_object_get(o, "user"));
    json_decref(o);
    o = parsed(gw_enc_presence(0, "r", NULL, NULL, mem, 0));
    assert_int_equal(json_array_size(json_object_get(o, "members")), 0);
    json_decref(o);
    Tether__V1__ServerFrame *f =
        unpacked(gw_enc_presence(1, "r", NULL, NULL, mem, 2), TETHER__V1__SERVER_FRAME__FRAME_PRESENCE);
    assert_int_equal(f->presence->n_members, 2);
    assert_string_equal(f->presence->members[0]->user, "u1");
    assert_string_equal(f->presence->members[1]->state, "reconnecting");
    tether__v1__server_frame__free_unpacked(f, NULL);
    f = unpacked(gw_enc_presence(1, "r", "u9", "offline", NULL, 0), TETHER__V1__SERVER_FRAME__FRAME_PRESENCE);
    assert_string_equal(f->presence->user, "u9");
    assert_string_equal(f->presence->state, "offline");
    assert_int_equal(f->presence->n_members, 0);
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_ptt(0, "talk", "granted", "u1", 30000, NULL));
    assert_string_equal(jstr(o, "type"), "ptt");
    assert_string_equal(jstr(o, "room"), "talk");
    assert_string_equal(jstr(o, "state"), "granted");
    assert_string_equal(jstr(o, "holder"), "u1");
    assert_int_equal(jint(o, "max_ms"), 30000);
    assert_null(json_object_get(o, "reason"));
    json_decref(o);
    o = parsed(gw_enc_ptt(0, "talk", "denied", NULL, 0, "busy"));
    assert_null(json_object_get(o, "holder"));
    assert_null(json_object_get(o, "max_ms"));
    assert_string_equal(jstr(o, "reason"), "busy");
    json_decref(o);
    f = unpacked(gw_enc_ptt(1, "talk", "taken", "u2", 100, NULL), TETHER__V1__SERVER_FRAME__FRAME_PTT);
    assert_string_equal(f->ptt->room, "talk");
    assert_string_equal(f->ptt->state, "taken");
    assert_string_equal(f->ptt->holder, "u2");
    assert_int_equal(f->ptt->max_ms, 100);
    assert_string_equal(f->ptt->reason, "");
    tether__v1__server_frame__free_unpacked(f, NULL);
}

static void test_enc_other(void **state)
{
    (void)state;
    json_t *o = parsed(gw_enc_simple(0, GW_C_PING));
    assert_string_equal(jstr(o, "type"), "ping");
    assert_int_equal(json_object_size(o), 1);
    json_decref(o);
    o = parsed(gw_enc_simple(0, GW_C_PONG));
    assert_string_equal(jstr(o, "type"), "pong");
    json_decref(o);
    Tether__V1__ServerFrame *f = unpacked(gw_enc_simple(1, GW_C_PING), TETHER__V1__SERVER_FRAME__FRAME_PING);
    tether__v1__server_frame__free_unpacked(f, NULL);
    f = unpacked(gw_enc_simple(1, GW_C_PONG), TETHER__V1__SERVER_FRAME__FRAME_PONG);
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_reconnect(0, 1500, "drain"));
    assert_string_equal(jstr(o, "type"), "reconnect");
    assert_int_equal(jint(o, "after_ms"), 1500);
    assert_string_equal(jstr(o, "reason"), "drain");
    json_decref(o);
    f = unpacked(gw_enc_reconnect(1, 1500, "drain"), TETHER__V1__SERVER_FRAME__FRAME_RECONNECT);
    assert_int_equal(f->reconnect->after_ms, 1500);
    tether__v1__server_frame__free_unpacked(f, NULL);

    const char *recs[] = { "lower bitrate", "use wired" };
    o = parsed(gw_enc_quality(0, "poor", recs, 2));
    assert_string_equal(jstr(o, "quality"), "poor");
    assert_int_equal(json_array_size(json_object_get(o, "recommendations")), 2);
    json_decref(o);
    f = unpacked(gw_enc_quality(1, "fair", recs, 2), TETHER__V1__SERVER_FRAME__FRAME_QUALITY);
    assert_string_equal(f->quality->quality, "fair");
    assert_int_equal(f->quality->n_recommendations, 2);
    assert_string_equal(f->quality->recommendations[1], "use wired");
    tether__v1__server_frame__free_unpacked(f, NULL);

    o = parsed(gw_enc_media(0, "talk", "answer", "v=0\r\n", NULL, NULL, NULL));
    assert_string_equal(jstr(o, "action"), "answer");
    assert_string_equal(jstr(o, "sdp"), "v=0\r\n");
    assert_null(json_object_get(o, "candidate"));
    json_decref(o);
    f = unpacked(gw_enc_media(1, "talk", "restart", NULL, NULL, NULL, "ice failed"), TETHER__V1__SERVER_FRAME__FRAME_MEDIA);
    assert_string_equal(f->media->action, "restart");
    assert_string_equal(f->media->reason, "ice failed");
    tether__v1__server_frame__free_unpacked(f, NULL);

    /* Refcounting: a frame shared by two connections lives until both let go. */
    gw_buf *b = gw_buf_new(3, 0);
    assert_non_null(b);
    /* Through a volatile, or gcc takes the second unref for a use after free. */
    gw_buf *volatile other = gw_buf_ref(b);
    assert_ptr_equal(other, b);
    assert_int_equal(b->refs, 2);
    gw_buf_unref(b);
    assert_int_equal(other->refs, 1);
    gw_buf_unref(other);
    gw_buf_unref(NULL);
    assert_null(gw_buf_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_hello),
        cmocka_unit_test(test_json_hello_room_limit),
        cmocka_unit_test(test_json_subscribe_positions),
        cmocka_unit_test(test_json_unsubscribe_ping_pong_bye),
        cmocka_unit_test(test_json_refresh_quality),
        cmocka_unit_test(test_json_ptt_media),
        cmocka_unit_test(test_json_room_rules),
        cmocka_unit_test(test_json_id_rules),
        cmocka_unit_test(test_json_publish_data_kinds),
        cmocka_unit_test(test_json_error_keeps_id),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_fast_publish),
        cmocka_unit_test(test_pb_hello),
        cmocka_unit_test(test_pb_subscribe),
        cmocka_unit_test(test_pb_publish),
        cmocka_unit_test(test_pb_other_frames),
        cmocka_unit_test(test_pb_malformed),
        cmocka_unit_test(test_enc_message),
        cmocka_unit_test(test_enc_welcome_subscribed),
        cmocka_unit_test(test_enc_ack_error_gap),
        cmocka_unit_test(test_enc_presence_ptt),
        cmocka_unit_test(test_enc_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
