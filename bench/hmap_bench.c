/* hmap_bench.c -- nanoseconds per operation of lib/hmap (string keys) and
 * lib/u64map (integer keys), on one core, no allocation in the timed lookups.
 *
 *   build/bench/hmap_bench [N]
 *
 * N keys (default 100000) shaped like the daemons' keys: room names
 * "room-<n>" for hmap; sequential connection ids printed with "%llx" into
 * hmap (what gw_conn.c and rpc.c did) and put straight into u64map.
 * Prints put, get (hit), get (miss) and del for each, the best of 21 runs (the machine may be shared).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hmap.h"
#include "u64map.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uintptr_t sink;

typedef struct {
    double put, get, miss, del;
} times;

static void best(times *b, const times *t)
{
    if (t->put < b->put)
        b->put = t->put;
    if (t->get < b->get)
        b->get = t->get;
    if (t->miss < b->miss)
        b->miss = t->miss;
    if (t->del < b->del)
        b->del = t->del;
}

static int run_str(char (*keys)[24], char (*miss)[24], size_t n, times *t)
{
    hmap *m = hmap_new();
    if (!m)
        return -1;
    double a = now_ns();
    for (size_t i = 0; i < n; i++)
        if (hmap_put(m, keys[i], (void *)(i + 1)) < 0) {
            hmap_free(m);
            return -1;
        }
    double b = now_ns();
    for (size_t i = 0; i < n; i++)
        sink += (uintptr_t)hmap_get(m, keys[i]);
    double c = now_ns();
    for (size_t i = 0; i < n; i++)
        sink += (uintptr_t)hmap_get(m, miss[i]);
    double d = now_ns();
    for (size_t i = 0; i < n; i++)
        sink += (uintptr_t)hmap_del(m, keys[i]);
    double e = now_ns();
    hmap_free(m);
    *t = (times){ (b - a) / n, (c - b) / n, (d - c) / n, (e - d) / n };
    return 0;
}

/* What the integer call sites did before lib/u64map: print, then hash. */
static int run_fmt(size_t n, times *t)
{
    hmap *m = hmap_new();
    char k[24];
    if (!m)
        return -1;
    double a = now_ns();
    for (size_t i = 1; i <= n; i++) {
        snprintf(k, sizeof(k), "%llx", (unsigned long long)i);
        if (hmap_put(m, k, (void *)i) < 0) {
            hmap_free(m);
            return -1;
        }
    }
    double b = now_ns();
    for (size_t i = 1; i <= n; i++) {
        snprintf(k, sizeof(k), "%llx", (unsigned long long)i);
        sink += (uintptr_t)hmap_get(m, k);
    }
    double c = now_ns();
    for (size_t i = 1; i <= n; i++) {
        snprintf(k, sizeof(k), "%llx", (unsigned long long)i + n);
        sink += (uintptr_t)hmap_get(m, k);
    }
    double d = now_ns();
    for (size_t i = 1; i <= n; i++) {
        snprintf(k, sizeof(k), "%llx", (unsigned long long)i);
        sink += (uintptr_t)hmap_del(m, k);
    }
    double e = now_ns();
    hmap_free(m);
    *t = (times){ (b - a) / n, (c - b) / n, (d - c) / n, (e - d) / n };
    return 0;
}

static int run_u64(size_t n, times *t)
{
    u64map *m = u64map_new();
    if (!m)
        return -1;
    double a = now_ns();
    for (size_t i = 1; i <= n; i++)
        if (u64map_put(m, i, (void *)i) < 0) {
            u64map_free(m);
            return -1;
        }
    double b = now_ns();
    for (size_t i = 1; i <= n; i++)
        sink += (uintptr_t)u64map_get(m, i);
    double c = now_ns();
    for (size_t i = 1; i <= n; i++)
        sink += (uintptr_t)u64map_get(m, i + n);
    double d = now_ns();
    for (size_t i = 1; i <= n; i++)
        sink += (uintptr_t)u64map_del(m, i);
    double e = now_ns();
    u64map_free(m);
    *t = (times){ (b - a) / n, (c - b) / n, (d - c) / n, (e - d) / n };
    return 0;
}

static void print(const char *what, const times *t)
{
    printf("%-22s put %6.1f  get %6.1f  miss %6.1f  del %6.1f  ns/op\n", what, t->put, t->get, t->miss, t->del);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    if (!n)
        n = 100000;
    char (*rooms)[24] = malloc(n * sizeof(*rooms));
    char (*rmiss)[24] = malloc(n * sizeof(*rmiss));
    if (!rooms || !rmiss) {
        free(rooms);
        free(rmiss);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(rooms[i], sizeof(rooms[i]), "room-%u", (unsigned)i);
        snprintf(rmiss[i], sizeof(rmiss[i]), "moor-%u", (unsigned)i);
    }
    times bs = { 1e18, 1e18, 1e18, 1e18 }, bi = bs, bu = bs, t;
    int rc = 0;
    for (int r = 0; r < 21 && !rc; r++) {
        if (run_str(rooms, rmiss, n, &t) < 0 || (best(&bs, &t), run_fmt(n, &t) < 0) ||
            (best(&bi, &t), run_u64(n, &t) < 0))
            rc = 1;
        else
            best(&bu, &t);
    }
    free(rooms);
    free(rmiss);
    if (rc) {
        fprintf(stderr, "hmap_bench: out of memory\n");
        return 1;
    }
    printf("%zu keys\n", n);
    print("hmap \"room-<n>\"", &bs);
    print("snprintf+hmap id", &bi);
    print("u64map id", &bu);
    return 0;
}
