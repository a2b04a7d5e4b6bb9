/* md_sdp.h -- SDP offers in, SDP answers out (RFC 4566, JSEP subset).
 *
 * mediad answers offers from browsers (DTLS-SRTP: UDP/TLS/RTP/SAVPF with
 * a=fingerprint and a=setup) and from native clients (SDES-SRTP: RTP/SAVP(F)
 * with a=crypto). It takes the first audio m-line with Opus, requires ICE
 * credentials and rtcp-mux, and rejects every other m-line (port 0) while
 * keeping the m-line order, as JSEP requires.
 *
 * Pure functions of their input (no I/O, no allocation besides the caller's
 * structs), so they are unit-tested and fuzzable. Every string an offer
 * carries is bounded and checked for the characters its grammar allows, so
 * nothing from the wire reaches libnice or the answer unvalidated.
 */
#ifndef TETHER_MD_SDP_H
#define TETHER_MD_SDP_H

#include <stddef.h>
#include <stdint.h>

#define MD_SDP_MAX_LEN 65536
#define MD_SDP_MAX_MEDIA 8
#define MD_SDP_MAX_CANDS 16
#define MD_SDP_MAX_CRYPTO 8
#define MD_SDP_MAX_SSRC 8
#define MD_SDP_MAX_CAND_LEN 255
#define MD_SDP_MAX_UFRAG 256
#define MD_SDP_MAX_FP 191        /* sha-512 as hex with colons */

typedef enum md_dir { MD_DIR_SENDRECV = 0, MD_DIR_SENDONLY, MD_DIR_RECVONLY, MD_DIR_INACTIVE } md_dir;
typedef enum md_setup { MD_SETUP_NONE = 0, MD_SETUP_ACTPASS, MD_SETUP_ACTIVE, MD_SETUP_PASSIVE } md_setup;
typedef enum md_keying { MD_KEYING_DTLS = 1, MD_KEYING_SDES } md_keying;

typedef struct md_sdp_crypto {
    unsigned tag;
    char suite[40];
    char key[128];   /* the inline: value without "inline:" (base64 key||salt, no lifetime/MKI) */
} md_sdp_crypto;

typedef struct md_sdp_media {
    char type[16];              /* audio, video, application, ... */
    unsigned port;
    char proto[40];
    char fmts[256];             /* the format list as written */
    char mid[33];
    md_dir dir;
    int rtcp_mux;
    int opus_pt;                /* -1 when the m-line has no Opus */
    unsigned opus_channels;
    char opus_fmtp[256];
    char ufrag[MD_SDP_MAX_UFRAG + 1], pwd[MD_SDP_MAX_UFRAG + 1];
    char fp_alg[16];            /* lower case: sha-256 ... */
    char fp[MD_SDP_MAX_FP + 1]; /* upper-case hex with colons */
    md_setup setup;
    md_sdp_crypto crypto[MD_SDP_MAX_CRYPTO];
    unsigned ncrypto;
    uint32_t ssrc[MD_SDP_MAX_SSRC];
    unsigned nssrc;
    char cand[MD_SDP_MAX_CANDS][MD_SDP_MAX_CAND_LEN + 1]; /* "candidate:..." */
    unsigned ncand;
    int end_of_candidates;
} md_sdp_media;

typedef struct md_sdp {
    unsigned nmedia;
    char bundle[256];           /* a=group:BUNDLE mids, as written */
    md_sdp_media m[MD_SDP_MAX_MEDIA];
} md_sdp;

/* Parses text (len bytes, need not be NUL-terminated). Session-level ICE,
 * fingerprint and setup attributes are copied into every m-line that has
 * none of its own. Returns 0, or -EINVAL with *why a static reason. */
int md_sdp_parse(const char *text, size_t len, md_sdp *out, const char **why);

/* What mediad can use of an offer: the first audio m-line with Opus, its
 * keying, the SDES crypto line chosen (first supported suite). Returns 0, or
 * -EINVAL/-ENOTSUP with *why (a clear reason for the client's `error`). */
typedef struct md_sdp_pick {
    unsigned index;             /* of the audio m-line */
    md_keying keying;
    const md_sdp_crypto *crypto;/* SDES: the chosen line (borrowed from the offer) */
} md_sdp_pick;
int md_sdp_select(const md_sdp *offer, md_sdp_pick *pick, const char **why);

/* The SDES suites mediad accepts, best first. 1 if name is one of them. */
int md_sdp_sdes_supported(const char *suite);
/* The DTLS fingerprint hashes accepted (sha-1, sha-256, sha-384, sha-512). */
int md_sdp_fp_alg_supported(const char *alg);

/* The answer's direction for an offered one. */
md_dir md_sdp_answer_dir(md_dir offered);
const char *md_sdp_dir_name(md_dir d);

typedef struct md_sdp_answer_params {
    uint64_t sess_id, sess_version;
    const md_sdp_pick *pick;
    const char *ufrag, *pwd;
    const char *fp_alg, *fp;    /* DTLS: our certificate's fingerprint */
    md_setup setup;             /* DTLS: MD_SETUP_ACTIVE or MD_SETUP_PASSIVE */
    unsigned crypto_tag;        /* SDES: the offer's tag */
    const char *crypto_suite;   /* SDES */
    const char *crypto_key;     /* SDES: base64 key||salt */
    md_dir dir;
    uint32_t ssrc;              /* the SSRC we send with */
    const char *cname, *msid_stream, *msid_track;
    const char *const *cands;   /* "candidate:..." lines */
    size_t ncands;
    int trickle;                /* candidates follow separately: no a=end-of-candidates */
} md_sdp_answer_params;

/* Writes the answer to an offer into buf (NUL-terminated). Returns its
 * length, or -ENOSPC. */
int md_sdp_answer(const md_sdp *offer, const md_sdp_answer_params *p, char *buf, size_t cap);

/* Checks a trickled candidate ("candidate:..." or "a=candidate:...") and
 * copies it without the "a=" into out (cap >= MD_SDP_MAX_CAND_LEN + 1).
 * Returns 0 or -EINVAL. */
int md_sdp_candidate(const char *in, char *out, size_t cap);

/* Fingerprints: normalises "ab:cd:..." to upper case; 0 or -EINVAL when the
 * value is not colon-separated hex bytes of the algorithm's length. */
int md_sdp_fp_normalise(const char *alg, const char *in, char *out, size_t cap);

/* Base64 (standard alphabet, padded). encode returns the length written
 * (NUL-terminated) or -ENOSPC; decode returns the byte count or -EINVAL. */
int md_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int md_b64_decode(const char *in, uint8_t *out, size_t cap);

#endif
