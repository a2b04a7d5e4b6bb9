/* cli_sub.c -- `tether sub <room>...`: subscribe and print every message as a
 * JSON line on stdout, exactly once and in order per room, across gateway
 * restarts; connection, resume and gap events go to stderr as JSON lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct sub_app {
    cli_conn conn;
    tc_loop *loop;
    tc_client *c;
    uint64_t count, received;
    int rc;
    int done;
    int retry;                 /* --retry: Enter on stdin starts over after giving up */
    int waiting_retry;         /* gave up; waiting for Enter */
    int stdin_closed;
} sub_app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether sub <room>... [options]\n"
            "\n"
            "Subscribes to the rooms and prints each message on stdout as one JSON line:\n"
            "  {\"room\":..,\"seq\":..,\"epoch\":..,\"id\":..,\"from\":..,\"ts\":..,\"data\":..}\n"
            "Connection events (state changes, resume results, gaps) go to stderr as JSON\n"
            "lines. The session and each room's position survive reconnections: after a\n"
            "gateway restart, every message is printed once, in seq order, or a gap is said.\n"
            "\n"
            "options:\n"
            "  --oldest            start from the oldest message the server still buffers\n"
            "  --from-seq N        start after seq N (with --epoch; N = 0: from seq 1)\n"
            "  --epoch E           the epoch of --from-seq\n"
            "  --count N           exit 0 after N messages\n"
            "  --timeout S         exit 5 if --count messages did not come within S seconds\n"
            "  --retry             after giving up (--max-attempts), wait for Enter on stdin\n"
            "                      and start over (backoff reset; session, positions kept);\n"
            "                      end of stdin or Ctrl-C exits 4\n"
            "\n"
            "A subscription the token does not allow (error 4503) exits 3.\n"
            "\n%s",
            cli_conn_help);
}

static void on_state(tc_client *c, const tc_state_info *si, void *arg)
{
    sub_app *a = arg;
    cli_report_state(&a->conn, c, si);
    if (si->state == TC_FAILED) {
        a->rc = cli_exit_for_failure(si);
        if (si->gave_up && a->retry && !a->stdin_closed && !a->done) {
            a->waiting_retry = 1;
            fprintf(stderr, "tether sub: press Enter to try again (end of input or Ctrl-C: exit %d)\n", a->rc);
            fflush(stderr);
            return;
        }
        tc_loop_stop(a->loop);
    } else if (si->state == TC_DISCONNECTED) {
        tc_loop_stop(a->loop);
    }
}

static void on_message(tc_client *c, const tc_message *m, void *arg)
{
    sub_app *a = arg;
    fputs("{\"room\":", stdout);
    cli_json_str(stdout, m->room);
    printf(",\"seq\":%llu,\"epoch\":", (unsigned long long)m->seq);
    cli_json_str(stdout, m->epoch);
    fputs(",\"id\":", stdout);
    cli_json_str(stdout, m->id);
    fputs(",\"from\":", stdout);
    cli_json_str(stdout, m->from);
    printf(",\"ts\":%lld,\"data\":%s}\n", (long long)m->ts, m->data);
    fflush(stdout);
    if (a->count && ++a->received >= a->count && !a->done) {
        a->done = 1;
        a->rc = CLI_OK;
        tc_disconnect(c, 0);
    }
}

static void on_subscribed(tc_client *c, const tc_subscribed *s, void *arg)
{
    sub_app *a = arg;
    (void)c;
    if (!a->conn.quiet)
        cli_event_subscribed(s);
}

static void on_gap(tc_client *c, const tc_gap *g, void *arg)
{
    sub_app *a = arg;
    (void)c;
    if (!a->conn.quiet)
        cli_event_gap(g);
}

static void on_error(tc_client *c, int code, const char *reason, void *arg)
{
    sub_app *a = arg;
    if (!a->conn.quiet)
        cli_event("error", "{s:i,s:s}", "code", code, "reason", reason);
    if (code == 4503 && !a->done) {
        /* A room we were asked to follow is not allowed: that will not change. */
        fprintf(stderr, "tether sub: %s; the token does not allow this room: mint one with --rooms naming it "
                        "(exit %d)\n", reason, CLI_AUTH);
        a->done = 1;
        a->rc = CLI_AUTH;
        tc_disconnect(c, 0);
    }
}

/* --retry: stdin lines start a new round of attempts after giving up. */
static int on_stdin(void *arg, int fd)
{
    sub_app *a = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0) {
        a->stdin_closed = 1;
        if (a->waiting_retry)
            tc_loop_stop(a->loop);
        return -1;
    }
    if (a->waiting_retry && memchr(buf, '\n', (size_t)n)) {
        a->waiting_retry = 0;
        a->rc = CLI_OK;
        fprintf(stderr, "tether sub: trying again\n");
        tc_connect(a->c);
    }
    return 0;
}

static int on_token(tc_client *c, tc_token_why why, void *arg)
{
    sub_app *a = arg;
    int r = cli_conn_refresh(&a->conn, c);
    if (!a->conn.quiet)
        cli_event("token", "{s:s,s:b}", "why", why == TC_TOKEN_EXPIRED ? "expired" : "refresh", "renewed", r == 0);
    return r;
}

static void on_frame(tc_client *c, const char *type, const char *json, void *arg)
{
    sub_app *a = arg;
    (void)c;
    if (!a->conn.quiet && (!strcmp(type, "reconnect") || !strcmp(type, "presence")))
        cli_event("frame", "{s:s,s:o}", "type", type, "frame", json_loads(json, 0, NULL));
}

static void on_signal(void *arg, int signo)
{
    sub_app *a = arg;
    (void)signo;
    if (a->done) {
        tc_loop_stop(a->loop);
        return;
    }
    a->done = 1;
    if (a->waiting_retry) {
        tc_loop_stop(a->loop); /* keep the exit code of giving up */
        return;
    }
    a->rc = CLI_OK;
    tc_disconnect(a->c, 0);
}

static void on_timeout(tc_timer *t, void *arg)
{
    sub_app *a = arg;
    (void)t;
    if (!a->conn.quiet)
        cli_event("timeout", "{s:I,s:I}", "received", (json_int_t)a->received, "wanted", (json_int_t)a->count);
    a->rc = CLI_TIMEOUT;
    a->done = 1;
    tc_loop_stop(a->loop);
}

int cli_sub(int argc, char **argv)
{
    static const struct option extra[] = {
        { "oldest", no_argument, NULL, 'o' },  { "from-seq", required_argument, NULL, 'f' },
        { "epoch", required_argument, NULL, 'e' }, { "count", required_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 'T' }, { "help", no_argument, NULL, 'h' },
        { "retry", no_argument, NULL, 'R' },           { NULL, 0, NULL, 0 },
    };
    static const tc_callbacks cbs = { on_state, on_message, on_subscribed, on_gap, NULL,
                                      on_error, NULL, on_token, on_frame };
    sub_app a;
    tc_options to;
    tc_timer *timer = NULL;
    char *token = NULL;
    const char *epoch = NULL;
    uint64_t from_seq = 0, timeout_s = 0;
    int oldest = 0, has_from = 0, opt, r;
    memset(&a, 0, sizeof(a));
    cli_conn_init(&a.conn);
    a.rc = CLI_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", cli_long_opts(extra), NULL)) != -1) {
        if ((r = cli_conn_opt(&a.conn, opt, optarg)) != 0) {
            if (r < 0)
                goto out;
            continue;
        }
        switch (opt) {
        case 'o': oldest = 1; break;
        case 'R': a.retry = 1; break;
        case 'e': epoch = optarg; break;
        case 'f':
            if (cli_parse_u64(optarg, 0, UINT64_MAX >> 1, &from_seq) < 0) {
                fprintf(stderr, "tether sub: --from-seq wants a seq number, got '%s'\n", optarg);
                goto out;
            }
            has_from = 1;
            break;
        case 'n':
            if (cli_parse_u64(optarg, 1, UINT64_MAX >> 1, &a.count) < 0) {
                fprintf(stderr, "tether sub: --count wants a positive number, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'T':
            if (cli_parse_u64(optarg, 1, 86400 * 365, &timeout_s) < 0) {
                fprintf(stderr, "tether sub: --timeout wants seconds, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'h':
            usage(stdout);
            a.rc = CLI_OK;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "tether sub: name at least one room (e.g. tether sub lobby)\n");
        goto out;
    }
    if ((epoch && !has_from) || (oldest && has_from)) {
        fprintf(stderr, "tether sub: use --epoch only with --from-seq, and not --oldest with --from-seq\n");
        goto out;
    }
    if (!(token = cli_conn_token(&a.conn)))
        goto out;
    a.rc = CLI_ERR;
    if (!(a.loop = tc_loop_new())) {
        fprintf(stderr, "tether sub: cannot create the libwebsockets context\n");
        goto out;
    }
    cli_conn_options(&a.conn, &to, token);
    to.cb = &cbs;
    to.arg = &a;
    if (!(a.c = tc_client_new(a.loop, &to))) {
        fprintf(stderr, "tether sub: bad --url '%s' (want ws://host:port/path)\n", a.conn.url);
        a.rc = CLI_USAGE;
        goto out;
    }
    for (int i = optind; i < argc; i++) {
        r = tc_subscribe(a.c, argv[i], epoch, has_from || oldest, has_from ? from_seq : 0);
        if (r < 0 && r != -EALREADY) {
            fprintf(stderr, "tether sub: '%s' is not a room name (1..128 of A-Za-z0-9._:@/-)\n", argv[i]);
            a.rc = CLI_USAGE;
            goto out;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cli_signals(a.loop, on_signal, &a);
    if (a.retry && tc_loop_watch_fd(a.loop, 0, on_stdin, &a) < 0) {
        fprintf(stderr, "tether sub: --retry reads stdin, which cannot be watched\n");
        a.rc = CLI_ERR;
        goto out;
    }
    if (timeout_s) {
        timer = tc_timer_new(a.loop, on_timeout, &a);
        if (timer)
            tc_timer_start(timer, timeout_s * 1000);
    }
    a.rc = CLI_OK;
    tc_connect(a.c);
    tc_loop_run(a.loop);
out:
    tc_timer_free(timer);
    tc_client_free(a.c);
    tc_loop_free(a.loop);
    free(token);
    return a.rc;
}
