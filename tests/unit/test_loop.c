/* test_loop.c -- lib/loop.c timers, cmocka: deadlines are kept whatever is
 * stopped or started around them (the timerfd may be left armed early for a
 * stopped timer; that must only ever wake the loop early, never late or
 * never), repeat timers repeat, and deferred calls run before the loop
 * sleeps again, also when an embedding loop runs them (loop_prepare).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <poll.h>
#include <stdlib.h>

#include "loop.h"

typedef struct fired {
    int n;
    uint64_t at;
} fired;

static void on_timer(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    fired *f = arg;
    f->n++;
    f->at = loop_mono_ms();
    (void)l;
}

/* The timer tests run twice: on a loop that waits itself (epoll_wait's
 * timeout), and embedded (an outer poll() on loop_fd(), which only a timerfd
 * armed in time makes readable). */
static int g_embed;

static loop *new_loop(void)
{
    loop *l = loop_new();
    if (l && g_embed)
        (void)loop_fd(l);
    return l;
}

/* One iteration, waiting at most timeout_ms. */
static void step(loop *l, int timeout_ms)
{
    if (!g_embed) {
        loop_run_once(l, timeout_ms);
        return;
    }
    struct pollfd p = { .fd = loop_fd(l), .events = POLLIN };
    if (poll(&p, 1, timeout_ms) == 1)
        loop_run_once(l, 0);
}

/* Runs l until f has fired n times or limit_ms passed. */
static void run_until(loop *l, const fired *f, int n, uint64_t limit_ms)
{
    uint64_t end = loop_mono_ms() + limit_ms;
    while (f->n < n && loop_mono_ms() < end)
        step(l, 20);
}

static void test_stopped_earliest(void **state)
{
    (void)state;
    loop *l = new_loop();
    assert_non_null(l);
    loop_timer a = { 0 }, b = { 0 }, c = { 0 };
    fired fa = { 0 }, fb = { 0 }, fc = { 0 };
    uint64_t t0 = loop_mono_ms();
    assert_int_equal(loop_timer_start(l, &a, 30, 0, on_timer, &fa), 0);
    assert_int_equal(loop_timer_start(l, &b, 120, 0, on_timer, &fb), 0);
    /* The earliest goes: the loop may wake at 30 ms, must not run a or b. */
    loop_timer_stop(l, &a);
    run_until(l, &fb, 1, 2000);
    assert_int_equal(fa.n, 0);
    assert_int_equal(fb.n, 1);
    assert_true(fb.at - t0 >= 120);
    assert_true(fb.at - t0 < 1000);
    /* Everything stopped, then a new, later timer: it still fires. */
    assert_int_equal(loop_timer_start(l, &a, 20, 0, on_timer, &fa), 0);
    loop_timer_stop(l, &a);
    t0 = loop_mono_ms();
    assert_int_equal(loop_timer_start(l, &c, 60, 0, on_timer, &fc), 0);
    run_until(l, &fc, 1, 2000);
    assert_int_equal(fa.n, 0);
    assert_int_equal(fc.n, 1);
    assert_true(fc.at - t0 >= 60);
    /* An earlier timer started after a later one fires first. */
    fb.n = fc.n = 0;
    t0 = loop_mono_ms();
    assert_int_equal(loop_timer_start(l, &b, 200, 0, on_timer, &fb), 0);
    assert_int_equal(loop_timer_start(l, &c, 40, 0, on_timer, &fc), 0);
    run_until(l, &fc, 1, 2000);
    assert_int_equal(fc.n, 1);
    assert_int_equal(fb.n, 0);
    assert_true(fc.at - t0 >= 40 && fc.at - t0 < 200);
    run_until(l, &fb, 1, 2000);
    assert_int_equal(fb.n, 1);
    assert_true(fb.at - t0 >= 200);
    loop_free(l);
}

/* Many request-like timers stopped in start order, as lib/rpc does: the last
 * one, never stopped, fires at its deadline. */
static void test_fifo_timeouts(void **state)
{
    (void)state;
    loop *l = new_loop();
    assert_non_null(l);
    enum { N = 200 };
    loop_timer *ts = calloc(N, sizeof(*ts));
    fired *fs = calloc(N, sizeof(*fs));
    assert_non_null(ts);
    assert_non_null(fs);
    uint64_t t0 = loop_mono_ms();
    for (int i = 0; i < N; i++)
        assert_int_equal(loop_timer_start(l, &ts[i], 50 + (uint64_t)i / 4, 0, on_timer, &fs[i]), 0);
    for (int i = 0; i < N - 1; i++) {
        loop_timer_stop(l, &ts[i]);
        step(l, 0);
    }
    run_until(l, &fs[N - 1], 1, 2000);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(fs[i].n, 0);
    assert_int_equal(fs[N - 1].n, 1);
    assert_true(fs[N - 1].at - t0 >= 50 + (N - 1) / 4);
    free(ts);
    free(fs);
    loop_free(l);
}

static void test_repeat(void **state)
{
    (void)state;
    loop *l = new_loop();
    assert_non_null(l);
    loop_timer r = { 0 };
    fired fr = { 0 };
    uint64_t t0 = loop_mono_ms();
    assert_int_equal(loop_timer_start(l, &r, 10, 10, on_timer, &fr), 0);
    run_until(l, &fr, 5, 2000);
    assert_int_equal(fr.n, 5);
    assert_true(fr.at - t0 >= 50);
    loop_timer_stop(l, &r);
    loop_free(l);
}

static int g_deferred;

static void on_defer(loop *l, void *arg)
{
    (void)l;
    (void)arg;
    g_deferred++;
}

static void test_defer_with_timer_pending(void **state)
{
    (void)state;
    loop *l = new_loop();
    assert_non_null(l);
    loop_timer t = { 0 };
    fired ft = { 0 };
    assert_int_equal(loop_timer_start(l, &t, 100, 0, on_timer, &ft), 0);
    g_deferred = 0;
    assert_int_equal(loop_defer(l, on_defer, NULL), 0);
    uint64_t t0 = loop_mono_ms();
    step(l, 1000);
    assert_int_equal(g_deferred, 1);
    assert_true(loop_mono_ms() - t0 < 90);
    assert_int_equal(ft.n, 0);
    run_until(l, &ft, 1, 2000);
    assert_int_equal(ft.n, 1);
    assert_true(ft.at - t0 >= 100 - 5);
    loop_free(l);
}

/* Whether loop_fd() would wake an embedding loop now. */
static int fd_ready(loop *l)
{
    struct pollfd p = { .fd = loop_fd(l), .events = POLLIN };
    return poll(&p, 1, 0) == 1;
}

static int g_redefer;

static void on_redefer(loop *l, void *arg)
{
    (void)arg;
    g_deferred++;
    if (g_redefer-- > 0)
        loop_defer(l, on_redefer, NULL);
}

/* An embedding loop that calls loop_prepare() before it waits: a deferred
 * call does not wake loop_fd(), loop_prepare() runs it (and what it defers,
 * a few rounds); one that keeps re-deferring makes loop_fd() readable, and
 * timers keep their deadlines through all of it. */
static void test_prepared_embedding(void **state)
{
    (void)state;
    loop *l = loop_new();
    assert_non_null(l);
    loop_embed_prepared(l);
    loop_timer t = { 0 };
    fired ft = { 0 };
    uint64_t t0 = loop_mono_ms();
    assert_int_equal(loop_timer_start(l, &t, 80, 0, on_timer, &ft), 0);
    g_deferred = 0;
    assert_int_equal(loop_defer(l, on_defer, NULL), 0);
    assert_false(fd_ready(l));
    assert_int_equal(loop_prepare(l), 1);
    assert_int_equal(g_deferred, 1);
    assert_false(fd_ready(l));
    /* Two re-deferrals fit in loop_prepare's rounds. */
    g_deferred = 0;
    g_redefer = 2;
    assert_int_equal(loop_defer(l, on_redefer, NULL), 0);
    assert_int_equal(loop_prepare(l), 3);
    assert_false(fd_ready(l));
    /* Ten do not: the rest wakes the embedding loop through loop_fd(). */
    g_deferred = 0;
    g_redefer = 10;
    assert_int_equal(loop_defer(l, on_redefer, NULL), 0);
    assert_int_equal(loop_prepare(l), 4);
    assert_true(fd_ready(l));
    while (g_deferred < 11 && loop_mono_ms() - t0 < 2000) {
        if (fd_ready(l))
            loop_run_once(l, 0);
        loop_prepare(l);
    }
    assert_int_equal(g_deferred, 11);
    /* The timer was not lost to the immediate arming. */
    while (!ft.n && loop_mono_ms() - t0 < 2000) {
        struct pollfd p = { .fd = loop_fd(l), .events = POLLIN };
        if (poll(&p, 1, 500) == 1)
            loop_run_once(l, 0);
        loop_prepare(l);
    }
    assert_int_equal(ft.n, 1);
    assert_true(ft.at - t0 >= 80);
    loop_free(l);
}

static int standalone(void **state)
{
    (void)state;
    g_embed = 0;
    return 0;
}

static int embedded(void **state)
{
    (void)state;
    g_embed = 1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_stopped_earliest, standalone),
        cmocka_unit_test_setup(test_fifo_timeouts, standalone),
        cmocka_unit_test_setup(test_repeat, standalone),
        cmocka_unit_test_setup(test_defer_with_timer_pending, standalone),
        cmocka_unit_test_setup(test_stopped_earliest, embedded),
        cmocka_unit_test_setup(test_fifo_timeouts, embedded),
        cmocka_unit_test_setup(test_repeat, embedded),
        cmocka_unit_test_setup(test_defer_with_timer_pending, embedded),
        cmocka_unit_test(test_prepared_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
