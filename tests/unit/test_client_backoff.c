/* test_client_backoff.c -- the client's reconnection schedule (tc_backoff):
 * the doubling to the cap, the bounds of each jitter mode, the attempt limit
 * and the reset that only a stable connection earns.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "client/tc_backoff.h"

static void test_ceiling_doubles_to_cap(void **state)
{
    (void)state;
    tc_backoff_cfg c;
    tc_backoff_defaults(&c);
    static const uint32_t want[] = { 1000, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000 };
    for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
        assert_int_equal(tc_backoff_ceiling(&c, n), want[n]);
    /* No overflow however many attempts. */
    assert_int_equal(tc_backoff_ceiling(&c, 64), 30000);
    assert_int_equal(tc_backoff_ceiling(&c, 100000), 30000);
    c.initial_ms = 250;
    c.max_ms = 2000;
    assert_int_equal(tc_backoff_ceiling(&c, 1), 250);
    assert_int_equal(tc_backoff_ceiling(&c, 4), 2000);
    assert_int_equal(tc_backoff_ceiling(&c, 5), 2000);
}

static void test_full_jitter_bounds(void **state)
{
    (void)state;
    tc_backoff_cfg c;
    tc_rng r = { 12345 };
    tc_backoff_defaults(&c);
    for (unsigned n = 1; n <= 8; n++) {
        uint32_t ceil = tc_backoff_ceiling(&c, n), lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < 20000; i++) {
            uint32_t d = tc_backoff_delay(&c, n, tc_rng_next(&r));
            assert_true(d <= ceil);
            if (d < lo)
                lo = d;
            if (d > hi)
                hi = d;
        }
        /* Spread over the whole range, not bunched (what stops a herd). */
        assert_true(lo < ceil / 20);
        assert_true(hi > ceil - ceil / 20);
    }
    /* The extremes are reachable. */
    assert_int_equal(tc_backoff_delay(&c, 1, 0), 0);
    assert_int_equal(tc_backoff_delay(&c, 1, 1000), 1000);
    assert_int_equal(tc_backoff_delay(&c, 1, 1001), 0);
}

static void test_additive_and_no_jitter(void **state)
{
    (void)state;
    tc_backoff_cfg c;
    tc_rng r = { 99 };
    tc_backoff_defaults(&c);
    c.jitter = TC_JITTER_ADD;
    for (unsigned n = 1; n <= 8; n++) {
        uint32_t ceil = tc_backoff_ceiling(&c, n);
        for (int i = 0; i < 5000; i++) {
            uint32_t d = tc_backoff_delay(&c, n, tc_rng_next(&r));
            assert_true(d >= ceil && d <= ceil + 500);
        }
    }
    c.jitter_ms = 0;
    assert_int_equal(tc_backoff_delay(&c, 3, 777), 4000);
    c.jitter = TC_JITTER_NONE;
    for (unsigned n = 1; n <= 8; n++)
        assert_int_equal(tc_backoff_delay(&c, n, tc_rng_next(&r)), tc_backoff_ceiling(&c, n));
}

static void test_max_attempts(void **state)
{
    (void)state;
    tc_backoff_cfg c;
    tc_backoff b;
    uint32_t d = 0;
    tc_backoff_defaults(&c);
    c.jitter = TC_JITTER_NONE;
    c.max_attempts = 3;
    tc_backoff_init(&b, &c);
    assert_int_equal(tc_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 1000);
    assert_int_equal(tc_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 2000);
    assert_int_equal(tc_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 4000);
    assert_int_equal(tc_backoff_next(&b, 0, &d), -ETIMEDOUT);
    assert_int_equal(b.attempt, 3);
    tc_backoff_reset(&b);
    assert_int_equal(tc_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 1000);
    /* Unlimited by default. */
    c.max_attempts = 0;
    tc_backoff_init(&b, &c);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tc_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 30000);
}

static void test_reset_only_after_stable(void **state)
{
    (void)state;
    tc_backoff_cfg c;
    tc_backoff b;
    uint32_t d;
    tc_backoff_defaults(&c);
    c.jitter = TC_JITTER_NONE;
    tc_backoff_init(&b, &c);
    tc_backoff_next(&b, 0, &d);
    tc_backoff_next(&b, 0, &d);
    tc_backoff_next(&b, 0, &d);
    assert_int_equal(d, 4000);
    /* Up for 9.999 s: a flapping server keeps the delays growing. */
    tc_backoff_up(&b, 100000);
    tc_backoff_down(&b, 109999);
    tc_backoff_next(&b, 0, &d);
    assert_int_equal(d, 8000);
    /* Up for 10 s: stable, start over. */
    tc_backoff_up(&b, 200000);
    tc_backoff_down(&b, 210000);
    assert_int_equal(b.attempt, 0);
    tc_backoff_next(&b, 0, &d);
    assert_int_equal(d, 1000);
    /* Down without having been up changes nothing. */
    tc_backoff_down(&b, 999999);
    assert_int_equal(b.attempt, 1);
}

static void test_rng(void **state)
{
    (void)state;
    tc_rng a, b;
    tc_rng_seed(&a);
    tc_rng_seed(&b);
    assert_true(a.s != 0 && b.s != 0);
    int same = 0;
    for (int i = 0; i < 16; i++)
        same += tc_rng_next(&a) == tc_rng_next(&b);
    assert_true(same < 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceiling_doubles_to_cap), cmocka_unit_test(test_full_jitter_bounds),
        cmocka_unit_test(test_additive_and_no_jitter), cmocka_unit_test(test_max_attempts),
        cmocka_unit_test(test_reset_only_after_stable), cmocka_unit_test(test_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
