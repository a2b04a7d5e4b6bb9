/* cli_common.c -- what the connecting subcommands of `tether` share: the
 * connection options, token sources, JSON event lines and signals.
 *
 * Events go to stderr as one JSON object per line ({"event": ..., "t_ms": ...})
 * so that scripts and tests can follow reconnections while stdout carries
 * only data. t_ms is CLOCK_MONOTONIC in milliseconds: system-wide, so lines
 * from several processes can be put on one time line.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

const char cli_conn_help[] =
    "connection options:\n"
    "  --url URL              gateway WebSocket URL (default " CLI_DEFAULT_URL ")\n"
    "  --token JWT            token sent in hello (default: $TETHER_TOKEN)\n"
    "  --token-file PATH      read the token from PATH, and again whenever a fresh one\n"
    "                         is needed (before it expires, or after close code 4502)\n"
    "  --token-cmd CMD        run CMD (sh -c) and use its output as the token, likewise\n"
    "                         (e.g. --token-cmd 'tether token alice --ttl 3600')\n"
    "  --no-refresh           never renew the token in-band before it expires\n"
    "  --max-attempts N       give up after N reconnection attempts in a row and exit 4\n"
    "                         (default " CLI_DEFAULT_ATTEMPTS_S ": with the default backoff that is about a\n"
    "                         minute of retrying, two at most: long enough to ride out a\n"
    "                         gateway restart, short enough that a wrong host or port is\n"
    "                         reported; 0: never give up, for services)\n"
    "  --backoff-initial MS   first reconnection delay ceiling (default 1000)\n"
    "  --backoff-max MS       delay cap (default 30000)\n"
    "  --jitter full|add|none full: uniform in [0, ceiling] (default); add: ceiling +\n"
    "                         0..500 ms; none: exactly the ceiling\n"
    "  --stable MS            a connection up this long resets the backoff (default 10000)\n"
    "  --quiet                no event lines on stderr\n";

static const struct option g_conn_opts[] = {
    { "url", required_argument, NULL, CLI_O_URL },
    { "token", required_argument, NULL, CLI_O_TOKEN },
    { "token-file", required_argument, NULL, CLI_O_TOKEN_FILE },
    { "token-cmd", required_argument, NULL, CLI_O_TOKEN_CMD },
    { "no-refresh", no_argument, NULL, CLI_O_NO_REFRESH },
    { "quiet", no_argument, NULL, CLI_O_QUIET },
    { "max-attempts", required_argument, NULL, CLI_O_MAX_ATTEMPTS },
    { "backoff-initial", required_argument, NULL, CLI_O_BACKOFF_INITIAL },
    { "backoff-max", required_argument, NULL, CLI_O_BACKOFF_MAX },
    { "jitter", required_argument, NULL, CLI_O_JITTER },
    { "stable", required_argument, NULL, CLI_O_STABLE },
};

#define N_CONN_OPTS (sizeof(g_conn_opts) / sizeof(g_conn_opts[0]))

struct option *cli_long_opts(const struct option *extra)
{
    static struct option all[N_CONN_OPTS + 64];
    size_t n = 0;
    memcpy(all, g_conn_opts, sizeof(g_conn_opts));
    n = N_CONN_OPTS;
    for (size_t i = 0; extra && extra[i].name && n < sizeof(all) / sizeof(all[0]) - 1; i++)
        all[n++] = extra[i];
    memset(&all[n], 0, sizeof(all[n]));
    return all;
}

void cli_conn_init(cli_conn *o)
{
    memset(o, 0, sizeof(*o));
    o->url = CLI_DEFAULT_URL;
    tc_backoff_cfg b = { 1000, 30000, TC_JITTER_FULL, 500, CLI_DEFAULT_ATTEMPTS, 10000 };
    o->backoff = b;
}

int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static int u32_opt(const char *name, const char *arg, uint64_t lo, uint64_t hi, uint32_t *out)
{
    uint64_t v;
    if (cli_parse_u64(arg, lo, hi, &v) < 0) {
        fprintf(stderr, "tether: --%s wants a whole number in %llu..%llu, got '%s'\n", name,
                (unsigned long long)lo, (unsigned long long)hi, arg);
        return -1;
    }
    *out = (uint32_t)v;
    return 1;
}

int cli_conn_opt(cli_conn *o, int opt, const char *arg)
{
    switch (opt) {
    case CLI_O_URL:
        if (strncmp(arg, "ws://", 5) && strncmp(arg, "wss://", 6)) {
            fprintf(stderr, "tether: --url must start with ws:// or wss:// (e.g. %s)\n", CLI_DEFAULT_URL);
            return -1;
        }
        o->url = arg;
        return 1;
    case CLI_O_TOKEN:
        o->token = arg;
        return 1;
    case CLI_O_TOKEN_FILE:
        o->token_file = arg;
        return 1;
    case CLI_O_TOKEN_CMD:
        o->token_cmd = arg;
        return 1;
    case CLI_O_NO_REFRESH:
        o->no_refresh = 1;
        return 1;
    case CLI_O_QUIET:
        o->quiet = 1;
        return 1;
    case CLI_O_MAX_ATTEMPTS:
        return u32_opt("max-attempts", arg, 0, 1000000, &o->backoff.max_attempts);
    case CLI_O_BACKOFF_INITIAL:
        return u32_opt("backoff-initial", arg, 1, 3600000, &o->backoff.initial_ms);
    case CLI_O_BACKOFF_MAX:
        return u32_opt("backoff-max", arg, 1, 3600000, &o->backoff.max_ms);
    case CLI_O_STABLE:
        return u32_opt("stable", arg, 0, 3600000, &o->backoff.stable_ms);
    case CLI_O_JITTER:
        if (!strcmp(arg, "full"))
            o->backoff.jitter = TC_JITTER_FULL;
        else if (!strcmp(arg, "add"))
            o->backoff.jitter = TC_JITTER_ADD;
        else if (!strcmp(arg, "none"))
            o->backoff.jitter = TC_JITTER_NONE;
        else {
            fprintf(stderr, "tether: --jitter is full, add or none, got '%s'\n", arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

/* Trims whitespace at both ends, in place. */
static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

static char *token_from_file(const char *path)
{
    char buf[16384];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tether: --token-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *t = trim(buf);
    if (!*t) {
        fprintf(stderr, "tether: --token-file %s is empty; write a token into it (tether token <user>)\n", path);
        return NULL;
    }
    return strdup(t);
}

static char *token_from_cmd(const char *cmd)
{
    char buf[16384];
    size_t n = 0;
    FILE *p = popen(cmd, "r"); /* NOLINT(cert-env33-c): --token-cmd is a shell command by design */
    if (!p) {
        fprintf(stderr, "tether: --token-cmd: cannot run '%s': %s\n", cmd, strerror(errno));
        return NULL;
    }
    while (n < sizeof(buf) - 1) {
        size_t m = fread(buf + n, 1, sizeof(buf) - 1 - n, p);
        if (m == 0)
            break;
        n += m;
    }
    buf[n] = 0;
    int st = pclose(p);
    char *t = trim(buf);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || !*t) {
        fprintf(stderr, "tether: --token-cmd '%s' failed (status %d) or printed nothing\n", cmd,
                st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return NULL;
    }
    return strdup(t);
}

char *cli_conn_token(const cli_conn *o)
{
    const char *env = getenv("TETHER_TOKEN");
    if (o->token && *o->token)
        return strdup(o->token);
    if (env && *env)
        return strdup(env);
    if (o->token_file)
        return token_from_file(o->token_file);
    if (o->token_cmd)
        return token_from_cmd(o->token_cmd);
    fprintf(stderr, "tether: no token: pass --token JWT, set TETHER_TOKEN, or use --token-file / --token-cmd\n"
                    "        (for a local gateway: --token \"$(tether token <user> --secret <secret>)\")\n");
    return NULL;
}

void cli_conn_options(const cli_conn *o, tc_options *to, const char *token)
{
    tc_options_init(to);
    to->url = o->url;
    to->token = token;
    to->client_name = "tether-cli/1";
    to->backoff = o->backoff;
    to->no_refresh = o->no_refresh;
}

int cli_conn_refresh(const cli_conn *o, tc_client *c)
{
    char *t = NULL;
    if (o->token_file)
        t = token_from_file(o->token_file);
    else if (o->token_cmd)
        t = token_from_cmd(o->token_cmd);
    else
        return -1;
    if (!t)
        return -1;
    int rc = tc_set_token(c, t);
    free(t);
    return rc < 0 ? -1 : 0;
}

int cli_exit_for_code(int code)
{
    return code == 0 ? CLI_ERR : (code >= 4000 && code <= 4999) || code == 1000 || code == 1008 ? CLI_AUTH : CLI_GAVE_UP;
}

int cli_exit_for_failure(const tc_state_info *si)
{
    return si->gave_up ? CLI_GAVE_UP : cli_exit_for_code(si->code);
}

/* What to do about a failure, for the plain line. */
static const char *failure_hint(const cli_conn *o, const tc_state_info *si)
{
    if (si->gave_up)
        return "check --url, or raise --max-attempts (0: never give up)";
    switch (si->code) {
    case 4501:
        return "the gateway does not accept this token: mint one with its secret (tether token <user>)";
    case 4502:
        if (o->token_file)
            return "the token in --token-file has expired and re-reading it gave an expired one again: "
                   "write a fresh token there (tether token <user>)";
        if (o->token_cmd)
            return "--token-cmd printed a token that had expired too: fix the command";
        return "the token has expired: pass a fresh one, or --token-file / --token-cmd to renew it";
    case 4503:
        return "the token does not allow this room: mint one with --rooms naming it";
    default:
        return NULL;
    }
}

void cli_report_state(const cli_conn *o, const tc_client *c, const tc_state_info *si)
{
    if (!o->quiet) {
        cli_event_state(si);
        if (si->state == TC_CONNECTED && si->prev == TC_RECONNECTING)
            cli_event_stats(c);
        if (si->state == TC_RECONNECTING && si->next_delay_ms != UINT32_MAX) {
            if (o->backoff.max_attempts)
                fprintf(stderr, "tether: %s; attempt %u of %u in %.1f s\n", si->reason, si->attempt,
                        o->backoff.max_attempts, si->next_delay_ms / 1000.0);
            else
                fprintf(stderr, "tether: %s; attempt %u in %.1f s\n", si->reason, si->attempt,
                        si->next_delay_ms / 1000.0);
        } else if (si->state == TC_RECONNECTING) {
            fprintf(stderr, "tether: %s\n", si->reason);
        }
    }
    if (si->state == TC_FAILED) {
        const char *hint = failure_hint(o, si);
        fprintf(stderr, "tether: %s%s%s (exit %d)\n", si->reason, hint ? "; " : "", hint ? hint : "",
                cli_exit_for_failure(si));
    }
    fflush(stderr);
}

/* ---- events --------------------------------------------------------------------------- */

void cli_event(const char *name, const char *fields, ...)
{
    json_t *o = json_pack("{s:s,s:I}", "event", name, "t_ms", (json_int_t)tc_now_ms());
    if (!o)
        return;
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        json_t *f = json_vpack_ex(NULL, 0, fields, ap);
        va_end(ap);
        if (f)
            json_object_update(o, f);
        json_decref(f);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s) {
        fprintf(stderr, "%s\n", s);
        fflush(stderr);
        free(s);
    }
}

void cli_event_state(const tc_state_info *si)
{
    json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:i}", "state", tc_state_name(si->state), "prev",
                          tc_state_name(si->prev), "code", si->code, "reason", si->reason, "attempt",
                          (int)si->attempt);
    if (!o)
        return;
    if (si->state == TC_RECONNECTING) {
        if (si->next_delay_ms == UINT32_MAX)
            json_object_set_new(o, "waiting_for_token", json_true());
        else
            json_object_set_new(o, "delay_ms", json_integer(si->next_delay_ms));
        json_object_set_new(o, "hinted", json_boolean(si->hinted));
    }
    if (si->state == TC_CONNECTED) {
        json_object_set_new(o, "session", json_string(si->session));
        json_object_set_new(o, "resumed", json_boolean(si->resumed));
        json_object_set_new(o, "disconnected_ms", json_integer((json_int_t)si->disconnected_ms));
    }
    cli_event("state", "o", o);
}

void cli_event_stats(const tc_client *c)
{
    tc_stats st;
    tc_get_stats(c, &st);
    cli_event("stats", "{s:I,s:I,s:i,s:i,s:I,s:I,s:I,s:I,s:i,s:I,s:I}", "attempts", (json_int_t)st.attempts,
              "connects", (json_int_t)st.connects, "outbox_len", (int)st.outbox_len, "outbox_inflight",
              (int)st.outbox_inflight, "publishes_rejected", (json_int_t)st.publishes_rejected, "publishes_resent",
              (json_int_t)st.publishes_resent, "ptt_stale_dropped", (json_int_t)st.ptt_stale_dropped,
              "ptt_full_dropped", (json_int_t)st.ptt_full_dropped, "audio_buffered", (int)st.audio_buffered,
              "audio_dropped", (json_int_t)st.audio_dropped, "audio_sent", (json_int_t)st.audio_sent);
}

void cli_event_subscribed(const tc_subscribed *s)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:b,s:b,s:b}", "room", s->room, "epoch", s->epoch, "seq",
                          (json_int_t)s->seq, "missed", (json_int_t)s->missed, "recovered", s->recovered,
                          "resubscribe", s->resubscribe, "epoch_changed", s->epoch_changed);
    if (o && s->has_gap)
        json_object_set_new(o, "gap", json_pack("{s:I,s:I}", "from", (json_int_t)s->gap_from, "first_available",
                                                (json_int_t)s->gap_first_available));
    cli_event("subscribed", "o", o);
}

void cli_event_gap(const tc_gap *g)
{
    cli_event("gap", "{s:s,s:I,s:I,s:b}", "room", g->room, "from", (json_int_t)g->from, "to", (json_int_t)g->to,
              "by_client", g->by_client);
}

void cli_event_floor(const tc_floor_info *f)
{
    cli_event("floor", "{s:s,s:s,s:s?,s:s?}", "room", f->room, "state", tc_floor_state_name(f->state), "holder",
              f->holder, "reason", f->reason);
}

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- signals ---------------------------------------------------------------------------- */

typedef struct sig_watch {
    int fd;
    void (*cb)(void *arg, int signo);
    void *arg;
} sig_watch;

static int on_signalfd(void *arg, int fd)
{
    sig_watch *w = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        w->cb(w->arg, (int)si.ssi_signo);
    return 0;
}

int cli_signals(tc_loop *l, void (*cb)(void *arg, int signo), void *arg)
{
    static sig_watch w;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    w.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w.fd < 0)
        return -errno;
    w.cb = cb;
    w.arg = arg;
    return tc_loop_watch_fd(l, w.fd, on_signalfd, &w);
}
