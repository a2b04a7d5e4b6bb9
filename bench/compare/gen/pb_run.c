/* pb_run.c -- the phases of a peerbench run and what the protocol layers
 * report to it (joined, message, answered, lost).
 *
 * connect   subscribers (at most --max-handshakes setting up at once) and
 *           publishers; each subscriber joins one room (sub i -> room
 *           i / (subs / rooms)).
 * prime     publishing at --rate until every subscriber got a message and no
 *           presence frame came for --quiet s (Tether tells every member of
 *           every join); prints {"event":"ready"} on stderr.
 * then, by mode:
 *   fanout, rooms  warm-up, a --duration window, drain (publishing stopped,
 *           until every subscriber has its room's last message).
 *   sweep   windows at rising rates: double while sustained, then bisect.
 *   idle    no publishing; hold --hold s; the servers' memory before/after.
 *   storm   --warmup s of steady traffic, then every subscriber's socket is
 *           reset at once (SO_LINGER 0) while the publisher goes on; each
 *           comes back after a delay uniform in [0, --jitter-ms] (then full
 *           jitter backoff up to 5 s) and resumes; time until all resumed,
 *           then 3 s of live traffic and a drain; loss and duplicates from
 *           the subscribers' own records (the live part lasts --duration s,
 *           at most 3). With --drop server the
 *           generator instead prints {"event":"drop_now"} and the runner
 *           kills (SIGKILL) and restarts the server process that holds the
 *           connections; the rest is the same.
 * Control runs on a 50 ms timer (no sleeps); publishing on a 1 ms timer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb_state.h"

pb_state PB;
pb_cfg PB_CFG;
loop *PB_LOOP;

static uint32_t g_seed = 88172645u;

static uint32_t rnd(void)
{
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 17;
    g_seed ^= g_seed << 5;
    return g_seed;
}

static void event(const char *name)
{
    fprintf(stderr, "{\"event\":\"%s\",\"t\":%.3f}\n", name, (double)(pb_now_ns() - PB.t_start) / 1e9);
    fflush(stderr);
}

static void phase(int p)
{
    PB.phase = p;
    PB.phase_t0 = pb_now_ns();
}

static void finish(int code, const char *why)
{
    if (PB.phase == P_DONE)
        return;
    PB.exit_code = code;
    PB.fail_reason = why;
    PB.publishing = 0;
    phase(P_DONE);
    loop_stop(PB_LOOP);
}

/* ---- connections --------------------------------------------------------------------------- */

static void retry_cb(loop *l, loop_timer *t, void *arg);

static void schedule(pb_conn *c, uint64_t ms)
{
    loop_timer_start(PB_LOOP, &c->retry, ms, 0, retry_cb, c);
}

static void start(pb_conn *c)
{
    int r = pb_conn_start(c);
    if (r < 0) {
        PB.connect_failures++;
        schedule(c, 200 + rnd() % 800);
    } else if (c->lost) {
        PB.reconnects++;
    }
}

static void retry_cb(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    pb_conn *c = arg;
    if (c->state == PB_S_IDLE && PB.phase != P_DONE)
        start(c);
}

/* Starts subscribers while fewer than --max-handshakes are setting up. */
static void pump(void)
{
    while (PB.next_start < PB.nsubs && PB.handshaking < PB_CFG.max_handshakes) {
        pb_conn *c = &PB.subs[PB.next_start++];
        c->paced = 1;
        PB.handshaking++;
        start(c);
    }
}

static void unpace(pb_conn *c)
{
    if (c->paced) {
        c->paced = 0;
        PB.handshaking--;
    }
}

void pb_conn_lost(pb_conn *c, const char *why)
{
    if (PB.phase == P_DONE)
        return;
    if (c->kind == PB_PUB) {
        if (c->ob)
            PB.pub_unanswered_lost += c->ob->live;
        if (c->ever_joined)
            PB.pubs_ready--;
        c->ever_joined = 0;
        PB.server_closes++;
        schedule(c, 200);
        goto note;
    }
    unpace(c);
    if (!c->ever_joined) {
        /* Never got in: try again soon (counted, it shows a struggling server). */
        PB.connect_failures++;
        schedule(c, 100 + rnd() % 900);
        return;
    }
    if (!c->lost) {
        c->lost = 1;
        c->t_lost_ns = pb_now_ns();
        c->attempts = 0;
        PB.lost_now++;
        PB.joined--;
        schedule(c, PB_CFG.jitter_ms ? rnd() % (PB_CFG.jitter_ms + 1) : 0);
        if (PB.phase == P_STORM)
            return;
        PB.server_closes++;
    } else {
        /* A resume attempt failed: full jitter, doubling up to 5 s. */
        uint64_t cap = 500ull << (c->attempts < 4 ? c->attempts : 4);
        if (cap > 5000)
            cap = 5000;
        schedule(c, rnd() % (cap + 1));
        if (PB.phase == P_STORM)
            return;
    }
note:
    for (int i = 0; i < PB.nwhy; i++)
        if (!strcmp(PB.why[i], why)) {
            PB.why_n[i]++;
            return;
        }
    if (PB.nwhy < PB_MAX_WHY) {
        snprintf(PB.why[PB.nwhy], sizeof(PB.why[0]), "%s", why);
        PB.why_n[PB.nwhy++] = 1;
    }
}

/* c has every message that was published before it resumed. */
static void caught(pb_conn *c, uint64_t now)
{
    c->catch_target = 0;
    if (c->t_lost_ns < PB.t_drop)
        return;
    pb_hist_add(&PB.catchup_us, (now - c->t_lost_ns) / 1000);
    if (++PB.caught == PB.nsubs)
        PB.t_all_caught = now;
}

void pb_sub_joined(pb_conn *c, int recovered)
{
    if (c->state == PB_S_JOINED) {
        /* Tether says subscribed again when a room's epoch changed. */
        if (!recovered)
            PB.rec_no++;
        return;
    }
    c->state = PB_S_JOINED;
    c->attempts = 0;
    unpace(c);
    PB.joined++;
    if (!c->ever_joined) {
        c->ever_joined = 1;
        pump();
        return;
    }
    if (c->lost) {
        uint64_t now = pb_now_ns();
        c->lost = 0;
        c->t_resumed_ns = now;
        if (!--PB.lost_now && PB.t_drop && PB.resumed + 1 >= PB.nsubs)
            PB.t_all_resumed = now;
        PB.resumed++;
        pb_hist_add(&PB.resume_us, (now - c->t_lost_ns) / 1000);
        pb_hist_add(&PB.handshake_us, (now - c->t_attempt_ns) / 1000);
        c->catch_target = PB.top[c->room];
        if (c->tr.last >= c->catch_target)
            caught(c, now);
        if (recovered > 0)
            PB.rec_yes++;
        else if (recovered == 0)
            PB.rec_no++;
        else
            PB.rec_unknown++;
    }
}

void pb_pub_ready(pb_conn *c)
{
    if (c->state == PB_S_JOINED)
        return;
    c->state = PB_S_JOINED;
    c->ever_joined = 1;
    PB.pubs_ready++;
    PB.pub_resent += pb_d_resend(c);
}

void pb_pub_answered(pb_conn *c, int ok, uint64_t t_sent_ns)
{
    (void)c;
    if (ok)
        PB.pub_ok++;
    else
        PB.pub_fail++;
    /* Answers are counted by the time they arrive in the window; their
     * latency (publish written -> answer read) for publishes sent in it. */
    if (ok && PB.w.open)
        PB.w.answered++;
    if (ok && t_sent_ns && PB.w.t0 && t_sent_ns >= PB.w.t0 && t_sent_ns < PB.w.t1) {
        uint64_t now = pb_now_ns();
        pb_hist_add(&PB.w.answer_lat, now > t_sent_ns ? (now - t_sent_ns) / 1000 : 0);
    }
}

void pb_presence_seen(void)
{
    PB.presence++;
    PB.last_presence_ns = pb_now_ns();
}

void pb_server_error(pb_conn *c, const char *what, size_t n)
{
    (void)c;
    PB.errors++;
    if (PB.nerr_kept < 4) {
        snprintf(PB.first_errors[PB.nerr_kept++], sizeof(PB.first_errors[0]), "%.*s", (int)(n < 190 ? n : 190),
                 what);
    }
}

/* ---- messages ---------------------------------------------------------------------------- */

void pb_sub_message(pb_conn *c, const char *payload, size_t n)
{
    /* "<room>:<seq>:<send time ns>:xxxx" */
    char *e;
    (void)n;
    unsigned long room = strtoul(payload, &e, 10);
    if (*e != ':')
        return;
    unsigned long long seq = strtoull(e + 1, &e, 10);
    if (*e != ':')
        return;
    unsigned long long sent = strtoull(e + 1, &e, 10);
    if (*e != ':')
        return;
    if (room != c->room) {
        PB.foreign++;
        return;
    }
    int first = !c->tr.last;
    if (!first && seq > c->tr.last + 1 && PB.gaps_logged < 20) {
        /* Evidence for the notes: where in a resume the holes are. */
        PB.gaps_logged++;
        fprintf(stderr,
                "{\"event\":\"gap\",\"sub\":%u,\"room\":%lu,\"after\":%llu,\"got\":%llu,\"ms_since_resume\":%.1f}\n",
                c->idx, room, (unsigned long long)c->tr.last, seq,
                c->t_resumed_ns ? (double)(pb_now_ns() - c->t_resumed_ns) / 1e6 : -1.0);
    }
    int fresh = pb_track_see(&c->tr, seq);
    if (first)
        PB.primed++;
    if (!fresh) {
        PB.dup_total++;
        return;
    }
    PB.delivered++;
    if (c->catch_target && c->tr.last >= c->catch_target)
        caught(c, pb_now_ns());
    if (PB.w.t0 && sent >= PB.w.t0 && sent < PB.w.t1) {
        uint64_t now = pb_now_ns();
        pb_hist_add(&PB.w.lat, now > sent ? (now - sent) / 1000 : 0);
    }
    if (PB.w.open)
        PB.w.delivered++;
}

size_t pb_payload(char *buf, size_t cap, uint32_t room, uint64_t seq, uint64_t t_ns)
{
    int k = snprintf(buf, cap, "%u:%llu:%llu:", room, (unsigned long long)seq, (unsigned long long)t_ns);
    size_t n = (size_t)k;
    if (n < PB_CFG.size && PB_CFG.size <= cap) {
        memset(buf + n, 'x', PB_CFG.size - n);
        n = PB_CFG.size;
    }
    return n;
}

static void publish_tick(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    if (!PB.publishing || !PB.npubs)
        return;
    uint64_t now = pb_now_ns();
    uint64_t due = (uint64_t)((double)(now - PB.pace_t0) * PB.rate / 1e9);
    /* Never burst more than 100 ms behind: what could not go out is skipped
     * (and counted), so the offered rate is what the numbers say. */
    uint64_t slack = (uint64_t)(PB.rate * 0.1) + 1;
    if (due > PB.pace_sent + slack) {
        PB.pub_skipped += due - slack - PB.pace_sent;
        PB.pace_sent = due - slack;
    }
    uint32_t blocked = 0;
    while (PB.pace_sent < due && blocked < PB_CFG.rooms) {
        uint32_t room = PB.next_room;
        PB.next_room = (PB.next_room + 1) % PB_CFG.rooms;
        /* A room always goes through the same publisher, so its messages
         * reach the server in order. */
        pb_conn *p = &PB.pubs[room % PB.npubs];
        if (p->state != PB_S_JOINED) {
            blocked++;
            continue;
        }
        uint64_t seq = PB.top[room] + 1;
        if (pb_d_publish(p, room, seq, pb_now_ns()) < 0) {
            blocked++;
            continue;
        }
        blocked = 0;
        PB.top[room] = seq;
        PB.pace_sent++;
        PB.published++;
        if (PB.w.open) {
            PB.w.published++;
            PB.w.expected += PB.members[room];
        }
    }
}

static void publish_at(double rate)
{
    PB.rate = rate;
    PB.pace_t0 = pb_now_ns();
    PB.pace_sent = 0;
    PB.publishing = rate > 0;
}

/* ---- windows ------------------------------------------------------------------------------- */

static void window_open(void)
{
    memset(&PB.w, 0, sizeof(PB.w));
    for (int i = 0; i < PB_CFG.npids; i++)
        PB.w.srv_cpu0[i] = pb_proc_cpu_s(PB_CFG.pids[i]);
    PB.w.self0 = pb_self_cpu_s();
    PB.w.t0 = pb_now_ns();
    PB.w.t1 = UINT64_MAX;
    PB.w.open = 1;
}

static void window_close(void)
{
    PB.w.t1 = pb_now_ns();
    PB.w.open = 0;
    for (int i = 0; i < PB_CFG.npids; i++)
        PB.w.srv_cpu1[i] = pb_proc_cpu_s(PB_CFG.pids[i]);
    PB.w.self1 = pb_self_cpu_s();
}

/* Publishes sent and not answered yet (Tether acks, nchan responses). */
uint64_t pb__unanswered(void)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < PB.npubs; i++)
        if (PB.pubs[i].ob)
            n += PB.pubs[i].ob->live;
    return n;
}

/* Every subscriber has its room's last message, and every answer came. */
static int caught_up(void)
{
    for (uint32_t i = 0; i < PB.nsubs; i++) {
        const pb_conn *c = &PB.subs[i];
        if (c->tr.last < PB.top[c->room])
            return 0;
    }
    return pb__unanswered() == 0;
}

/* Holes behind each subscriber's newest message (the tail not counted). */
static uint64_t holes_total(void)
{
    uint64_t m = 0;
    for (uint32_t i = 0; i < PB.nsubs; i++)
        m += PB.subs[i].tr.missing;
    return m;
}

uint64_t pb__missing_total(void)
{
    uint64_t m = 0;
    for (uint32_t i = 0; i < PB.nsubs; i++)
        m += pb_track_missing(&PB.subs[i].tr, PB.top[PB.subs[i].room]);
    return m;
}

static int quiet(uint64_t now)
{
    return !PB.last_presence_ns || (double)(now - PB.last_presence_ns) / 1e9 >= PB_CFG.quiet_s;
}

/* ---- the storm -------------------------------------------------------------------------------- */

static void drop_all(void)
{
    uint64_t now = pb_now_ns();
    PB.t_drop = now;
    for (uint32_t i = 0; i < PB.nsubs; i++) {
        pb_conn *c = &PB.subs[i];
        if (c->state != PB_S_JOINED)
            continue;
        pb_conn_close(c, 1);
        c->lost = 1;
        c->t_lost_ns = now;
        c->attempts = 0;
        PB.lost_now++;
        PB.joined--;
        schedule(c, PB_CFG.jitter_ms ? rnd() % (PB_CFG.jitter_ms + 1) : 0);
    }
    event("dropped");
}

/* ---- the sweep ---------------------------------------------------------------------------------- */

static void sweep_step_begin(double rate)
{
    PB.missing_before = holes_total();
    publish_at(rate);
    phase(P_SWEEP_WARM);
    fprintf(stderr, "{\"event\":\"step\",\"rate\":%.0f}\n", rate);
}

/* Judges the step just drained and picks the next rate; 0 when done. */
static double sweep_next(double catchup_s, int caught)
{
    json_t *s = pb__window_json(&PB.w, PB.rate);
    uint64_t missing = holes_total() - PB.missing_before;
    double secs = (double)(PB.w.t1 - PB.w.t0) / 1e9;
    double want = PB.rate * secs * (double)PB.nsubs / (double)PB_CFG.rooms;
    double pub_ratio = (double)PB.w.published / (PB.rate * secs);
    uint64_t p99 = pb_hist_q(&PB.w.lat, 0.99);
    double gen_pct = 100.0 * (PB.w.self1 - PB.w.self0) / secs;
    const char *why = NULL;
    if (gen_pct >= 90 && (pub_ratio < 0.95 || (double)PB.w.delivered < 0.95 * want || !caught))
        why = "the load generator's core was saturated (the server's limit is at least this high)";
    else if (pub_ratio < 0.95)
        why = "the publisher could not publish at this rate";
    else if ((double)PB.w.delivered < 0.95 * want)
        why = "deliveries fell behind (under 95 % of the offered rate in the window)";
    else if (!caught)
        why = "the backlog did not drain within --drain s";
    else if (missing)
        why = "messages missing";
    else if (p99 > 1000000)
        why = "p99 latency over 1 s";
    json_object_set_new(s, "rate_target", json_real(PB.rate));
    json_object_set_new(s, "missing", json_integer((json_int_t)missing));
    json_object_set_new(s, "catchup_s", json_real(catchup_s));
    json_object_set_new(s, "sustained", json_boolean(!why));
    json_object_set_new(s, "generator_bound", json_boolean(gen_pct >= 90));
    if (why)
        json_object_set_new(s, "why_not", json_string(why));
    json_array_append_new(PB.steps, s);
    fprintf(stderr, "{\"event\":\"step_done\",\"rate\":%.0f,\"sustained\":%s,\"delivered_per_s\":%.0f,\"p99_ms\":%.1f}\n",
            PB.rate, why ? "false" : "true", (double)PB.w.delivered / secs, (double)p99 / 1000.0);
    if (!why) {
        PB.sweep_lo = PB.rate;
        PB.sweep_best = (int)json_array_size(PB.steps) - 1;
    } else {
        PB.sweep_hi = PB.rate;
    }
    if (json_array_size(PB.steps) >= 10 || !caught)
        return 0;
    double next = PB.sweep_hi > 0 ? (PB.sweep_lo + PB.sweep_hi) / 2 : PB.rate * 2;
    if (PB.sweep_hi > 0 && PB.sweep_hi - PB.sweep_lo <= 0.15 * PB.sweep_hi)
        return 0;
    if (next > PB_CFG.sweep_max || next < 10)
        return 0;
    return next;
}

/* ---- control ------------------------------------------------------------------------------------- */

static void after_prime(void)
{
    event("ready");
    const char *m = PB_CFG.mode;
    if (!strcmp(m, "sweep")) {
        /* Let the priming traffic drain first: each step starts from nothing in flight. */
        PB.publishing = 0;
        phase(P_SWEEP_PRE);
    } else if (!strcmp(m, "storm")) {
        phase(P_STEADY);
    } else {
        phase(P_WARMUP);
    }
}

static void ctl(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    (void)arg;
    uint64_t now = pb_now_ns();
    double in = (double)(now - PB.phase_t0) / 1e9;
    switch (PB.phase) {
    case P_CONNECT:
        pump();
        if (PB.joined == PB.nsubs && PB.pubs_ready == PB.npubs) {
            PB.connect_s = (double)(now - PB.t_start) / 1e9;
            event("connected");
            if (!strcmp(PB_CFG.mode, "idle")) {
                phase(P_HOLD);
            } else {
                publish_at(!strcmp(PB_CFG.mode, "sweep") ? PB_CFG.sweep_start : PB_CFG.rate);
                phase(P_PRIME);
            }
        } else if (in > PB_CFG.timeout_s) {
            finish(1, "not every connection joined within --timeout");
        }
        break;
    case P_PRIME:
        if (PB.primed == PB.nsubs && quiet(now)) {
            PB.prime_s = in;
            after_prime();
        } else if (in > PB_CFG.timeout_s) {
            finish(1, "not every subscriber got a message (or presence never went quiet) within --timeout");
        }
        break;
    case P_WARMUP:
        if (in >= PB_CFG.warmup_s) {
            window_open();
            phase(P_WINDOW);
        }
        break;
    case P_WINDOW:
        if (in >= PB_CFG.duration_s) {
            window_close();
            PB.publishing = 0;
            phase(P_DRAIN);
        }
        break;
    case P_DRAIN:
        if (caught_up() || in >= PB_CFG.drain_s)
            finish(0, NULL);
        break;
    case P_HOLD:
        if (in >= PB_CFG.hold_s && quiet(now))
            finish(0, NULL);
        break;
    case P_STEADY:
        if (in >= PB_CFG.warmup_s) {
            window_open();
            if (PB_CFG.drop_server) {
                /* The runner kills the server process holding the
                 * connections when it reads this line, and restarts it. */
                PB.t_drop = pb_now_ns();
                event("drop_now");
            } else {
                drop_all();
            }
            phase(P_STORM);
        }
        break;
    case P_STORM:
        if (!PB.lost_now && PB.resumed >= PB.nsubs) {
            event("all_resumed");
            phase(P_LIVE);
        } else if (in > PB_CFG.timeout_s) {
            event("resume_timeout");
            phase(P_LIVE);
        }
        break;
    case P_LIVE:
        if (in >= (PB_CFG.duration_s < 3.0 ? PB_CFG.duration_s : 3.0)) {
            window_close();
            PB.publishing = 0;
            phase(P_DRAIN);
        }
        break;
    case P_SWEEP_PRE:
        if (caught_up() || in >= PB_CFG.drain_s)
            sweep_step_begin(PB_CFG.sweep_start);
        break;
    case P_SWEEP_WARM:
        if (in >= PB_CFG.warmup_s) {
            window_open();
            phase(P_SWEEP_WIN);
        }
        break;
    case P_SWEEP_WIN:
        if (in >= PB_CFG.sweep_step_s) {
            window_close();
            PB.publishing = 0;
            phase(P_SWEEP_DRAIN);
        }
        break;
    case P_SWEEP_DRAIN: {
        int caught = caught_up();
        if (caught || in >= PB_CFG.drain_s) {
            double next = sweep_next(in, caught);
            if (next > 0)
                sweep_step_begin(next);
            else
                finish(0, NULL);
        }
        break;
    }
    default:
        break;
    }
}

/* ---- set-up ------------------------------------------------------------------------------------- */

static void init_conn(pb_conn *c, int kind, uint32_t idx)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->kind = (uint8_t)kind;
    c->idx = idx;
}

int pb_run(void)
{
    PB_LOOP = loop_new();
    if (!PB_LOOP)
        return 2;
    g_seed ^= (uint32_t)pb_now_ns();
    PB.t_start = pb_now_ns();
    PB.sweep_best = -1;
    PB.steps = json_array();
    int idle = !strcmp(PB_CFG.mode, "idle");
    PB.nsubs = PB_CFG.subs;
    PB.npubs = idle ? 0 : PB_CFG.pubs;
    PB.subs = calloc(PB.nsubs ? PB.nsubs : 1, sizeof(pb_conn));
    PB.pubs = calloc(PB.npubs ? PB.npubs : 1, sizeof(pb_conn));
    PB.top = calloc(PB_CFG.rooms, sizeof(uint64_t));
    PB.members = calloc(PB_CFG.rooms, sizeof(uint32_t));
    if (!PB.subs || !PB.pubs || !PB.top || !PB.members)
        return 2;
    uint32_t per_room = PB.nsubs / PB_CFG.rooms;
    if (!per_room)
        per_room = 1;
    for (uint32_t i = 0; i < PB.nsubs; i++) {
        init_conn(&PB.subs[i], PB_SUB, i);
        PB.subs[i].room = (i / per_room) % PB_CFG.rooms;
        PB.members[PB.subs[i].room]++;
    }
    for (uint32_t i = 0; i < PB.npubs; i++) {
        init_conn(&PB.pubs[i], PB_PUB, i);
        PB.pubs[i].http = PB_CFG.dialect == PB_NCHAN;
        if (PB_CFG.dialect != PB_SIO && !(PB.pubs[i].ob = pb_outbox_new()))
            return 2;
    }
    for (int i = 0; i < PB_CFG.npids; i++) {
        PB.rss0[i] = pb_proc_rss_kb(PB_CFG.pids[i]);
        PB.pss0[i] = pb_proc_pss_kb(PB_CFG.pids[i]);
    }
    event("start");
    for (uint32_t i = 0; i < PB.npubs; i++)
        start(&PB.pubs[i]);
    phase(P_CONNECT);
    pump();
    loop_timer_start(PB_LOOP, &PB.ctl_timer, 50, 50, ctl, NULL);
    loop_timer_start(PB_LOOP, &PB.pub_timer, 1, 1, publish_tick, NULL);
    loop_run(PB_LOOP);
    event("done");
    json_t *rep = pb__report();
    char *s = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(rep);
    return PB.exit_code;
}
