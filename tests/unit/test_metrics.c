/* test_metrics.c -- the Prometheus registry's exposition, byte for byte.
 *
 * Each case registers series in a fresh registry (metrics_reset) with the
 * process_* block turned off, and compares the whole rendered text, so that
 * ordering, HELP/TYPE sharing, label joining and number formatting are all
 * pinned down. The process block is checked separately for presence and sane
 * values.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "metrics.h"

static int setup(void **state)
{
    (void)state;
    metrics_reset();
    metrics_process_enable(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static void expect_render(const char *want)
{
    size_t len = 0;
    char *got = metrics_render_len(&len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void test_empty(void **state)
{
    (void)state;
    expect_render("");
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    metrics_series *pub = metrics_counter("tether_gw_frames_in_total", "Frames received from clients.",
                                          "type=\"publish\"");
    metrics_series *conns = metrics_gauge("tether_gw_connections", "Open connections.", NULL);
    metrics_series *hello = metrics_counter("tether_gw_frames_in_total", "ignored: first HELP wins",
                                            "type=\"hello\"");
    assert_non_null(pub);
    assert_non_null(conns);
    assert_non_null(hello);
    for (int i = 0; i < 3; i++)
        metrics_inc(pub);
    metrics_add(hello, 2);
    metrics_add(hello, -1);       /* counters never go down: ignored */
    metrics_set(hello, 100);      /* nor are they set: ignored */
    metrics_set(conns, 42);
    metrics_add(conns, -2.5);
    metrics_inc(conns);
    expect_render("# HELP tether_gw_frames_in_total Frames received from clients.\n"
                  "# TYPE tether_gw_frames_in_total counter\n"
                  "tether_gw_frames_in_total{type=\"publish\"} 3\n"
                  "tether_gw_frames_in_total{type=\"hello\"} 2\n"
                  "# HELP tether_gw_connections Open connections.\n"
                  "# TYPE tether_gw_connections gauge\n"
                  "tether_gw_connections 40.5\n");
    assert_true(metrics_value(pub) == 3);
    assert_true(metrics_value(conns) == 40.5);
}

static void test_histogram(void **state)
{
    (void)state;
    const double b[] = { 0.25, 0.5, 1, 2.5 };
    metrics_series *h = metrics_histogram("tether_publish_seconds", "Publish latency.", "room=\"a\",kind=\"x\"",
                                          b, 4);
    metrics_series *h2 = metrics_histogram("tether_publish_seconds", "x", "room=\"b\",kind=\"x\"", b, 4);
    const double b1[] = { 10 };
    metrics_series *plain = metrics_histogram("tether_batch_size", "Batch size.", NULL, b1, 1);
    assert_non_null(h);
    assert_non_null(h2);
    assert_non_null(plain);
    metrics_observe(h, 0.125);
    metrics_observe(h, 0.25);  /* a bound is inclusive: le="0.25" */
    metrics_observe(h, 0.75);
    metrics_observe(h, 2);
    metrics_observe(h, 10);
    metrics_observe(h, NAN);   /* ignored */
    metrics_observe(h2, 1);
    expect_render("# HELP tether_publish_seconds Publish latency.\n"
                  "# TYPE tether_publish_seconds histogram\n"
                  "tether_publish_seconds_bucket{room=\"a\",kind=\"x\",le=\"0.25\"} 2\n"
                  "tether_publish_seconds_bucket{room=\"a\",kind=\"x\",le=\"0.5\"} 2\n"
                  "tether_publish_seconds_bucket{room=\"a\",kind=\"x\",le=\"1\"} 3\n"
                  "tether_publish_seconds_bucket{room=\"a\",kind=\"x\",le=\"2.5\"} 4\n"
                  "tether_publish_seconds_bucket{room=\"a\",kind=\"x\",le=\"+Inf\"} 5\n"
                  "tether_publish_seconds_sum{room=\"a\",kind=\"x\"} 13.125\n"
                  "tether_publish_seconds_count{room=\"a\",kind=\"x\"} 5\n"
                  "tether_publish_seconds_bucket{room=\"b\",kind=\"x\",le=\"0.25\"} 0\n"
                  "tether_publish_seconds_bucket{room=\"b\",kind=\"x\",le=\"0.5\"} 0\n"
                  "tether_publish_seconds_bucket{room=\"b\",kind=\"x\",le=\"1\"} 1\n"
                  "tether_publish_seconds_bucket{room=\"b\",kind=\"x\",le=\"2.5\"} 1\n"
                  "tether_publish_seconds_bucket{room=\"b\",kind=\"x\",le=\"+Inf\"} 1\n"
                  "tether_publish_seconds_sum{room=\"b\",kind=\"x\"} 1\n"
                  "tether_publish_seconds_count{room=\"b\",kind=\"x\"} 1\n"
                  "# HELP tether_batch_size Batch size.\n"
                  "# TYPE tether_batch_size histogram\n"
                  "tether_batch_size_bucket{le=\"10\"} 0\n"
                  "tether_batch_size_bucket{le=\"+Inf\"} 0\n"
                  "tether_batch_size_sum 0\n"
                  "tether_batch_size_count 0\n");
    assert_true(metrics_value(h) == 5);
}

static double fn_val;
static double read_fn(void *arg) { return *(double *)arg; }

static void test_callbacks(void **state)
{
    (void)state;
    fn_val = 7;
    metrics_series *q = metrics_gauge_fn("tether_queue_depth", "Queued items.", "q=\"out\"", read_fn, &fn_val);
    metrics_series *t = metrics_counter_fn("tether_bus_bytes_total", "Bytes.", NULL, read_fn, &fn_val);
    assert_non_null(q);
    assert_non_null(t);
    metrics_set(q, 99); /* a callback series ignores updates */
    metrics_inc(t);
    fn_val = 12;        /* read at render time */
    expect_render("# HELP tether_queue_depth Queued items.\n"
                  "# TYPE tether_queue_depth gauge\n"
                  "tether_queue_depth{q=\"out\"} 12\n"
                  "# HELP tether_bus_bytes_total Bytes.\n"
                  "# TYPE tether_bus_bytes_total counter\n"
                  "tether_bus_bytes_total 12\n");
    assert_null(metrics_gauge_fn("tether_x", "x", NULL, NULL, NULL));
}

static void test_number_format(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        { 0.1, "0.1" },   { 1e-05, "1e-05" },   { 1.5e20, "1.5e+20" },
        { 123456789012.0, "123456789012" },    { -3, "-3" },
        { -0.0, "0" },    { 2.5, "2.5" },       { 1.0 / 3, "0.3333333333333333" },
        { INFINITY, "+Inf" }, { -INFINITY, "-Inf" }, { NAN, "NaN" },
    };
    char want[2048] = "# HELP tether_num Numbers.\n# TYPE tether_num gauge\n";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "i=\"%zu\"", i);
        metrics_set(metrics_gauge("tether_num", "Numbers.", labels), cases[i].v);
        size_t n = strlen(want);
        snprintf(want + n, sizeof(want) - n, "tether_num{%s} %s\n", labels, cases[i].text);
    }
    expect_render(want);
}

static void test_help_escaping_and_labels(void **state)
{
    (void)state;
    metrics_series *s = metrics_counter("tether_esc_total", "Back\\slash and\nnewline.",
                                        "path=\"a\\\"b\\\\c\\nd\"");
    assert_non_null(s);
    metrics_inc(s);
    expect_render("# HELP tether_esc_total Back\\\\slash and\\nnewline.\n"
                  "# TYPE tether_esc_total counter\n"
                  "tether_esc_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

static void test_registration_rules(void **state)
{
    (void)state;
    metrics_series *a = metrics_counter("tether_a_total", "A.", "x=\"1\"");
    assert_non_null(a);
    /* The same (name, labels) again is the same series. */
    assert_ptr_equal(metrics_counter("tether_a_total", "A.", "x=\"1\""), a);
    /* Another type under the same name is refused. */
    errno = 0;
    assert_null(metrics_gauge("tether_a_total", "A.", "x=\"2\""));
    assert_int_equal(errno, EINVAL);
    /* Bad names and label sets. */
    const char *bad_names[] = { "", "1abc", "a-b", "a b", NULL };
    for (int i = 0; bad_names[i]; i++)
        assert_null(metrics_counter(bad_names[i], "h", NULL));
    assert_null(metrics_counter(NULL, "h", NULL));
    const char *bad_labels[] = { "x", "x=1", "x=\"1\",", "x=\"1\" ,y=\"2\"", "x=\"1", "x=\"\\q\"",
                                 "__x=\"1\"", "1x=\"1\"", "x=\"1\"y=\"2\"", NULL };
    for (int i = 0; bad_labels[i]; i++) {
        errno = 0;
        assert_null(metrics_counter("tether_b_total", "h", bad_labels[i]));
        assert_int_equal(errno, EINVAL);
    }
    const double b[] = { 1, 2 }, unsorted[] = { 2, 1 }, inf[] = { 1, INFINITY };
    assert_null(metrics_histogram("tether_h", "h", "le=\"1\"", b, 2));
    assert_null(metrics_histogram("tether_h", "h", NULL, unsorted, 2));
    assert_null(metrics_histogram("tether_h", "h", NULL, inf, 2));
    /* Updates on NULL and on the wrong type are harmless no-ops. */
    metrics_inc(NULL);
    metrics_add(NULL, 1);
    metrics_set(NULL, 1);
    metrics_observe(NULL, 1);
    metrics_observe(a, 1);
    assert_true(metrics_value(NULL) == 0);
    assert_true(metrics_value(a) == 0);
    /* Only the valid series was registered. */
    expect_render("# HELP tether_a_total A.\n"
                  "# TYPE tether_a_total counter\n"
                  "tether_a_total{x=\"1\"} 0\n");
}

static double sample(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    assert_non_null(p);
    return strtod(p + strlen(key), NULL);
}

static void test_process_metrics(void **state)
{
    (void)state;
    metrics_process_enable(1);
    metrics_inc(metrics_counter("tether_first_total", "First.", NULL));
    char *t = metrics_render();
    assert_non_null(t);
    /* Registered families come first, the process block after them. */
    assert_memory_equal(t, "# HELP tether_first_total", 25);
    const char *types[] = { "# TYPE process_cpu_seconds_total counter\n",
                            "# TYPE process_resident_memory_bytes gauge\n",
                            "# TYPE process_virtual_memory_bytes gauge\n",
                            "# TYPE process_open_fds gauge\n",
                            "# TYPE process_max_fds gauge\n",
                            "# TYPE process_start_time_seconds gauge\n",
                            NULL };
    for (int i = 0; types[i]; i++)
        assert_non_null(strstr(t, types[i]));
    assert_true(sample(t, "process_resident_memory_bytes") > 100000);
    assert_true(sample(t, "process_open_fds") >= 3);
    assert_true(sample(t, "process_max_fds") >= sample(t, "process_open_fds"));
    double start = sample(t, "process_start_time_seconds"), now = (double)time(NULL);
    assert_true(start > now - 3600 && start <= now + 2);
    assert_true(sample(t, "process_cpu_seconds_total") >= 0);
    free(t);
    metrics_process_enable(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_and_gauges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_escaping_and_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
