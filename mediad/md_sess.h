/* md_sess.h -- one media session: a client's audio in one room.
 *
 * A session is named by (gateway instance, connection id, room) and owns an
 * ICE transport (md_ice, ICE-lite), a DTLS handshake (browsers) or SDES keys
 * (native clients), and two SRTP contexts: inbound with the peer's key,
 * outbound with ours. Datagrams from the peer are demultiplexed (RFC 7983):
 * DTLS to the handshake, RTP to the room's forwarder after SRTP checks,
 * RTCP counted and dropped.
 *
 * The struct is shared with md_room.c and md_fwd.c (the forwarding hot
 * path reads it directly); everything else goes through the functions.
 */
#ifndef TETHER_MD_SESS_H
#define TETHER_MD_SESS_H

#include <stdint.h>

#include "bus.h"
#include "list.h"
#include "md.h"
#include "md_dtls.h"
#include "md_ice.h"
#include "md_rtp.h"
#include "md_sdp.h"
#include "md_srtp.h"

typedef struct md_room md_room;
typedef struct md_sess md_sess;

#define MD_MAX_GW 160
#define MD_MAX_USER 128
#define MD_MAX_SESSION 64
#define MD_MAX_ROOM 128
#define MD_SESS_KEY (MD_MAX_GW + MD_MAX_ROOM + 32)

struct md_sess {
    md_ctx *c;
    md_room *room;
    list_node link;              /* on the room's members */
    char key[MD_SESS_KEY];       /* gw/conn/room */
    char gw[MD_MAX_GW + 1];
    uint64_t conn;
    char user[MD_MAX_USER + 1];
    char session[MD_MAX_SESSION + 1];
    uint64_t created_ms;
    int dead;                    /* being torn down: no more I/O */

    /* negotiated */
    md_keying keying;
    md_dir dir;                  /* our direction in the answer */
    int can_send;                /* we may send to the peer (sendrecv/sendonly) */
    int can_recv;                /* the peer may send to us */
    uint8_t out_pt;              /* the peer's Opus payload type */
    uint32_t out_ssrc;
    char cname[24];
    uint32_t in_ssrc[MD_SDP_MAX_SSRC];  /* SSRCs the offer declared */
    unsigned n_in_ssrc;
    uint32_t latched;            /* the SSRC accepted from the peer (0: none yet) */
    uint32_t in_ext_seq;         /* highest sequence received (for RTCP RR) */
    md_srtp *in, *out;
    md_srtp_suite suite;
    md_rw rw;

    /* transport */
    md_ice *ice;
    char rufrag[MD_SDP_MAX_UFRAG + 1], rpwd[MD_SDP_MAX_UFRAG + 1];
    md_dtls *dtls;
    int dtls_active;
    char fp_alg[16], fp[MD_SDP_MAX_FP + 1];
    uint8_t sdes_key[MD_SRTP_MAX_KEY];     /* SDES: our key || salt */
    char sdes_b64[80];
    unsigned sdes_tag;
    char sdes_suite[40];
    char sdes_in[128];                     /* the peer's inline key, to spot re-keying */

    /* what was answered, so a retried offer gets the same answer */
    char *offer, *answer;
    uint64_t sess_version;

    /* counters (RTCP sender reports and diagnostics) */
    uint64_t rtp_in, rtp_out, octets_out, rtcp_in;
    uint64_t last_rx_ms;
};

/* Creates the session for req (borrowed) from a parsed offer and the pick
 * md_sdp_select made. On failure returns NULL with a reason in *why and
 * errno EINVAL (the offer is at fault: a bad key) or EAGAIN (ours: no port,
 * out of memory). */
md_sess *md_sess_new(md_ctx *c, md_room *room, const Tether__Bus__MediaReq *req, const md_sdp *offer,
                     const md_sdp_pick *pick, const char **why);
/* A new offer on an existing session: same ICE credentials (renegotiation),
 * new ones (ICE restart: md_ice_restart first), new SDES key (re-keying).
 * Returns 0, or -EINVAL with *why (the session is unchanged). A changed DTLS
 * fingerprint or keying method is not a re-offer: the caller replaces the
 * session (md_sess_same_peer says which). */
int md_sess_reoffer(md_sess *s, const md_sdp *offer, const md_sdp_pick *pick, const char **why);
int md_sess_same_peer(const md_sess *s, const md_sdp *offer, const md_sdp_pick *pick);
/* Writes the answer for the current state into a new string (NULL on ENOMEM
 * or an answer too large). Keeps a copy with offer_text for retries. */
char *md_sess_answer(md_sess *s, const md_sdp *offer, const md_sdp_pick *pick, const char *offer_text);
/* A trickled candidate from the peer ("" ends them). 0 or -EINVAL. */
int md_sess_candidate(md_sess *s, const char *cand);
/* Protects an RTP packet built in buf (len bytes, MD_SRTP_TRAILER spare)
 * and sends it. Returns 0 or -errno (counted by the caller). */
int md_sess_send_rtp(md_sess *s, uint8_t *buf, int len);
int md_sess_send_rtcp(md_sess *s, uint8_t *buf, int len);
/* Marks the session dead and frees it at the end of the loop iteration (it
 * may be inside one of its own callbacks). */
void md_sess_destroy(md_sess *s);
/* 1 when the session can carry audio to its peer now. */
int md_sess_can_forward(const md_sess *s);

#endif
