/* cli_pub.c -- `tether pub <room> <json>|-`: publish and print each ack.
 *
 * Publishes go through the SDK's outbox, so a gateway that dies mid-way
 * costs nothing: unacked publishes are re-sent with their ids after the
 * reconnection and the server deduplicates them (an ack then says
 * duplicate: true with the first seq). With '-', stdin is read line by line
 * (one JSON value per line) while connected or not; lines wait here while
 * the outbox is full.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct line {
    struct line *next;
    char *data;
    char *id;
} line;

typedef struct pub_app {
    cli_conn conn;
    tc_loop *loop;
    tc_client *c;
    tc_timer *tick;
    const char *room, *templ, *id;
    uint64_t count, made, interval_ms;
    int from_stdin, input_done;
    line *head, *tail;               /* not yet handed to the outbox */
    char *partial;                   /* stdin bytes after the last newline */
    size_t partial_len;
    uint64_t submitted, acked, failed;   /* failed: acks with an error */
    uint64_t refused;                    /* never submitted (not JSON, bad id) */
    uint64_t forbidden;                  /* acks with error 4503 */
    int rc, closing;
} pub_app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether pub <room> <json> [--id ID] [--count N [--interval MS]] [options]\n"
            "       tether pub <room> -      (one JSON value per line on stdin)\n"
            "\n"
            "Publishes and prints each ack on stdout as one JSON line:\n"
            "  {\"id\":..,\"room\":..,\"seq\":..,\"duplicate\":..,\"latency_ms\":..}\n"
            "Exits when every publish is acknowledged. Unacked publishes survive\n"
            "reconnections and are re-sent with the same id (never stored twice).\n"
            "\n"
            "options:\n"
            "  --id ID          idempotency key (default: generated); with --count, ID-<n>\n"
            "  --count N        publish N times; every {n} in <json> becomes 1..N\n"
            "  --interval MS    pause between --count publishes (default 0)\n"
            "  --timeout S      exit 5 if not all acked within S seconds (default: wait)\n"
            "\n"
            "A <json> that does not parse exits 2 before connecting; a stdin line that does\n"
            "not parse is reported (publish_error) and makes the exit code 1. A publish\n"
            "to a room the token does not allow (4503) exits 3.\n"
            "\n%s",
            cli_conn_help);
}

static int valid_id(const char *id, size_t max)
{
    size_t n = strlen(id);
    return n >= 1 && n <= max && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

/* The <json> argument (with {n} as 1) must parse before anything connects. */
static int check_json(const char *templ)
{
    size_t tl = strlen(templ), k = 0;
    char *t = malloc(tl + 1);
    json_error_t err;
    if (!t)
        return -1;
    for (const char *p = templ; *p;) {
        if (!strncmp(p, "{n}", 3)) {
            t[k++] = '1';
            p += 3;
        } else {
            t[k++] = *p++;
        }
    }
    t[k] = 0;
    json_t *v = json_loads(t, JSON_DECODE_ANY, &err);
    free(t);
    if (!v) {
        fprintf(stderr, "tether pub: the message is not valid JSON (%s, at column %d): %s\n"
                        "  e.g. tether pub lobby '{\"text\":\"hi\"}' (quote it for the shell)\n",
                err.text, err.column, templ);
        return -1;
    }
    json_decref(v);
    return 0;
}

static void finish(pub_app *a, int rc)
{
    if (a->closing)
        return;
    a->closing = 1;
    a->rc = rc;
    if (tc_get_state(a->c) == TC_FAILED || tc_get_state(a->c) == TC_DISCONNECTED)
        tc_loop_stop(a->loop);
    else
        tc_disconnect(a->c, 0);
}

static void check_done(pub_app *a)
{
    if (a->input_done && !a->head && a->acked + a->failed == a->submitted)
        finish(a, a->forbidden ? CLI_AUTH : a->failed || a->refused ? CLI_ERR : CLI_OK);
}

/* Hands queued lines to the outbox while it has room. */
static void submit(pub_app *a)
{
    while (a->head && !a->closing) {
        line *l = a->head;
        char id[80];
        int r = tc_publish(a->c, a->room, l->data, l->id, id, sizeof(id));
        if (r == -ENOBUFS)
            return; /* an ack will make room */
        a->head = l->next;
        if (!a->head)
            a->tail = NULL;
        if (r < 0) {
            a->refused++;
            cli_event("publish_error", "{s:s,s:s,s:i}", "data", l->data,
                      "reason", r == -EINVAL ? "not valid JSON (or a bad --id)" : "cannot queue", "errno", -r);
        } else {
            a->submitted++;
        }
        free(l->data);
        free(l->id);
        free(l);
    }
    check_done(a);
}

static int enqueue(pub_app *a, const char *data, size_t len, const char *id)
{
    line *l = calloc(1, sizeof(*l));
    if (!l || !(l->data = strndup(data, len)) || (id && !(l->id = strdup(id)))) {
        if (l)
            free(l->data);
        free(l);
        return -ENOMEM;
    }
    if (a->tail)
        a->tail->next = l;
    else
        a->head = l;
    a->tail = l;
    return 0;
}

/* The next --count message: the template with {n} replaced. */
static int make_next(pub_app *a)
{
    char num[24], idbuf[80];
    size_t tl = strlen(a->templ);
    int nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)a->made + 1);
    char *out = malloc(tl * (size_t)(nl + 1) + 1), *o = out;
    if (!out)
        return -ENOMEM;
    for (const char *p = a->templ; *p;) {
        if (!strncmp(p, "{n}", 3)) {
            memcpy(o, num, (size_t)nl);
            o += nl;
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    if (a->id && a->count > 1)
        snprintf(idbuf, sizeof(idbuf), "%s-%llu", a->id, (unsigned long long)a->made + 1);
    int r = enqueue(a, out, strlen(out), a->id ? (a->count > 1 ? idbuf : a->id) : NULL);
    free(out);
    if (r == 0 && ++a->made == a->count)
        a->input_done = 1;
    return r;
}

static void on_tick(tc_timer *t, void *arg)
{
    pub_app *a = arg;
    if (a->head) {
        /* The outbox is full: wait for acks rather than pile up lines. */
        tc_timer_start(t, a->interval_ms > 10 ? a->interval_ms : 10);
        return;
    }
    if (a->made < a->count && make_next(a) == 0) {
        submit(a);
        if (a->made < a->count)
            tc_timer_start(t, a->interval_ms);
    }
}

static int on_stdin(void *arg, int fd)
{
    pub_app *a = arg;
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0) {
        if (a->partial_len)
            enqueue(a, a->partial, a->partial_len, NULL);
        a->partial_len = 0;
        a->input_done = 1;
        submit(a);
        return -1;
    }
    char *p = realloc(a->partial, a->partial_len + (size_t)n);
    if (!p)
        return -1;
    a->partial = p;
    memcpy(a->partial + a->partial_len, buf, (size_t)n);
    a->partial_len += (size_t)n;
    size_t start = 0;
    for (size_t i = 0; i < a->partial_len; i++) {
        if (a->partial[i] != '\n')
            continue;
        size_t len = i - start;
        while (len && (a->partial[start + len - 1] == '\r' || a->partial[start + len - 1] == ' '))
            len--;
        if (len)
            enqueue(a, a->partial + start, len, NULL);
        start = i + 1;
    }
    memmove(a->partial, a->partial + start, a->partial_len - start);
    a->partial_len -= start;
    submit(a);
    return 0;
}

static void on_state(tc_client *c, const tc_state_info *si, void *arg)
{
    pub_app *a = arg;
    cli_report_state(&a->conn, c, si);
    if (si->state == TC_FAILED) {
        if (!a->closing)
            a->rc = cli_exit_for_failure(si);
        a->closing = 1;
        tc_loop_stop(a->loop);
    } else if (si->state == TC_DISCONNECTED) {
        tc_loop_stop(a->loop);
    }
}

static void on_ack(tc_client *c, const tc_ack *k, void *arg)
{
    pub_app *a = arg;
    (void)c;
    if (k->error) {
        a->failed++;
        if (k->error == 4503 && !a->forbidden++)
            fprintf(stderr, "tether pub: %s; the token does not allow room '%s': mint one with --rooms naming it\n",
                    k->reason ? k->reason : "forbidden", k->room);
        cli_event("publish_error", "{s:s,s:s,s:i,s:s}", "id", k->id, "room", k->room, "code", k->error, "reason",
                  k->reason ? k->reason : "");
    } else {
        a->acked++;
        printf("{\"id\":\"%s\",\"room\":\"%s\",\"seq\":%llu,\"duplicate\":%s,\"latency_ms\":%.3f}\n", k->id, k->room,
               (unsigned long long)k->seq, k->duplicate ? "true" : "false", (double)k->latency_us / 1000.0);
        fflush(stdout);
    }
    submit(a);
}

static void on_error(tc_client *c, int code, const char *reason, void *arg)
{
    pub_app *a = arg;
    (void)c;
    if (!a->conn.quiet)
        cli_event("error", "{s:i,s:s}", "code", code, "reason", reason);
}

static int on_token(tc_client *c, tc_token_why why, void *arg)
{
    pub_app *a = arg;
    int r = cli_conn_refresh(&a->conn, c);
    if (!a->conn.quiet)
        cli_event("token", "{s:s,s:b}", "why", why == TC_TOKEN_EXPIRED ? "expired" : "refresh", "renewed", r == 0);
    return r;
}

static void on_signal(void *arg, int signo)
{
    pub_app *a = arg;
    (void)signo;
    if (a->closing)
        tc_loop_stop(a->loop);
    else
        finish(a, a->acked + a->failed == a->submitted && !a->head ? CLI_OK : CLI_TIMEOUT);
}

static void on_timeout(tc_timer *t, void *arg)
{
    pub_app *a = arg;
    (void)t;
    cli_event("timeout", "{s:I,s:I}", "acked", (json_int_t)a->acked, "submitted", (json_int_t)a->submitted);
    a->closing = 1;
    a->rc = CLI_TIMEOUT;
    tc_loop_stop(a->loop);
}

int cli_pub(int argc, char **argv)
{
    static const struct option extra[] = {
        { "id", required_argument, NULL, 'i' },      { "count", required_argument, NULL, 'n' },
        { "interval", required_argument, NULL, 'I' }, { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
    };
    static const tc_callbacks cbs = { on_state, NULL, NULL, NULL, on_ack, on_error, NULL, on_token, NULL };
    pub_app a;
    tc_options to;
    tc_timer *deadline = NULL;
    char *token = NULL;
    uint64_t timeout_s = 0;
    int opt, r;
    memset(&a, 0, sizeof(a));
    cli_conn_init(&a.conn);
    a.rc = CLI_USAGE;
    a.count = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", cli_long_opts(extra), NULL)) != -1) {
        if ((r = cli_conn_opt(&a.conn, opt, optarg)) != 0) {
            if (r < 0)
                goto out;
            continue;
        }
        switch (opt) {
        case 'i':
            a.id = optarg;
            break;
        case 'n':
            if (cli_parse_u64(optarg, 1, 100000000, &a.count) < 0) {
                fprintf(stderr, "tether pub: --count wants 1..100000000, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'I':
            if (cli_parse_u64(optarg, 0, 3600000, &a.interval_ms) < 0) {
                fprintf(stderr, "tether pub: --interval wants milliseconds, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'T':
            if (cli_parse_u64(optarg, 1, 86400 * 365, &timeout_s) < 0) {
                fprintf(stderr, "tether pub: --timeout wants seconds, got '%s'\n", optarg);
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
    if (argc - optind != 2) {
        fprintf(stderr, "tether pub: give a room and a JSON value (or '-' for stdin), e.g.\n"
                        "  tether pub lobby '{\"text\":\"hi\"}'\n");
        goto out;
    }
    a.room = argv[optind];
    a.templ = argv[optind + 1];
    a.from_stdin = !strcmp(a.templ, "-");
    if (a.from_stdin && (a.id || a.count > 1)) {
        fprintf(stderr, "tether pub: --id and --count do not apply to stdin input\n");
        goto out;
    }
    if (a.id && !valid_id(a.id, a.count > 1 ? 54 : 64)) {
        fprintf(stderr, "tether pub: --id is 1..64 of A-Za-z0-9._:- (with --count, 1..54: -<n> is appended)\n");
        goto out;
    }
    if (!a.from_stdin && check_json(a.templ) < 0)
        goto out;
    if (!(token = cli_conn_token(&a.conn)))
        goto out;
    a.rc = CLI_ERR;
    if (!(a.loop = tc_loop_new())) {
        fprintf(stderr, "tether pub: cannot create the libwebsockets context\n");
        goto out;
    }
    cli_conn_options(&a.conn, &to, token);
    to.cb = &cbs;
    to.arg = &a;
    if (!(a.c = tc_client_new(a.loop, &to))) {
        fprintf(stderr, "tether pub: bad --url '%s' (want ws://host:port/path)\n", a.conn.url);
        a.rc = CLI_USAGE;
        goto out;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cli_signals(a.loop, on_signal, &a);
    a.rc = CLI_OK;
    if (a.from_stdin) {
        if (tc_loop_watch_fd(a.loop, 0, on_stdin, &a) < 0) {
            fprintf(stderr, "tether pub: cannot read stdin\n");
            a.rc = CLI_ERR;
            goto out;
        }
    } else {
        a.tick = tc_timer_new(a.loop, on_tick, &a);
        if (!a.tick) {
            a.rc = CLI_ERR;
            goto out;
        }
        tc_timer_start(a.tick, 0);
    }
    if (timeout_s && (deadline = tc_timer_new(a.loop, on_timeout, &a)))
        tc_timer_start(deadline, timeout_s * 1000);
    tc_connect(a.c);
    tc_loop_run(a.loop);
out:
    tc_timer_free(deadline);
    tc_timer_free(a.tick);
    tc_client_free(a.c);
    tc_loop_free(a.loop);
    while (a.head) {
        line *n = a.head->next;
        free(a.head->data);
        free(a.head->id);
        free(a.head);
        a.head = n;
    }
    free(a.partial);
    free(token);
    return a.rc;
}
