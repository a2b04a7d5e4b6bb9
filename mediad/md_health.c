/* md_health.c -- health, readiness and metrics (see md_health.h). */
#include "md_health.h"

#include <errno.h>
#include <stdlib.h>

#include "http.h"
#include "md_room.h"

md_metrics md_m;

struct md_health {
    md_ctx *c;
    http_server *srv;
    http_std std;
};

static int bus_ok(const md_ctx *c)
{
    return c->last_bus_probe_ms && loop_mono_ms() - c->last_bus_probe_ms < 3000;
}

static double sessions_fn(void *arg) { return (double)md_rooms_sessions(((md_ctx *)arg)->rooms); }
static double rooms_fn(void *arg) { return (double)md_rooms_count(((md_ctx *)arg)->rooms); }
static double redis_up_fn(void *arg) { return redis_ready(((md_ctx *)arg)->r); }
static double bus_up_fn(void *arg) { return bus_ok(arg); }

static metrics_series *counter(const char *name, const char *help, const char *labels)
{
    return metrics_counter(name, help, labels);
}

void md_metrics_register(void)
{
    md_m.rtp_in = counter("tether_mediad_rtp_packets_total", "RTP packets received (decrypted) and sent.",
                          "dir=\"in\"");
    md_m.rtp_out = counter("tether_mediad_rtp_packets_total", "RTP packets received (decrypted) and sent.",
                           "dir=\"out\"");
    md_m.rtcp_in = counter("tether_mediad_rtcp_packets_total", "RTCP packets received and sent.", "dir=\"in\"");
    md_m.rtcp_out = counter("tether_mediad_rtcp_packets_total", "RTCP packets received and sent.", "dir=\"out\"");
    md_m.bytes_in = counter("tether_mediad_rtp_bytes_total", "SRTP bytes received and sent.", "dir=\"in\"");
    md_m.bytes_out = counter("tether_mediad_rtp_bytes_total", "SRTP bytes received and sent.", "dir=\"out\"");
    md_m.srtp_auth = counter("tether_mediad_srtp_errors_total", "SRTP/SRTCP packets refused, by cause.",
                             "kind=\"auth\"");
    md_m.srtp_replay = counter("tether_mediad_srtp_errors_total", "SRTP/SRTCP packets refused, by cause.",
                               "kind=\"replay\"");
    md_m.srtp_other = counter("tether_mediad_srtp_errors_total", "SRTP/SRTCP packets refused, by cause.",
                              "kind=\"other\"");
    md_m.srtp_protect_fail = counter("tether_mediad_srtp_errors_total", "SRTP/SRTCP packets refused, by cause.",
                                     "kind=\"protect\"");
    md_m.drop_not_holder = counter("tether_mediad_dropped_packets_total",
                                   "Packets not forwarded, by reason.", "reason=\"not_holder\"");
    md_m.drop_unknown_ssrc = counter("tether_mediad_dropped_packets_total", "Packets not forwarded, by reason.",
                                     "reason=\"unknown_ssrc\"");
    md_m.drop_no_keys = counter("tether_mediad_dropped_packets_total", "Packets not forwarded, by reason.",
                                "reason=\"no_keys\"");
    md_m.drop_malformed = counter("tether_mediad_dropped_packets_total", "Packets not forwarded, by reason.",
                                  "reason=\"malformed\"");
    md_m.drop_send = counter("tether_mediad_dropped_packets_total", "Packets not forwarded, by reason.",
                             "reason=\"send_failed\"");
    md_m.dtls_ok = counter("tether_mediad_dtls_handshakes_total", "DTLS handshakes by result.", "result=\"ok\"");
    md_m.dtls_fingerprint = counter("tether_mediad_dtls_handshakes_total", "DTLS handshakes by result.",
                                    "result=\"fingerprint_mismatch\"");
    md_m.dtls_failed = counter("tether_mediad_dtls_handshakes_total", "DTLS handshakes by result.",
                               "result=\"failed\"");
    md_m.offers = counter("tether_mediad_offers_total", "SDP offers received.", NULL);
    md_m.sdp_rejected = counter("tether_mediad_sdp_rejected_total", "Offers refused (malformed or unsupported).",
                                NULL);
    md_m.ice_restarts = counter("tether_mediad_ice_restarts_total", "ICE restarts on existing sessions.", NULL);
    md_m.candidates_in = counter("tether_mediad_candidates_total", "Trickled candidates received.", NULL);
    md_m.redirects = counter("tether_mediad_redirects_total", "Offers redirected to the room's host.", NULL);
    md_m.sessions_dropped = counter("tether_mediad_sessions_dropped_total",
                                    "Sessions ended by mediad (failures, dead gateways, draining).", NULL);
    md_m.floor_grants = counter("tether_mediad_floor_grants_total", "Floor requests granted.", NULL);
    md_m.floor_denials = counter("tether_mediad_floor_denials_total", "Floor requests denied.", NULL);
    md_m.floor_releases = counter("tether_mediad_floor_releases_total", "Floors released by their holder.", NULL);
    md_m.floor_revokes = counter("tether_mediad_floor_revokes_total", "Floors revoked at the max talk time.", NULL);
    md_m.floor_grace_expired = counter("tether_mediad_floor_grace_expired_total",
                                       "Floors freed because a disconnected holder did not come back.", NULL);
    md_m.floor_suspends = counter("tether_mediad_floor_suspends_total",
                                  "Holders disconnected while holding (grace started).", NULL);
    md_m.floor_errors = counter("tether_mediad_floor_errors_total", "Floor script calls that failed.", NULL);
    md_m.talker_switches = counter("tether_mediad_talker_switches_total", "Floor holder changes in hosted rooms.",
                                   NULL);
}

static void on_ready(http_req *req, void *arg)
{
    md_health *h = arg;
    md_ctx *c = h->c;
    int redis_ok = redis_ready(c->r), bok = bus_ok(c);
    int ok = redis_ok && bok && !c->draining;
    json_t *o = json_pack("{s:b,s:b,s:{s:s,s:b,s:s},s:{s:b},s:i,s:i}", "ready", ok, "draining", c->draining,
                          "redis", "state", redis_state(c->r), "ping_ok", redis_ok, "error", redis_last_error(c->r),
                          "bus", "round_trip_ok", bok, "sessions", (int)md_rooms_sessions(c->rooms), "rooms",
                          (int)md_rooms_count(c->rooms));
    http_reply_json(req, ok ? 200 : 503, o);
}

md_health *md_health_new(md_ctx *c, const char *hostport)
{
    md_health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->c = c;
    h->std.ready = on_ready;
    h->std.ready_arg = h;
    h->srv = http_server_new(c->l, hostport, http_std_handler, &h->std);
    if (!h->srv) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    metrics_gauge_fn("tether_mediad_sessions", "Media sessions on this replica.", NULL, sessions_fn, c);
    metrics_gauge_fn("tether_mediad_rooms", "Rooms hosted by this replica.", NULL, rooms_fn, c);
    metrics_gauge_fn("tether_mediad_redis_up", "1 when Redis is connected and answers PING.", NULL, redis_up_fn, c);
    metrics_gauge_fn("tether_mediad_bus_up", "1 when mediad's bus probe comes back.", NULL, bus_up_fn, c);
    return h;
}

void md_health_free(md_health *h)
{
    if (!h)
        return;
    http_server_free(h->srv);
    free(h);
}
