/* test_replayd_known.c -- replayd/rd_known.c, cmocka: the floors replayd
 * remembers per room (the highest seq it handed out, with its epoch) only
 * ever go up within an epoch, a new epoch replaces the old one, nonsense is
 * not remembered, and the bound forgets everything rather than grow.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "replayd/rd_known.c"

static void test_note_and_get(void **state)
{
    (void)state;
    rd_known *k = rd_known_new(10);
    assert_non_null(k);
    const char *ep = NULL;
    uint64_t seq = 0;
    assert_int_equal(rd_known_get(k, "a", &ep, &seq), 0);
    rd_known_note(k, "a", "00000000000000000001", 5);
    assert_int_equal(rd_known_get(k, "a", &ep, &seq), 1);
    assert_string_equal(ep, "00000000000000000001");
    assert_int_equal(seq, 5);
    /* Within an epoch the floor only goes up (answers can come back out of
     * order across calls, and a duplicate's older seq is no news). */
    rd_known_note(k, "a", "00000000000000000001", 3);
    assert_int_equal(rd_known_get(k, "a", &ep, &seq), 1);
    assert_int_equal(seq, 5);
    rd_known_note(k, "a", "00000000000000000001", 9);
    rd_known_get(k, "a", &ep, &seq);
    assert_int_equal(seq, 9);
    /* A new epoch starts over, lower seq and all. */
    rd_known_note(k, "a", "00000000000000000002", 1);
    rd_known_get(k, "a", &ep, &seq);
    assert_string_equal(ep, "00000000000000000002");
    assert_int_equal(seq, 1);
    /* A duplicate's answer raises within the known epoch only. */
    rd_known_raise(k, "a", "00000000000000000001", 50);
    rd_known_get(k, "a", &ep, &seq);
    assert_string_equal(ep, "00000000000000000002");
    assert_int_equal(seq, 1);
    rd_known_raise(k, "a", "00000000000000000002", 4);
    rd_known_get(k, "a", &ep, &seq);
    assert_int_equal(seq, 4);
    rd_known_raise(k, "a", "00000000000000000002", 2);
    rd_known_get(k, "a", &ep, &seq);
    assert_int_equal(seq, 4);
    rd_known_raise(k, "zz", "00000000000000000002", 2);
    assert_int_equal(rd_known_get(k, "zz", &ep, &seq), 0);
    /* Rooms are independent. */
    assert_int_equal(rd_known_get(k, "b", &ep, &seq), 0);
    assert_int_equal(rd_known_count(k), 1);
    rd_known_free(k);
}

static void test_rejects_nonsense(void **state)
{
    (void)state;
    rd_known *k = rd_known_new(10);
    assert_non_null(k);
    const char *ep;
    uint64_t seq;
    char longer[RD_MAX_EPOCH + 2];
    memset(longer, 'f', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    rd_known_note(k, "a", "", 5);
    rd_known_note(k, "b", longer, 5);
    assert_int_equal(rd_known_get(k, "a", &ep, &seq), 0);
    assert_int_equal(rd_known_get(k, "b", &ep, &seq), 0);
    assert_int_equal(rd_known_count(k), 0);
    rd_known_free(k);
    rd_known_free(NULL);
}

static void test_bounded(void **state)
{
    (void)state;
    rd_known *k = rd_known_new(3);
    assert_non_null(k);
    const char *ep;
    uint64_t seq;
    rd_known_note(k, "r1", "e", 1);
    rd_known_note(k, "r2", "e", 2);
    rd_known_note(k, "r3", "e", 3);
    assert_int_equal(rd_known_count(k), 3);
    /* Known rooms update in place at the bound. */
    rd_known_note(k, "r3", "e", 4);
    assert_int_equal(rd_known_count(k), 3);
    /* A fourth room: everything is forgotten first (floors lost, never a
     * wrong one), then it is remembered. */
    rd_known_note(k, "r4", "e", 7);
    assert_int_equal(rd_known_count(k), 1);
    assert_int_equal(rd_known_get(k, "r1", &ep, &seq), 0);
    assert_int_equal(rd_known_get(k, "r4", &ep, &seq), 1);
    assert_int_equal(seq, 7);
    rd_known_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_note_and_get),
        cmocka_unit_test(test_rejects_nonsense),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
