/* test_client_api.c -- the SDK's public calls on a client that is not
 * running (never connected, closed by the application): every call that
 * could only queue work nothing would ever send returns -ENOTCONN, argument
 * errors stay -EINVAL, and nothing is left queued. No network is used: the
 * client is never started, or started against a closed loopback port. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "client/tether_client.h"

typedef struct fixture {
    tc_loop *l;
    tc_client *c;
} fixture;

static int setup(void **state)
{
    static fixture f;
    tc_options o;
    f.l = tc_loop_new();
    assert_non_null(f.l);
    tc_options_init(&o);
    o.url = "ws://127.0.0.1:1/ws";
    o.token = "not.a.token";
    f.c = tc_client_new(f.l, &o);
    assert_non_null(f.c);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tc_client_free(f->c);
    tc_loop_free(f->l);
    return 0;
}

static void assert_nothing_queued(tc_client *c)
{
    tc_stats st;
    tc_get_stats(c, &st);
    assert_int_equal(st.outbox_len, 0);
    assert_int_equal(st.audio_buffered, 0);
}

static void test_never_connected(void **state)
{
    fixture *f = *state;
    const unsigned char chunk[4] = { 1, 2, 3, 4 };
    assert_int_equal(tc_get_state(f->c), TC_DISCONNECTED);
    assert_int_equal(tc_audio_send(f->c, "voice", chunk, sizeof(chunk)), -ENOTCONN);
    assert_int_equal(tc_publish(f->c, "room", "{\"a\":1}", NULL, NULL, 0), -ENOTCONN);
    assert_int_equal(tc_ptt_request(f->c, "voice"), -ENOTCONN);
    assert_int_equal(tc_ptt_release(f->c, "voice"), -ENOTCONN);
    assert_int_equal(tc_send_quality(f->c, 10, 0.5, 2, 100), -ENOTCONN);
    assert_int_equal(tc_floor_state_of(f->c, "voice"), TC_FLOOR_IDLE);
    assert_nothing_queued(f->c);
    /* Argument errors are still said as such. */
    assert_int_equal(tc_audio_send(f->c, "voice", NULL, 4), -EINVAL);
    assert_int_equal(tc_audio_send(f->c, "voice", chunk, 0), -EINVAL);
    assert_int_equal(tc_audio_send(f->c, "bad room", chunk, sizeof(chunk)), -EINVAL);
    assert_int_equal(tc_publish(f->c, "room", "{nope", NULL, NULL, 0), -EINVAL);
    assert_int_equal(tc_ptt_request(f->c, NULL), -EINVAL);
    /* Subscribing offline is documented to wait for the next hello. */
    assert_int_equal(tc_subscribe(f->c, "room", NULL, 0, 0), 0);
    assert_int_equal(tc_position(f->c, "room", NULL, 0, NULL), 0);
    assert_int_equal(tc_position(f->c, "other", NULL, 0, NULL), -ENOENT);
}

static void test_queues_while_connecting_then_refuses_after_disconnect(void **state)
{
    fixture *f = *state;
    const unsigned char chunk[4] = { 1, 2, 3, 4 };
    assert_int_equal(tc_connect(f->c), 0);
    assert_int_not_equal(tc_get_state(f->c), TC_DISCONNECTED);
    assert_int_not_equal(tc_get_state(f->c), TC_FAILED);
    /* A connection is under way (or being retried): work is queued. */
    assert_int_equal(tc_publish(f->c, "room", "{\"a\":1}", "id-1", NULL, 0), 0);
    assert_int_equal(tc_audio_send(f->c, "voice", chunk, sizeof(chunk)), 0);
    tc_stats st;
    tc_get_stats(f->c, &st);
    assert_int_equal(st.outbox_len, 1);
    assert_int_equal(st.audio_buffered, 1);
    assert_int_equal(tc_disconnect(f->c, 0), 0);
    for (int i = 0; i < 50 && tc_get_state(f->c) != TC_DISCONNECTED; i++)
        tc_loop_service(f->l, 20);
    assert_int_equal(tc_get_state(f->c), TC_DISCONNECTED);
    assert_int_equal(tc_publish(f->c, "room", "{\"a\":2}", "id-2", NULL, 0), -ENOTCONN);
    assert_int_equal(tc_audio_send(f->c, "voice", chunk, sizeof(chunk)), -ENOTCONN);
    assert_int_equal(tc_ptt_request(f->c, "voice"), -ENOTCONN);
    tc_get_stats(f->c, &st);
    assert_int_equal(st.outbox_len, 1); /* kept for the next tc_connect */
    assert_int_equal(st.audio_buffered, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_never_connected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queues_while_connecting_then_refuses_after_disconnect, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
