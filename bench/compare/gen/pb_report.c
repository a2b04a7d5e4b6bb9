/* pb_report.c -- peerbench's JSON summary: one object on stdout at the end
 * of a run, with every number the runner (bench/compare/compare.py) puts in
 * its table and the raw counts behind them.
 */
#include <stdio.h>
#include <string.h>

#include "pb_state.h"

static json_t *hist_json(const pb_hist *h)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "n", (json_int_t)h->n, "mean",
                     (json_int_t)(h->n ? h->sum / h->n : 0), "p50", (json_int_t)pb_hist_q(h, 0.5), "p90",
                     (json_int_t)pb_hist_q(h, 0.9), "p99", (json_int_t)pb_hist_q(h, 0.99), "p999",
                     (json_int_t)pb_hist_q(h, 0.999), "max", (json_int_t)h->max);
}

double pb__window_srv_cpu(const pb_window *w)
{
    double s = 0;
    for (int i = 0; i < PB_CFG.npids; i++)
        if (w->srv_cpu0[i] >= 0 && w->srv_cpu1[i] >= 0)
            s += w->srv_cpu1[i] - w->srv_cpu0[i];
    return s;
}

json_t *pb__window_json(const pb_window *w, double target_rate)
{
    double secs = w->t1 > w->t0 && w->t1 != UINT64_MAX ? (double)(w->t1 - w->t0) / 1e9 : 0;
    if (secs <= 0)
        return json_object();
    double cpu = pb__window_srv_cpu(w);
    json_t *by = json_object();
    for (int i = 0; i < PB_CFG.npids; i++) {
        char key[96];
        if (w->srv_cpu0[i] < 0 || w->srv_cpu1[i] < 0)
            continue; /* the process died in the window (the server was killed) */
        snprintf(key, sizeof(key), "%s", PB_CFG.pid_names[i] ? PB_CFG.pid_names[i] : "server");
        json_t *old = json_object_get(by, key);
        double v = w->srv_cpu1[i] - w->srv_cpu0[i] + (old ? json_real_value(old) : 0);
        json_object_set_new(by, key, json_real(v));
    }
    json_t *o = json_object();
    json_object_set_new(o, "seconds", json_real(secs));
    json_object_set_new(o, "rate_target", json_real(target_rate));
    json_object_set_new(o, "published", json_integer((json_int_t)w->published));
    json_object_set_new(o, "published_per_s", json_real((double)w->published / secs));
    json_object_set_new(o, "delivered", json_integer((json_int_t)w->delivered));
    json_object_set_new(o, "delivered_per_s", json_real((double)w->delivered / secs));
    json_object_set_new(o, "expected_per_s", json_real((double)w->expected / secs));
    json_object_set_new(o, "latency_us", hist_json(&w->lat));
    json_object_set_new(o, "answered", json_integer((json_int_t)w->answered));
    json_object_set_new(o, "answered_per_s", json_real((double)w->answered / secs));
    json_object_set_new(o, "answer_latency_us", hist_json(&w->answer_lat));
    json_object_set_new(o, "server_cpu_us_per_answer",
                        json_real(w->answered ? cpu * 1e6 / (double)w->answered : 0));
    json_object_set_new(o, "server_cpu_s", json_real(cpu));
    json_object_set_new(o, "server_cpu_pct_of_core", json_real(100.0 * cpu / secs));
    json_object_set_new(o, "server_cpu_us_per_delivery", json_real(w->delivered ? cpu * 1e6 / (double)w->delivered : 0));
    json_object_set_new(o, "server_cpu_s_by_process", by);
    json_object_set_new(o, "generator_cpu_pct_of_core", json_real(100.0 * (w->self1 - w->self0) / secs));
    return o;
}

static json_t *config_json(void)
{
    return json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:f,s:i,s:f,s:f,s:f,s:f,s:f,s:i,s:i,s:f,s:f,s:f}", "dialect",
                     pb_d_name(PB_CFG.dialect), "mode", PB_CFG.mode, "port", PB_CFG.port, "subs", (int)PB_CFG.subs,
                     "rooms", (int)PB_CFG.rooms, "pubs", (int)PB_CFG.pubs, "rate", PB_CFG.rate, "size",
                     (int)PB_CFG.size, "warmup_s", PB_CFG.warmup_s, "duration_s", PB_CFG.duration_s, "drain_s",
                     PB_CFG.drain_s, "hold_s", PB_CFG.hold_s, "quiet_s", PB_CFG.quiet_s, "jitter_ms",
                     (int)PB_CFG.jitter_ms, "max_handshakes", (int)PB_CFG.max_handshakes, "sweep_start",
                     PB_CFG.sweep_start, "sweep_step_s", PB_CFG.sweep_step_s, "timeout_s", PB_CFG.timeout_s);
}

static json_t *memory_json(void)
{
    json_t *servers = json_array();
    long rss0 = 0, rss1 = 0, pss0 = 0, pss1 = 0;
    for (int i = 0; i < PB_CFG.npids; i++) {
        long r1 = pb_proc_rss_kb(PB_CFG.pids[i]), p1 = pb_proc_pss_kb(PB_CFG.pids[i]);
        json_array_append_new(servers, json_pack("{s:s,s:i,s:I,s:I,s:I,s:I}", "name",
                                                 PB_CFG.pid_names[i] ? PB_CFG.pid_names[i] : "server", "pid",
                                                 (int)PB_CFG.pids[i], "rss_kb_before", (json_int_t)PB.rss0[i],
                                                 "rss_kb_after", (json_int_t)r1, "pss_kb_before",
                                                 (json_int_t)PB.pss0[i], "pss_kb_after", (json_int_t)p1));
        if (PB.rss0[i] >= 0 && r1 >= 0) {
            rss0 += PB.rss0[i];
            rss1 += r1;
        }
        if (PB.pss0[i] >= 0 && p1 >= 0) {
            pss0 += PB.pss0[i];
            pss1 += p1;
        }
    }
    double n = PB.joined ? (double)PB.joined : 1;
    return json_pack("{s:i,s:o,s:I,s:I,s:f,s:f}", "conns", (int)PB.joined, "servers", servers, "rss_delta_kb",
                     (json_int_t)(rss1 - rss0), "pss_delta_kb", (json_int_t)(pss1 - pss0), "rss_per_conn_bytes",
                     (double)(rss1 - rss0) * 1024.0 / n, "pss_per_conn_bytes", (double)(pss1 - pss0) * 1024.0 / n);
}

static json_t *storm_json(void)
{
    json_t *o = json_object();
    json_object_set_new(o, "subs", json_integer(PB.nsubs));
    json_object_set_new(o, "resumed", json_integer(PB.resumed));
    json_object_set_new(o, "not_resumed", json_integer(PB.lost_now));
    json_object_set_new(o, "all_resumed_s",
                        PB.t_all_resumed ? json_real((double)(PB.t_all_resumed - PB.t_drop) / 1e9) : json_null());
    json_object_set_new(o, "resume_us", hist_json(&PB.resume_us));
    json_object_set_new(o, "resume_handshake_us", hist_json(&PB.handshake_us));
    json_object_set_new(o, "caught_up", json_integer(PB.caught));
    json_object_set_new(o, "all_caught_up_s",
                        PB.t_all_caught ? json_real((double)(PB.t_all_caught - PB.t_drop) / 1e9) : json_null());
    json_object_set_new(o, "catchup_us", hist_json(&PB.catchup_us));
    json_object_set_new(o, "recovered_confirmed", json_integer(PB.rec_yes));
    json_object_set_new(o, "recovery_refused", json_integer(PB.rec_no));
    json_object_set_new(o, "recovery_unreported", json_integer(PB.rec_unknown));
    json_object_set_new(o, "reconnect_attempts", json_integer((json_int_t)PB.reconnects));
    json_object_set_new(o, "jitter_ms", json_integer(PB_CFG.jitter_ms));
    json_object_set_new(o, "drop", json_string(PB_CFG.drop_server ? "server killed" : "client sockets reset"));
    return o;
}

json_t *pb__report(void)
{
    json_t *o = json_object();
    json_object_set_new(o, "config", config_json());
    json_object_set_new(o, "ok", json_boolean(PB.exit_code == 0));
    if (PB.fail_reason)
        json_object_set_new(o, "error", json_string(PB.fail_reason));
    json_object_set_new(o, "connect_s", json_real(PB.connect_s));
    json_object_set_new(o, "prime_s", json_real(PB.prime_s));
    json_object_set_new(o, "subs_joined", json_integer(PB.joined));
    json_object_set_new(o, "pubs_ready", json_integer(PB.pubs_ready));
    json_object_set_new(o, "connect_failures", json_integer((json_int_t)PB.connect_failures));
    json_object_set_new(o, "server_closes", json_integer((json_int_t)PB.server_closes));
    json_t *why = json_object();
    for (int i = 0; i < PB.nwhy; i++)
        json_object_set_new(why, PB.why[i], json_integer((json_int_t)PB.why_n[i]));
    json_object_set_new(o, "close_reasons", why);
    json_object_set_new(o, "published", json_integer((json_int_t)PB.published));
    json_object_set_new(o, "publish_answered_ok", json_integer((json_int_t)PB.pub_ok));
    json_object_set_new(o, "publish_failed", json_integer((json_int_t)PB.pub_fail));
    json_object_set_new(o, "publish_skipped", json_integer((json_int_t)PB.pub_skipped));
    json_object_set_new(o, "publish_unanswered_at_close", json_integer((json_int_t)PB.pub_unanswered_lost));
    json_object_set_new(o, "publish_unanswered_at_end", json_integer((json_int_t)pb__unanswered()));
    json_object_set_new(o, "publish_resent", json_integer((json_int_t)PB.pub_resent));
    json_object_set_new(o, "delivered", json_integer((json_int_t)PB.delivered));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)PB.dup_total));
    uint64_t reordered = 0, never = 0;
    for (uint32_t i = 0; i < PB.nsubs; i++) {
        reordered += PB.subs[i].tr.reordered;
        never += !PB.subs[i].tr.last;
    }
    json_object_set_new(o, "missing", json_integer((json_int_t)pb__missing_total()));
    json_object_set_new(o, "reordered", json_integer((json_int_t)reordered));
    json_object_set_new(o, "subs_without_message", json_integer((json_int_t)never));
    json_object_set_new(o, "foreign_room_messages", json_integer((json_int_t)PB.foreign));
    json_object_set_new(o, "presence_frames", json_integer((json_int_t)PB.presence));
    json_object_set_new(o, "server_errors", json_integer((json_int_t)PB.errors));
    json_t *fe = json_array();
    for (int i = 0; i < PB.nerr_kept; i++)
        json_array_append_new(fe, json_string(PB.first_errors[i]));
    json_object_set_new(o, "first_errors", fe);
    json_object_set_new(o, "generator_cpu_s", json_real(pb_self_cpu_s()));
    const char *m = PB_CFG.mode;
    if (!strcmp(m, "idle")) {
        json_object_set_new(o, "memory", memory_json());
    } else if (!strcmp(m, "sweep")) {
        json_object_set_new(o, "steps", json_incref(PB.steps));
        json_object_set_new(o, "max_sustained",
                            PB.sweep_best >= 0 ? json_incref(json_array_get(PB.steps, (size_t)PB.sweep_best))
                                               : json_null());
    } else {
        json_object_set_new(o, "window", pb__window_json(&PB.w, PB.rate ? PB.rate : PB_CFG.rate));
        if (!strcmp(m, "storm"))
            json_object_set_new(o, "storm", storm_json());
    }
    json_decref(PB.steps);
    PB.steps = NULL;
    return o;
}
