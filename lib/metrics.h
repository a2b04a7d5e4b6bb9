/* metrics.h -- the process-wide Prometheus metrics registry.
 *
 * Daemons register series once at start and keep the returned handles:
 *
 *     static metrics_series *m_pub;
 *     m_pub = metrics_counter("tether_gw_frames_in_total", "Client frames received.",
 *                             "type=\"publish\"");
 *     ...
 *     metrics_inc(m_pub);
 *
 * A family is one metric name with one type and one HELP text; each series of
 * a family has its own fixed label set, given at registration as the text
 * between the braces of the exposition format (name="value" pairs separated by
 * commas, values escaped as in that format; NULL or "" for none). Series of a
 * family are rendered together under a single HELP/TYPE header, families in
 * the order they were first registered.
 *
 * metrics_render() produces the text exposition format 0.0.4, followed by the
 * standard process_* metrics read from /proc/self at render time.
 *
 * Threads: the registry belongs to the loop thread. Registration, updates and
 * rendering must all happen there; another thread reports through the loop
 * (busd, for one, reads its proxy thread's counters with a STATISTICS request
 * on the loop thread).
 *
 * Handles are plain pointers owned by the registry and valid until
 * metrics_reset(). Every update function accepts NULL and then does nothing,
 * so a daemon whose registration failed (ENOMEM) still runs, unmeasured.
 */
#ifndef TETHER_METRICS_H
#define TETHER_METRICS_H

#include <stddef.h>

typedef struct metrics_series metrics_series;

/* A value computed at render time (callback series). arg is the pointer given
 * at registration. Runs on the loop thread inside metrics_render(). */
typedef double metrics_fn(void *arg);

/* The content type of metrics_render()'s output, for HTTP replies. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Registration. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; help and labels are
 * copied. Registering a (name, labels) pair again with the same type returns
 * the existing series (so registration is idempotent). Returns NULL with
 * errno EINVAL for a bad name or label set, or a name already registered with
 * another type, and ENOMEM when out of memory. */

/* A counter: only goes up (metrics_inc / metrics_add with v >= 0). */
metrics_series *metrics_counter(const char *name, const char *help, const char *labels);
/* A gauge: metrics_set / metrics_add / metrics_inc. */
metrics_series *metrics_gauge(const char *name, const char *help, const char *labels);
/* A counter or gauge whose value is fn(arg) at render time (e.g. a total kept
 * elsewhere, a queue length). Updates on such a series are ignored. fn is
 * borrowed; arg must stay valid until metrics_reset() or exit. */
metrics_series *metrics_counter_fn(const char *name, const char *help, const char *labels,
                                   metrics_fn *fn, void *arg);
metrics_series *metrics_gauge_fn(const char *name, const char *help, const char *labels,
                                 metrics_fn *fn, void *arg);
/* A histogram with nbounds finite, strictly increasing upper bounds (copied;
 * the +Inf bucket is implicit). labels must not use "le". Rendered as
 * name_bucket{...,le="b"} (cumulative), name_sum and name_count. */
metrics_series *metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

/* Updates. NULL s: no-op. A call that does not fit the series type (set on a
 * counter, a negative add to a counter, observe on a gauge...) is ignored. */
void metrics_inc(metrics_series *s);
void metrics_add(metrics_series *s, double v);
void metrics_set(metrics_series *s, double v);
void metrics_observe(metrics_series *s, double v);

/* The current value (counter/gauge, callback evaluated) or, for a histogram,
 * its observation count. NULL: 0. Meant for tests and readiness checks. */
double metrics_value(const metrics_series *s);

/* Returns a new malloc'd NUL-terminated exposition of every series (the caller
 * frees it), or NULL when out of memory. If len is not NULL it receives the
 * length without the NUL. */
char *metrics_render_len(size_t *len);
/* metrics_render_len(NULL). */
char *metrics_render(void);

/* Whether metrics_render() appends the process_* metrics (on by default):
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. Tests that compare the whole output turn it off. */
void metrics_process_enable(int on);

/* Frees every family and series: all handles become invalid. For tests. */
void metrics_reset(void);

#endif
