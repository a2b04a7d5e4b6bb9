/* test_sdp.c -- mediad's SDP offer parsing and answer writing (mediad/md_sdp.c).
 *
 * The module is pure C with no dependency of mediad's, so it is compiled in
 * here directly. Offers are shaped like Chromium's (DTLS-SRTP, BUNDLE,
 * trickle) and like a native SDES client's; every refusal a client can
 * trigger is checked for its reason, and the answers are parsed back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mediad/md_sdp.c"

#define FP256 "5D:1E:9A:27:2B:8C:0E:7F:66:41:A8:CB:03:2D:90:11:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"

static const char chrome_offer[] =
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS 3d1f\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 network-id 1\r\n"
    "a=ice-ufrag:8hhY\r\n"
    "a=ice-pwd:asd88fgpdd777uzjYhagZg0s\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 5d:1e:9a:27:2b:8c:0e:7f:66:41:a8:cb:03:2d:90:11:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=sendrecv\r\n"
    "a=msid:3d1f 9c2e\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:3735928559 cname:abcdEFGH\r\n"
    "a=ssrc:3735928559 msid:3d1f 9c2e\r\n";

static const char sdes_offer[] =
    "v=0\n"
    "o=- 1 1 IN IP4 127.0.0.1\n"
    "s=native\n"
    "t=0 0\n"
    "a=ice-ufrag:abcd\n"
    "a=ice-pwd:0123456789abcdefghijklmn\n"
    "m=audio 9 RTP/SAVPF 96\n"
    "c=IN IP4 0.0.0.0\n"
    "a=rtcp-mux\n"
    "a=recvonly\n"
    "a=rtpmap:96 opus/48000/2\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20\n"
    "a=crypto:2 AEAD_AES_128_GCM inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9\n";

static md_sdp *parse_ok(const char *text)
{
    static md_sdp o;
    const char *why = NULL;
    int rc = md_sdp_parse(text, strlen(text), &o, &why);
    if (rc != 0)
        fail_msg("parse failed: %s", why ? why : "?");
    return &o;
}

static const char *parse_err(const char *text)
{
    static md_sdp o;
    const char *why = NULL;
    assert_int_equal(md_sdp_parse(text, strlen(text), &o, &why), -EINVAL);
    assert_non_null(why);
    return why;
}

static const char *select_err(const char *text)
{
    md_sdp *o = parse_ok(text);
    md_sdp_pick p;
    const char *why = NULL;
    assert_true(md_sdp_select(o, &p, &why) < 0);
    assert_non_null(why);
    return why;
}

/* text with the first occurrence of from replaced by to. */
static const char *edit(const char *text, const char *from, const char *to)
{
    /* A few buffers in turn, so edits can be nested. */
    static char bufs[4][8192];
    static unsigned next;
    char *buf = bufs[next++ % 4];
    const char *p = strstr(text, from);
    assert_non_null(p);
    snprintf(buf, sizeof(bufs[0]), "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    return buf;
}

static void test_chrome_offer_parses(void **state)
{
    (void)state;
    md_sdp *o = parse_ok(chrome_offer);
    assert_int_equal(o->nmedia, 1);
    const md_sdp_media *m = &o->m[0];
    assert_string_equal(m->type, "audio");
    assert_string_equal(m->proto, "UDP/TLS/RTP/SAVPF");
    assert_int_equal(m->opus_pt, 111);
    assert_int_equal(m->opus_channels, 2);
    assert_string_equal(m->opus_fmtp, "minptime=10;useinbandfec=1");
    assert_string_equal(m->mid, "0");
    assert_string_equal(m->ufrag, "8hhY");
    assert_string_equal(m->pwd, "asd88fgpdd777uzjYhagZg0s");
    assert_string_equal(m->fp_alg, "sha-256");
    assert_string_equal(m->fp, FP256);
    assert_int_equal(m->setup, MD_SETUP_ACTPASS);
    assert_int_equal(m->dir, MD_DIR_SENDRECV);
    assert_true(m->rtcp_mux);
    assert_int_equal(m->ncand, 1);
    assert_true(!strncmp(m->cand[0], "candidate:1467250027 1 udp", 26));
    assert_int_equal(m->nssrc, 1);
    assert_int_equal(m->ssrc[0], 3735928559u);
    assert_string_equal(o->bundle, "BUNDLE 0");
    md_sdp_pick p;
    const char *why = NULL;
    assert_int_equal(md_sdp_select(o, &p, &why), 0);
    assert_int_equal(p.keying, MD_KEYING_DTLS);
    assert_int_equal(p.index, 0);
}

static md_sdp_answer_params dtls_params(const md_sdp_pick *p, const char *const *cands, size_t n)
{
    md_sdp_answer_params a = {
        .sess_id = 42, .sess_version = 1, .pick = p, .ufrag = "UFRG", .pwd = "0123456789012345678901",
        .fp_alg = "sha-256", .fp = FP256, .setup = MD_SETUP_PASSIVE, .dir = MD_DIR_SENDRECV,
        .ssrc = 12345, .cname = "cn", .msid_stream = "tether", .msid_track = "audio-1", .cands = cands,
        .ncands = n,
    };
    return a;
}

static void test_answer_to_chrome_offer(void **state)
{
    (void)state;
    md_sdp *o = parse_ok(chrome_offer);
    md_sdp_pick p;
    const char *why;
    assert_int_equal(md_sdp_select(o, &p, &why), 0);
    const char *cands[] = { "candidate:1 1 UDP 2015363327 127.0.0.1 10004 typ host" };
    md_sdp_answer_params a = dtls_params(&p, cands, 1);
    char buf[4096];
    int n = md_sdp_answer(o, &a, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    const char *must[] = {
        "v=0\r\n", "a=group:BUNDLE 0\r\n", "a=ice-lite\r\n", "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): the fingerprint line is one string */
        "a=ice-ufrag:UFRG\r\n", "a=ice-pwd:0123456789012345678901\r\n", "a=fingerprint:sha-256 " FP256 "\r\n",
        "a=setup:passive\r\n", "a=mid:0\r\n", "a=sendrecv\r\n", "a=rtcp-mux\r\n", "a=rtpmap:111 opus/48000/2\r\n",
        "a=fmtp:111 minptime=10;useinbandfec=1\r\n", "a=ssrc:12345 cname:cn\r\n", "a=msid:tether audio-1\r\n",
        "a=candidate:1 1 UDP 2015363327 127.0.0.1 10004 typ host\r\n", "a=end-of-candidates\r\n",
    };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        if (!strstr(buf, must[i]))
            fail_msg("answer lacks %s:\n%s", must[i], buf);
    /* Only Opus is answered; no header extension is accepted. */
    assert_null(strstr(buf, "G722"));
    assert_null(strstr(buf, "extmap"));
    assert_null(strstr(buf, "a=crypto"));
    /* The answer is itself valid SDP for our parser. */
    md_sdp back;
    assert_int_equal(md_sdp_parse(buf, (size_t)n, &back, &why), 0);
    assert_int_equal(back.m[0].opus_pt, 111);
    assert_int_equal(back.m[0].setup, MD_SETUP_PASSIVE);
    assert_int_equal(back.m[0].ncand, 1);
    /* Too small a buffer is an error, never a truncated answer. */
    assert_int_equal(md_sdp_answer(o, &a, buf, 100), -ENOSPC);
}

static void test_other_mlines_rejected_in_order(void **state)
{
    (void)state;
    char text[8192];
    snprintf(text, sizeof(text),
             "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE v a d\r\n"
             "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
             "a=fingerprint:sha-256 %s\r\na=setup:actpass\r\n"
             "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:v\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n"
             "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:a\r\na=sendonly\r\na=rtcp-mux\r\n"
             "a=fmtp:109 stereo=0\r\na=rtpmap:109 OPUS/48000/2\r\n"
             "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\n",
             FP256);
    md_sdp *o = parse_ok(text);
    assert_int_equal(o->nmedia, 3);
    md_sdp_pick p;
    const char *why;
    assert_int_equal(md_sdp_select(o, &p, &why), 0);
    assert_int_equal(p.index, 1);
    /* The session-level ICE and DTLS attributes apply to the m-line. */
    assert_string_equal(o->m[1].ufrag, "abcd");
    assert_string_equal(o->m[1].fp, FP256);
    /* fmtp before rtpmap is still Opus's; case-insensitive codec name. */
    assert_string_equal(o->m[1].opus_fmtp, "stereo=0");
    md_sdp_answer_params a = dtls_params(&p, NULL, 0);
    a.dir = md_sdp_answer_dir(o->m[1].dir);
    char buf[4096];
    assert_true(md_sdp_answer(o, &a, buf, sizeof(buf)) > 0);
    const char *v = strstr(buf, "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\n");
    const char *au = strstr(buf, "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\n");
    const char *d = strstr(buf, "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n");
    assert_non_null(v);
    assert_non_null(au);
    assert_non_null(d);
    assert_true(v < au && au < d);
    assert_non_null(strstr(buf, "a=group:BUNDLE a\r\n"));
    assert_non_null(strstr(buf, "a=recvonly\r\n"));
    /* recvonly: we send nothing, so no SSRC is announced. */
    assert_null(strstr(buf, "a=ssrc:"));
    assert_non_null(strstr(v, "a=inactive"));
}

static void test_sdes_offer(void **state)
{
    (void)state;
    md_sdp *o = parse_ok(sdes_offer);
    md_sdp_pick p;
    const char *why;
    assert_int_equal(md_sdp_select(o, &p, &why), 0);
    assert_int_equal(p.keying, MD_KEYING_SDES);
    /* GCM is preferred when offered. */
    assert_string_equal(p.crypto->suite, "AEAD_AES_128_GCM");
    assert_int_equal(p.crypto->tag, 2);
    assert_int_equal(o->m[0].ncrypto, 2);
    /* The lifetime is dropped from the key. */
    assert_string_equal(o->m[0].crypto[0].key, "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz");
    md_sdp_answer_params a = {
        .sess_id = 1, .sess_version = 2, .pick = &p, .ufrag = "UFRG", .pwd = "0123456789012345678901",
        .crypto_tag = p.crypto->tag, .crypto_suite = p.crypto->suite, .crypto_key = "S0VZ",
        .dir = md_sdp_answer_dir(o->m[0].dir), .ssrc = 7, .cname = "c", .msid_stream = "s", .msid_track = "t",
    };
    char buf[2048];
    assert_true(md_sdp_answer(o, &a, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "m=audio 9 RTP/SAVPF 96\r\n"));
    assert_non_null(strstr(buf, "a=crypto:2 AEAD_AES_128_GCM inline:S0VZ\r\n"));
    assert_non_null(strstr(buf, "a=sendonly\r\n"));
    assert_null(strstr(buf, "a=fingerprint"));
    assert_null(strstr(buf, "a=setup"));
    /* Without GCM the 80-bit tag suite is chosen; unknown suites alone are refused. */
    const char *only80 = edit(sdes_offer, "a=crypto:2 AEAD_AES_128_GCM", "a=crypto:2 F8_128_HMAC_SHA1_80");
    o = parse_ok(only80);
    assert_int_equal(md_sdp_select(o, &p, &why), 0);
    assert_string_equal(p.crypto->suite, "AES_CM_128_HMAC_SHA1_80");
}

static void test_refusals_have_reasons(void **state)
{
    (void)state;
    struct {
        const char *from, *to, *reason;
    } sel[] = {
        { "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=video 9 UDP/TLS/RTP/SAVPF 111", "no audio" },
        { "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 speex/48000", "no Opus" },
        { "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/16000/2", "no Opus" },
        { "a=rtcp-mux\r\n", "", "rtcp-mux is required" },
        { "a=ice-pwd:asd88fgpdd777uzjYhagZg0s\r\n", "", "ICE credentials" },
        { "a=ice-pwd:asd88fgpdd777uzjYhagZg0s", "a=ice-pwd:short", "too short" },
        { "a=fingerprint:sha-256 5d", "a=x-fingerprint:sha-256 5d", "a=fingerprint" },
        { "UDP/TLS/RTP/SAVPF", "RTP/AVP", "unencrypted" },
        { "UDP/TLS/RTP/SAVPF", "TCP/TLS/RTP/SAVPF", "unsupported audio transport" },
    };
    for (size_t i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
        const char *why = select_err(edit(chrome_offer, sel[i].from, sel[i].to));
        if (!strstr(why, sel[i].reason))
            fail_msg("case %zu: reason '%s' lacks '%s'", i, why, sel[i].reason);
    }
    /* The Opus payload type must be in the m-line's format list. */
    assert_non_null(strstr(select_err(edit(chrome_offer, "SAVPF 111 63", "SAVPF 63")), "no Opus"));
    const char *unsupported = edit(edit(sdes_offer, "a=crypto:1 AES_CM_128_HMAC_SHA1_80", "a=crypto:1 NULL_X"),
                                   "a=crypto:2 AEAD_AES_128_GCM", "a=crypto:2 F8_128_HMAC_SHA1_80");
    assert_non_null(strstr(select_err(unsupported), "no supported a=crypto suite"));
    const char *nocrypto = edit(edit(sdes_offer, "a=crypto:2 AEAD_AES_128_GCM inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9\n",
                                     ""),
                                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20\n",
                                "");
    assert_non_null(strstr(select_err(nocrypto), "a=crypto"));
    struct {
        const char *from, *to, *reason;
    } par[] = {
        { "v=0", "x=0", "must start with v=" },
        { "a=fingerprint:sha-256", "a=fingerprint:md5", "unsupported a=fingerprint hash" },
        { "5d:1e:9a", "5d:1e:9", "malformed a=fingerprint value" },
        { "a=setup:actpass", "a=setup:holdconn", "a=setup" },
        { "a=ice-ufrag:8hhY", "a=ice-ufrag:8h hY", "a=ice-ufrag" },
        { "a=mid:0", "a=mid:", "a=mid" },
        { "a=ssrc:3735928559 cname", "a=ssrc:x cname", "a=ssrc" },
        { "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host",
          "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 host", "a=candidate" },
        { "m=audio 9 UDP", "m=audio x UDP", "m-line" },
        { "t=0 0\r\n", "t=0 0\r\nBAD\r\n", "malformed SDP line" },
    };
    for (size_t i = 0; i < sizeof(par) / sizeof(par[0]); i++) {
        const char *why = parse_err(edit(chrome_offer, par[i].from, par[i].to));
        if (!strstr(why, par[i].reason))
            fail_msg("case %zu: reason '%s' lacks '%s'", i, why, par[i].reason);
    }
    assert_non_null(strstr(parse_err(edit(sdes_offer, "|2^20", "|2^20|1:4")), "MKI"));
    assert_non_null(strstr(parse_err(edit(sdes_offer, "inline:WVNf", "inline:W%Nf")), "base64"));
    assert_non_null(strstr(parse_err(edit(sdes_offer, "inline:", "uri:")), "inline"));
    assert_non_null(strstr(parse_err("v=0\r\ns=-\r\n"), "no m-line"));
    assert_non_null(strstr(parse_err(""), "empty"));
}

static void test_limits(void **state)
{
    (void)state;
    static char big[MD_SDP_MAX_LEN + 64];
    md_sdp o;
    const char *why;
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "v=0\r\n", 5);
    assert_int_equal(md_sdp_parse(big, MD_SDP_MAX_LEN + 1, &o, &why), -EINVAL);
    assert_non_null(strstr(why, "too large"));
    /* A line longer than any we accept. */
    char line[4096];
    snprintf(line, sizeof(line), "v=0\r\na=x:%03000d\r\n", 0);
    assert_non_null(strstr(parse_err(line), "too long"));
    /* NUL bytes inside. */
    char nul[] = "v=0\r\ns=a\0b\r\nm=audio 9 RTP/SAVP 0\r\n";
    assert_int_equal(md_sdp_parse(nul, sizeof(nul) - 1, &o, &why), -EINVAL);
    /* Too many m-lines. */
    char many[4096] = "v=0\r\n";
    for (int i = 0; i <= MD_SDP_MAX_MEDIA; i++)
        strcat(many, "m=audio 9 RTP/SAVP 0\r\n");
    assert_non_null(strstr(parse_err(many), "too many m-lines"));
    /* Candidates beyond the limit are ignored, not an error. */
    char cands[16384];
    snprintf(cands, sizeof(cands), "%s", chrome_offer);
    for (int i = 0; i < 40; i++) {
        char c[128];
        snprintf(c, sizeof(c), "a=candidate:%d 1 udp 1 10.0.0.%d 5000 typ host\r\n", i, i);
        strcat(cands, c);
    }
    md_sdp *p = parse_ok(cands);
    assert_int_equal(p->m[0].ncand, MD_SDP_MAX_CANDS);
}

static void test_directions(void **state)
{
    (void)state;
    assert_int_equal(md_sdp_answer_dir(MD_DIR_SENDRECV), MD_DIR_SENDRECV);
    assert_int_equal(md_sdp_answer_dir(MD_DIR_SENDONLY), MD_DIR_RECVONLY);
    assert_int_equal(md_sdp_answer_dir(MD_DIR_RECVONLY), MD_DIR_SENDONLY);
    assert_int_equal(md_sdp_answer_dir(MD_DIR_INACTIVE), MD_DIR_INACTIVE);
    assert_string_equal(md_sdp_dir_name(MD_DIR_RECVONLY), "recvonly");
}

static void test_candidates(void **state)
{
    (void)state;
    char out[MD_SDP_MAX_CAND_LEN + 1];
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 2122260223 127.0.0.1 46243 typ host", out, sizeof(out)), 0);
    assert_string_equal(out, "candidate:1 1 udp 2122260223 127.0.0.1 46243 typ host");
    assert_int_equal(md_sdp_candidate("a=candidate:2 1 UDP 1686052607 1.2.3.4 9 typ srflx raddr 10.0.0.1 rport 9",
                                      out, sizeof(out)),
                     0);
    assert_string_equal(out, "candidate:2 1 UDP 1686052607 1.2.3.4 9 typ srflx raddr 10.0.0.1 rport 9");
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 a.local 9 typ host", out, sizeof(out)), 0);
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 127.0.0.1 9 typx host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 0 udp 1 127.0.0.1 9 typ host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 127.0.0.1 70000 typ host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("cand:1 1 udp 1 127.0.0.1 9 typ host", out, sizeof(out)), -EINVAL);
    /* Numbers that wrap around to a valid value in 32 bits, signs. */
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 127.0.0.1 4294967305 typ host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 127.0.0.1 -4294901761 typ host", out, sizeof(out)),
                     -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 4294967297 udp 1 127.0.0.1 9 typ host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 99999999999 127.0.0.1 9 typ host", out, sizeof(out)), -EINVAL);
    assert_int_equal(md_sdp_candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host\x01", out, sizeof(out)), -EINVAL);
    char longc[400];
    snprintf(longc, sizeof(longc), "candidate:1 1 udp 1 127.0.0.1 9 typ host %0300d", 0);
    assert_int_equal(md_sdp_candidate(longc, out, sizeof(out)), -EINVAL);
}

static void test_base64_and_fingerprints(void **state)
{
    (void)state;
    uint8_t in[46] = { 0 }, back[64];
    char b64[80];
    for (size_t n = 0; n <= sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 37 + n);
        int el = md_b64_encode(in, n, b64, sizeof(b64));
        if (n == 0) {
            assert_int_equal(el, 0);
            continue;
        }
        assert_int_equal(el, (int)((n + 2) / 3 * 4));
        assert_int_equal(md_b64_decode(b64, back, sizeof(back)), (int)n);
        assert_memory_equal(in, back, n);
    }
    assert_int_equal(md_b64_decode("QUJD", back, sizeof(back)), 3);
    assert_memory_equal(back, "ABC", 3);
    assert_int_equal(md_b64_decode("QUI=", back, sizeof(back)), 2);
    assert_int_equal(md_b64_decode("QUI", back, sizeof(back)), -EINVAL);
    assert_int_equal(md_b64_decode("Q=I=", back, sizeof(back)), -EINVAL);
    assert_int_equal(md_b64_decode("QU!D", back, sizeof(back)), -EINVAL);
    assert_int_equal(md_b64_decode("QUJDQUJD", back, 4), -EINVAL);
    assert_int_equal(md_b64_encode(in, 30, b64, 41), 40);
    assert_int_equal(md_b64_encode(in, 30, b64, 40), -ENOSPC);
    char fp[200];
    assert_int_equal(md_sdp_fp_normalise("sha-1", "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd", fp,
                                         sizeof(fp)),
                     0);
    assert_string_equal(fp, "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD");
    assert_int_equal(md_sdp_fp_normalise("sha-256", "aa:bb", fp, sizeof(fp)), -EINVAL);
    assert_int_equal(md_sdp_fp_normalise("sha-1", "aa-bb-cc-dd-ee-ff-00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd", fp,
                                         sizeof(fp)),
                     -EINVAL);
    assert_true(md_sdp_fp_alg_supported("SHA-512"));
    assert_false(md_sdp_fp_alg_supported("md5"));
}

/* Mutated offers: whatever the input, parse and select return cleanly. */
static void test_mutations_do_not_crash(void **state)
{
    (void)state;
    char buf[sizeof(chrome_offer)];
    unsigned seed = 12345;
    md_sdp o;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, chrome_offer, sizeof(buf));
        int edits = 1 + round % 8;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (sizeof(buf) - 1);
            seed = seed * 1103515245u + 12345u;
            buf[at] = (char)(seed >> 16);
        }
        size_t len = (seed >> 4) % sizeof(buf);
        const char *why = NULL;
        if (md_sdp_parse(buf, len, &o, &why) == 0) {
            md_sdp_pick p;
            if (md_sdp_select(&o, &p, &why) == 0) {
                md_sdp_answer_params a = dtls_params(&p, NULL, 0);
                char ans[8192];
                assert_true(md_sdp_answer(&o, &a, ans, sizeof(ans)) > 0);
            }
        } else {
            assert_non_null(why);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chrome_offer_parses),
        cmocka_unit_test(test_answer_to_chrome_offer),
        cmocka_unit_test(test_other_mlines_rejected_in_order),
        cmocka_unit_test(test_sdes_offer),
        cmocka_unit_test(test_refusals_have_reasons),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_directions),
        cmocka_unit_test(test_candidates),
        cmocka_unit_test(test_base64_and_fingerprints),
        cmocka_unit_test(test_mutations_do_not_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
