/* md_sess.c -- media sessions: ICE, DTLS or SDES keys, SRTP, demux (see md_sess.h). */
#include "md_sess.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "md_room.h"

static void rnd(void *p, size_t n)
{
    /* getrandom on Linux >= 3.17 does not fail for small sizes. If it ever
     * does, rand() would make ICE credentials and SSRCs guessable: stop. */
    if (getrandom(p, n, 0) != (ssize_t)n) {
        LOG_ERROR("getrandom failed", "{s:s}", "error", strerror(errno));
        abort();
    }
}

/* ---- receive path ------------------------------------------------------------------------ */

static int ssrc_ok(md_sess *s, uint32_t ssrc)
{
    if (s->latched == ssrc)
        return 1;
    for (unsigned i = 0; i < s->n_in_ssrc; i++)
        if (s->in_ssrc[i] == ssrc)
            return 1;
    /* Nothing declared and nothing latched yet: the first stream is the peer's. */
    return s->n_in_ssrc == 0 && s->latched == 0;
}

static void rtp_in(md_sess *s, const uint8_t *buf, size_t len)
{
    uint8_t pkt[MD_RTP_MAX + MD_SRTP_TRAILER];
    if (!s->in) {
        metrics_inc(md_m.drop_no_keys);
        return;
    }
    if (len > MD_RTP_MAX) {
        metrics_inc(md_m.drop_malformed);
        return;
    }
    uint32_t ssrc = md_rtp_ssrc(buf);
    /* Checked before decrypting: libsrtp would otherwise grow a stream
     * state for every SSRC a peer invents. */
    if (!ssrc_ok(s, ssrc)) {
        metrics_inc(md_m.drop_unknown_ssrc);
        return;
    }
    memcpy(pkt, buf, len);
    int n = (int)len;
    int r = md_srtp_unprotect(s->in, pkt, &n);
    if (r < 0) {
        metrics_inc(r == -EBADMSG ? md_m.srtp_auth : r == -EALREADY ? md_m.srtp_replay : md_m.srtp_other);
        return;
    }
    md_rtp_hdr h;
    if (md_rtp_parse(pkt, (size_t)n, &h) < 0) {
        metrics_inc(md_m.drop_malformed);
        return;
    }
    s->latched = ssrc;
    s->rtp_in++;
    if ((int16_t)(h.seq - (uint16_t)s->in_ext_seq) > 0 || s->rtp_in == 1)
        s->in_ext_seq = (s->in_ext_seq & 0xffff0000u) + h.seq + ((h.seq < (uint16_t)s->in_ext_seq) ? 0x10000u : 0);
    metrics_inc(md_m.rtp_in);
    metrics_add(md_m.bytes_in, (double)len);
    if (!s->can_recv) {
        metrics_inc(md_m.drop_not_holder);
        return;
    }
    md_fwd_rtp(s->room, s, pkt, &h);
}

static void rtcp_in(md_sess *s, const uint8_t *buf, size_t len)
{
    uint8_t pkt[MD_RTP_MAX + MD_SRTP_TRAILER];
    if (!s->in) {
        metrics_inc(md_m.drop_no_keys);
        return;
    }
    if (len > MD_RTP_MAX) {
        metrics_inc(md_m.drop_malformed);
        return;
    }
    memcpy(pkt, buf, len);
    int n = (int)len;
    int r = md_srtp_unprotect_rtcp(s->in, pkt, &n);
    if (r < 0) {
        metrics_inc(r == -EBADMSG ? md_m.srtp_auth : r == -EALREADY ? md_m.srtp_replay : md_m.srtp_other);
        return;
    }
    /* Receiver reports and feedback are not acted upon: audio only, one
     * talker, no retransmission (NACK/PLI are for video). */
    s->rtcp_in++;
    metrics_inc(md_m.rtcp_in);
}

static void on_ice_recv(const uint8_t *buf, size_t len, void *arg)
{
    md_sess *s = arg;
    if (s->dead)
        return;
    s->last_rx_ms = loop_mono_ms();
    switch (md_rtp_classify(buf, len)) {
    case MD_PKT_DTLS:
        if (s->dtls)
            md_dtls_input(s->dtls, buf, len);
        else
            metrics_inc(md_m.drop_malformed);
        break;
    case MD_PKT_RTP:
        rtp_in(s, buf, len);
        break;
    case MD_PKT_RTCP:
        rtcp_in(s, buf, len);
        break;
    default:
        metrics_inc(md_m.drop_malformed);
        break;
    }
}

static void on_ice_state(int state, void *arg)
{
    md_sess *s = arg;
    if (s->dead)
        return;
    LOG_DEBUG("ice state", "{s:s,s:i}", "session", s->key, "state", state);
    if ((state == MD_ICE_CONNECTED || state == MD_ICE_READY) && s->dtls && s->dtls_active)
        md_dtls_start(s->dtls);
    else if (state == MD_ICE_FAILED)
        md_room_sess_failed(s, "restart", "ICE failed");
}

/* ---- DTLS ------------------------------------------------------------------------------ */

static void dtls_send(const uint8_t *buf, size_t len, void *arg)
{
    md_sess *s = arg;
    if (!s->dead)
        md_ice_send(s->ice, buf, len);
}

static void dtls_done(int status, const md_dtls_keys *k, void *arg)
{
    md_sess *s = arg;
    if (s->dead)
        return;
    if (status == 0) {
        md_srtp_free(s->in);
        md_srtp_free(s->out);
        s->in = md_srtp_new(k->suite, k->remote, 0);
        s->out = md_srtp_new(k->suite, k->local, 1);
        s->suite = k->suite;
        if (!s->in || !s->out) {
            md_room_sess_failed(s, "restart", "SRTP setup failed");
            return;
        }
        metrics_inc(md_m.dtls_ok);
        LOG_INFO("media session keyed", "{s:s,s:s,s:s}", "session", s->key, "keying", "dtls", "suite",
                 md_srtp_suite_name(k->suite));
        return;
    }
    if (status == -EPERM) {
        metrics_inc(md_m.dtls_fingerprint);
        LOG_WARN("DTLS fingerprint mismatch", "{s:s,s:s}", "session", s->key, "user", s->user);
        md_room_sess_failed(s, "error", "DTLS certificate does not match the offer's a=fingerprint");
    } else if (status == -ECONNRESET) {
        md_room_sess_failed(s, NULL, "DTLS closed by the peer");
    } else {
        metrics_inc(md_m.dtls_failed);
        LOG_WARN("DTLS handshake failed", "{s:s,s:s}", "session", s->key, "error", md_dtls_last_error(s->dtls));
        md_room_sess_failed(s, "restart", "DTLS handshake failed");
    }
}

/* ---- keys ---------------------------------------------------------------------------------- */

static int sdes_inbound(md_sess *s, const md_sdp_crypto *cr, const char **why)
{
    md_srtp_suite suite = md_srtp_suite_from_name(cr->suite);
    uint8_t key[MD_SRTP_MAX_KEY + 4];
    size_t want = md_srtp_key_len(suite) + md_srtp_salt_len(suite);
    int n = md_b64_decode(cr->key, key, sizeof(key));
    if (suite == MD_SRTP_NONE || n != (int)want) {
        *why = "a=crypto key has the wrong length for its suite";
        return -EINVAL;
    }
    md_srtp *in = md_srtp_new(suite, key, 0);
    memset(key, 0, sizeof(key));
    if (!in) {
        *why = "SRTP setup failed";
        return -EINVAL;
    }
    if (s->suite != suite || !s->out) {
        /* Our own key, in the suite the peer chose. */
        md_srtp_free(s->out);
        rnd(s->sdes_key, want);
        s->out = md_srtp_new(suite, s->sdes_key, 1);
        if (!s->out || md_b64_encode(s->sdes_key, want, s->sdes_b64, sizeof(s->sdes_b64)) < 0) {
            md_srtp_free(in);
            *why = "SRTP setup failed";
            return -EINVAL;
        }
    }
    md_srtp_free(s->in);
    s->in = in;
    s->suite = suite;
    s->sdes_tag = cr->tag;
    snprintf(s->sdes_suite, sizeof(s->sdes_suite), "%s", cr->suite);
    snprintf(s->sdes_in, sizeof(s->sdes_in), "%s", cr->key);
    return 0;
}

static void apply_media(md_sess *s, const md_sdp_media *m)
{
    s->dir = md_sdp_answer_dir(m->dir);
    s->can_send = s->dir == MD_DIR_SENDRECV || s->dir == MD_DIR_SENDONLY;
    s->can_recv = s->dir == MD_DIR_SENDRECV || s->dir == MD_DIR_RECVONLY;
    s->out_pt = (uint8_t)m->opus_pt;
    int same = s->n_in_ssrc == m->nssrc;
    for (unsigned i = 0; same && i < m->nssrc; i++)
        same = s->in_ssrc[i] == m->ssrc[i];
    if (!same) {
        memcpy(s->in_ssrc, m->ssrc, sizeof(s->in_ssrc));
        s->n_in_ssrc = m->nssrc;
        s->latched = 0;
    }
    for (unsigned i = 0; i < m->ncand; i++)
        md_ice_add_candidate(s->ice, m->cand[i]);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

md_sess *md_sess_new(md_ctx *c, md_room *room, const Tether__Bus__MediaReq *req, const md_sdp *offer,
                     const md_sdp_pick *pick, const char **why)
{
    const md_sdp_media *m = &offer->m[pick->index];
    char err[160];
    int client_fault = 0;
    md_sess *s = calloc(1, sizeof(*s));
    if (!s) {
        *why = "out of memory";
        errno = EAGAIN;
        return NULL;
    }
    s->c = c;
    s->room = room;
    s->conn = req->conn;
    snprintf(s->gw, sizeof(s->gw), "%s", req->gateway);
    snprintf(s->user, sizeof(s->user), "%s", req->user);
    snprintf(s->session, sizeof(s->session), "%s", req->session ? req->session : "");
    snprintf(s->key, sizeof(s->key), "%s/%" PRIu64 "/%s", req->gateway, req->conn, req->room);
    s->created_ms = loop_mono_ms();
    s->keying = pick->keying;
    rnd(&s->out_ssrc, sizeof(s->out_ssrc));
    if (!s->out_ssrc)
        s->out_ssrc = 1;
    uint8_t cn[9];
    rnd(cn, sizeof(cn));
    md_b64_encode(cn, sizeof(cn), s->cname, sizeof(s->cname));
    uint16_t seq0;
    uint32_t ts0;
    rnd(&seq0, sizeof(seq0));
    rnd(&ts0, sizeof(ts0));
    md_rw_init(&s->rw, seq0, ts0);
    s->ice = md_ice_new(c->gctx, c->cfg.port_min, c->cfg.port_max, 1, on_ice_recv, on_ice_state, s, err,
                        sizeof(err));
    if (!s->ice) {
        LOG_WARN("cannot create an ICE transport", "{s:s,s:s}", "session", s->key, "error", err);
        *why = "no media port available";
        goto fail;
    }
    snprintf(s->rufrag, sizeof(s->rufrag), "%s", m->ufrag);
    snprintf(s->rpwd, sizeof(s->rpwd), "%s", m->pwd);
    if (md_ice_set_remote(s->ice, m->ufrag, m->pwd) < 0) {
        *why = "ICE credentials refused";
        client_fault = 1;
        goto fail;
    }
    apply_media(s, m);
    if (s->keying == MD_KEYING_DTLS) {
        snprintf(s->fp_alg, sizeof(s->fp_alg), "%s", m->fp_alg);
        snprintf(s->fp, sizeof(s->fp), "%s", m->fp);
        /* The offerer chose passive: we connect. actpass or active: the
         * browser connects to us, which needs no knowledge of when its ICE
         * checks succeeded. */
        s->dtls_active = m->setup == MD_SETUP_PASSIVE;
        s->dtls = md_dtls_new(c->dtls, c->l, s->dtls_active, s->fp_alg, s->fp, dtls_send, dtls_done, s);
        if (!s->dtls) {
            *why = "DTLS setup failed";
            goto fail;
        }
    } else if (sdes_inbound(s, pick->crypto, why) < 0) {
        client_fault = 1;
        goto fail;
    }
    rnd(&s->sess_version, sizeof(s->sess_version));
    s->sess_version >>= 2;
    return s;
fail:
    md_dtls_free(s->dtls);
    md_ice_free(s->ice);
    md_srtp_free(s->in);
    md_srtp_free(s->out);
    free(s);
    errno = client_fault ? EINVAL : EAGAIN;
    return NULL;
}

int md_sess_same_peer(const md_sess *s, const md_sdp *offer, const md_sdp_pick *pick)
{
    const md_sdp_media *m = &offer->m[pick->index];
    if (pick->keying != s->keying)
        return 0;
    if (s->keying == MD_KEYING_DTLS)
        return !strcmp(m->fp_alg, s->fp_alg) && !strcmp(m->fp, s->fp);
    return 1;
}

int md_sess_reoffer(md_sess *s, const md_sdp *offer, const md_sdp_pick *pick, const char **why)
{
    const md_sdp_media *m = &offer->m[pick->index];
    if (s->keying == MD_KEYING_SDES && strcmp(pick->crypto->key, s->sdes_in) != 0 &&
        sdes_inbound(s, pick->crypto, why) < 0)
        return -EINVAL;
    if (strcmp(m->ufrag, s->rufrag) != 0 || strcmp(m->pwd, s->rpwd) != 0) {
        /* ICE restart: libnice wants the restart before the new remote
         * credentials; keys and SRTP state carry over. */
        if (md_ice_restart(s->ice) < 0 || md_ice_set_remote(s->ice, m->ufrag, m->pwd) < 0) {
            *why = "ICE restart failed";
            return -EINVAL;
        }
        snprintf(s->rufrag, sizeof(s->rufrag), "%s", m->ufrag);
        snprintf(s->rpwd, sizeof(s->rpwd), "%s", m->pwd);
        metrics_inc(md_m.ice_restarts);
        LOG_INFO("ICE restart", "{s:s}", "session", s->key);
    }
    apply_media(s, m);
    return 0;
}

char *md_sess_answer(md_sess *s, const md_sdp *offer, const md_sdp_pick *pick, const char *offer_text)
{
    char cands[MD_ICE_MAX_CANDS][MD_ICE_CAND_LEN];
    const char *cp[MD_ICE_MAX_CANDS];
    size_t nc = s->c->cfg.trickle ? 0 : md_ice_candidates(s->ice, cands, MD_ICE_MAX_CANDS);
    for (size_t i = 0; i < nc; i++)
        cp[i] = cands[i];
    char track[48];
    snprintf(track, sizeof(track), "audio-%08x", s->out_ssrc);
    md_sdp_answer_params p = {
        .sess_id = s->sess_version ^ 0x5a5a5a5aull,
        .sess_version = ++s->sess_version,
        .pick = pick,
        .ufrag = md_ice_ufrag(s->ice),
        .pwd = md_ice_pwd(s->ice),
        .fp_alg = "sha-256",
        .fp = s->c->dtls ? md_dtls_ctx_fingerprint(s->c->dtls) : "",
        .setup = s->dtls_active ? MD_SETUP_ACTIVE : MD_SETUP_PASSIVE,
        .crypto_tag = s->sdes_tag,
        .crypto_suite = s->sdes_suite,
        .crypto_key = s->sdes_b64,
        .dir = s->dir,
        .ssrc = s->out_ssrc,
        .cname = s->cname,
        .msid_stream = "tether",
        .msid_track = track,
        .cands = cp,
        .ncands = nc,
        .trickle = s->c->cfg.trickle,
    };
    size_t cap = 8192;
    char *buf = malloc(cap);
    int n = buf ? md_sdp_answer(offer, &p, buf, cap) : -ENOMEM;
    if (n < 0) {
        free(buf);
        return NULL;
    }
    char *keep_offer = strdup(offer_text), *keep_answer = strdup(buf);
    if (keep_offer && keep_answer) {
        free(s->offer);
        free(s->answer);
        s->offer = keep_offer;
        s->answer = keep_answer;
    } else {
        free(keep_offer);
        free(keep_answer);
    }
    return buf;
}

int md_sess_candidate(md_sess *s, const char *cand)
{
    char c[MD_SDP_MAX_CAND_LEN + 1];
    if (!cand || !*cand) {
        md_ice_remote_done(s->ice);
        return 0;
    }
    if (md_sdp_candidate(cand, c, sizeof(c)) < 0)
        return -EINVAL;
    metrics_inc(md_m.candidates_in);
    md_ice_add_candidate(s->ice, c);
    return 0;
}

int md_sess_can_forward(const md_sess *s)
{
    int st = md_ice_state(s->ice);
    return !s->dead && s->out && s->can_send && (st == MD_ICE_CONNECTED || st == MD_ICE_READY);
}

int md_sess_send_rtp(md_sess *s, uint8_t *buf, int len)
{
    if (s->dead || !s->out)
        return -ENOTCONN;
    int r = md_srtp_protect(s->out, buf, &len);
    if (r < 0) {
        metrics_inc(md_m.srtp_protect_fail);
        return r;
    }
    r = md_ice_send(s->ice, buf, (size_t)len);
    if (r == 0) {
        s->rtp_out++;
        s->octets_out += (uint64_t)len;
    }
    return r;
}

int md_sess_send_rtcp(md_sess *s, uint8_t *buf, int len)
{
    if (s->dead || !s->out)
        return -ENOTCONN;
    int r = md_srtp_protect_rtcp(s->out, buf, &len);
    if (r < 0) {
        metrics_inc(md_m.srtp_protect_fail);
        return r;
    }
    r = md_ice_send(s->ice, buf, (size_t)len);
    if (r == 0)
        metrics_inc(md_m.rtcp_out);
    return r;
}

static void free_deferred(loop *l, void *arg)
{
    (void)l;
    md_sess *s = arg;
    md_dtls_free(s->dtls);
    md_ice_free(s->ice);
    md_srtp_free(s->in);
    md_srtp_free(s->out);
    memset(s->sdes_key, 0, sizeof(s->sdes_key));
    free(s->offer);
    free(s->answer);
    free(s);
}

void md_sess_destroy(md_sess *s)
{
    if (!s || s->dead)
        return;
    s->dead = 1;
    if (loop_defer(s->c->l, free_deferred, s) < 0)
        LOG_ERROR("cannot defer a session's release (out of memory): leaked", "{s:s}", "session", s->key);
}
