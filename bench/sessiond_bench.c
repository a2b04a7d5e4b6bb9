/* sessiond_bench.c -- how much sessiond sustains, measured on the real
 * binary with a real redis-server and busd (tests/unit/test_sessiond_util.h
 * starts them on free loopback ports).
 *
 *   build/bench/sessiond_bench [seconds] [window] [N ...]
 *
 * 1. Session events per second: a simulated gateway keeps `window` requests
 *    in flight for `seconds` (default 10 s, window 256). Each session does
 *    open, join of a room, close (a drop: the session stays alive and its
 *    presence goes reconnecting), so every request changes Redis state and
 *    publishes presence. Prints requests/s, sessions/s, latency percentiles,
 *    and sessiond's and Redis's CPU per request.
 * 2. Gateway death: a gateway holding N sessions (default 1000 and 10000,
 *    50 per room) stops heartbeating; prints the time from its last
 *    heartbeat to the last of the N `reconnecting` events, and from the
 *    moment it fell silent (a SIGKILL lands anywhere in the 1 s between
 *    two heartbeats).
 */
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/test_sessiond_util.h"

/* ---- CPU of a process ------------------------------------------------------------------------ */

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Redis's own account of the scripts: calls and microseconds per call. */
static void redis_script_stats(const char *what)
{
    redisReply *r = tu_redis(W.redis_port, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return;
    }
    const char *l = strstr(r->str, "cmdstat_evalsha:");
    if (l) {
        unsigned long long calls = 0;
        double per = 0;
        if (sscanf(l, "cmdstat_evalsha:calls=%llu,usec=%*u,usec_per_call=%lf", &calls, &per) == 2)
            printf("  redis (%s): %llu script calls so far, %.1f us per call\n", what, calls, per);
    }
    freeReplyObject(r);
    freeReplyObject(tu_redis(W.redis_port, "CONFIG RESETSTAT"));
}

/* ---- 1. throughput --------------------------------------------------------------------------- */

typedef struct slot {
    int step;      /* 0 open, 1 join, 2 close */
    uint64_t n;    /* session number */
    uint64_t t0;   /* when the request was sent, us */
} slot;

static struct {
    ts_gw *g;
    uint64_t end_ms;
    uint64_t next;
    unsigned long long done, errors, sessions;
    double *lat;   /* ms, a sample ring */
    size_t nlat, caplat;
    int inflight;
} T;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void issue(slot *s);

static void done_cb(ts_gw *g, int status, const bus_env *rep, void *arg)
{
    (void)g;
    slot *s = arg;
    T.inflight--;
    if (status != 0 || !rep || rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ERROR)
        T.errors++;
    T.done++;
    if (T.nlat < T.caplat)
        T.lat[T.nlat++] = (double)(now_us() - s->t0) / 1000.0;
    if (s->step == 2)
        T.sessions++;
    s->step = (s->step + 1) % 3;
    if (s->step == 0)
        s->n = T.next++;
    if (tu_ms() < T.end_ms)
        issue(s);
}

static void issue(slot *s)
{
    char sid[32], user[32], room[32];
    snprintf(sid, sizeof(sid), "b%llu", (unsigned long long)s->n);
    snprintf(user, sizeof(user), "bu%llu", (unsigned long long)(s->n % 5000));
    snprintf(room, sizeof(room), "bench.%llu", (unsigned long long)(s->n % 100));
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq o = TETHER__BUS__SESS_OPEN_REQ__INIT;
    Tether__Bus__SessRoomReq rr;
    Tether__Bus__SessCloseReq cr;
    if (s->step == 0) {
        o.session = sid;
        o.user = user;
        o.conn = s->n + 1;
        o.at_ms = loop_wall_ms();
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
        env.sess_open_req = &o;
    } else if (s->step == 1) {
        ts_room_env(&env, &rr, sid, s->n + 1, room, 1);
    } else {
        ts_close_env(&env, &cr, sid, s->n + 1, 0, loop_wall_ms());
    }
    s->t0 = now_us();
    T.inflight++;
    ts_call_async(T.g, &env, 5000, 3, done_cb, s);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void throughput(unsigned seconds, unsigned window)
{
    memset(&T, 0, sizeof(T));
    T.g = ts_gw_new("bench-gw", 1);
    ts_gw_heartbeats(T.g, 1000);
    ts_spin(100);
    T.caplat = 4000000;
    T.lat = malloc(T.caplat * sizeof(double));
    slot *slots = calloc(window, sizeof(*slots));
    double c_s0 = proc_cpu_s(W.sessiond), c_r0 = proc_cpu_s(W.redis);
    uint64_t t0 = tu_ms();
    T.end_ms = t0 + (uint64_t)seconds * 1000;
    for (unsigned i = 0; i < window; i++) {
        slots[i].n = T.next++;
        issue(&slots[i]);
    }
    while (T.inflight > 0)
        loop_run_once(W.l, 10);
    double secs = (double)(tu_ms() - t0) / 1000.0;
    double c_s = proc_cpu_s(W.sessiond) - c_s0, c_r = proc_cpu_s(W.redis) - c_r0;
    qsort(T.lat, T.nlat, sizeof(double), cmp_dbl);
    double p50 = T.nlat ? T.lat[T.nlat / 2] : 0, p99 = T.nlat ? T.lat[T.nlat * 99 / 100] : 0,
           p999 = T.nlat ? T.lat[T.nlat * 999 / 1000] : 0;
    printf("throughput: %llu requests in %.1f s = %.0f req/s (%.0f sessions/s: open + join + close), window %u, "
           "%llu errors\n",
           T.done, secs, (double)T.done / secs, (double)T.sessions / secs, window, T.errors);
    printf("  latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; sessiond %.1f us CPU/request, redis %.1f us "
           "CPU/request\n",
           p50, p99, p999, c_s * 1e6 / (double)(T.done ? T.done : 1), c_r * 1e6 / (double)(T.done ? T.done : 1));
    redis_script_stats("throughput");
    free(slots);
    free(T.lat);
    ts_gw_free(T.g);
}

/* ---- 2. gateway death ------------------------------------------------------------------------ */

typedef struct opener {
    ts_gw *g;
    int n, next, done, inflight;
    char prefix[16];
} opener;

static void open_next(opener *o);

static void opened(ts_gw *g, int status, const bus_env *rep, void *arg)
{
    (void)g;
    (void)status;
    (void)rep;
    opener *o = arg;
    o->inflight--;
    o->done++;
    if (o->next < 2 * o->n)
        open_next(o);
}

/* Two requests per session: open, then join (the join of session i is sent
 * once its open is issued; the gateway's DEALER keeps their order). */
static void open_next(opener *o)
{
    int i = o->next / 2, join = o->next % 2;
    o->next++;
    char sid[40], user[40], room[40];
    snprintf(sid, sizeof(sid), "%s-%d", o->prefix, i);
    snprintf(user, sizeof(user), "%s-u%d", o->prefix, i);
    snprintf(room, sizeof(room), "%s.%d", o->prefix, i / 50);
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__SessOpenReq op = TETHER__BUS__SESS_OPEN_REQ__INIT;
    Tether__Bus__SessRoomReq rr;
    if (!join) {
        op.session = sid;
        op.user = user;
        op.conn = (uint64_t)i + 1;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_SESS_OPEN_REQ;
        env.sess_open_req = &op;
    } else {
        ts_room_env(&env, &rr, sid, (uint64_t)i + 1, room, 1);
    }
    o->inflight++;
    ts_call_async(o->g, &env, 10000, 3, opened, o);
}

static size_t count_prefix(const char *prefix, const char *state, size_t from)
{
    size_t k = 0, pl = strlen(prefix);
    for (size_t i = from; i < W.npev; i++)
        if (!strncmp(W.pev[i].room, prefix, pl) && !strcmp(W.pev[i].state, state))
            k++;
    return k;
}

static void death(int n, int round)
{
    opener o = { 0 };
    char inst[32];
    snprintf(inst, sizeof(inst), "bench-dead-%d", round);
    o.g = ts_gw_new(inst, 100 + (uint64_t)round);
    o.n = n;
    snprintf(o.prefix, sizeof(o.prefix), "d%d", round);
    ts_gw_heartbeats(o.g, 1000);
    ts_spin(50);
    uint64_t t0 = tu_ms();
    for (int i = 0; i < 256 && o.next < 2 * n; i++)
        open_next(&o);
    while (o.done < 2 * n)
        loop_run_once(W.l, 10);
    double open_s = (double)(tu_ms() - t0) / 1000.0;
    ts_spin(1100);
    size_t from = ts_quiet(300);
    freeReplyObject(tu_redis(W.redis_port, "CONFIG RESETSTAT"));
    uint64_t silent = tu_ms();
    uint64_t last_hb = o.g->last_hb_ms;
    ts_gw_silence(o.g);
    uint64_t end = tu_ms() + 30000;
    size_t got;
    while ((got = count_prefix(o.prefix, "reconnecting", from)) < (size_t)n && tu_ms() < end)
        loop_run_once(W.l, 2);
    uint64_t last = 0;
    for (size_t i = from; i < W.npev; i++)
        if (!strncmp(W.pev[i].room, o.prefix, strlen(o.prefix)) && W.pev[i].at_ms > last)
            last = W.pev[i].at_ms;
    uint64_t first = UINT64_MAX;
    for (size_t i = from; i < W.npev; i++)
        if (!strncmp(W.pev[i].room, o.prefix, strlen(o.prefix)) && W.pev[i].at_ms < first)
            first = W.pev[i].at_ms;
    printf("gateway death, %d sessions (opened %.0f/s): %zu marked; first %llu ms, last %llu ms after its last "
           "heartbeat (last %llu ms after it fell silent); marking itself took %llu ms\n",
           n, 2.0 * n / open_s / 2.0, got, (unsigned long long)(first - last_hb), (unsigned long long)(last - last_hb),
           (unsigned long long)(last - silent), (unsigned long long)(last - first));
    redis_script_stats("death");
    ts_gw_free(o.g);
}

int main(int argc, char **argv)
{
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 10;
    unsigned window = argc > 2 ? (unsigned)atoi(argv[2]) : 256;
    if (!ts_world_start("sessiond_bench", 120)) {
        fprintf(stderr, "sessiond_bench: could not start redis/busd/sessiond (logs in %s)\n", tu_dir());
        ts_world_stop();
        return 1;
    }
    printf("# sessiond, redis-server, busd and this load generator share this machine (%ld cores)\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    throughput(seconds, window);
    int round = 0;
    if (argc > 3) {
        for (int i = 3; i < argc; i++)
            death(atoi(argv[i]), round++);
    } else {
        death(1000, round++);
        death(10000, round++);
    }
    ts_world_stop();
    return 0;
}
