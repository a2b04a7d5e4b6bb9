/* cli_bench.c -- `tether bench`: options, worker processes, coordination and
 * the JSON summary (the workloads are in cli_bench_work.c).
 *
 * The parent never opens a connection. It forks --procs workers (a process
 * holds at most ~19,900 sockets here: the fd hard limit is 20,000), waits
 * until every worker's connections are ready, samples the servers given with
 * --server-pid, tells the workers when the measurement window starts and
 * ends, samples again at the window's edges, and merges the workers'
 * results into one JSON line on stdout. Progress goes to stderr as JSON
 * event lines; {"event":"ready"} is what a runner waits for before it kills
 * the gateway in --mode reconnect.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_bench.h"

typedef struct child {
    pid_t pid;
    int rd, wr;                /* from / to the worker */
    int ready, done;
    size_t got;
    bench_result *res;
} child;

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int signo)
{
    (void)signo;
    g_interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether bench --mode publish|fanout|idle|reconnect|chaos [options]\n"
            "\n"
            "Load generator. Prints one JSON summary line on stdout; progress as JSON\n"
            "lines on stderr. All connections of a process share one libwebsockets\n"
            "context (one thread); --procs spreads them over processes.\n"
            "\n"
            "modes:\n"
            "  publish    --conns N publish into --rooms rooms: at a total --rate msg/s, or\n"
            "             (--rate 0) as fast as acks return with --window in flight per\n"
            "             connection. Reports acks/s and ack latency (tc_publish -> ack).\n"
            "  fanout     1 publisher at --rate msg/s into --room, --conns subscribers.\n"
            "             Reports deliveries/s and publish-to-deliver latency.\n"
            "  idle       --conns authenticated connections held for --duration s; with\n"
            "             --server-pid reports the servers' RSS before/after and per conn.\n"
            "  reconnect  --conns subscribers of --room wait for the gateway to go away\n"
            "             and come back (kill and restart it after the 'ready' event);\n"
            "             reports the time from gateway back to all resumed and the\n"
            "             histogram of resume and attempt times (thundering herd check).\n"
            "  chaos      --conns clients (default 20) in one process, for the chaos harness\n"
            "             (tests/chaos): client i is user <user>-<i>, subscribes to rooms\n"
            "             <room>-<i %% K> and <room>-<(i+1) %% K> (K = --rooms, default 4),\n"
            "             publishes into the first with ids at a total --rate msg/s (default\n"
            "             --conns) and logs every event it sees to --log as JSON lines.\n"
            "             Runs until 'stop' or EOF on stdin (also: quiesce, resume, stats).\n"
            "\n"
            "options:\n"
            "  --conns N          connections (publish 100, others 1000)\n"
            "  --rate R           publish: total msg/s, 0 = closed loop (default 0);\n"
            "                     fanout: msg/s (default 100)\n"
            "  --duration S       measurement window (default 10)\n"
            "  --warmup S         traffic before the window, not measured (default 2)\n"
            "  --size BYTES       message data size (default 100)\n"
            "  --window W         publish closed loop: in flight per connection (default 8)\n"
            "  --rooms K          publish: rooms used, connection i -> room i %% K (default N)\n"
            "  --room NAME        room (prefix) name (default bench)\n"
            "  --procs K          worker processes (default: enough for the fd limit)\n"
            "  --ramp R           new connections per second (default 2000)\n"
            "  --timeout S        readiness / reconnect deadline (default 120)\n"
            "  --drain MS         wait after the window for in-flight work (default 2000)\n"
            "  --secret S         mint one token per connection (user bench-<i>) with the\n"
            "                     gateway's HS256 secret (default $TETHER_JWT_SECRET);\n"
            "                     otherwise every connection uses --token\n"
            "  --server-pid P,..  processes to measure (CPU, RSS); for idle, list them in\n"
            "                     the order of --url (connections are spread round robin)\n"
            "  --url U1,U2,..     several gateways: connections spread round robin\n"
            "  --log PATH         chaos: the event log (default '-': stdout)\n"
            "  --user PREFIX      chaos: user name prefix (default c)\n"
            "  --churn MS         chaos: each client leaves at random, mean MS apart, and\n"
            "                     comes back 0.2-3 s later (one time in five with bye)\n"
            "\nbench's connections never give up by default (--max-attempts 0).\n"
            "\n%s",
            cli_conn_help);
}

/* ---- options ----------------------------------------------------------------------------- */

static int split_urls(bench_cfg *cfg, char *list)
{
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (cfg->nurls == BENCH_MAX_URLS || (strncmp(p, "ws://", 5) && strncmp(p, "wss://", 6)))
            return -1;
        cfg->urls[cfg->nurls++] = p;
    }
    return cfg->nurls ? 0 : -1;
}

static int split_pids(bench_cfg *cfg, char *list)
{
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (cfg->npids == BENCH_MAX_PIDS || cli_parse_u64(p, 1, 1u << 30, &v) < 0)
            return -1;
        cfg->server_pids[cfg->npids++] = (pid_t)v;
    }
    return 0;
}

static int num(const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *v)
{
    if (cli_parse_u64(arg, lo, hi, v) == 0)
        return 0;
    fprintf(stderr, "tether bench: --%s wants a number in %llu..%llu, got '%s'\n", name, (unsigned long long)lo,
            (unsigned long long)hi, arg);
    return -1;
}

static int parse(bench_cfg *cfg, int argc, char **argv, char **url_copy, char **pid_copy)
{
    static const struct option extra[] = {
        { "mode", required_argument, NULL, 'm' },     { "conns", required_argument, NULL, 'c' },
        { "rate", required_argument, NULL, 'r' },     { "duration", required_argument, NULL, 'd' },
        { "warmup", required_argument, NULL, 'w' },   { "size", required_argument, NULL, 's' },
        { "window", required_argument, NULL, 'W' },   { "rooms", required_argument, NULL, 'R' },
        { "room", required_argument, NULL, 'o' },     { "procs", required_argument, NULL, 'p' },
        { "ramp", required_argument, NULL, 'a' },     { "timeout", required_argument, NULL, 'T' },
        { "drain", required_argument, NULL, 'D' },    { "secret", required_argument, NULL, 'S' },
        { "server-pid", required_argument, NULL, 'P' }, { "help", no_argument, NULL, 'h' },
        { "log", required_argument, NULL, 'L' },      { "user", required_argument, NULL, 'U' },
        { "churn", required_argument, NULL, 'C' },
        { NULL, 0, NULL, 0 },
    };
    int opt, r, have_rate = 0, have_drain = 0;
    cli_conn_init(&cfg->conn);
    cfg->conn.backoff.max_attempts = 0; /* load clients never give up unless told */
    cfg->room = "bench";
    cfg->duration_s = 10;
    cfg->warmup_s = 2;
    cfg->size = 100;
    cfg->window = 8;
    cfg->ramp = 2000;
    cfg->timeout_s = 120;
    cfg->secret = getenv("TETHER_JWT_SECRET");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", cli_long_opts(extra), NULL)) != -1) {
        if ((r = cli_conn_opt(&cfg->conn, opt, optarg)) != 0) {
            if (r < 0)
                return -1;
            if (opt == CLI_O_URL) {
                free(*url_copy);
                *url_copy = strdup(optarg);
            }
            continue;
        }
        switch (opt) {
        case 'm':
            cfg->mode_name = optarg;
            cfg->mode = !strcmp(optarg, "publish")     ? BENCH_PUBLISH
                        : !strcmp(optarg, "fanout")    ? BENCH_FANOUT
                        : !strcmp(optarg, "idle")      ? BENCH_IDLE
                        : !strcmp(optarg, "reconnect") ? BENCH_RECONNECT
                        : !strcmp(optarg, "chaos")     ? BENCH_CHAOS
                                                       : 0;
            if (!cfg->mode) {
                fprintf(stderr, "tether bench: --mode is publish, fanout, idle, reconnect or chaos\n");
                return -1;
            }
            break;
        case 'c': if (num("conns", optarg, 1, 1000000, &cfg->conns) < 0) return -1; break;
        case 'r': if (num("rate", optarg, 0, 10000000, &cfg->rate) < 0) return -1; have_rate = 1; break;
        case 'd': if (num("duration", optarg, 1, 86400, &cfg->duration_s) < 0) return -1; break;
        case 'w': if (num("warmup", optarg, 0, 3600, &cfg->warmup_s) < 0) return -1; break;
        case 's': if (num("size", optarg, 32, 60000, &cfg->size) < 0) return -1; break;
        case 'W': if (num("window", optarg, 1, 10000, &cfg->window) < 0) return -1; break;
        case 'R': if (num("rooms", optarg, 1, 1000000, &cfg->rooms) < 0) return -1; break;
        case 'p': if (num("procs", optarg, 1, 64, &cfg->procs) < 0) return -1; break;
        case 'a': if (num("ramp", optarg, 1, 1000000, &cfg->ramp) < 0) return -1; break;
        case 'T': if (num("timeout", optarg, 1, 86400, &cfg->timeout_s) < 0) return -1; break;
        case 'D': if (num("drain", optarg, 0, 600000, &cfg->drain_ms) < 0) return -1; have_drain = 1; break;
        case 'o': cfg->room = optarg; break;
        case 'S': cfg->secret = optarg; break;
        case 'L': cfg->log_path = optarg; break;
        case 'U': cfg->user_prefix = optarg; break;
        case 'C': if (num("churn", optarg, 0, 86400000, &cfg->churn_ms) < 0) return -1; break;
        case 'P':
            free(*pid_copy);
            *pid_copy = strdup(optarg);
            if (!*pid_copy || split_pids(cfg, *pid_copy) < 0) {
                fprintf(stderr, "tether bench: --server-pid wants a comma list of pids\n");
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (!cfg->mode) {
        fprintf(stderr, "tether bench: say which workload: --mode publish|fanout|idle|reconnect|chaos\n");
        return -1;
    }
    if (!cfg->conns)
        cfg->conns = cfg->mode == BENCH_PUBLISH ? 100 : cfg->mode == BENCH_CHAOS ? 20 : 1000;
    if (!have_rate)
        cfg->rate = cfg->mode == BENCH_FANOUT ? 100 : cfg->mode == BENCH_CHAOS ? cfg->conns : 0;
    if (cfg->mode == BENCH_CHAOS && !cfg->rooms)
        cfg->rooms = 4;
    if (!cfg->user_prefix)
        cfg->user_prefix = "c";
    if (cfg->mode == BENCH_FANOUT && !cfg->rate) {
        fprintf(stderr, "tether bench: fanout needs --rate > 0\n");
        return -1;
    }
    if (!have_drain)
        cfg->drain_ms = cfg->mode == BENCH_PUBLISH ? 1000 : 2000;
    if (!cfg->rooms)
        cfg->rooms = cfg->conns;
    if (!*url_copy)
        *url_copy = strdup(cfg->conn.url);
    if (!*url_copy || split_urls(cfg, *url_copy) < 0) {
        fprintf(stderr, "tether bench: --url wants ws://host:port/path[,ws://...]\n");
        return -1;
    }
    if (!(cfg->secret && *cfg->secret) && !cfg->conn.token && !getenv("TETHER_TOKEN")) {
        fprintf(stderr, "tether bench: give --secret (or TETHER_JWT_SECRET) to mint a token per connection,\n"
                        "              or --token/TETHER_TOKEN to share one\n");
        return -1;
    }
    if (!(cfg->secret && *cfg->secret)) {
        cfg->secret = NULL;
        if (!cfg->conn.token)
            cfg->conn.token = getenv("TETHER_TOKEN");
    }
    struct rlimit rl;
    uint64_t hard = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_max : 1024;
    uint64_t per_proc = hard > 128 ? hard - 100 : 1;
    if (!cfg->procs)
        cfg->procs = (cfg->conns + 1 + per_proc - 1) / per_proc;
    if ((cfg->conns + 1 + cfg->procs - 1) / cfg->procs > per_proc) {
        fprintf(stderr, "tether bench: %llu connections over %llu process(es) exceed the fd limit (%llu per\n"
                        "              process): use --procs %llu or more\n",
                (unsigned long long)cfg->conns, (unsigned long long)cfg->procs, (unsigned long long)hard,
                (unsigned long long)((cfg->conns + per_proc - 1) / per_proc));
        return -1;
    }
    return 0;
}

/* ---- coordination ------------------------------------------------------------------------- */

static void write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t m = write(fd, b, n);
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0)
            return;
        b += m;
        n -= (size_t)m;
    }
}

static int spawn(const bench_cfg *cfg, child *ch, int n)
{
    for (int i = 0; i < n; i++) {
        int up[2], down[2];
        if (pipe(up) < 0 || pipe(down) < 0)
            return -errno;
        pid_t pid = fork();
        if (pid < 0)
            return -errno;
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            for (int j = 0; j < i; j++) {
                close(ch[j].rd);
                close(ch[j].wr);
            }
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            bench_worker(cfg, i, n, up[1], down[0]);
        }
        close(up[1]);
        close(down[0]);
        ch[i].pid = pid;
        ch[i].rd = up[0];
        ch[i].wr = down[1];
        ch[i].res = calloc(1, sizeof(bench_result));
        if (!ch[i].res)
            return -ENOMEM;
    }
    return 0;
}

/* Reads what a worker sent: 'R', then 'D', then its bench_result. Returns
 * -1 when it died without finishing. */
static int child_read(child *c)
{
    if (c->done) {
        ssize_t m = read(c->rd, (char *)c->res + c->got, sizeof(bench_result) - c->got);
        if (m <= 0)
            return -1;
        c->got += (size_t)m;
        return 0;
    }
    char b;
    if (read(c->rd, &b, 1) != 1)
        return -1;
    if (b == 'R')
        c->ready = 1;
    else if (b == 'D' && c->ready)
        c->done = 1;
    return 0;
}

typedef struct server_sample {
    double cpu0, cpu1;
    long rss_before, rss_after;
} server_sample;

static void sample_cpu(const bench_cfg *cfg, server_sample *s, int end)
{
    for (int i = 0; i < cfg->npids; i++) {
        double v = bench_pid_cpu(cfg->server_pids[i]);
        if (end)
            s[i].cpu1 = v;
        else
            s[i].cpu0 = v;
    }
}

static void sample_rss(const bench_cfg *cfg, server_sample *s, int after)
{
    for (int i = 0; i < cfg->npids; i++) {
        long v = bench_pid_rss_kb(cfg->server_pids[i]);
        if (after)
            s[i].rss_after = v;
        else
            s[i].rss_before = v;
    }
}

/* ---- summary ---------------------------------------------------------------------------- */

static json_t *timeline(const uint32_t *tl, int64_t from_bucket, unsigned width_buckets)
{
    json_t *a = json_array();
    int64_t last = -1;
    for (int64_t i = BT_BUCKETS - 1; i >= 0; i--)
        if (tl[i]) {
            last = i;
            break;
        }
    if (from_bucket < 0)
        from_bucket = 0;
    for (int64_t b = from_bucket; b <= last; b += width_buckets) {
        uint64_t n = 0;
        for (int64_t k = b; k < b + width_buckets && k < BT_BUCKETS; k++)
            n += tl[k];
        json_array_append_new(a, json_pack("[I,I]", (json_int_t)(b - from_bucket) * BT_BUCKET_MS, (json_int_t)n));
    }
    return a;
}

static uint64_t peak_per(const uint32_t *tl, unsigned width_buckets)
{
    uint64_t best = 0;
    for (unsigned i = 0; i + width_buckets <= BT_BUCKETS; i++) {
        uint64_t n = 0;
        for (unsigned k = i; k < i + width_buckets; k++)
            n += tl[k];
        if (n > best)
            best = n;
    }
    return best;
}

static json_t *summary(const bench_cfg *cfg, const bench_go *go, const bench_result *t, const server_sample *ss,
                       uint64_t t_first_ready_us, uint64_t t_start_us)
{
    double win = (double)cfg->duration_s;
    double server_cpu = 0;
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "mode", cfg->mode_name, "conns", (json_int_t)cfg->conns,
                          "procs", (json_int_t)cfg->procs, "ready", (json_int_t)t->ready, "failed",
                          (json_int_t)t->failed, "drops", (json_int_t)t->drops, "client_cpu_s", t->cpu_s);
    json_t *urls = json_array(), *servers = json_array();
    for (int i = 0; i < cfg->nurls; i++)
        json_array_append_new(urls, json_string(cfg->urls[i]));
    json_object_set_new(o, "urls", urls);
    json_object_set_new(o, "ready_after_s", json_real((double)(t_first_ready_us - t_start_us) / 1e6));
    for (int i = 0; i < cfg->npids; i++) {
        double cpu = ss[i].cpu1 >= 0 && ss[i].cpu0 >= 0 ? ss[i].cpu1 - ss[i].cpu0 : -1;
        if (cpu > 0)
            server_cpu += cpu;
        json_t *s = json_pack("{s:i,s:f,s:I,s:I}", "pid", (int)cfg->server_pids[i], "cpu_s", cpu, "rss_before_kb",
                              (json_int_t)ss[i].rss_before, "rss_after_kb", (json_int_t)ss[i].rss_after);
        if (cfg->mode == BENCH_IDLE && ss[i].rss_after > 0 && ss[i].rss_before > 0) {
            /* Connections are spread over the urls round robin; pid i serves url i. */
            uint64_t served = cfg->conns / (uint64_t)cfg->nurls + ((uint64_t)i < cfg->conns % (uint64_t)cfg->nurls);
            if (cfg->npids == 1 && cfg->nurls == 1)
                served = t->ready;
            json_object_set_new(s, "conns", json_integer((json_int_t)served));
            json_object_set_new(s, "rss_per_conn_bytes",
                                json_real(served ? (double)(ss[i].rss_after - ss[i].rss_before) * 1024.0 /
                                                       (double)served
                                                 : 0));
        }
        json_array_append_new(servers, s);
    }
    json_object_set_new(o, "servers", servers);
    json_object_set_new(o, "server_cpu_s", json_real(server_cpu));
    if (cfg->mode == BENCH_FANOUT || cfg->mode == BENCH_RECONNECT) {
        /* The join storm: each member's join is told to every member. */
        json_object_set_new(o, "presence_frames", json_integer((json_int_t)t->presence));
        json_object_set_new(o, "presence_frames_in_window", json_integer((json_int_t)t->presence_window));
        json_object_set_new(o, "presence_settle_s", json_real((double)t->settle_us / 1e6));
    }
    switch (cfg->mode) {
    case BENCH_PUBLISH:
        json_object_set_new(o, "rate_target", json_integer((json_int_t)cfg->rate));
        json_object_set_new(o, "window", json_integer((json_int_t)cfg->window));
        json_object_set_new(o, "rooms", json_integer((json_int_t)cfg->rooms));
        json_object_set_new(o, "size", json_integer((json_int_t)cfg->size));
        json_object_set_new(o, "duration_s", json_real(win));
        json_object_set_new(o, "sent", json_integer((json_int_t)t->sent));
        json_object_set_new(o, "acks", json_integer((json_int_t)t->acks));
        json_object_set_new(o, "acks_per_s", json_real((double)t->acks / win));
        json_object_set_new(o, "errors", json_integer((json_int_t)t->errors));
        json_object_set_new(o, "rejected", json_integer((json_int_t)t->rejected));
        json_object_set_new(o, "ack_latency_us", bh_json(&t->ack));
        json_object_set_new(o, "client_cpu_pct", json_real(100.0 * t->cpu_s / win));
        json_object_set_new(o, "server_cpu_us_per_ack", json_real(t->acks ? server_cpu * 1e6 / (double)t->acks : 0));
        break;
    case BENCH_FANOUT: {
        uint64_t subs = cfg->conns, expected = t->pub_sent_window * subs;
        json_object_set_new(o, "subscribers", json_integer((json_int_t)subs));
        json_object_set_new(o, "rate_target", json_integer((json_int_t)cfg->rate));
        json_object_set_new(o, "size", json_integer((json_int_t)cfg->size));
        json_object_set_new(o, "duration_s", json_real(win));
        json_object_set_new(o, "published", json_integer((json_int_t)t->pub_sent_window));
        json_object_set_new(o, "expected", json_integer((json_int_t)expected));
        json_object_set_new(o, "delivered", json_integer((json_int_t)t->delivered));
        json_object_set_new(o, "missing", json_integer((json_int_t)(expected > t->delivered ? expected - t->delivered : 0)));
        json_object_set_new(o, "delivered_per_s", json_real((double)t->delivered / win));
        json_object_set_new(o, "gaps", json_integer((json_int_t)t->gaps));
        json_object_set_new(o, "latency_us", bh_json(&t->lat));
        json_object_set_new(o, "publisher_acks", json_integer((json_int_t)t->acks));
        json_object_set_new(o, "publisher_ack_latency_us", bh_json(&t->ack));
        json_object_set_new(o, "server_cpu_us_per_delivery",
                            json_real(t->delivered ? server_cpu * 1e6 / (double)t->delivered : 0));
        break;
    }
    case BENCH_IDLE:
        json_object_set_new(o, "hold_s", json_real(win));
        break;
    case BENCH_RECONNECT: {
        uint64_t back = t->back_us ? t->back_us : t->first_down_us;
        int64_t back_bucket = back > go->go_us ? (int64_t)((back - go->go_us) / 1000 / BT_BUCKET_MS) : 0;
        int64_t down_bucket =
            t->first_down_us > go->go_us ? (int64_t)((t->first_down_us - go->go_us) / 1000 / BT_BUCKET_MS) : 0;
        bench_hist after_back;
        memset(&after_back, 0, sizeof(after_back));
        for (int64_t i = 0; i < BT_BUCKETS; i++)
            for (uint32_t k = 0; k < t->resume_tl[i]; k++)
                bh_add(&after_back, (uint64_t)(i > back_bucket ? i - back_bucket : 0) * BT_BUCKET_MS * 1000);
        json_object_set_new(o, "dropped", json_integer((json_int_t)t->drops));
        json_object_set_new(o, "resumed", json_integer((json_int_t)t->resumed));
        json_object_set_new(o, "not_resumed", json_integer((json_int_t)(t->ready - t->resumed)));
        json_object_set_new(o, "down_to_back_ms",
                            json_real(t->back_us && t->first_down_us ? (double)(t->back_us - t->first_down_us) / 1000 : 0));
        json_object_set_new(o, "back_to_all_resumed_ms",
                            json_real(t->last_resumed_us > back ? (double)(t->last_resumed_us - back) / 1000 : 0));
        json_object_set_new(o, "resume_after_back_us", bh_json(&after_back));
        json_object_set_new(o, "attempts", json_integer((json_int_t)t->attempts));
        json_object_set_new(o, "max_attempts_one_client", json_integer((json_int_t)t->max_attempts_one));
        json_object_set_new(o, "peak_attempts_per_100ms", json_integer((json_int_t)peak_per(t->attempt_tl, 10)));
        json_object_set_new(o, "peak_resumes_per_100ms", json_integer((json_int_t)peak_per(t->resume_tl, 10)));
        json_object_set_new(o, "resumed_hist_250ms_since_back", timeline(t->resume_tl, back_bucket, 25));
        json_object_set_new(o, "attempts_hist_250ms_since_down", timeline(t->attempt_tl, down_bucket, 25));
        break;
    }
    }
    return o;
}

static void merge(bench_result *t, const bench_result *r)
{
    t->conns += r->conns;
    t->ready += r->conns - r->failed;
    t->failed += r->failed;
    t->attempts += r->attempts;
    t->connects += r->connects;
    t->drops += r->drops;
    t->sent += r->sent;
    t->acks += r->acks;
    t->errors += r->errors;
    t->rejected += r->rejected;
    t->delivered += r->delivered;
    t->gaps += r->gaps;
    t->dups += r->dups;
    t->pub_sent_window += r->pub_sent_window;
    t->resumed += r->resumed;
    t->presence += r->presence;
    t->presence_window += r->presence_window;
    if (r->settle_us > t->settle_us)
        t->settle_us = r->settle_us;
    t->cpu_s += r->cpu_s;
    if (r->max_attempts_one > t->max_attempts_one)
        t->max_attempts_one = r->max_attempts_one;
    if (r->first_down_us && (!t->first_down_us || r->first_down_us < t->first_down_us))
        t->first_down_us = r->first_down_us;
    if (r->back_us && (!t->back_us || r->back_us < t->back_us))
        t->back_us = r->back_us;
    if (r->last_resumed_us > t->last_resumed_us)
        t->last_resumed_us = r->last_resumed_us;
    bh_merge(&t->lat, &r->lat);
    bh_merge(&t->ack, &r->ack);
    bh_merge(&t->resume, &r->resume);
    for (int i = 0; i < BT_BUCKETS; i++) {
        t->resume_tl[i] += r->resume_tl[i];
        t->attempt_tl[i] += r->attempt_tl[i];
    }
}

/* ---- main ------------------------------------------------------------------------------- */

int cli_bench(int argc, char **argv)
{
    bench_cfg cfg;
    char *url_copy = NULL, *pid_copy = NULL;
    child *ch = NULL;
    server_sample ss[BENCH_MAX_PIDS];
    bench_result *tot = NULL;
    bench_go go = { 0, 0, 0 };
    int rc = CLI_USAGE, n, ready = 0, done = 0, sampled_start = 0, sampled_end = 0;
    uint64_t t0 = tc_now_us(), t_ready = 0;
    memset(&cfg, 0, sizeof(cfg));
    memset(ss, 0, sizeof(ss));
    int pr = parse(&cfg, argc, argv, &url_copy, &pid_copy);
    if (pr != 0) {
        rc = pr > 0 ? CLI_OK : CLI_USAGE;
        goto out;
    }
    if (cfg.mode == BENCH_CHAOS) {
        rc = bench_chaos(&cfg);
        goto out;
    }
    rc = CLI_ERR;
    n = (int)cfg.procs;
    ch = calloc((size_t)n, sizeof(*ch));
    tot = calloc(1, sizeof(*tot));
    if (!ch || !tot)
        goto out;
    sample_rss(&cfg, ss, 0);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    cli_event("start", "{s:s,s:I,s:i}", "mode", cfg.mode_name, "conns", (json_int_t)cfg.conns, "procs", n);
    if (spawn(&cfg, ch, n) < 0) {
        fprintf(stderr, "tether bench: cannot start worker processes: %s\n", strerror(errno));
        goto out;
    }
    while (done < n && !g_interrupted) {
        struct pollfd pfd[64];
        int timeout = -1;
        uint64_t now = tc_now_us();
        if (ready == n && !sampled_start && cfg.mode != BENCH_RECONNECT)
            timeout = now >= go.start_us ? 0 : (int)((go.start_us - now) / 1000) + 1;
        else if (ready == n && !sampled_end && cfg.mode != BENCH_RECONNECT)
            timeout = now >= go.end_us ? 0 : (int)((go.end_us - now) / 1000) + 1;
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd){ ch[i].got == sizeof(bench_result) ? -1 : ch[i].rd, POLLIN, 0 };
        int pn = poll(pfd, (nfds_t)n, timeout);
        if (pn < 0 && errno != EINTR)
            break;
        now = tc_now_us();
        if (ready == n && !sampled_start && now >= go.start_us) {
            sampled_start = 1;
            sample_cpu(&cfg, ss, 0);
        }
        if (ready == n && sampled_start && !sampled_end && now >= go.end_us && cfg.mode != BENCH_RECONNECT) {
            sampled_end = 1;
            sample_cpu(&cfg, ss, 1);
            sample_rss(&cfg, ss, 1);
        }
        for (int i = 0; pn > 0 && i < n; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP)))
                continue;
            int was_ready = ch[i].ready;
            if (child_read(&ch[i]) < 0) {
                fprintf(stderr, "tether bench: worker %d (pid %d) died before reporting\n", i, (int)ch[i].pid);
                for (int k = 0; k < n; k++)
                    kill(ch[k].pid, SIGKILL);
                goto out;
            }
            if (!was_ready && ch[i].ready && ++ready == n) {
                t_ready = now;
                go.go_us = tc_now_us();
                go.start_us = go.go_us + (cfg.mode == BENCH_RECONNECT ? 0 : cfg.warmup_s * 1000000);
                go.end_us = go.start_us + (cfg.mode == BENCH_RECONNECT ? cfg.timeout_s : cfg.duration_s) * 1000000;
                if (cfg.mode == BENCH_RECONNECT) {
                    sample_cpu(&cfg, ss, 0);
                    sampled_start = 1;
                }
                cli_event("ready", "{s:I,s:f}", "conns", (json_int_t)cfg.conns, "after_s", (double)(now - t0) / 1e6);
                for (int k = 0; k < n; k++)
                    write_all(ch[k].wr, &go, sizeof(go));
            }
            if (ch[i].got == sizeof(bench_result)) {
                merge(tot, ch[i].res);
                done++;
            }
        }
    }
    if (g_interrupted) {
        /* Workers hold nothing worth a clean exit, and one may be blocked
         * writing its result into a pipe nobody reads any more. */
        for (int i = 0; i < n; i++)
            kill(ch[i].pid, SIGKILL);
        fprintf(stderr, "tether bench: interrupted\n");
        rc = CLI_ERR;
        goto out;
    }
    if (!sampled_end) {
        sample_cpu(&cfg, ss, 1);
        sample_rss(&cfg, ss, 1);
    }
    json_t *sum = summary(&cfg, &go, tot, ss, t_ready, t0);
    char *s = json_dumps(sum, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(sum);
    if (s) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    rc = tot->failed || (cfg.mode == BENCH_RECONNECT && tot->resumed < tot->ready) ? CLI_ERR : CLI_OK;
out:
    for (int i = 0; ch && i < n; i++) {
        if (ch[i].pid > 0)
            waitpid(ch[i].pid, NULL, 0);
        free(ch[i].res);
    }
    free(ch);
    free(tot);
    free(url_copy);
    free(pid_copy);
    return rc;
}
