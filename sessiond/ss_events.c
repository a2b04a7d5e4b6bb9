/* ss_events.c -- presence events out, and sessiond's metric handles.
 *
 * Every script returns the (room, user, state) changes it made, in the order
 * Redis ran them; they leave on presence.<room> in that order. A publication
 * that fails (busd's high-water mark) keeps its source_seq, so gateways see
 * the hole and can repair with a PresenceReq.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "ss.h"

ss_metrics ss_m;

void ss_events_publish(ss_ctx *c, const ss_res *r)
{
    size_t n = ss_res_nchanges(r);
    for (size_t i = 0; i < n; i++) {
        const char *room, *user, *state;
        ss_res_change(r, i, &room, &user, &state);
        char topic[160];
        int tl = snprintf(topic, sizeof(topic), "presence.%s", room);
        if (tl < 0 || (size_t)tl >= sizeof(topic))
            continue; /* rooms are validated to 128 bytes: cannot happen */
        bus_env env = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__PresenceEvent pe = TETHER__BUS__PRESENCE_EVENT__INIT;
        pe.room = (char *)room;
        pe.user = (char *)user;
        pe.state = (char *)state;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PRESENCE_EVENT;
        env.presence_event = &pe;
        if (bus_publish(c->b, topic, &env) < 0)
            metrics_inc(ss_m.pres_fail);
        if (!strcmp(state, "online"))
            metrics_inc(ss_m.pres_online);
        else if (!strcmp(state, "reconnecting"))
            metrics_inc(ss_m.pres_reconnecting);
        else
            metrics_inc(ss_m.pres_offline);
        LOG_DEBUG("presence", "{s:s,s:s,s:s}", "room", room, "user", user, "state", state);
    }
}

void ss_metrics_register(void)
{
    static const double lat[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
    static const char *const types[6] = { "type=\"open\"",     "type=\"close\"", "type=\"room\"",
                                          "type=\"quality\"",  "type=\"presence\"", "type=\"get\"" };
    const char *rc = "tether_sessiond_room_changes_total", *rc_h = "Room joins and leaves applied.";
    ss_m.opens = metrics_counter("tether_sessiond_opens_total", "Sessions opened (new, resumed or taken over).", NULL);
    ss_m.resumes = metrics_counter("tether_sessiond_resumes_total", "Opens that resumed a known session.", NULL);
    ss_m.takeovers = metrics_counter("tether_sessiond_takeovers_total",
                                   "Opens of a session another connection still held.", NULL);
    ss_m.closes_drop = metrics_counter("tether_sessiond_closes_total", "Connections closed.", "kind=\"drop\"");
    ss_m.closes_bye = metrics_counter("tether_sessiond_closes_total", "Connections closed.", "kind=\"bye\"");
    ss_m.room_joins = metrics_counter(rc, rc_h, "kind=\"join\"");
    ss_m.room_leaves = metrics_counter(rc, rc_h, "kind=\"leave\"");
    ss_m.qualities = metrics_counter("tether_sessiond_quality_reports_total", "Quality reports stored.", NULL);
    ss_m.expiries = metrics_counter("tether_sessiond_expiries_total", "Disconnected sessions ended by their TTL.", NULL);
    ss_m.rejoin_drops = metrics_counter("tether_sessiond_rejoin_drops_total",
                                        "Rooms of a resumed session left because they were not re-joined in time.",
                                        NULL);
    const char *pe = "tether_sessiond_presence_events_total", *pe_h = "Presence changes published, by state.";
    ss_m.pres_online = metrics_counter(pe, pe_h, "state=\"online\"");
    ss_m.pres_reconnecting = metrics_counter(pe, pe_h, "state=\"reconnecting\"");
    ss_m.pres_offline = metrics_counter(pe, pe_h, "state=\"offline\"");
    ss_m.pres_fail = metrics_counter("tether_sessiond_presence_publish_failures_total",
                                     "Presence events the bus refused (high-water mark).", NULL);
    ss_m.gw_deaths = metrics_counter("tether_sessiond_gateway_deaths_total",
                                     "Gateway incarnations declared dead (silent, or superseded).", NULL);
    ss_m.gw_marked = metrics_counter("tether_sessiond_gateway_sessions_marked_total",
                                     "Sessions marked disconnected because their gateway died.", NULL);
    ss_m.gw_resurrected = metrics_counter("tether_sessiond_gateway_resurrections_total",
                                          "Gateways heard from again after being declared dead.", NULL);
    ss_m.snap_requests = metrics_counter("tether_sessiond_snapshot_requests_total", "SnapshotReq published.", NULL);
    ss_m.snap_reconciled = metrics_counter("tether_sessiond_snapshots_reconciled_total",
                                           "Complete gateway snapshots reconciled by this replica.", NULL);
    ss_m.snap_revived = metrics_counter("tether_sessiond_snapshot_sessions_fixed_total",
                                        "Sessions a snapshot made live (created, revived or moved).", NULL);
    ss_m.snap_disconnected = metrics_counter("tether_sessiond_snapshot_sessions_disconnected_total",
                                             "Sessions a snapshot showed to be gone.", NULL);
    ss_m.bus_gaps = metrics_counter("tether_sessiond_bus_gaps_total", "source_seq gaps seen on gw.* topics.", NULL);
    const char *er = "tether_sessiond_request_errors_total", *er_h = "Requests answered with an error, by code.";
    ss_m.err_invalid = metrics_counter(er, er_h, "code=\"4400\"");
    ss_m.err_forbidden = metrics_counter(er, er_h, "code=\"4503\"");
    ss_m.err_notfound = metrics_counter(er, er_h, "code=\"4404\"");
    ss_m.err_internal = metrics_counter(er, er_h, "code=\"4500\"");
    const char *dr = "tether_sessiond_requests_dropped_total", *dr_h = "Requests left unanswered for the client to retry.";
    ss_m.drop_store = metrics_counter(dr, dr_h, "reason=\"store\"");
    ss_m.drop_draining = metrics_counter(dr, dr_h, "reason=\"draining\"");
    const char *ss = "tether_sessiond_sessions", *ss_h = "Sessions by state (all replicas, read from Redis).";
    ss_m.sessions_connected = metrics_gauge(ss, ss_h, "state=\"connected\"");
    ss_m.sessions_disconnected = metrics_gauge(ss, ss_h, "state=\"disconnected\"");
    ss_m.gateways_alive = metrics_gauge("tether_sessiond_gateways_alive", "Gateway incarnations alive.", NULL);
    ss_m.gateways_dying = metrics_gauge("tether_sessiond_gateways_dying",
                                        "Dead gateway incarnations whose sessions are still being marked.", NULL);
    for (int i = 0; i < 6; i++)
        ss_m.lat[i] = metrics_histogram("tether_sessiond_request_latency_seconds",
                                        "From request to reply, by request type.", types[i], lat,
                                        sizeof(lat) / sizeof(lat[0]));
}
