/* cli_ptt.c -- `tether ptt <room>`: take the push-to-talk floor, optionally
 * talk (synthetic audio chunks through the SDK's audio buffer), let go.
 *
 * It exercises the client's floor and voice resilience end to end: a floor
 * held when the link drops is requested again after the room is resumed,
 * and chunks produced while offline wait in the audio FIFO and are
 * published, paced and in order, after the reconnection. stdout carries the
 * floor states as JSON lines; stderr the usual events (and audio acks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct ptt_app {
    cli_conn conn;
    tc_loop *loop;
    tc_client *c;
    const char *room;
    tc_timer *chunk_t, *hold_t, *done_t;
    uint64_t hold_ms, chunks, chunk_ms, chunk_bytes, sent_chunks, acked;
    int granted_once, releasing, rc;
    tc_floor_state last;
} ptt_app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether ptt <room> [--hold S] [--audio N [--chunk-ms MS] [--chunk-bytes B]] [options]\n"
            "\n"
            "Subscribes to <room>, requests its push-to-talk floor at once (a request that\n"
            "waits offline longer than 2 s is dropped: state expired, exit 1), holds it,\n"
            "releases it.\n"
            "Floor states go to stdout as JSON lines:\n"
            "  {\"room\":..,\"state\":\"granted\",\"holder\":..,\"reason\":..,\"t_ms\":..}\n"
            "A floor held when the connection drops is requested again after the room is\n"
            "resumed (suspended, requesting, granted). Exits 0 after releasing, 1 when the\n"
            "floor was denied, revoked or expired.\n"
            "\n"
            "options:\n"
            "  --hold S          hold the floor S seconds after it is granted (default 5)\n"
            "  --audio N         while holding, produce N synthetic audio chunks; they go\n"
            "                    through the audio buffer (100 chunks, oldest dropped) and\n"
            "                    are published as {\"n\":..,\"audio\":\"<base64>\"}\n"
            "  --chunk-ms MS     one chunk every MS ms (default 200)\n"
            "  --chunk-bytes B   chunk size (default 400, about 16 kbit/s Opus at 200 ms)\n"
            "\n%s",
            cli_conn_help);
}

static void finish(ptt_app *a, int rc)
{
    if (a->releasing)
        return;
    a->releasing = 1;
    a->rc = rc;
    if (tc_get_state(a->c) == TC_FAILED || tc_get_state(a->c) == TC_DISCONNECTED) {
        tc_loop_stop(a->loop);
        return;
    }
    tc_ptt_release(a->c, a->room);
    /* Let the release and the last publishes go out, then close. */
    tc_timer_start(a->done_t, 300);
}

static void on_done(tc_timer *t, void *arg)
{
    ptt_app *a = arg;
    tc_stats st;
    tc_get_stats(a->c, &st);
    if ((st.outbox_len || st.audio_buffered) && tc_get_state(a->c) != TC_FAILED) {
        tc_timer_start(t, 100);
        return;
    }
    tc_disconnect(a->c, 0);
}

static void on_chunk(tc_timer *t, void *arg)
{
    ptt_app *a = arg;
    unsigned char *buf = malloc(a->chunk_bytes);
    if (!buf)
        return;
    memset(buf, (int)(a->sent_chunks & 0xff), a->chunk_bytes);
    if (tc_audio_send(a->c, a->room, buf, a->chunk_bytes) == 0)
        a->sent_chunks++;
    free(buf);
    if (a->sent_chunks < a->chunks)
        tc_timer_start(t, a->chunk_ms);
}

static void on_hold(tc_timer *t, void *arg)
{
    ptt_app *a = arg;
    tc_stats st;
    tc_get_stats(a->c, &st);
    /* Talking is not over until every chunk was produced. */
    if (a->sent_chunks < a->chunks) {
        tc_timer_start(t, 100);
        return;
    }
    (void)st;
    finish(a, CLI_OK);
}

static void on_floor(tc_client *c, const tc_floor_info *f, void *arg)
{
    ptt_app *a = arg;
    (void)c;
    fputs("{\"room\":", stdout);
    cli_json_str(stdout, f->room);
    printf(",\"state\":\"%s\"", tc_floor_state_name(f->state));
    if (f->holder) {
        fputs(",\"holder\":", stdout);
        cli_json_str(stdout, f->holder);
    }
    if (f->reason) {
        fputs(",\"reason\":", stdout);
        cli_json_str(stdout, f->reason);
    }
    printf(",\"max_ms\":%u,\"t_ms\":%llu}\n", f->max_ms, (unsigned long long)tc_now_ms());
    fflush(stdout);
    a->last = f->state;
    if (a->releasing)
        return;
    if (f->state == TC_FLOOR_GRANTED && !a->granted_once) {
        a->granted_once = 1;
        tc_timer_start(a->hold_t, a->hold_ms);
        if (a->chunks)
            tc_timer_start(a->chunk_t, 0);
    } else if (f->state == TC_FLOOR_DENIED || f->state == TC_FLOOR_REVOKED || f->state == TC_FLOOR_EXPIRED) {
        if (f->state == TC_FLOOR_EXPIRED)
            fprintf(stderr, "tether ptt: the floor request was dropped (%s): run again to talk (exit %d)\n",
                    f->reason ? f->reason : "expired", CLI_ERR);
        finish(a, CLI_ERR);
    }
}

static void on_subscribed(tc_client *c, const tc_subscribed *s, void *arg)
{
    ptt_app *a = arg;
    if (!a->conn.quiet)
        cli_event_subscribed(s);
    /* The button was pressed at start (the request waits in the outbox
     * while offline); this only asks again if that press was refused, e.g.
     * the outbox was full. After a reconnection the SDK restores the floor. */
    if (!s->resubscribe && !a->granted_once && !a->releasing && tc_floor_state_of(c, a->room) == TC_FLOOR_IDLE)
        tc_ptt_request(c, a->room);
}

static void on_state(tc_client *c, const tc_state_info *si, void *arg)
{
    ptt_app *a = arg;
    cli_report_state(&a->conn, c, si);
    if (si->state == TC_FAILED) {
        a->rc = cli_exit_for_failure(si);
        tc_loop_stop(a->loop);
    } else if (si->state == TC_DISCONNECTED) {
        tc_loop_stop(a->loop);
    }
}

static void on_ack(tc_client *c, const tc_ack *k, void *arg)
{
    ptt_app *a = arg;
    (void)c;
    if (!k->error)
        a->acked++;
    if (!a->conn.quiet || k->error)
        cli_event("ack", "{s:s,s:I,s:b,s:i}", "id", k->id, "seq", (json_int_t)k->seq, "duplicate", k->duplicate,
                  "error", k->error);
}

static void on_error(tc_client *c, int code, const char *reason, void *arg)
{
    ptt_app *a = arg;
    (void)c;
    if (!a->conn.quiet)
        cli_event("error", "{s:i,s:s}", "code", code, "reason", reason);
}

static int on_token(tc_client *c, tc_token_why why, void *arg)
{
    ptt_app *a = arg;
    int r = cli_conn_refresh(&a->conn, c);
    if (!a->conn.quiet)
        cli_event("token", "{s:s,s:b}", "why", why == TC_TOKEN_EXPIRED ? "expired" : "refresh", "renewed", r == 0);
    return r;
}

static void on_signal(void *arg, int signo)
{
    ptt_app *a = arg;
    (void)signo;
    if (a->releasing)
        tc_loop_stop(a->loop);
    else
        finish(a, CLI_OK);
}

int cli_ptt(int argc, char **argv)
{
    static const struct option extra[] = {
        { "hold", required_argument, NULL, 'H' },      { "audio", required_argument, NULL, 'A' },
        { "chunk-ms", required_argument, NULL, 'M' },  { "chunk-bytes", required_argument, NULL, 'B' },
        { "help", no_argument, NULL, 'h' },            { NULL, 0, NULL, 0 },
    };
    static const tc_callbacks cbs = { on_state, NULL, on_subscribed, NULL, on_ack, on_error, on_floor, on_token, NULL };
    ptt_app a;
    tc_options to;
    char *token = NULL;
    uint64_t hold_s = 5;
    int opt, r;
    memset(&a, 0, sizeof(a));
    cli_conn_init(&a.conn);
    a.rc = CLI_USAGE;
    a.chunk_ms = 200;
    a.chunk_bytes = 400;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", cli_long_opts(extra), NULL)) != -1) {
        if ((r = cli_conn_opt(&a.conn, opt, optarg)) != 0) {
            if (r < 0)
                goto out;
            continue;
        }
        switch (opt) {
        case 'H':
            if (cli_parse_u64(optarg, 0, 86400, &hold_s) < 0) {
                fprintf(stderr, "tether ptt: --hold wants seconds, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'A':
            if (cli_parse_u64(optarg, 0, 1000000, &a.chunks) < 0) {
                fprintf(stderr, "tether ptt: --audio wants a chunk count, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'M':
            if (cli_parse_u64(optarg, 1, 60000, &a.chunk_ms) < 0) {
                fprintf(stderr, "tether ptt: --chunk-ms wants 1..60000, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'B':
            if (cli_parse_u64(optarg, 1, 32768, &a.chunk_bytes) < 0) {
                fprintf(stderr, "tether ptt: --chunk-bytes wants 1..32768, got '%s'\n", optarg);
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
    if (argc - optind != 1) {
        fprintf(stderr, "tether ptt: name one room (e.g. tether ptt channel-1 --hold 3)\n");
        goto out;
    }
    a.room = argv[optind];
    a.hold_ms = hold_s * 1000;
    if (!(token = cli_conn_token(&a.conn)))
        goto out;
    a.rc = CLI_ERR;
    if (!(a.loop = tc_loop_new())) {
        fprintf(stderr, "tether ptt: cannot create the libwebsockets context\n");
        goto out;
    }
    cli_conn_options(&a.conn, &to, token);
    to.cb = &cbs;
    to.arg = &a;
    if (!(a.c = tc_client_new(a.loop, &to))) {
        fprintf(stderr, "tether ptt: bad --url '%s' (want ws://host:port/path)\n", a.conn.url);
        a.rc = CLI_USAGE;
        goto out;
    }
    if (tc_subscribe(a.c, a.room, NULL, 0, 0) < 0) {
        fprintf(stderr, "tether ptt: '%s' is not a room name (1..128 of A-Za-z0-9._:@/-)\n", a.room);
        a.rc = CLI_USAGE;
        goto out;
    }
    a.chunk_t = tc_timer_new(a.loop, on_chunk, &a);
    a.hold_t = tc_timer_new(a.loop, on_hold, &a);
    a.done_t = tc_timer_new(a.loop, on_done, &a);
    if (!a.chunk_t || !a.hold_t || !a.done_t)
        goto out;
    setvbuf(stdout, NULL, _IOLBF, 0);
    cli_signals(a.loop, on_signal, &a);
    a.rc = CLI_OK;
    tc_connect(a.c);
    /* The user presses the button now, connected or not: a press that waits
     * offline longer than the SDK's ptt_stale_ms (2 s) is dropped. */
    tc_ptt_request(a.c, a.room);
    tc_loop_run(a.loop);
    if (a.rc == CLI_OK && a.last != TC_FLOOR_IDLE && a.last != TC_FLOOR_GRANTED)
        a.rc = CLI_ERR;
out:
    tc_timer_free(a.chunk_t);
    tc_timer_free(a.hold_t);
    tc_timer_free(a.done_t);
    tc_client_free(a.c);
    tc_loop_free(a.loop);
    free(token);
    return a.rc;
}
