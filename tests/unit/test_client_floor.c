/* test_client_floor.c -- the push-to-talk floor on the client (tc_floor):
 * requests and releases, the server's answers, restoring a floor held when
 * the link dropped, and expiring requests that went stale offline. The
 * server side (mediad) does not exist yet; these pin the client's rules to
 * the `ptt` frames of docs/protocol.md. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/tc_floor.h"

static int g_changed;
static tc_floor_state g_changed_to;

static void changed(void *arg, const char *room, tc_floor_state st)
{
    (void)arg;
    assert_string_equal(room, "talk");
    g_changed++;
    g_changed_to = st;
}

static void test_request_grant_release(void **state)
{
    (void)state;
    tc_floor *f = tc_floor_new(2000);
    tc_floor_action act;
    assert_int_equal(tc_floor_get(f, "talk"), TC_FLOOR_IDLE);
    assert_int_equal(tc_floor_request(f, "talk", 100, &act), 0);
    assert_int_equal(act, TC_FA_SEND_REQUEST);
    assert_int_equal(tc_floor_get(f, "talk"), TC_FLOOR_REQUESTING);
    assert_int_equal(tc_floor_request(f, "talk", 150, &act), -EALREADY);
    assert_int_equal(act, TC_FA_NONE);
    tc_floor_sent(f, "talk");
    assert_int_equal(tc_floor_on_server(f, "talk", "granted", "alice"), TC_FLOOR_GRANTED);
    assert_string_equal(tc_floor_holder(f, "talk"), "alice");
    assert_int_equal(tc_floor_release(f, "talk", &act), 0);
    assert_int_equal(act, TC_FA_SEND_RELEASE);
    assert_int_equal(tc_floor_get(f, "talk"), TC_FLOOR_IDLE);
    assert_int_equal(tc_floor_release(f, "talk", &act), -EALREADY);
    assert_int_equal(act, TC_FA_NONE);
    assert_int_equal(tc_floor_request(f, "bad room", 1, &act), -EINVAL);
    tc_floor_free(f);
}

static void test_restore_after_reconnect(void **state)
{
    (void)state;
    tc_floor *f = tc_floor_new(2000);
    tc_floor_action act;
    tc_floor_state st;
    tc_floor_request(f, "talk", 0, &act);
    tc_floor_sent(f, "talk");
    tc_floor_on_server(f, "talk", "granted", "me");
    g_changed = 0;
    tc_floor_link_down(f, changed, NULL);
    assert_int_equal(g_changed, 1);
    assert_int_equal(g_changed_to, TC_FLOOR_SUSPENDED);
    /* Long outage: a held floor is asked for again whatever the age (the
     * server keeps it for its grace period; it decides). */
    assert_int_equal(tc_floor_resumed(f, "talk", 60000, &st), TC_FA_SEND_REQUEST);
    assert_int_equal(st, TC_FLOOR_REQUESTING);
    tc_floor_sent(f, "talk");
    assert_int_equal(tc_floor_on_server(f, "talk", "granted", "me"), TC_FLOOR_GRANTED);
    /* Released while offline: nothing is restored. */
    tc_floor_link_down(f, changed, NULL);
    assert_int_equal(tc_floor_release(f, "talk", &act), 0);
    assert_int_equal(act, TC_FA_SEND_RELEASE);
    assert_int_equal(tc_floor_resumed(f, "talk", 70000, &st), TC_FA_NONE);
    assert_int_equal(st, TC_FLOOR_IDLE);
    tc_floor_free(f);
}

static void test_unanswered_request_fresh_or_stale(void **state)
{
    (void)state;
    tc_floor *f = tc_floor_new(2000);
    tc_floor_action act;
    tc_floor_state st;
    tc_floor_request(f, "talk", 1000, &act);
    tc_floor_sent(f, "talk");
    tc_floor_link_down(f, NULL, NULL);
    /* Back within 2 s: the request is re-sent. */
    assert_int_equal(tc_floor_resumed(f, "talk", 2999, &st), TC_FA_SEND_REQUEST);
    assert_int_equal(st, TC_FLOOR_REQUESTING);
    /* Already sent on this link: not twice. */
    tc_floor_sent(f, "talk");
    assert_int_equal(tc_floor_resumed(f, "talk", 3000, &st), TC_FA_NONE);
    /* Dropped again, back after 2 s: stale button state, expired. */
    tc_floor_link_down(f, NULL, NULL);
    assert_int_equal(tc_floor_resumed(f, "talk", 3000, &st), TC_FA_NONE);
    assert_int_equal(st, TC_FLOOR_EXPIRED);
    /* A request the outbox dropped as stale also expires. */
    tc_floor_request(f, "talk", 5000, &act);
    assert_int_equal(act, TC_FA_SEND_REQUEST);
    tc_floor_expired(f, "talk");
    assert_int_equal(tc_floor_get(f, "talk"), TC_FLOOR_EXPIRED);
    tc_floor_free(f);
}

static void test_server_states(void **state)
{
    (void)state;
    tc_floor *f = tc_floor_new(2000);
    tc_floor_action act;
    tc_floor_state st;
    /* Someone else talks while we wait for our own answer. */
    tc_floor_request(f, "talk", 0, &act);
    assert_int_equal(tc_floor_on_server(f, "talk", "taken", "bob"), TC_FLOOR_REQUESTING);
    assert_string_equal(tc_floor_holder(f, "talk"), "bob");
    assert_int_equal(tc_floor_on_server(f, "talk", "idle", NULL), TC_FLOOR_REQUESTING);
    assert_int_equal(tc_floor_on_server(f, "talk", "denied", NULL), TC_FLOOR_DENIED);
    /* Others' floor: taken, then idle. */
    assert_int_equal(tc_floor_on_server(f, "talk", "taken", "bob"), TC_FLOOR_TAKEN);
    assert_int_equal(tc_floor_on_server(f, "talk", "idle", NULL), TC_FLOOR_IDLE);
    assert_string_equal(tc_floor_holder(f, "talk"), "");
    /* Revoked (max talk time): not restored after a drop. */
    tc_floor_request(f, "talk", 0, &act);
    tc_floor_on_server(f, "talk", "granted", "me");
    assert_int_equal(tc_floor_on_server(f, "talk", "revoked", NULL), TC_FLOOR_REVOKED);
    g_changed = 0;
    tc_floor_link_down(f, changed, NULL);
    assert_int_equal(g_changed, 0);
    assert_int_equal(tc_floor_resumed(f, "talk", 10, &st), TC_FA_NONE);
    /* A room whose floor someone else held is unknown again after a drop. */
    tc_floor_on_server(f, "talk", "taken", "bob");
    tc_floor_link_down(f, NULL, NULL);
    assert_int_equal(tc_floor_get(f, "talk"), TC_FLOOR_IDLE);
    assert_int_equal(tc_floor_on_server(f, "talk", "exploded", NULL), -EINVAL);
    assert_int_equal(tc_floor_on_server(f, "other", "taken", "carol"), TC_FLOOR_TAKEN);
    assert_int_equal(tc_floor_count(f), 2);
    tc_floor_free(f);
    tc_floor_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_grant_release),
        cmocka_unit_test(test_restore_after_reconnect),
        cmocka_unit_test(test_unanswered_request_fresh_or_stale),
        cmocka_unit_test(test_server_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
