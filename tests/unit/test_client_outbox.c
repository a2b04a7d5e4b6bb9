/* test_client_outbox.c -- what the client owes the server (tc_outbox):
 * publishes kept until acked and re-sent in order with the same id, stale
 * push-to-talk requests dropped, the cap, and the counters of every drop. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/tc_outbox.h"

static void publish(tc_outbox *ob, const char *id, uint64_t now)
{
    assert_int_equal(tc_outbox_publish(ob, "room", id, "{\"x\":1}", now, now * 1000), 0);
}

/* Sends whatever may go now; returns how many went. */
static int send_all(tc_outbox *ob, uint64_t now)
{
    int n = 0;
    tc_ob_entry *e;
    while ((e = tc_outbox_next(ob, now, NULL))) {
        tc_outbox_sent(ob, e);
        n++;
    }
    return n;
}

static void test_publishes_kept_until_acked(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(100, 2000);
    tc_outbox_stats st;
    publish(ob, "a", 1);
    publish(ob, "b", 2);
    publish(ob, "c", 3);
    assert_int_equal(send_all(ob, 10), 3);
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.len, 3);
    assert_int_equal(st.inflight, 3);
    /* b is acked; the link drops before a and c are. */
    tc_ob_entry *e = tc_outbox_find(ob, "b");
    assert_non_null(e);
    tc_outbox_remove(ob, e);
    tc_outbox_link_down(ob);
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.len, 2);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.resent, 2);
    /* Re-sent in the original order with the same ids and data. */
    e = tc_outbox_next(ob, 20, NULL);
    assert_string_equal(e->id, "a");
    assert_string_equal(e->data, "{\"x\":1}");
    assert_int_equal(e->sends, 1);
    tc_outbox_sent(ob, e);
    assert_int_equal(e->sends, 2);
    e = tc_outbox_next(ob, 20, NULL);
    assert_string_equal(e->id, "c");
    tc_outbox_sent(ob, e);
    assert_null(tc_outbox_next(ob, 20, NULL));
    /* New publishes queue behind the re-sent ones. */
    publish(ob, "d", 30);
    tc_outbox_link_down(ob);
    const char *order[] = { "a", "c", "d" };
    for (int i = 0; i < 3; i++) {
        e = tc_outbox_next(ob, 40, NULL);
        assert_string_equal(e->id, order[i]);
        tc_outbox_sent(ob, e);
    }
    tc_outbox_remove(ob, tc_outbox_find(ob, "a"));
    tc_outbox_remove(ob, tc_outbox_find(ob, "c"));
    tc_outbox_remove(ob, tc_outbox_find(ob, "d"));
    assert_int_equal(tc_outbox_len(ob), 0);
    assert_null(tc_outbox_find(ob, "a"));
    tc_outbox_free(ob);
}

static void test_duplicate_id_refused(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(10, 0);
    publish(ob, "same", 1);
    assert_int_equal(tc_outbox_publish(ob, "room", "same", "1", 2, 2), -EEXIST);
    send_all(ob, 3);
    assert_int_equal(tc_outbox_publish(ob, "room", "same", "1", 4, 4), -EEXIST);
    assert_int_equal(tc_outbox_publish(ob, NULL, "x", "1", 4, 4), -EINVAL);
    tc_outbox_free(ob);
}

static void dropped_cb(void *arg, const char *room)
{
    int *n = arg;
    assert_string_equal(room, "talk");
    (*n)++;
}

static void test_stale_ptt_dropped(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(100, 2000);
    tc_outbox_stats st;
    int dropped = 0;
    assert_int_equal(tc_outbox_ptt(ob, "talk", 1, 1000), 0);
    publish(ob, "p1", 1000);
    /* Offline for 1.999 s: the request is still fresh. */
    assert_int_equal(tc_outbox_expire(ob, 2999, dropped_cb, &dropped), 0);
    assert_int_equal(dropped, 0);
    /* 2 s: stale button state, dropped and counted; the publish stays. */
    assert_int_equal(tc_outbox_expire(ob, 3000, dropped_cb, &dropped), 1);
    assert_int_equal(dropped, 1);
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.ptt_stale_dropped, 1);
    assert_int_equal(st.len, 1);
    tc_ob_entry *e = tc_outbox_next(ob, 3000, NULL);
    assert_int_equal(e->kind, TC_OB_PUBLISH);
    /* Releases are not stale: they only ever free a floor. */
    assert_int_equal(tc_outbox_ptt(ob, "talk", 0, 3000), 0);
    assert_int_equal(tc_outbox_expire(ob, 60000, dropped_cb, &dropped), 0);
    tc_outbox_free(ob);
}

static void test_release_cancels_queued_request(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(100, 2000);
    tc_outbox_stats st;
    tc_outbox_ptt(ob, "talk", 1, 10);
    tc_outbox_ptt(ob, "other", 1, 10);
    tc_outbox_ptt(ob, "talk", 0, 20);
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.ptt_cancelled, 1);
    assert_int_equal(st.len, 2);
    tc_ob_entry *e = tc_outbox_next(ob, 30, NULL);
    assert_int_equal(e->kind, TC_OB_PTT_REQUEST);
    assert_string_equal(e->room, "other");
    /* A sent ptt entry is done: nothing to ack. */
    tc_outbox_sent(ob, e);
    e = tc_outbox_next(ob, 30, NULL);
    assert_int_equal(e->kind, TC_OB_PTT_RELEASE);
    tc_outbox_sent(ob, e);
    assert_int_equal(tc_outbox_len(ob), 0);
    tc_outbox_free(ob);
}

static void test_cap(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(0, 0); /* 0: the default, 100 */
    tc_outbox_stats st;
    char id[16];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        publish(ob, id, (uint64_t)i);
    }
    assert_false(tc_outbox_has_room(ob));
    assert_int_equal(tc_outbox_publish(ob, "room", "m100", "1", 200, 200), -ENOBUFS);
    assert_int_equal(tc_outbox_ptt(ob, "talk", 1, 200), -ENOBUFS);
    /* In flight counts too: sending frees nothing, acks do. */
    assert_int_equal(send_all(ob, 300), 100);
    assert_int_equal(tc_outbox_publish(ob, "room", "m100", "1", 300, 300), -ENOBUFS);
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.publish_rejected, 2);
    assert_int_equal(st.ptt_full_dropped, 1);
    tc_outbox_remove(ob, tc_outbox_find(ob, "m0"));
    assert_int_equal(tc_outbox_publish(ob, "room", "m100", "1", 400, 400), 0);
    tc_outbox_free(ob);
}

static void test_publish_evicts_queued_ptt_when_full(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(3, 2000);
    tc_outbox_stats st;
    tc_outbox_ptt(ob, "talk", 1, 1);
    publish(ob, "a", 2);
    publish(ob, "b", 3);
    publish(ob, "c", 4); /* evicts the ptt request: data beats a button */
    tc_outbox_stats_get(ob, &st);
    assert_int_equal(st.len, 3);
    assert_int_equal(st.ptt_full_dropped, 1);
    assert_int_equal(st.publish_rejected, 0);
    assert_int_equal(tc_outbox_publish(ob, "room", "d", "1", 5, 5), -ENOBUFS);
    tc_outbox_free(ob);
}

static void test_retry_later_keeps_order(void **state)
{
    (void)state;
    tc_outbox *ob = tc_outbox_new(10, 2000);
    uint64_t wait = 0;
    publish(ob, "a", 1);
    publish(ob, "b", 2);
    send_all(ob, 10);
    publish(ob, "c", 11);
    /* a failed with a retryable error: it goes back before c, and waits. */
    tc_outbox_retry(ob, tc_outbox_find(ob, "a"), 1010);
    assert_null(tc_outbox_next(ob, 500, &wait));
    assert_int_equal(wait, 510);
    tc_ob_entry *e = tc_outbox_next(ob, 1010, &wait);
    assert_string_equal(e->id, "a");
    tc_outbox_sent(ob, e);
    e = tc_outbox_next(ob, 1010, NULL);
    assert_string_equal(e->id, "c");
    tc_outbox_free(ob);
    tc_outbox_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publishes_kept_until_acked),
        cmocka_unit_test(test_duplicate_id_refused),
        cmocka_unit_test(test_stale_ptt_dropped),
        cmocka_unit_test(test_release_cancels_queued_request),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_publish_evicts_queued_ptt_when_full),
        cmocka_unit_test(test_retry_later_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
