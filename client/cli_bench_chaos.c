/* cli_bench_chaos.c -- `tether bench --mode chaos`: the C SDK side of the
 * chaos harness (tests/chaos/). --conns clients run on one loop for as long
 * as the harness wants, publish with ids into --rooms rooms and subscribe
 * across them, and write every event the application sees to --log as one
 * JSON object per line, so that a checker can judge, from the clients' own
 * view, what the suite delivered while its processes were being killed.
 *
 * Client i is user "<user>-<i>", connects to the i-th --url (round robin),
 * subscribes live to rooms "<room>-<i % K>" and "<room>-<(i+1) % K>" and
 * publishes into the first one, ids "<user>-<i>-<n>", at a total --rate
 * msg/s spread evenly over the clients (random phase). Publishes made while
 * offline wait in the SDK's outbox and are re-sent with the same id.
 *
 * With --churn MS, each client leaves at random (exponential, mean MS) and
 * comes back 0.2..3 s later: tc_disconnect without `bye` (the session stays
 * resumable), or one time in five with `bye` (the session ends: presence
 * `offline` is then the right answer).
 *
 * Control: lines on stdin. "quiesce" stops new publishes (the outbox still
 * drains), "resume" restarts them, "stats" logs every client's counters,
 * "stop" (or EOF, SIGINT, SIGTERM) logs the counters and exits.
 *
 * Log lines all carry "t" (CLOCK_MONOTONIC microseconds: the same clock as
 * every other process on the machine, the harness included), "c" (the
 * user) and "ev": client, state, sub, msg, gap, pub, pub_rej, ack, frame
 * (presence and reconnect frames, raw), error, churn, rejoin, stats, plus
 * start/quiesce/resume/stop with "c": "". The file is flushed every 100 ms
 * and at exit; a reader must ignore a partial last line.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_bench.h"
#include "jwtcheck.h"

typedef struct chaos chaos;

typedef struct ch_client {
    chaos *ch;
    tc_client *c;
    uint64_t idx, npub;
    char user[64];
    char rooms[2][160];
    int nrooms;
    int away;                   /* churned out by us, coming back */
    tc_timer *pub_t, *churn_t, *back_t;
} ch_client;

struct chaos {
    const bench_cfg *cfg;
    tc_loop *loop;
    FILE *log;
    ch_client *cl;
    uint64_t n, created;
    uint64_t period_ms;         /* between two publishes of one client */
    int quiesced, stopping;
    tc_timer *flush_t, *ramp_t;
    char line[4096];
    size_t linelen;
    unsigned rng;
};

/* ---- log lines -------------------------------------------------------------------------- */

static void head(chaos *ch, const char *who, const char *ev)
{
    fprintf(ch->log, "{\"t\":%llu,\"c\":", (unsigned long long)tc_now_us());
    cli_json_str(ch->log, who);
    fprintf(ch->log, ",\"ev\":\"%s\"", ev);
}

static void field_s(chaos *ch, const char *k, const char *v)
{
    fprintf(ch->log, ",\"%s\":", k);
    cli_json_str(ch->log, v ? v : "");
}

static void field_u(chaos *ch, const char *k, uint64_t v)
{
    fprintf(ch->log, ",\"%s\":%llu", k, (unsigned long long)v);
}

static void tail(chaos *ch)
{
    fputs("}\n", ch->log);
}

static void log_stats(chaos *ch, const ch_client *k)
{
    tc_stats st;
    tc_get_stats(k->c, &st);
    head(ch, k->user, "stats");
    field_s(ch, "state", tc_state_name(tc_get_state(k->c)));
    field_u(ch, "connects", st.connects);
    field_u(ch, "attempts", st.attempts);
    field_u(ch, "messages", st.messages);
    field_u(ch, "dups", st.duplicates_dropped);
    field_u(ch, "gaps", st.gaps);
    field_u(ch, "outbox", st.outbox_len);
    field_u(ch, "inflight", st.outbox_inflight);
    field_u(ch, "acked", st.publishes_acked);
    field_u(ch, "resent", st.publishes_resent);
    field_u(ch, "rejected", st.publishes_rejected);
    field_u(ch, "published", k->npub);
    tail(ch);
}

static void log_all_stats(chaos *ch)
{
    for (uint64_t i = 0; i < ch->created; i++)
        log_stats(ch, &ch->cl[i]);
    fflush(ch->log);
}

/* ---- randomness (rand_r: per run, seeded from the clock and pid) ---------------------------- */

static double uniform(chaos *ch)
{
    return ((double)rand_r(&ch->rng) + 0.5) / ((double)RAND_MAX + 1.0);
}

static uint64_t exp_ms(chaos *ch, uint64_t mean_ms)
{
    double v = -log1p(-uniform(ch)) * (double)mean_ms;
    return v > 1e9 ? 1000000000ull : (uint64_t)v + 1;
}

/* ---- SDK callbacks -------------------------------------------------------------------------- */

static void on_state(tc_client *c, const tc_state_info *si, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "state");
    field_s(ch, "state", tc_state_name(si->state));
    field_s(ch, "prev", tc_state_name(si->prev));
    field_u(ch, "code", (uint64_t)(si->code < 0 ? 0 : si->code));
    field_s(ch, "reason", si->reason);
    if (si->state == TC_CONNECTED) {
        field_u(ch, "resumed", (uint64_t)si->resumed);
        field_s(ch, "session", si->session);
        field_u(ch, "disc_ms", si->disconnected_ms);
    } else if (si->state == TC_RECONNECTING || si->state == TC_CONNECTING) {
        field_u(ch, "attempt", si->attempt);
        field_u(ch, "delay_ms", si->next_delay_ms == UINT32_MAX ? 0 : si->next_delay_ms);
    } else if (si->state == TC_FAILED) {
        field_u(ch, "gave_up", (uint64_t)si->gave_up);
    }
    tail(ch);
}

static void on_subscribed(tc_client *c, const tc_subscribed *s, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "sub");
    field_s(ch, "room", s->room);
    field_s(ch, "epoch", s->epoch);
    field_u(ch, "seq", s->seq);
    field_u(ch, "missed", s->missed);
    fprintf(ch->log, ",\"recovered\":%s", s->recovered ? "true" : "false");
    if (s->has_gap)
        fprintf(ch->log, ",\"gap\":{\"from\":%llu,\"first_available\":%llu}", (unsigned long long)s->gap_from,
                (unsigned long long)s->gap_first_available);
    field_u(ch, "resub", (uint64_t)s->resubscribe);
    field_u(ch, "epoch_changed", (uint64_t)s->epoch_changed);
    tail(ch);
}

static void on_message(tc_client *c, const tc_message *m, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "msg");
    field_s(ch, "room", m->room);
    field_s(ch, "epoch", m->epoch);
    field_u(ch, "seq", m->seq);
    field_s(ch, "id", m->id);
    field_s(ch, "from", m->from);
    tail(ch);
}

static void on_gap(tc_client *c, const tc_gap *g, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "gap");
    field_s(ch, "room", g->room);
    field_u(ch, "from", g->from);
    field_u(ch, "to", g->to);
    field_u(ch, "by_client", (uint64_t)g->by_client);
    tail(ch);
}

static void on_ack(tc_client *c, const tc_ack *a, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "ack");
    field_s(ch, "room", a->room);
    field_s(ch, "id", a->id);
    field_u(ch, "seq", a->seq);
    field_u(ch, "dup", (uint64_t)a->duplicate);
    field_u(ch, "err", (uint64_t)(a->error < 0 ? 0 : a->error));
    field_u(ch, "lat_us", a->latency_us);
    tail(ch);
}

static void on_error(tc_client *c, int code, const char *reason, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    head(ch, k->user, "error");
    field_u(ch, "code", (uint64_t)(code < 0 ? 0 : code));
    field_s(ch, "reason", reason);
    tail(ch);
}

static void on_frame(tc_client *c, const char *type, const char *json, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)c;
    if (strcmp(type, "presence") != 0 && strcmp(type, "reconnect") != 0)
        return;
    /* The frame is a JSON object as the SDK received it: embedded as is. */
    head(ch, k->user, "frame");
    field_s(ch, "type", type);
    fprintf(ch->log, ",\"f\":%s", json);
    tail(ch);
}

static const tc_callbacks g_cbs = { on_state, on_message, on_subscribed, on_gap, on_ack, on_error, NULL, NULL, on_frame };

/* ---- the workload ----------------------------------------------------------------------------- */

static void publish_one(ch_client *k)
{
    chaos *ch = k->ch;
    char id[96], data[160];
    uint64_t n = k->npub + 1;
    snprintf(id, sizeof(id), "%s-%llu", k->user, (unsigned long long)n);
    snprintf(data, sizeof(data), "{\"c\":\"%s\",\"n\":%llu,\"t\":%llu}", k->user, (unsigned long long)n,
             (unsigned long long)tc_now_us());
    int r = tc_publish(k->c, k->rooms[0], data, id, NULL, 0);
    if (r < 0) {
        head(ch, k->user, "pub_rej");
        field_s(ch, "room", k->rooms[0]);
        field_s(ch, "id", id);
        field_u(ch, "err", (uint64_t)-r);
        tail(ch);
        return;
    }
    k->npub = n;
    head(ch, k->user, "pub");
    field_s(ch, "room", k->rooms[0]);
    field_s(ch, "id", id);
    tail(ch);
}

static void on_pub(tc_timer *t, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    if (ch->stopping)
        return;
    /* Away (tc_disconnect) or failed: the SDK refuses publishes (-ENOTCONN). */
    if (!ch->quiesced && !k->away && tc_get_state(k->c) != TC_FAILED)
        publish_one(k);
    tc_timer_start(t, ch->period_ms);
}

static void on_back(tc_timer *t, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    (void)t;
    if (ch->stopping)
        return;
    k->away = 0;
    head(ch, k->user, "rejoin");
    tail(ch);
    tc_connect(k->c);
    tc_timer_start(k->churn_t, exp_ms(ch, ch->cfg->churn_ms));
}

static void on_churn(tc_timer *t, void *arg)
{
    ch_client *k = arg;
    chaos *ch = k->ch;
    if (ch->stopping)
        return;
    if (tc_get_state(k->c) != TC_CONNECTED) {
        tc_timer_start(t, exp_ms(ch, ch->cfg->churn_ms));
        return;
    }
    int bye = rand_r(&ch->rng) % 5 == 0;
    k->away = 1;
    head(ch, k->user, "churn");
    field_u(ch, "bye", (uint64_t)bye);
    tail(ch);
    tc_disconnect(k->c, bye);
    tc_timer_start(k->back_t, 200 + (uint64_t)(uniform(ch) * 2800));
}

static int open_client(chaos *ch, ch_client *k)
{
    const bench_cfg *cfg = ch->cfg;
    tc_options o;
    char *tok = NULL;
    k->ch = ch;
    snprintf(k->user, sizeof(k->user), "%s-%llu", cfg->user_prefix, (unsigned long long)k->idx);
    snprintf(k->rooms[0], sizeof(k->rooms[0]), "%s-%llu", cfg->room, (unsigned long long)(k->idx % cfg->rooms));
    snprintf(k->rooms[1], sizeof(k->rooms[1]), "%s-%llu", cfg->room,
             (unsigned long long)((k->idx + 1) % cfg->rooms));
    k->nrooms = cfg->rooms > 1 ? 2 : 1;
    if (cfg->secret) {
        tok = jwt_mint_hs256(cfg->secret, k->user, NULL, 0, (int64_t)time(NULL) + 7 * 86400, NULL, NULL, NULL);
        if (!tok)
            return -ENOMEM;
    }
    cli_conn_options(&cfg->conn, &o, tok ? tok : cfg->conn.token);
    o.url = cfg->urls[k->idx % (uint64_t)cfg->nurls];
    o.client_name = "tether-bench-chaos/1";
    o.outbox_max = 5000;
    o.no_refresh = 1;
    o.cb = &g_cbs;
    o.arg = k;
    k->c = tc_client_new(ch->loop, &o);
    free(tok);
    if (!k->c)
        return -EINVAL;
    head(ch, k->user, "client");
    field_s(ch, "url", o.url);
    field_s(ch, "pub_room", k->rooms[0]);
    fputs(",\"rooms\":[", ch->log);
    for (int i = 0; i < k->nrooms; i++) {
        if (i)
            fputc(',', ch->log);
        cli_json_str(ch->log, k->rooms[i]);
    }
    fputc(']', ch->log);
    tail(ch);
    for (int i = 0; i < k->nrooms; i++)
        tc_subscribe(k->c, k->rooms[i], NULL, 0, 0);
    k->pub_t = tc_timer_new(ch->loop, on_pub, k);
    k->churn_t = tc_timer_new(ch->loop, on_churn, k);
    k->back_t = tc_timer_new(ch->loop, on_back, k);
    if (!k->pub_t || !k->churn_t || !k->back_t)
        return -ENOMEM;
    if (ch->period_ms)
        tc_timer_start(k->pub_t, (uint64_t)(uniform(ch) * (double)ch->period_ms) + 1);
    if (cfg->churn_ms)
        tc_timer_start(k->churn_t, exp_ms(ch, cfg->churn_ms));
    return tc_connect(k->c);
}

/* Clients start at --ramp per second so the first hellos are not a wall. */
static void on_ramp(tc_timer *t, void *arg)
{
    chaos *ch = arg;
    uint64_t per_tick = ch->cfg->ramp / 100 ? ch->cfg->ramp / 100 : 1;
    for (uint64_t i = 0; i < per_tick && ch->created < ch->n; i++) {
        ch_client *k = &ch->cl[ch->created];
        k->idx = ch->created;
        if (open_client(ch, k) < 0) {
            fprintf(stderr, "tether bench: chaos client %llu could not start\n", (unsigned long long)k->idx);
            ch->stopping = 1;
            tc_loop_stop(ch->loop);
            return;
        }
        ch->created++;
    }
    if (ch->created < ch->n)
        tc_timer_start(t, 10);
}

static void on_flush(tc_timer *t, void *arg)
{
    chaos *ch = arg;
    fflush(ch->log);
    tc_timer_start(t, 100);
}

/* ---- control ------------------------------------------------------------------------------------ */

static void stop(chaos *ch, const char *why)
{
    if (ch->stopping)
        return;
    ch->stopping = 1;
    head(ch, "", "stop");
    field_s(ch, "why", why);
    tail(ch);
    tc_loop_stop(ch->loop);
}

static void command(chaos *ch, const char *cmd)
{
    if (!strcmp(cmd, "quiesce") || !strcmp(cmd, "resume")) {
        ch->quiesced = cmd[0] == 'q';
        head(ch, "", cmd);
        tail(ch);
    } else if (!strcmp(cmd, "stats")) {
        log_all_stats(ch);
    } else if (!strcmp(cmd, "stop")) {
        stop(ch, "stop command");
    } else if (*cmd) {
        fprintf(stderr, "tether bench: chaos: unknown command '%s' (quiesce, resume, stats, stop)\n", cmd);
    }
    fflush(ch->log);
}

static int on_stdin(void *arg, int fd)
{
    chaos *ch = arg;
    char buf[1024];
    ssize_t m = read(fd, buf, sizeof(buf));
    if (m < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (m == 0) {
        stop(ch, "stdin closed");
        return -1;
    }
    for (ssize_t i = 0; i < m; i++) {
        if (buf[i] == '\n' || ch->linelen == sizeof(ch->line) - 1) {
            ch->line[ch->linelen] = 0;
            while (ch->linelen && (ch->line[ch->linelen - 1] == '\r' || ch->line[ch->linelen - 1] == ' '))
                ch->line[--ch->linelen] = 0;
            command(ch, ch->line);
            ch->linelen = 0;
        } else {
            ch->line[ch->linelen++] = buf[i];
        }
    }
    return 0;
}

static void on_signal(void *arg, int signo)
{
    stop(arg, signo == SIGINT ? "SIGINT" : "SIGTERM");
}

int bench_chaos(const bench_cfg *cfg)
{
    chaos c, *ch = &c;
    int rc = CLI_ERR;
    memset(ch, 0, sizeof(*ch));
    ch->cfg = cfg;
    ch->n = cfg->conns;
    ch->rng = (unsigned)tc_now_us() ^ (unsigned)getpid();
    ch->period_ms = cfg->rate ? cfg->conns * 1000 / cfg->rate : 0;
    if (cfg->rate && !ch->period_ms)
        ch->period_ms = 1;
    ch->log = cfg->log_path && strcmp(cfg->log_path, "-") ? fopen(cfg->log_path, "a") : stdout;
    if (!ch->log) {
        fprintf(stderr, "tether bench: --log %s: %s\n", cfg->log_path, strerror(errno));
        return CLI_ERR;
    }
    ch->cl = calloc(ch->n, sizeof(*ch->cl));
    ch->loop = tc_loop_new();
    if (!ch->cl || !ch->loop)
        goto out;
    ch->flush_t = tc_timer_new(ch->loop, on_flush, ch);
    ch->ramp_t = tc_timer_new(ch->loop, on_ramp, ch);
    if (!ch->flush_t || !ch->ramp_t || cli_signals(ch->loop, on_signal, ch) < 0 ||
        tc_loop_watch_fd(ch->loop, STDIN_FILENO, on_stdin, ch) < 0)
        goto out;
    head(ch, "", "start");
    field_u(ch, "conns", cfg->conns);
    field_u(ch, "rooms", cfg->rooms);
    field_u(ch, "rate", cfg->rate);
    field_u(ch, "churn_ms", cfg->churn_ms);
    field_u(ch, "pid", (uint64_t)getpid());
    tail(ch);
    tc_timer_start(ch->flush_t, 100);
    tc_timer_start(ch->ramp_t, 0);
    tc_loop_run(ch->loop);
    log_all_stats(ch);
    rc = CLI_OK;
out:
    if (ch->log) {
        fflush(ch->log);
        if (ch->log != stdout)
            fclose(ch->log);
    }
    /* Like the other modes: no polite close per socket, the process ends. */
    free(ch->cl);
    return rc;
}
