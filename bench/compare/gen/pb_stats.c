/* pb_stats.c -- peerbench's measuring: a log-linear latency histogram, the
 * per-subscriber record of sequence numbers (loss, duplicates, reordering)
 * and CPU / memory of processes from /proc.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "pb.h"
#include "procstat.h"

uint64_t pb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ------------------------------------------------------------------------------- */

/* Values below 128 have a bucket each; above, 64 buckets per power of two. */
static unsigned bucket(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > 40)
        return PB_HIST_BUCKETS - 1;
    unsigned i = 128u + (e - 7u) * 64u + ((unsigned)(v >> (e - 6)) & 63u);
    return i < PB_HIST_BUCKETS ? i : PB_HIST_BUCKETS - 1;
}

static uint64_t bucket_high(unsigned i)
{
    if (i < 128)
        return i;
    unsigned e = (i - 128u) / 64u + 7u, sub = (i - 128u) % 64u;
    return ((uint64_t)(64u + sub) << (e - 6)) + ((uint64_t)1 << (e - 6)) - 1;
}

void pb_hist_add(pb_hist *h, uint64_t us)
{
    h->b[bucket(us)]++;
    h->n++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
}

uint64_t pb_hist_q(const pb_hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)((double)h->n * q + 0.5), seen = 0;
    if (!want)
        want = 1;
    for (unsigned i = 0; i < PB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t top = bucket_high(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

/* ---- sequence tracking ----------------------------------------------------------------------- */

static int bit(const pb_track *t, uint64_t s)
{
    return (int)(t->ring[(s >> 6) & 15] >> (s & 63)) & 1;
}

static void set_bit(pb_track *t, uint64_t s)
{
    t->ring[(s >> 6) & 15] |= 1ull << (s & 63);
}

static void clear_bit(pb_track *t, uint64_t s)
{
    t->ring[(s >> 6) & 15] &= ~(1ull << (s & 63));
}

int pb_track_see(pb_track *t, uint64_t seq)
{
    t->recv++;
    if (!t->last) {
        t->base = t->last = seq;
        memset(t->ring, 0, sizeof(t->ring));
        set_bit(t, seq);
        return 1;
    }
    if (seq > t->last) {
        /* Everything between is missing until (if ever) it arrives late. */
        t->missing += seq - t->last - 1;
        if (seq - t->last >= 1024)
            memset(t->ring, 0, sizeof(t->ring));
        else
            for (uint64_t s = t->last + 1; s < seq; s++)
                clear_bit(t, s);
        set_bit(t, seq);
        t->last = seq;
        return 1;
    }
    if (seq < t->base) {
        /* Older than where counting started: not ours to count. */
        t->reordered++;
        return 0;
    }
    if (t->last - seq >= 1024 || bit(t, seq)) {
        t->dup++;
        return 0;
    }
    set_bit(t, seq);
    t->missing--;
    t->reordered++;
    return 1;
}

uint64_t pb_track_missing(const pb_track *t, uint64_t top)
{
    if (!t->last)
        return 0;
    return t->missing + (top > t->last ? top - t->last : 0);
}

/* ---- processes --------------------------------------------------------------------------------- */

double pb_proc_cpu_s(pid_t pid)
{
    return procstat_cpu_s(pid);
}

double pb_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

long pb_proc_rss_kb(pid_t pid)
{
    return procstat_kb(pid, "status", "VmRSS:");
}

long pb_proc_pss_kb(pid_t pid)
{
    return procstat_kb(pid, "smaps_rollup", "Pss:");
}
