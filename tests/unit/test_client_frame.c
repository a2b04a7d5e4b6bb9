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
    assert_string_equal(f.data, "{\"x\":[1,\"two\"]}");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_positions), cmocka_unit_test(test_client_frames),
        cmocka_unit_test(test_validators),      cmocka_unit_test(test_server_frames),
        cmocka_unit_test(test_rejects_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
