/* test_client_rooms.c -- positions and the exactly-once, in-order delivery
 * rule on the client (tc_rooms): duplicates dropped, unannounced jumps
 * reported as gaps, resume positions, epoch changes, trimmed history. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/tc_rooms.h"

static tc_msg_verdict msg(tc_rooms *rs, const char *epoch, uint64_t seq, uint64_t *gf, uint64_t *gt)
{
    uint64_t a, b;
    return tc_rooms_on_message(rs, "r", epoch, seq, gf ? gf : &a, gt ? gt : &b);
}

static void test_live_then_dedup_and_order(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    tc_pos p;
    uint64_t gf, gt;
    assert_int_equal(tc_rooms_add(rs, "r", NULL, 0, 0), 0);
    assert_int_equal(tc_rooms_add(rs, "r", NULL, 0, 0), -EALREADY);
    tc_room_position(tc_rooms_get(rs, "r"), &p);
    assert_null(p.epoch);
    assert_false(p.has_seq); /* live only */
    assert_int_equal(tc_rooms_on_subscribed(rs, "r", "E1", 5, 0, 1, &res), 0);
    assert_false(res.resubscribe);
    assert_int_equal(msg(rs, "E1", 6, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 0);
    assert_int_equal(msg(rs, "E1", 7, NULL, NULL), TC_MSG_DELIVER);
    /* Never twice, never backwards. */
    assert_int_equal(msg(rs, "E1", 7, NULL, NULL), TC_MSG_DUPLICATE);
    assert_int_equal(msg(rs, "E1", 5, NULL, NULL), TC_MSG_DUPLICATE);
    assert_int_equal(msg(rs, "E1", 1, NULL, NULL), TC_MSG_DUPLICATE);
    /* A jump nobody announced is delivered and reported, never silent. */
    assert_int_equal(msg(rs, "E1", 10, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 8);
    assert_int_equal(gt, 9);
    assert_int_equal(msg(rs, "E1", 9, NULL, NULL), TC_MSG_DUPLICATE);
    /* Other epochs and rooms are not ours. */
    assert_int_equal(msg(rs, "E0", 11, NULL, NULL), TC_MSG_OTHER_EPOCH);
    assert_int_equal(tc_rooms_on_message(rs, "x", "E1", 11, &gf, &gt), TC_MSG_UNKNOWN);
    tc_rooms_free(rs);
}

static void test_resume_position_and_replay(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    tc_pos p;
    tc_rooms_add(rs, "r", NULL, 0, 0);
    tc_rooms_on_subscribed(rs, "r", "E1", 5, 0, 1, &res);
    msg(rs, "E1", 6, NULL, NULL);
    msg(rs, "E1", 7, NULL, NULL);
    tc_rooms_link_down(rs);
    tc_room *r = tc_rooms_get(rs, "r");
    assert_int_equal(r->link, TC_LINK_PENDING);
    tc_room_position(r, &p);
    assert_string_equal(p.epoch, "E1");
    assert_true(p.has_seq);
    assert_int_equal(p.seq, 7);
    /* The resume: 3 missed (8..10) follow; the gateway may also replay live
     * messages it had buffered: each is delivered once. */
    assert_int_equal(tc_rooms_on_subscribed(rs, "r", "E1", 10, 3, 1, &res), 0);
    assert_true(res.resubscribe);
    assert_false(res.epoch_changed);
    assert_false(res.gap_by_client);
    assert_int_equal(msg(rs, "E1", 8, NULL, NULL), TC_MSG_DELIVER);
    assert_int_equal(msg(rs, "E1", 8, NULL, NULL), TC_MSG_DUPLICATE);
    assert_int_equal(msg(rs, "E1", 9, NULL, NULL), TC_MSG_DELIVER);
    assert_int_equal(msg(rs, "E1", 10, NULL, NULL), TC_MSG_DELIVER);
    assert_int_equal(msg(rs, "E1", 11, NULL, NULL), TC_MSG_DELIVER);
    /* A server that restates an older position cannot make us go back. */
    assert_int_equal(tc_rooms_on_subscribed(rs, "r", "E1", 11, 5, 1, &res), 0);
    assert_int_equal(msg(rs, "E1", 7, NULL, NULL), TC_MSG_DUPLICATE);
    assert_int_equal(msg(rs, "E1", 11, NULL, NULL), TC_MSG_DUPLICATE);
    assert_int_equal(msg(rs, "E1", 12, NULL, NULL), TC_MSG_DELIVER);
    tc_rooms_free(rs);
}

static void test_epoch_change(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    tc_rooms_add(rs, "r", "E1", 1, 40);
    tc_pos p;
    tc_room_position(tc_rooms_get(rs, "r"), &p);
    assert_string_equal(p.epoch, "E1");
    assert_int_equal(p.seq, 40);
    /* Redis lost the room: new epoch, 4 messages buffered in it. */
    tc_rooms_on_subscribed(rs, "r", "E2", 4, 4, 0, &res);
    assert_true(res.epoch_changed);
    for (uint64_t s = 1; s <= 4; s++)
        assert_int_equal(msg(rs, "E2", s, NULL, NULL), TC_MSG_DELIVER);
    assert_int_equal(msg(rs, "E1", 41, NULL, NULL), TC_MSG_OTHER_EPOCH);
    tc_room_position(tc_rooms_get(rs, "r"), &p);
    assert_string_equal(p.epoch, "E2");
    assert_int_equal(p.seq, 4);
    tc_rooms_free(rs);
}

static void test_trimmed_history(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    uint64_t gf, gt;
    tc_rooms_add(rs, "r", "E1", 1, 7);
    /* 8..14 are gone: the server says recovered false (its gap is what the
     * app sees), then 15..20 follow. */
    tc_rooms_on_subscribed(rs, "r", "E1", 20, 6, 0, &res);
    assert_false(res.gap_by_client);
    assert_int_equal(msg(rs, "E1", 15, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 0);
    /* The same, claimed as recovered: the client says it. */
    tc_rooms_link_down(rs);
    tc_rooms_on_subscribed(rs, "r", "E1", 30, 2, 1, &res);
    assert_true(res.gap_by_client);
    assert_int_equal(res.gap_from, 16);
    assert_int_equal(res.gap_to, 28);
    assert_int_equal(msg(rs, "E1", 29, NULL, NULL), TC_MSG_DELIVER);
    tc_rooms_free(rs);
}

static void test_empty_room_and_oldest(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    tc_pos p;
    uint64_t gf, gt;
    /* A room with no history yet has no epoch: its position is "from the
     * oldest", or an outage would skip what was published meanwhile. */
    tc_rooms_add(rs, "r", NULL, 0, 0);
    tc_rooms_on_subscribed(rs, "r", "", 0, 0, 1, &res);
    tc_room_position(tc_rooms_get(rs, "r"), &p);
    assert_null(p.epoch);
    assert_true(p.has_seq);
    assert_int_equal(p.seq, 0);
    assert_int_equal(msg(rs, "E9", 1, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 0);
    assert_int_equal(msg(rs, "E9", 3, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 2);
    /* From the oldest: {"seq": 0}; whatever comes first is the start. */
    tc_rooms_add(rs, "o", NULL, 1, 0);
    tc_room_position(tc_rooms_get(rs, "o"), &p);
    assert_null(p.epoch);
    assert_true(p.has_seq);
    assert_int_equal(p.seq, 0);
    tc_rooms_on_subscribed(rs, "o", "E5", 120, 100, 1, &res);
    assert_int_equal(tc_rooms_on_message(rs, "o", "E5", 21, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 0);
    tc_rooms_free(rs);
}

static void test_gap_frame_and_rooms(void **state)
{
    (void)state;
    tc_rooms *rs = tc_rooms_new();
    tc_sub_result res;
    uint64_t gf, gt;
    tc_rooms_add(rs, "r", NULL, 0, 0);
    tc_rooms_on_subscribed(rs, "r", "E1", 3, 0, 1, &res);
    assert_int_equal(tc_rooms_on_gap(rs, "r", 4, 6), 0);
    assert_int_equal(msg(rs, "E1", 7, &gf, &gt), TC_MSG_DELIVER);
    assert_int_equal(gf, 0); /* announced by the server: no second report */
    assert_int_equal(tc_rooms_on_gap(rs, "nope", 1, 2), -ENOENT);
    assert_int_equal(tc_rooms_on_subscribed(rs, "nope", "E", 1, 0, 1, &res), -ENOENT);
    assert_int_equal(tc_rooms_add(rs, "bad room", NULL, 0, 0), -EINVAL);
    assert_int_equal(tc_rooms_add(rs, "", NULL, 0, 0), -EINVAL);
    assert_int_equal(tc_rooms_add(rs, "x", "", 1, 0), -EINVAL);
    assert_int_equal(tc_rooms_add(rs, "a#b", NULL, 0, 0), -EINVAL);
    assert_int_equal(tc_rooms_add(rs, "a/b:c@d.e-f_g", NULL, 0, 0), 0); /* every allowed punctuation */
    assert_int_equal(tc_rooms_count(rs), 2);
    assert_int_equal(tc_rooms_remove(rs, "r"), 0);
    assert_int_equal(tc_rooms_remove(rs, "r"), -ENOENT);
    assert_int_equal(msg(rs, "E1", 8, NULL, NULL), TC_MSG_UNKNOWN);
    tc_rooms_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_then_dedup_and_order), cmocka_unit_test(test_resume_position_and_replay),
        cmocka_unit_test(test_epoch_change),              cmocka_unit_test(test_trimmed_history),
        cmocka_unit_test(test_empty_room_and_oldest),     cmocka_unit_test(test_gap_frame_and_rooms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
