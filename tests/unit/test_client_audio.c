/* test_client_audio.c -- the audio chunk FIFO (tc_audio): order, deep
 * copies, dropping the oldest when full, and the dropped counter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/tc_audio.h"

static void push_n(tc_audio *a, int n, int from)
{
    for (int i = from; i < from + n; i++) {
        char buf[16];
        int len = snprintf(buf, sizeof(buf), "chunk%d", i);
        assert_true(tc_audio_push(a, "voice", buf, (size_t)len) >= 0);
    }
}

static void test_fifo_order(void **state)
{
    (void)state;
    tc_audio *a = tc_audio_new(10);
    assert_non_null(a);
    push_n(a, 5, 1);
    assert_int_equal(tc_audio_len(a), 5);
    for (int i = 1; i <= 5; i++) {
        const tc_audio_chunk *c = tc_audio_peek(a);
        char want[16];
        snprintf(want, sizeof(want), "chunk%d", i);
        assert_non_null(c);
        assert_int_equal(c->n, i);
        assert_int_equal(c->len, strlen(want));
        assert_memory_equal(c->data, want, c->len);
        assert_string_equal(c->room, "voice");
        assert_int_equal(tc_audio_pop(a), 0);
    }
    assert_null(tc_audio_peek(a));
    assert_int_equal(tc_audio_pop(a), -ENOENT);
    assert_int_equal(tc_audio_dropped(a), 0);
    tc_audio_free(a);
}

static void test_drop_oldest_when_full(void **state)
{
    (void)state;
    tc_audio *a = tc_audio_new(3);
    assert_int_equal(tc_audio_push(a, "r", "a", 1), 0);
    assert_int_equal(tc_audio_push(a, "r", "b", 1), 0);
    assert_int_equal(tc_audio_push(a, "r", "c", 1), 0);
    assert_int_equal(tc_audio_push(a, "r", "d", 1), 1); /* a dropped */
    assert_int_equal(tc_audio_push(a, "r", "e", 1), 1); /* b dropped */
    assert_int_equal(tc_audio_len(a), 3);
    assert_int_equal(tc_audio_dropped(a), 2);
    assert_int_equal(tc_audio_pushed(a), 5);
    const char *want = "cde";
    for (int i = 0; i < 3; i++) {
        const tc_audio_chunk *c = tc_audio_peek(a);
        assert_int_equal(c->data[0], want[i]);
        assert_int_equal(c->n, (uint64_t)(3 + i)); /* numbering shows the hole */
        tc_audio_pop(a);
    }
    tc_audio_free(a);
}

static void test_default_is_100_chunks(void **state)
{
    (void)state;
    tc_audio *a = tc_audio_new(0);
    push_n(a, 150, 1);
    assert_int_equal(tc_audio_len(a), 100);
    assert_int_equal(tc_audio_dropped(a), 50);
    assert_int_equal(tc_audio_peek(a)->n, 51);
    tc_audio_free(a);
}

static void test_deep_copy(void **state)
{
    (void)state;
    tc_audio *a = tc_audio_new(4);
    unsigned char buf[3200];
    char room[16] = "talk";
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(tc_audio_push(a, room, buf, sizeof(buf)), 0);
    memset(buf, 0, sizeof(buf));
    strcpy(room, "XXXX");
    const tc_audio_chunk *c = tc_audio_peek(a);
    assert_int_equal(c->len, sizeof(buf));
    for (size_t i = 0; i < c->len; i++)
        assert_int_equal(c->data[i], 0x5a);
    assert_string_equal(c->room, "talk");
    tc_audio_free(a);
}

static void test_rejects_bad_input(void **state)
{
    (void)state;
    tc_audio *a = tc_audio_new(4);
    static unsigned char big[TC_AUDIO_MAX_CHUNK + 1];
    assert_int_equal(tc_audio_push(a, "r", "x", 0), -EINVAL);
    assert_int_equal(tc_audio_push(a, "r", NULL, 3), -EINVAL);
    assert_int_equal(tc_audio_push(a, "", "x", 1), -EINVAL);
    assert_int_equal(tc_audio_push(a, NULL, "x", 1), -EINVAL);
    assert_int_equal(tc_audio_push(a, "r", big, sizeof(big)), -EINVAL);
    assert_int_equal(tc_audio_push(a, "r", big, sizeof(big) - 1), 0);
    assert_int_equal(tc_audio_len(a), 1);
    tc_audio_free(a);
    tc_audio_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order),  cmocka_unit_test(test_drop_oldest_when_full),
        cmocka_unit_test(test_default_is_100_chunks), cmocka_unit_test(test_deep_copy),
        cmocka_unit_test(test_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
