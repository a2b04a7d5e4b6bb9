/* metrics.c -- Prometheus registry and text exposition (see metrics.h).
 *
 * The registry is a list of families in registration order, each with its
 * series in registration order, so the output is stable from one scrape to
 * the next (diffable, and exact enough for tests). Everything is rendered
 * into one growable buffer; values are doubles printed in their shortest form
 * that reads back to the same number, as Prometheus' own clients do.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef enum { MK_COUNTER, MK_GAUGE, MK_HISTOGRAM } metrics_kind;

struct metrics_series {
    struct metrics_family *fam;
    char *labels;           /* text between the braces, "" for none */
    double value;           /* counter / gauge */
    metrics_fn *fn;         /* callback series: value = fn(arg) */
    void *arg;
    double *bounds;         /* histogram: nbounds upper bounds */
    unsigned long long *buckets; /* histogram: per-bucket (non-cumulative) counts, nbounds + 1 */
    size_t nbounds;
    double sum;
    unsigned long long count;
    metrics_series *next;
};

typedef struct metrics_family {
    char *name;
    char *help;
    metrics_kind kind;
    metrics_series *first, *last;
    struct metrics_family *next;
} metrics_family;

static metrics_family *fam_first, *fam_last;
static int process_on = 1;

/* ---- validation ------------------------------------------------------------------ */

static int name_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int c = (unsigned char)*p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Checks a label set: name="value"(,name="value")*, label names without ':',
 * values with only \\, \" and \n escapes. Rejects reserved "__" names, and
 * "le" when the series is a histogram (the renderer adds it). */
static int labels_ok(const char *s, int histogram)
{
    const char *p = s;
    while (*p) {
        const char *n = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (p != n && *p >= '0' && *p <= '9'))
            p++;
        size_t nl = (size_t)(p - n);
        if (nl == 0 || (nl >= 2 && n[0] == '_' && n[1] == '_'))
            return 0;
        if (histogram && nl == 2 && n[0] == 'l' && n[1] == 'e')
            return 0;
        if (p[0] != '=' || p[1] != '"')
            return 0;
        p += 2;
        while (*p && *p != '"') {
            if (*p == '\n')
                return 0;
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    return 0;
                p++;
            }
            p++;
        }
        if (*p != '"')
            return 0;
        p++;
        if (*p == ',') {
            if (!*++p)
                return 0; /* a trailing comma would break the le="" join */
        } else if (*p) {
            return 0;
        }
    }
    return 1;
}

/* ---- registration ---------------------------------------------------------------- */

static metrics_family *family_find(const char *name)
{
    for (metrics_family *f = fam_first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static metrics_series *series_new(const char *name, const char *help, const char *labels,
                                  metrics_kind kind)
{
    if (!labels)
        labels = "";
    if (!name_ok(name) || !labels_ok(labels, kind == MK_HISTOGRAM)) {
        errno = EINVAL;
        return NULL;
    }
    metrics_family *f = family_find(name);
    if (f) {
        if (f->kind != kind) {
            errno = EINVAL;
            return NULL;
        }
        for (metrics_series *s = f->first; s; s = s->next)
            if (strcmp(s->labels, labels) == 0)
                return s;
    }
    metrics_series *s = calloc(1, sizeof(*s));
    if (!s || !(s->labels = strdup(labels)))
        goto fail;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            goto fail;
        f->kind = kind;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            goto fail;
        }
        if (fam_last)
            fam_last->next = f;
        else
            fam_first = f;
        fam_last = f;
    }
    s->fam = f;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
fail:
    if (s)
        free(s->labels);
    free(s);
    errno = ENOMEM;
    return NULL;
}

metrics_series *metrics_counter(const char *name, const char *help, const char *labels)
{
    return series_new(name, help, labels, MK_COUNTER);
}

metrics_series *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return series_new(name, help, labels, MK_GAUGE);
}

static metrics_series *fn_series(const char *name, const char *help, const char *labels,
                                 metrics_kind kind, metrics_fn *fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    metrics_series *s = series_new(name, help, labels, kind);
    if (s) {
        s->fn = fn;
        s->arg = arg;
    }
    return s;
}

metrics_series *metrics_counter_fn(const char *name, const char *help, const char *labels,
                                   metrics_fn *fn, void *arg)
{
    return fn_series(name, help, labels, MK_COUNTER, fn, arg);
}

metrics_series *metrics_gauge_fn(const char *name, const char *help, const char *labels,
                                 metrics_fn *fn, void *arg)
{
    return fn_series(name, help, labels, MK_GAUGE, fn, arg);
}

metrics_series *metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds)
{
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
            errno = EINVAL;
            return NULL;
        }
    metrics_series *s = series_new(name, help, labels, MK_HISTOGRAM);
    if (!s || s->buckets)
        return s; /* failed, or already registered: keep the first bounds */
    s->bounds = malloc((nbounds ? nbounds : 1) * sizeof(*s->bounds));
    s->buckets = calloc(nbounds + 1, sizeof(*s->buckets));
    if (!s->bounds || !s->buckets) {
        /* The series stays registered with no buckets: observe ignores it. */
        free(s->bounds);
        free(s->buckets);
        s->bounds = NULL;
        s->buckets = NULL;
        errno = ENOMEM;
        return NULL;
    }
    if (nbounds)
        memcpy(s->bounds, bounds, nbounds * sizeof(*bounds));
    s->nbounds = nbounds;
    return s;
}

/* ---- updates ------------------------------------------------------------------------ */

void metrics_inc(metrics_series *s)
{
    metrics_add(s, 1.0);
}

void metrics_add(metrics_series *s, double v)
{
    if (!s || s->fn || s->fam->kind == MK_HISTOGRAM)
        return;
    if (s->fam->kind == MK_COUNTER && !(v >= 0))
        return;
    s->value += v;
}

void metrics_set(metrics_series *s, double v)
{
    if (!s || s->fn || s->fam->kind != MK_GAUGE)
        return;
    s->value = v;
}

void metrics_observe(metrics_series *s, double v)
{
    if (!s || s->fam->kind != MK_HISTOGRAM || !s->buckets || isnan(v))
        return;
    /* Buckets are few (tens at most); a linear scan beats a branchy search. */
    size_t i = 0;
    while (i < s->nbounds && v > s->bounds[i])
        i++;
    s->buckets[i]++;
    s->sum += v;
    s->count++;
}

double metrics_value(const metrics_series *s)
{
    if (!s)
        return 0;
    if (s->fam->kind == MK_HISTOGRAM)
        return (double)s->count;
    return s->fn ? s->fn(s->arg) : s->value;
}

void metrics_process_enable(int on) { process_on = on; }

void metrics_reset(void)
{
    metrics_family *f = fam_first;
    while (f) {
        metrics_family *fn = f->next;
        metrics_series *s = f->first;
        while (s) {
            metrics_series *sn = s->next;
            free(s->labels);
            free(s->bounds);
            free(s->buckets);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    fam_first = fam_last = NULL;
}

/* ---- rendering ------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_grow(sbuf *b, size_t need)
{
    if (b->oom || b->len + need + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Shortest decimal form that parses back to v; integers without exponent up
 * to 1e15 (counters read better as 1234567 than 1.234567e+06). */
static void fmt_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, n, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void sb_double(sbuf *b, double v)
{
    char tmp[40];
    fmt_double(tmp, sizeof(tmp), v);
    sb_str(b, tmp);
}

/* HELP text escapes backslash and newline (exposition format 0.0.4). */
static void sb_help(sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_put(b, "\\\\", 2);
        else if (*s == '\n')
            sb_put(b, "\\n", 2);
        else
            sb_put(b, s, 1);
    }
}

static void sb_header(sbuf *b, const char *name, const char *help, const char *type)
{
    sb_str(b, "# HELP ");
    sb_str(b, name);
    sb_put(b, " ", 1);
    sb_help(b, help);
    sb_str(b, "\n# TYPE ");
    sb_str(b, name);
    sb_put(b, " ", 1);
    sb_str(b, type);
    sb_put(b, "\n", 1);
}

/* name[suffix]{labels[,extra]} value\n */
static void sb_sample(sbuf *b, const char *name, const char *suffix, const char *labels,
                      const char *extra, double v)
{
    sb_str(b, name);
    sb_str(b, suffix);
    int has = labels && *labels, hasx = extra && *extra;
    if (has || hasx) {
        sb_put(b, "{", 1);
        if (has)
            sb_str(b, labels);
        if (has && hasx)
            sb_put(b, ",", 1);
        if (hasx)
            sb_str(b, extra);
        sb_put(b, "}", 1);
    }
    sb_put(b, " ", 1);
    sb_double(b, v);
    sb_put(b, "\n", 1);
}

static void render_histogram(sbuf *b, const metrics_family *f, const metrics_series *s)
{
    unsigned long long cum = 0;
    char le[64];
    for (size_t i = 0; i <= s->nbounds && s->buckets; i++) {
        cum += s->buckets[i];
        char num[40];
        if (i < s->nbounds)
            fmt_double(num, sizeof(num), s->bounds[i]);
        else
            snprintf(num, sizeof(num), "+Inf");
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        sb_sample(b, f->name, "_bucket", s->labels, le, (double)cum);
    }
    sb_sample(b, f->name, "_sum", s->labels, NULL, s->sum);
    sb_sample(b, f->name, "_count", s->labels, NULL, (double)s->count);
}

/* ---- process metrics (Linux /proc) ----------------------------------------------------- */

static int read_file(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -1;
    size_t r = fread(buf, 1, n - 1, fp);
    fclose(fp);
    buf[r] = 0;
    return (int)r;
}

static void render_process(sbuf *b)
{
    char buf[4096];
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tck <= 0)
        tck = 100;

    /* /proc/self/stat: fields after the parenthesised command name, which may
     * itself contain spaces and parentheses, so parse from the last ')'. */
    if (read_file("/proc/self/stat", buf, sizeof(buf)) > 0) {
        char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0, start = 0;
        /* After ')': state(3) ... utime(14) stime(15) ... starttime(22). */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu",
                        &ut, &st, &start) == 3) {
            sb_header(b, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                      "counter");
            sb_sample(b, "process_cpu_seconds_total", "", NULL, NULL, (double)(ut + st) / (double)tck);
            char sbuf_[4096];
            unsigned long long btime = 0;
            if (read_file("/proc/stat", sbuf_, sizeof(sbuf_)) > 0) {
                char *bt = strstr(sbuf_, "\nbtime ");
                if (bt)
                    btime = strtoull(bt + 7, NULL, 10);
            }
            if (btime) {
                sb_header(b, "process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.", "gauge");
                sb_sample(b, "process_start_time_seconds", "", NULL, NULL,
                          (double)btime + (double)start / (double)tck);
            }
        }
    }
    unsigned long long vsz = 0, rss = 0;
    if (read_file("/proc/self/statm", buf, sizeof(buf)) > 0 && sscanf(buf, "%llu %llu", &vsz, &rss) == 2) {
        sb_header(b, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
        sb_sample(b, "process_resident_memory_bytes", "", NULL, NULL, (double)rss * (double)page);
        sb_header(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
        sb_sample(b, "process_virtual_memory_bytes", "", NULL, NULL, (double)vsz * (double)page);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        /* The directory stream itself held one descriptor while counting. */
        sb_header(b, "process_open_fds", "Number of open file descriptors.", "gauge");
        sb_sample(b, "process_open_fds", "", NULL, NULL, (double)(n > 0 ? n - 1 : 0));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        sb_header(b, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
        sb_sample(b, "process_max_fds", "", NULL, NULL,
                  rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    }
}

char *metrics_render_len(size_t *len)
{
    sbuf b = { 0 };
    sb_grow(&b, 0);
    if (b.p)
        b.p[0] = 0;
    static const char *const types[] = { "counter", "gauge", "histogram" };
    for (const metrics_family *f = fam_first; f; f = f->next) {
        if (!f->first)
            continue;
        sb_header(&b, f->name, f->help, types[f->kind]);
        for (const metrics_series *s = f->first; s; s = s->next) {
            if (f->kind == MK_HISTOGRAM)
                render_histogram(&b, f, s);
            else
                sb_sample(&b, f->name, "", s->labels, NULL, s->fn ? s->fn(s->arg) : s->value);
        }
    }
    if (process_on)
        render_process(&b);
    if (b.oom) {
        free(b.p);
        errno = ENOMEM;
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

char *metrics_render(void) { return metrics_render_len(NULL); }
