/* pb_main.c -- peerbench's command line: options, validation, then pb_run().
 *
 * bench/compare/compare.py is the usual caller: it starts a fresh server set
 * for each (system, workload), pins it to CPU 0, runs this on CPU 1 and keeps
 * the JSON line it prints.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "pb.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: peerbench --dialect tether|nchan|sio --mode fanout|sweep|rooms|idle|storm --port P [options]\n"
            "\n"
            "One load generator for Tether, nginx+nchan and Socket.IO (see bench/compare/README.md).\n"
            "Prints one JSON summary on stdout, progress events on stderr.\n"
            "\n"
            "  --host H              server address (default 127.0.0.1)\n"
            "  --secret S            tether: the gateway's HS256 secret (one token per connection)\n"
            "  --subs N              subscribers (default 1000)\n"
            "  --rooms K             rooms; subscriber i joins room i / (N / K) (default 1)\n"
            "  --pubs P              publisher connections; room r goes through publisher r %% P (default 4)\n"
            "  --rate R              total messages per second, round robin over the rooms (default 100)\n"
            "  --size B              payload bytes (default 100)\n"
            "  --warmup S            traffic before the window (storm: before the drop) (default 3)\n"
            "  --duration S          measurement window (default 10)\n"
            "  --drain S             wait for the backlog after publishing stops (default 10)\n"
            "  --timeout S           deadline to join / to get messages / to resume (default 180)\n"
            "  --hold S              idle: how long the connections are held (default 10)\n"
            "  --quiet S             no presence frame for this long before measuring (default 1)\n"
            "  --jitter-ms MS        storm: reconnect delay uniform in [0, MS] (default 1000)\n"
            "  --drop client|server  storm: reset every subscriber socket ourselves (client, default), or\n"
            "                        print {\"event\":\"drop_now\"} for the runner to kill the server (server)\n"
            "  --max-handshakes N    connections being set up at once (default 200)\n"
            "  --sweep-start R       sweep: first rate (default 100)\n"
            "  --sweep-max R         sweep: highest rate tried (default 20000)\n"
            "  --sweep-step S        sweep: window per rate (default 5)\n"
            "  --server-pid N=P,..   server processes to measure (CPU in windows, memory for idle)\n"
            "  --nchan-meta 0|1      nchan: use the ws+meta.nchan sub-protocol, which gives each message\n"
            "                        its id (needed to resume) (default 1)\n");
}

static int parse_pids(char *arg)
{
    for (char *save = NULL, *t = strtok_r(arg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (PB_CFG.npids == 64)
            return -1;
        char *eq = strchr(t, '=');
        const char *name = "server";
        if (eq) {
            *eq = 0;
            name = t;
            t = eq + 1;
        }
        long pid = strtol(t, NULL, 10);
        if (pid <= 0)
            return -1;
        PB_CFG.pid_names[PB_CFG.npids] = name;
        PB_CFG.pids[PB_CFG.npids++] = (pid_t)pid;
    }
    return 0;
}

static int num(const char *opt, const char *s, double lo, double hi, double *v)
{
    char *e;
    double d = strtod(s, &e);
    if (*s && !*e && d >= lo && d <= hi) {
        *v = d;
        return 0;
    }
    fprintf(stderr, "peerbench: --%s wants a number in %g..%g, got '%s'\n", opt, lo, hi, s);
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dialect", 1, NULL, 'D' },      { "mode", 1, NULL, 'm' },         { "host", 1, NULL, 'H' },
        { "port", 1, NULL, 'p' },         { "secret", 1, NULL, 'S' },       { "subs", 1, NULL, 'n' },
        { "rooms", 1, NULL, 'k' },        { "pubs", 1, NULL, 'P' },         { "rate", 1, NULL, 'r' },
        { "size", 1, NULL, 's' },         { "warmup", 1, NULL, 'w' },       { "duration", 1, NULL, 'd' },
        { "drain", 1, NULL, 'x' },        { "timeout", 1, NULL, 'T' },      { "hold", 1, NULL, 'h' },
        { "quiet", 1, NULL, 'q' },        { "jitter-ms", 1, NULL, 'j' },    { "max-handshakes", 1, NULL, 'M' },
        { "sweep-start", 1, NULL, 'a' },  { "sweep-max", 1, NULL, 'b' },    { "sweep-step", 1, NULL, 'c' },
        { "server-pid", 1, NULL, 'i' },   { "nchan-meta", 1, NULL, 'N' },   { "drop", 1, NULL, 'X' },
        { "help", 0, NULL, 'z' },         { NULL, 0, NULL, 0 },
    };
    pb_cfg *c = &PB_CFG;
    double v = 0;
    c->host = "127.0.0.1";
    c->secret = getenv("TETHER_JWT_SECRET");
    c->subs = 1000;
    c->rooms = 1;
    c->pubs = 4;
    c->rate = 100;
    c->size = 100;
    c->warmup_s = 3;
    c->duration_s = 10;
    c->drain_s = 10;
    c->timeout_s = 180;
    c->hold_s = 10;
    c->quiet_s = 1;
    c->jitter_ms = 1000;
    c->max_handshakes = 200;
    c->sweep_start = 100;
    c->sweep_max = 20000;
    c->sweep_step_s = 5;
    c->nchan_meta = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'D':
            c->dialect = !strcmp(optarg, "tether") ? PB_TETHER
                         : !strcmp(optarg, "nchan") ? PB_NCHAN
                         : !strcmp(optarg, "sio")   ? PB_SIO
                                                    : 0;
            bad = !c->dialect;
            break;
        case 'm': c->mode = optarg; break;
        case 'H': c->host = optarg; break;
        case 'S': c->secret = optarg; break;
        case 'p': bad = num("port", optarg, 1, 65535, &v); c->port = (int)v; break;
        case 'n': bad = num("subs", optarg, 0, 1000000, &v); c->subs = (uint32_t)v; break;
        case 'k': bad = num("rooms", optarg, 1, 1000000, &v); c->rooms = (uint32_t)v; break;
        case 'P': bad = num("pubs", optarg, 1, 256, &v); c->pubs = (uint32_t)v; break;
        case 'r': bad = num("rate", optarg, 0, 1e7, &c->rate); break;
        case 's': bad = num("size", optarg, 40, 60000, &v); c->size = (uint32_t)v; break;
        case 'w': bad = num("warmup", optarg, 0, 3600, &c->warmup_s); break;
        case 'd': bad = num("duration", optarg, 0.1, 3600, &c->duration_s); break;
        case 'x': bad = num("drain", optarg, 0, 3600, &c->drain_s); break;
        case 'T': bad = num("timeout", optarg, 1, 86400, &c->timeout_s); break;
        case 'h': bad = num("hold", optarg, 0, 86400, &c->hold_s); break;
        case 'q': bad = num("quiet", optarg, 0, 600, &c->quiet_s); break;
        case 'j': bad = num("jitter-ms", optarg, 0, 600000, &v); c->jitter_ms = (uint32_t)v; break;
        case 'M': bad = num("max-handshakes", optarg, 1, 100000, &v); c->max_handshakes = (uint32_t)v; break;
        case 'a': bad = num("sweep-start", optarg, 1, 1e7, &c->sweep_start); break;
        case 'b': bad = num("sweep-max", optarg, 1, 1e7, &c->sweep_max); break;
        case 'c': bad = num("sweep-step", optarg, 0.5, 3600, &c->sweep_step_s); break;
        case 'i': bad = parse_pids(optarg); break;
        case 'X':
            c->drop_server = !strcmp(optarg, "server");
            bad = !c->drop_server && strcmp(optarg, "client");
            break;
        case 'N': bad = num("nchan-meta", optarg, 0, 1, &v); c->nchan_meta = (int)v; break;
        case 'z':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "peerbench: bad value for an option\n");
            return 2;
        }
    }
    const char *modes[] = { "fanout", "sweep", "rooms", "idle", "storm" };
    int known = 0;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        known |= c->mode && !strcmp(c->mode, modes[i]);
    if (!c->dialect || !known || !c->port) {
        usage(stderr);
        return 2;
    }
    if (c->dialect == PB_TETHER && !c->secret) {
        fprintf(stderr, "peerbench: tether needs --secret (or TETHER_JWT_SECRET)\n");
        return 2;
    }
    if (c->rooms > c->subs && c->subs)
        c->rooms = c->subs;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)c->subs + c->pubs + 64) {
            fprintf(stderr, "peerbench: %u connections need more than the fd limit (%llu) of one process\n",
                    c->subs + c->pubs, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }
    return pb_run();
}
