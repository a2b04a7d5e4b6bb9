/* md_sdp.c -- SDP offer parsing and answer writing (see md_sdp.h).
 *
 * The parser walks the text once, line by line, keeping only what mediad
 * uses; unknown lines and attributes are skipped, as RFC 4566 asks. Limits
 * are fixed (MD_SDP_MAX_*): an offer beyond them is refused, never cut.
 */
#include "md_sdp.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SDES suites (RFC 4568, RFC 7714), best first. */
static const char *const sdes_suites[] = {
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
};

static const struct {
    const char *name;
    unsigned bytes;
} fp_algs[] = { { "sha-1", 20 }, { "sha-256", 32 }, { "sha-384", 48 }, { "sha-512", 64 } };

int md_sdp_sdes_supported(const char *suite)
{
    for (size_t i = 0; i < sizeof(sdes_suites) / sizeof(sdes_suites[0]); i++)
        if (!strcmp(suite, sdes_suites[i]))
            return 1;
    return 0;
}

static int fp_bytes(const char *alg)
{
    for (size_t i = 0; i < sizeof(fp_algs) / sizeof(fp_algs[0]); i++)
        if (!strcasecmp(alg, fp_algs[i].name))
            return (int)fp_algs[i].bytes;
    return -1;
}

int md_sdp_fp_alg_supported(const char *alg) { return fp_bytes(alg) > 0; }

/* ---- character classes -------------------------------------------------------------- */

static int ice_char(int ch) { return isalnum(ch) || ch == '+' || ch == '/'; }

static int token_char(int ch) { return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`{|}~", ch)); }

static int all_of(const char *s, int (*cls)(int))
{
    for (; *s; s++)
        if (!cls((unsigned char)*s))
            return 0;
    return 1;
}

static int printable(int ch) { return ch >= 0x20 && ch < 0x7f; }

/* Copies at most cap-1 bytes of [s, s+n) into out; -1 if it does not fit. */
static int copy(char *out, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

/* The value of a decimal number that sscanf's %N[0-9] put into s (a buffer
 * of N + 1 bytes), if it is at most max; -1 otherwise, or if it filled all
 * N digits (it may have been cut short). sscanf's own %u and %d wrap around
 * on overflow ("4294967297" is 1), so a hostile number could pass a range
 * check. */
static long long digits_value(const char *s, size_t n, unsigned long long max)
{
    size_t len = strlen(s);
    if (len == 0 || len >= n - 1)
        return -1;
    unsigned long long v = 0;
    for (const char *p = s; *p; p++)
        v = v * 10 + (unsigned long long)(*p - '0');
    return v <= max ? (long long)v : -1;
}

/* ---- fingerprints and base64 ----------------------------------------------------------- */

int md_sdp_fp_normalise(const char *alg, const char *in, char *out, size_t cap)
{
    int want = fp_bytes(alg);
    size_t n = strlen(in);
    if (want < 0 || n != (size_t)want * 3 - 1 || cap <= n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)in[i];
        if (i % 3 == 2) {
            if (ch != ':')
                return -EINVAL;
            out[i] = ':';
        } else {
            if (!isxdigit(ch))
                return -EINVAL;
            out[i] = (char)toupper(ch);
        }
    }
    out[n] = 0;
    return 0;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int md_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    size_t need = (n + 2) / 3 * 4;
    if (cap <= need)
        return -ENOSPC;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = 0;
    return (int)o;
}

int md_b64_decode(const char *in, uint8_t *out, size_t cap)
{
    size_t n = strlen(in), o = 0;
    if (n == 0 || n % 4)
        return -EINVAL;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = in[i + k];
            const char *p = ch ? strchr(b64chars, ch) : NULL;
            if (ch == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!p || pad)
                return -EINVAL;
            v = (v << 6) | (uint32_t)(p - b64chars);
        }
        size_t bytes = 3 - (size_t)pad;
        if (o + bytes > cap)
            return -EINVAL;
        out[o++] = (uint8_t)(v >> 16);
        if (bytes > 1)
            out[o++] = (uint8_t)(v >> 8);
        if (bytes > 2)
            out[o++] = (uint8_t)v;
    }
    return (int)o;
}

/* ---- parsing ------------------------------------------------------------------------ */

typedef struct fmtp_seen {
    int pt;
    char params[256];
} fmtp_seen;

typedef struct parse_state {
    md_sdp *o;
    md_sdp_media *cur;        /* NULL at session level */
    md_sdp_media sess;        /* session-level ICE/DTLS attributes */
    fmtp_seen fmtp[16];
    unsigned nfmtp;
    const char *why;
} parse_state;

#define FAIL(st, msg) \
    do { \
        (st)->why = (msg); \
        return -EINVAL; \
    } while (0)

static int fmt_listed(const md_sdp_media *m, int pt)
{
    char want[16];
    snprintf(want, sizeof(want), "%d", pt);
    const char *p = m->fmts;
    size_t wl = strlen(want);
    while (*p) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == wl && !memcmp(p, want, wl))
            return 1;
        p = e;
    }
    return 0;
}

/* End of an m-section: attach the Opus fmtp seen before or after its rtpmap. */
static void media_done(parse_state *st)
{
    md_sdp_media *m = st->cur;
    if (!m)
        return;
    if (m->opus_pt >= 0 && !fmt_listed(m, m->opus_pt))
        m->opus_pt = -1;
    for (unsigned i = 0; i < st->nfmtp && m->opus_pt >= 0; i++)
        if (st->fmtp[i].pt == m->opus_pt)
            snprintf(m->opus_fmtp, sizeof(m->opus_fmtp), "%s", st->fmtp[i].params);
    st->nfmtp = 0;
}

static int parse_m(parse_state *st, const char *v)
{
    media_done(st);
    if (st->o->nmedia == MD_SDP_MAX_MEDIA)
        FAIL(st, "too many m-lines");
    md_sdp_media *m = &st->o->m[st->o->nmedia++];
    memset(m, 0, sizeof(*m));
    m->opus_pt = -1;
    m->dir = MD_DIR_SENDRECV;
    char type[16], portstr[16], proto[40];
    int used = 0;
    if (sscanf(v, "%15s %15s %39s %n", type, portstr, proto, &used) < 3 || used == 0)
        FAIL(st, "malformed m-line");
    char *end;
    unsigned long port = strtoul(portstr, &end, 10);
    if (end == portstr || (*end && *end != '/'))
        FAIL(st, "malformed m-line port");
    if (port > 65535 || !all_of(type, token_char))
        FAIL(st, "malformed m-line");
    snprintf(m->type, sizeof(m->type), "%s", type);
    snprintf(m->proto, sizeof(m->proto), "%s", proto);
    m->port = (unsigned)port;
    const char *f = v + used;
    if (copy(m->fmts, sizeof(m->fmts), f, strlen(f)) < 0 || !all_of(m->fmts, printable))
        FAIL(st, "m-line format list too long");
    st->cur = m;
    return 0;
}

static int parse_fingerprint(parse_state *st, md_sdp_media *m, const char *v)
{
    char alg[16], hex[200];
    if (sscanf(v, "%15s %199s", alg, hex) != 2)
        FAIL(st, "malformed a=fingerprint");
    for (char *p = alg; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!md_sdp_fp_alg_supported(alg))
        FAIL(st, "unsupported a=fingerprint hash (sha-1/256/384/512 are)");
    if (md_sdp_fp_normalise(alg, hex, m->fp, sizeof(m->fp)) < 0)
        FAIL(st, "malformed a=fingerprint value");
    snprintf(m->fp_alg, sizeof(m->fp_alg), "%s", alg);
    return 0;
}

static int parse_setup(parse_state *st, md_sdp_media *m, const char *v)
{
    if (!strcmp(v, "actpass"))
        m->setup = MD_SETUP_ACTPASS;
    else if (!strcmp(v, "active"))
        m->setup = MD_SETUP_ACTIVE;
    else if (!strcmp(v, "passive"))
        m->setup = MD_SETUP_PASSIVE;
    else
        FAIL(st, "unsupported a=setup (actpass, active or passive)");
    return 0;
}

static int parse_ice(parse_state *st, char *out, const char *v, const char *what)
{
    size_t n = strlen(v);
    if (n == 0 || n > MD_SDP_MAX_UFRAG || !all_of(v, ice_char))
        FAIL(st, what);
    memcpy(out, v, n + 1);
    return 0;
}

static int parse_crypto(parse_state *st, md_sdp_media *m, const char *v)
{
    if (m->ncrypto == MD_SDP_MAX_CRYPTO)
        FAIL(st, "too many a=crypto lines");
    md_sdp_crypto *c = &m->crypto[m->ncrypto];
    char suite[40], params[200], tag_s[12];
    long long tag;
    if (sscanf(v, "%11[0-9] %39s %199s", tag_s, suite, params) != 3 ||
        (tag = digits_value(tag_s, sizeof(tag_s), 999999999)) < 0)
        FAIL(st, "malformed a=crypto");
    if (strncmp(params, "inline:", 7) != 0)
        FAIL(st, "a=crypto key method must be inline");
    const char *key = params + 7, *bar = strchr(key, '|');
    size_t kl = bar ? (size_t)(bar - key) : strlen(key);
    /* An MKI (a second '|' or a ':' after the lifetime) is not supported:
     * packets would carry it and libsrtp would need it per key. */
    if (bar && (strchr(bar + 1, '|') || strchr(bar + 1, ':')))
        FAIL(st, "a=crypto with an MKI is not supported");
    if (copy(c->key, sizeof(c->key), key, kl) < 0)
        FAIL(st, "a=crypto key too long");
    for (const char *p = c->key; *p; p++)
        if (!strchr(b64chars, *p) && *p != '=')
            FAIL(st, "a=crypto key is not base64");
    c->tag = (unsigned)tag;
    snprintf(c->suite, sizeof(c->suite), "%s", suite);
    m->ncrypto++;
    return 0;
}

static int parse_rtpmap(md_sdp_media *m, const char *v)
{
    char pt_s[5], enc[64], clock_s[12], ch_s[5] = "1";
    int n = sscanf(v, "%4[0-9] %63[^/]/%11[0-9]/%4[0-9]", pt_s, enc, clock_s, ch_s);
    long long pt = n >= 1 ? digits_value(pt_s, sizeof(pt_s), 127) : -1;
    long long clock = n >= 3 ? digits_value(clock_s, sizeof(clock_s), 0xffffffffu) : -1;
    long long ch = digits_value(ch_s, sizeof(ch_s), 255);
    if (n < 3 || pt < 0 || clock < 0 || ch < 0)
        return 0;   /* not ours to judge: ignored */
    if (!strcasecmp(enc, "opus") && clock == 48000 && m->opus_pt < 0) {
        m->opus_pt = (int)pt;
        m->opus_channels = n == 4 ? (unsigned)ch : 1;
    }
    return 0;
}

static int parse_attr(parse_state *st, const char *a)
{
    md_sdp_media *m = st->cur ? st->cur : &st->sess;
    const char *colon = strchr(a, ':');
    char name[40];
    if (copy(name, sizeof(name), a, colon ? (size_t)(colon - a) : strlen(a)) < 0)
        return 0;   /* an attribute name this long is none of ours */
    const char *v = colon ? colon + 1 : "";
    if (!strcmp(name, "ice-ufrag"))
        return parse_ice(st, m->ufrag, v, "malformed a=ice-ufrag");
    if (!strcmp(name, "ice-pwd"))
        return parse_ice(st, m->pwd, v, "malformed a=ice-pwd");
    if (!strcmp(name, "fingerprint"))
        return parse_fingerprint(st, m, v);
    if (!strcmp(name, "setup"))
        return parse_setup(st, m, v);
    if (!strcmp(name, "group")) {
        if (!strncmp(v, "BUNDLE", 6) && copy(st->o->bundle, sizeof(st->o->bundle), v, strlen(v)) < 0)
            FAIL(st, "a=group too long");
        return 0;
    }
    if (!st->cur)
        return 0;
    if (!strcmp(name, "mid")) {
        if (copy(m->mid, sizeof(m->mid), v, strlen(v)) < 0 || !*v || !all_of(m->mid, token_char))
            FAIL(st, "malformed a=mid");
    } else if (!strcmp(name, "sendrecv")) {
        m->dir = MD_DIR_SENDRECV;
    } else if (!strcmp(name, "sendonly")) {
        m->dir = MD_DIR_SENDONLY;
    } else if (!strcmp(name, "recvonly")) {
        m->dir = MD_DIR_RECVONLY;
    } else if (!strcmp(name, "inactive")) {
        m->dir = MD_DIR_INACTIVE;
    } else if (!strcmp(name, "rtcp-mux")) {
        m->rtcp_mux = 1;
    } else if (!strcmp(name, "rtpmap")) {
        return parse_rtpmap(m, v);
    } else if (!strcmp(name, "fmtp")) {
        char pt_s[5];
        int used = 0;
        long long pt;
        if (sscanf(v, "%4[0-9] %n", pt_s, &used) == 1 && used && (pt = digits_value(pt_s, sizeof(pt_s), 127)) >= 0 &&
            st->nfmtp < sizeof(st->fmtp) / sizeof(st->fmtp[0])) {
            fmtp_seen *f = &st->fmtp[st->nfmtp];
            if (copy(f->params, sizeof(f->params), v + used, strlen(v + used)) == 0 && all_of(f->params, printable)) {
                f->pt = (int)pt;
                st->nfmtp++;
            }
        }
    } else if (!strcmp(name, "crypto")) {
        return parse_crypto(st, m, v);
    } else if (!strcmp(name, "ssrc")) {
        unsigned long ssrc;
        char *end;
        ssrc = strtoul(v, &end, 10);
        if (end == v || ssrc > 0xffffffffUL)
            FAIL(st, "malformed a=ssrc");
        for (unsigned i = 0; i < m->nssrc; i++)
            if (m->ssrc[i] == (uint32_t)ssrc)
                return 0;
        if (m->nssrc < MD_SDP_MAX_SSRC)
            m->ssrc[m->nssrc++] = (uint32_t)ssrc;
    } else if (!strcmp(name, "candidate")) {
        if (m->ncand == MD_SDP_MAX_CANDS)
            return 0;   /* enough to connect; the rest are redundant */
        if (md_sdp_candidate(a, m->cand[m->ncand], sizeof(m->cand[m->ncand])) < 0)
            FAIL(st, "malformed a=candidate");
        m->ncand++;
    } else if (!strcmp(name, "end-of-candidates")) {
        m->end_of_candidates = 1;
    }
    return 0;
}

static void inherit(md_sdp_media *m, const md_sdp_media *s)
{
    if (!m->ufrag[0])
        memcpy(m->ufrag, s->ufrag, sizeof(m->ufrag));
    if (!m->pwd[0])
        memcpy(m->pwd, s->pwd, sizeof(m->pwd));
    if (!m->fp[0]) {
        memcpy(m->fp, s->fp, sizeof(m->fp));
        memcpy(m->fp_alg, s->fp_alg, sizeof(m->fp_alg));
    }
    if (m->setup == MD_SETUP_NONE)
        m->setup = s->setup;
}

int md_sdp_parse(const char *text, size_t len, md_sdp *out, const char **why)
{
    static parse_state st;   /* large (fmtp table): not on the stack; one thread */
    int rc = -EINVAL;
    memset(out, 0, sizeof(*out));
    memset(&st, 0, sizeof(st));
    st.o = out;
    st.why = "malformed SDP";
    if (len == 0 || len > MD_SDP_MAX_LEN) {
        st.why = len ? "SDP too large" : "empty SDP";
        goto out;
    }
    if (len < 2 || text[0] != 'v' || text[1] != '=') {
        st.why = "SDP must start with v=";
        goto out;
    }
    char line[2048];
    size_t pos = 0;
    while (pos < len) {
        const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        if (n >= sizeof(line)) {
            st.why = "SDP line too long";
            goto out;
        }
        memcpy(line, s, n);
        line[n] = 0;
        if (memchr(line, 0, n)) {
            st.why = "NUL in SDP";
            goto out;
        }
        if (n < 2 || line[1] != '=' || !islower((unsigned char)line[0])) {
            st.why = "malformed SDP line";
            goto out;
        }
        if (line[0] == 'm' && parse_m(&st, line + 2) < 0)
            goto out;
        if (line[0] == 'a' && parse_attr(&st, line + 2) < 0)
            goto out;
    }
    media_done(&st);
    if (out->nmedia == 0) {
        st.why = "the offer has no m-line";
        goto out;
    }
    for (unsigned i = 0; i < out->nmedia; i++)
        inherit(&out->m[i], &st.sess);
    rc = 0;
out:
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        if (why)
            *why = st.why;
    }
    return rc;
}

/* ---- selection ---------------------------------------------------------------------- */

int md_sdp_select(const md_sdp *o, md_sdp_pick *pick, const char **why)
{
    memset(pick, 0, sizeof(*pick));
    const md_sdp_media *m = NULL;
    int saw_audio = 0;
    for (unsigned i = 0; i < o->nmedia && !m; i++) {
        if (strcmp(o->m[i].type, "audio") != 0)
            continue;
        saw_audio = 1;
        if (o->m[i].opus_pt >= 0) {
            m = &o->m[i];
            pick->index = i;
        }
    }
    if (!m) {
        *why = saw_audio ? "the offer's audio has no Opus (48000 Hz)" : "the offer has no audio m-line";
        return -ENOTSUP;
    }
    if (!strcmp(m->proto, "UDP/TLS/RTP/SAVPF") || !strcmp(m->proto, "UDP/TLS/RTP/SAVP")) {
        pick->keying = MD_KEYING_DTLS;
    } else if (!strcmp(m->proto, "RTP/SAVPF") || !strcmp(m->proto, "RTP/SAVP")) {
        pick->keying = MD_KEYING_SDES;
    } else if (!strcmp(m->proto, "RTP/AVP") || !strcmp(m->proto, "RTP/AVPF") ||
               !strcmp(m->proto, "UDP/TLS/RTP/AVPF")) {
        *why = "unencrypted RTP is not supported: use DTLS-SRTP or SDES-SRTP";
        return -ENOTSUP;
    } else {
        *why = "unsupported audio transport (UDP/TLS/RTP/SAVPF or RTP/SAVPF)";
        return -ENOTSUP;
    }
    if (!m->ufrag[0] || !m->pwd[0]) {
        *why = "ICE credentials (a=ice-ufrag, a=ice-pwd) are missing";
        return -EINVAL;
    }
    if (strlen(m->ufrag) < 4 || strlen(m->pwd) < 22) {
        *why = "ICE credentials too short (ufrag >= 4, pwd >= 22 characters)";
        return -EINVAL;
    }
    if (!m->rtcp_mux) {
        *why = "rtcp-mux is required";
        return -ENOTSUP;
    }
    if (pick->keying == MD_KEYING_DTLS) {
        if (!m->fp[0]) {
            *why = "DTLS-SRTP needs a=fingerprint";
            return -EINVAL;
        }
        return 0;
    }
    for (size_t s = 0; s < sizeof(sdes_suites) / sizeof(sdes_suites[0]) && !pick->crypto; s++)
        for (unsigned i = 0; i < m->ncrypto; i++)
            if (!strcmp(m->crypto[i].suite, sdes_suites[s])) {
                pick->crypto = &m->crypto[i];
                break;
            }
    if (!pick->crypto) {
        *why = m->ncrypto ? "no supported a=crypto suite (AES_CM_128_HMAC_SHA1_80/32, AEAD_AES_128/256_GCM)"
                          : "SDES-SRTP needs a=crypto";
        return -ENOTSUP;
    }
    return 0;
}

md_dir md_sdp_answer_dir(md_dir offered)
{
    switch (offered) {
    case MD_DIR_SENDONLY:
        return MD_DIR_RECVONLY;
    case MD_DIR_RECVONLY:
        return MD_DIR_SENDONLY;
    case MD_DIR_INACTIVE:
        return MD_DIR_INACTIVE;
    default:
        return MD_DIR_SENDRECV;
    }
}

const char *md_sdp_dir_name(md_dir d)
{
    static const char *const names[] = { "sendrecv", "sendonly", "recvonly", "inactive" };
    return (unsigned)d < 4 ? names[d] : "inactive";
}

int md_sdp_candidate(const char *in, char *out, size_t cap)
{
    if (!strncmp(in, "a=", 2))
        in += 2;
    size_t n = strlen(in);
    if (strncmp(in, "candidate:", 10) != 0 || n > MD_SDP_MAX_CAND_LEN || n >= cap || !all_of(in, printable))
        return -EINVAL;
    /* foundation component transport priority address port "typ" type */
    char found[40], transport[16], addr[80], typ[8], type[16], comp[5], prio[12], port[7];
    if (sscanf(in + 10, "%39s %4[0-9] %15s %11[0-9] %79s %6[0-9] %7s %15s", found, comp, transport, prio, addr, port,
               typ, type) != 8 ||
        strcmp(typ, "typ") != 0 || digits_value(port, sizeof(port), 65535) < 0 ||
        digits_value(comp, sizeof(comp), 256) < 1 || digits_value(prio, sizeof(prio), 0xffffffffu) < 0)
        return -EINVAL;
    memcpy(out, in, n + 1);
    return 0;
}

/* ---- answer ----------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t cap, len;
    int full;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(sbuf *b, const char *fmt, ...)
{
    if (b->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->full = 1;
        return;
    }
    b->len += (size_t)n;
}

int md_sdp_answer(const md_sdp *o, const md_sdp_answer_params *p, char *buf, size_t cap)
{
    sbuf b = { buf, cap, 0, 0 };
    if (cap == 0)
        return -ENOSPC;
    const md_sdp_media *a = &o->m[p->pick->index];
    put(&b, "v=0\r\no=- %llu %llu IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", (unsigned long long)p->sess_id,
        (unsigned long long)p->sess_version);
    if (o->bundle[0] && a->mid[0])
        put(&b, "a=group:BUNDLE %s\r\n", a->mid);
    put(&b, "a=ice-lite\r\n");
    for (unsigned i = 0; i < o->nmedia; i++) {
        const md_sdp_media *m = &o->m[i];
        if (i != p->pick->index) {
            put(&b, "m=%s 0 %s %s\r\nc=IN IP4 0.0.0.0\r\n", m->type, m->proto, m->fmts[0] ? m->fmts : "0");
            if (m->mid[0])
                put(&b, "a=mid:%s\r\n", m->mid);
            put(&b, "a=inactive\r\n");
            continue;
        }
        put(&b, "m=audio 9 %s %d\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n", m->proto, m->opus_pt);
        put(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", p->ufrag, p->pwd);
        if (p->pick->keying == MD_KEYING_DTLS)
            put(&b, "a=fingerprint:%s %s\r\na=setup:%s\r\n", p->fp_alg, p->fp,
                p->setup == MD_SETUP_ACTIVE ? "active" : "passive");
        if (m->mid[0])
            put(&b, "a=mid:%s\r\n", m->mid);
        put(&b, "a=%s\r\na=rtcp-mux\r\n", md_sdp_dir_name(p->dir));
        put(&b, "a=rtpmap:%d opus/48000/2\r\n", m->opus_pt);
        put(&b, "a=fmtp:%d %s\r\n", m->opus_pt, m->opus_fmtp[0] ? m->opus_fmtp : "minptime=10;useinbandfec=1");
        if (p->pick->keying == MD_KEYING_SDES)
            put(&b, "a=crypto:%u %s inline:%s\r\n", p->crypto_tag, p->crypto_suite, p->crypto_key);
        if (p->dir == MD_DIR_SENDRECV || p->dir == MD_DIR_SENDONLY) {
            put(&b, "a=msid:%s %s\r\n", p->msid_stream, p->msid_track);
            put(&b, "a=ssrc:%u cname:%s\r\n", p->ssrc, p->cname);
        }
        for (size_t k = 0; k < p->ncands; k++)
            put(&b, "a=%s\r\n", p->cands[k]);
        if (p->trickle)
            put(&b, "a=ice-options:trickle\r\n");
        else
            put(&b, "a=end-of-candidates\r\n");
    }
    return b.full ? -ENOSPC : (int)b.len;
}
