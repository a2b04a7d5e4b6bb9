/* test_client_frame.c -- the client's tether.v1.json frames (tc_frame):
 * what it sends, parsed back; what it accepts from the server, and what it
 * rejects (the network is untrusted). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/tc_frame.h"

static json_t *parse(char *text)
{
    assert_non_null(text);
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(o);
    return o;
}

static void test_hello_positions(void **state)
{
    (void)state;
    tc_hello_room rooms[3] = {
        { "live", { NULL, 0, 0 } }, { "oldest", { NULL, 1, 0 } }, { "exact", { "E1", 1, 42 } },
    };
    json_t *o = parse(tc_frame_hello("tok", "sess", "tether-c/1", rooms, 3));
    assert_string_equal(json_string_value(json_object_get(o, "type")), "hello");
    assert_string_equal(json_string_value(json_object_get(o, "token")), "tok");
    assert_string_equal(json_string_value(json_object_get(o, "session")), "sess");
    json_t *r = json_object_get(o, "rooms");
    assert_int_equal(json_object_size(json_object_get(r, "live")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "oldest"), "seq")), 0);
    assert_null(json_object_get(json_object_get(r, "oldest"), "epoch"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "exact"), "epoch")), "E1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "exact"), "seq")), 42);
    json_decref(o);
    /* No session, no rooms: neither key. */
    o = parse(tc_frame_hello("tok", "", NULL, NULL, 0));
    assert_null(json_object_get(o, "session"));
    assert_null(json_object_get(o, "rooms"));
    json_decref(o);
}

static void test_client_frames(void **state)
{
    (void)state;
    json_t *o = parse(tc_frame_publish("chat/1", "id-1", "{\"a\":[1,2]}"));
    assert_string_equal(json_string_value(json_object_get(o, "id")), "id-1");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(o, "data"), "a"), 1)), 2);
    json_decref(o);
    assert_null(tc_frame_publish("bad room", "x", "1"));
    assert_null(tc_frame_publish("r", "bad\"id", "1"));
    tc_pos p = { "E", 1, 9 };
    o = parse(tc_frame_subscribe("r", &p));
    assert_string_equal(json_string_value(json_object_get(o, "epoch")), "E");
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 9);
    json_decref(o);
    o = parse(tc_frame_ptt("talk", "request"));
    assert_string_equal(json_string_value(json_object_get(o, "action")), "request");
    json_decref(o);
    o = parse(tc_frame_refresh("t\"ok"));
    assert_string_equal(json_string_value(json_object_get(o, "token")), "t\"ok");
    json_decref(o);
    char *c = tc_json_compact(" { \"b\" : 1 , \"a\" : \"x\" } ");
    assert_string_equal(c, "{\"b\":1,\"a\":\"x\"}");
    free(c);
    c = tc_json_compact("42");
    assert_string_equal(c, "42");
    free(c);
    assert_null(tc_json_compact("{nope"));
}

static void test_validators(void **state)
{
    (void)state;
    char longest[130];
    memset(longest, 'a', 128);
    longest[128] = 0;
    assert_true(tc_valid_room(longest));
    longest[128] = 'a';
    longest[129] = 0;
    assert_false(tc_valid_room(longest));
    assert_false(tc_valid_room(""));
    assert_true(tc_valid_room("a.b_c:d@e/f-g"));
    assert_false(tc_valid_room("a b"));
    assert_true(tc_valid_id("a.b_c:d-e"));
    assert_false(tc_valid_id("a/b"));
    assert_false(tc_valid_id("a@b"));
    memset(longest, 'x', 65);
    longest[65] = 0;
    assert_false(tc_valid_id(longest));
    longest[64] = 0;
    assert_true(tc_valid_id(longest));
}

static void test_server_frames(void **state)
{
    (void)state;
    tc_sframe f;
    const char *w = "{\"type\":\"welcome\",\"session\":\"S\",\"user\":\"u\",\"resumed\":true,\"disconnected_ms\":1500,"
                    "\"heartbeat_ms\":25000,\"session_ttl_ms\":120000,\"token_expires_in_ms\":3000}";
    assert_int_equal(tc_sframe_parse(w, strlen(w), &f), 0);
    assert_int_equal(f.type, TC_S_WELCOME);
    assert_true(f.resumed);
    assert_int_equal(f.disconnected_ms, 1500);
    assert_int_equal(f.token_expires_in_ms, 3000);
    tc_sframe_clear(&f);
    const char *s = "{\"type\":\"subscribed\",\"room\":\"r\",\"epoch\":\"E\",\"seq\":20,\"recovered\":false,"
                    "\"missed\":6,\"gap\":{\"from\":8,\"first_available\":15}}";
    assert_int_equal(tc_sframe_parse(s, strlen(s), &f), 0);
    assert_int_equal(f.type, TC_S_SUBSCRIBED);
    assert_false(f.recovered);
    assert_true(f.has_gap);
    assert_int_equal(f.gap_from, 8);
    assert_int_equal(f.gap_first_available, 15);
    assert_int_equal(f.missed, 6);
    tc_sframe_clear(&f);
    const char *m = "{\"type\":\"message\",\"room\":\"r\",\"seq\":3,\"epoch\":\"E\",\"id\":\"i\",\"from\":\"u\","
                    "\"ts\":1700000000000,\"data\":{ \"x\" : [1, \"two\"] }}";
    assert_int_equal(tc_sframe_parse(m, strlen(m), &f), 0);
    assert_int_equal(f.type, TC_S_MESSAGE);
    assert_string_equal(f.data, "{ \"x\" : [1, \"two\"] }");  /* as sent */
    assert_int_equal(f.data_len, strlen(f.data));
    assert_int_equal(f.ts, 1700000000000LL);
    tc_sframe_clear(&f);
    const char *k = "{\"type\":\"ack\",\"id\":\"i\",\"room\":\"r\",\"seq\":4,\"duplicate\":true}";
    assert_int_equal(tc_sframe_parse(k, strlen(k), &f), 0);
    assert_true(f.duplicate);
    tc_sframe_clear(&f);
    const char *rc = "{\"type\":\"reconnect\",\"after_ms\":1234,\"reason\":\"server draining\"}";
    assert_int_equal(tc_sframe_parse(rc, strlen(rc), &f), 0);
    assert_int_equal(f.type, TC_S_RECONNECT);
    assert_int_equal(f.after_ms, 1234);
    tc_sframe_clear(&f);
    const char *p = "{\"type\":\"ptt\",\"room\":\"talk\",\"state\":\"granted\",\"holder\":\"me\",\"max_ms\":60000}";
    assert_int_equal(tc_sframe_parse(p, strlen(p), &f), 0);
    assert_string_equal(f.state, "granted");
    assert_int_equal(f.max_ms, 60000);
    tc_sframe_clear(&f);
    const char *pr = "{\"type\":\"presence\",\"room\":\"r\",\"members\":[]}";
    assert_int_equal(tc_sframe_parse(pr, strlen(pr), &f), 0);
    assert_int_equal(f.type, TC_S_OTHER);
    assert_string_equal(f.type_name, "presence");
    tc_sframe_clear(&f);
}

static void test_rejects_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "", "not json", "[1,2]", "{\"no\":\"type\"}", "{\"type\":7}",
        "{\"type\":\"message\",\"room\":\"r\",\"epoch\":\"E\"}",                 /* no seq */
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":0,\"epoch\":\"E\"}",        /* seq 0 */
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":-3,\"epoch\":\"E\"}",       /* negative */
        "{\"type\":\"subscribed\",\"room\":\"r\",\"seq\":1}",                    /* no epoch */
        "{\"type\":\"welcome\",\"user\":\"u\"}",                                  /* no session */
        "{\"type\":\"gap\",\"room\":\"r\",\"from\":5,\"to\":4}",                 /* backwards */
        "{\"type\":\"ack\",\"seq\":1}",                                           /* no id */
        "{\"type\":\"ptt\",\"room\":\"r\"}",                                      /* no state */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_sframe f;
        assert_int_equal(tc_sframe_parse(bad[i], strlen(bad[i]), &f), -EINVAL);
        assert_null(f.root);
    }
}

/* The fast path must agree with jansson on everything it accepts. */
static void check_same(const char *text)
{
    tc_sframe f;
    json_t *ref = json_loads(text, 0, NULL);
    assert_non_null(ref);
    assert_int_equal(tc_sframe_parse_message_fast(text, strlen(text), &f), 0);
    assert_null(f.root);
    assert_string_equal(f.room, json_string_value(json_object_get(ref, "room")));
    assert_int_equal(f.seq, json_integer_value(json_object_get(ref, "seq")));
    assert_int_equal(f.ts, json_integer_value(json_object_get(ref, "ts")));
    if (json_object_get(ref, "epoch"))
        assert_string_equal(f.epoch, json_string_value(json_object_get(ref, "epoch")));
    json_t *d = json_loads(f.data, JSON_DECODE_ANY, NULL);
    json_t *want = json_object_get(ref, "data");
    assert_non_null(d);
    assert_true(json_equal(d, want ? want : json_null()));
    assert_int_equal(f.data_len, strlen(f.data));
    json_decref(d);
    json_decref(ref);
    tc_sframe_clear(&f);
}

static void test_fast_path_matches_jansson(void **state)
{
    (void)state;
    check_same("{\"type\":\"message\",\"room\":\"r\",\"seq\":7,\"epoch\":\"E\",\"id\":\"a-1\",\"from\":\"u\","
               "\"ts\":1700000000123,\"data\":{\"t\":123,\"p\":\"xx\"}}");
    check_same("{\"type\":\"message\",\"data\":[1,-2.5e3,true,false,null,\"a\\\"b\\\\c\\u00e9\",{}],"
               "\"seq\":18446744073709551,\"room\":\"a/b:c@d\",\"ts\":-5,\"extra\":{\"k\":[[]]}}");
    check_same(" {\"type\":\"message\" , \"room\" : \"r\" , \"seq\" : 1 , \"data\" : \"s\" } ");
    check_same("{\"type\":\"message\",\"room\":\"r\",\"seq\":2}"); /* no data: null */
    check_same("{\"type\":\"message\",\"room\":\"r\",\"seq\":3,\"from\":\"J\xc3\xbcrgen\","
               "\"data\":[\"\\ud83d\\ude00\xf0\x9f\x98\x80\",1e-400,-9223372036854775808]}");
    /* Declined (jansson's job): escapes in a name, other types, bad JSON. */
    static const char *declined[] = {
        "{\"type\":\"message\",\"room\":\"r\",\"from\":\"\\u0041\",\"seq\":1}",
        "{\"type\":\"ack\",\"id\":\"i\",\"seq\":1}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":[1,]}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":tru}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1} x",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1.5}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":0}",
        "{\"type\":\"message\",\"room\":\"r\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"unterminated}",
        /* What jansson refuses (found by fuzz_client): invalid UTF-8, an
         * escaped NUL, a lone surrogate, numbers it cannot hold. */
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"from\":\"\xff\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"\xc3(\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"\xed\xa0\x80\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"a\\u0000b\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"\\ud800\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"\\udc00\\ud800\"}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":9223372036854775808}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"ts\":-9223372036854775808}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":1e400}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":[99999999999999999999]}",
        "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":\"x\" ,}",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        tc_sframe f;
        assert_int_equal(tc_sframe_parse_message_fast(declined[i], strlen(declined[i]), &f), -EINVAL);
        assert_null(f.own);
    }
    /* A backslash before a NUL byte is no escape (found by fuzz_client). */
    static const char nul_esc[] = "{\"type\":\"message\",\"room\":\"r\",\"seq\":1,\"data\":{\"\\\0\":1}}";
    tc_sframe g;
    assert_int_equal(tc_sframe_parse_message_fast(nul_esc, sizeof(nul_esc) - 1, &g), -EINVAL);
    assert_int_equal(tc_sframe_parse(nul_esc, sizeof(nul_esc) - 1, &g), -EINVAL);
    /* The escaped name still parses, through jansson, unescaped. */
    tc_sframe f;
    const char *esc = "{\"type\":\"message\",\"room\":\"r\",\"from\":\"\\u0041\",\"seq\":1,\"epoch\":\"E\"}";
    assert_int_equal(tc_sframe_parse(esc, strlen(esc), &f), 0);
    assert_string_equal(f.from, "A");
    tc_sframe_clear(&f);
}

/* Random ASCII damage to a valid frame: never a crash or an overread, and
 * whatever the fast path accepts has JSON data. */
static void test_fast_path_mutations(void **state)
{
    (void)state;
    static const char base[] = "{\"type\":\"message\",\"room\":\"r\",\"seq\":12,\"epoch\":\"E\",\"id\":\"i\","
                               "\"from\":\"u\",\"ts\":5,\"data\":{\"a\":[1,{\"b\":\"c\\n\"}],\"d\":-1.5e-3}}";
    static const char alphabet[] = "{}[]\":,\\ ntrufalse0123456789-.eE+xu\t";
    uint64_t r = 88172645463325252ull;
    unsigned accepted = 0;
    for (int it = 0; it < 20000; it++) {
        char buf[sizeof(base)];
        size_t len = sizeof(base) - 1;
        memcpy(buf, base, sizeof(base));
        int muts = 1 + (int)(r % 3);
        for (int m = 0; m < muts && len > 0; m++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            size_t pos = (size_t)(r % len);
            if (r % 5 == 0)
                len = pos; /* truncate */
            else
                buf[pos] = alphabet[(r >> 20) % (sizeof(alphabet) - 1)];
        }
        char *heap = malloc(len ? len : 1); /* exact size: an overread shows under ASan */
        memcpy(heap, buf, len);
        tc_sframe f;
        if (tc_sframe_parse_message_fast(heap, len, &f) == 0) {
            json_t *d = json_loads(f.data, JSON_DECODE_ANY, NULL);
            assert_non_null(d);
            json_decref(d);
            accepted++;
            tc_sframe_clear(&f);
        }
        if (tc_sframe_parse(heap, len, &f) == 0)
            tc_sframe_clear(&f);
        free(heap);
    }
    assert_true(accepted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_positions), cmocka_unit_test(test_client_frames),
        cmocka_unit_test(test_validators),      cmocka_unit_test(test_server_frames),
        cmocka_unit_test(test_rejects_malformed), cmocka_unit_test(test_fast_path_matches_jansson),
        cmocka_unit_test(test_fast_path_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
