/* test_wsframe.c -- the RFC 6455 framer (lib/wsframe.c), cmocka.
 *
 * Headers: every length boundary encodes in its shortest form and parses
 * back, every proper prefix of a header asks for more, non-minimal lengths,
 * a 64-bit length with its top bit, long or fragmented control frames and
 * unknown opcodes are refused (as soon as the bytes proving it are in).
 * Masking agrees with a byte-by-byte reference at every offset and length.
 * UTF-8: valid and invalid vectors, each also split at every byte. The
 * accept key of RFC 6455's example, permessage-deflate offers, and the
 * inflater on real zlib output, on a bomb and on garbage.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "wsframe.h"

/* ---- headers ---------------------------------------------------------------------- */

static const uint64_t lens[] = {
    0, 1, 125, 126, 127, 65535, 65536, 0xFFFFFFFFULL, 0x100000000ULL, 0x7FFFFFFFFFFFFFFFULL,
};

static size_t want_hlen(uint64_t len, int masked)
{
    size_t h = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    return h + (masked ? 4 : 0);
}

static void test_hdr_roundtrip(void **st)
{
    (void)st;
    static const unsigned char mask[4] = { 0x37, 0xFA, 0x21, 0x3D };
    static const unsigned ops[] = { WS_OP_CONT, WS_OP_TEXT, WS_OP_BINARY };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int m = 0; m < 2; m++)
            for (size_t oi = 0; oi < 3; oi++)
                for (int fin = 0; fin < 2; fin++)
                    for (int rsv1 = 0; rsv1 < 2; rsv1++) {
                        unsigned char b[WS_MAX_HDR + 1];
                        memset(b, 0xEE, sizeof b);
                        size_t hl = ws_encode_hdr(b, fin, ops[oi], rsv1, lens[li], m ? mask : NULL);
                        assert_int_equal(hl, want_hlen(lens[li], m));
                        assert_int_equal(b[WS_MAX_HDR], 0xEE);
                        ws_hdr h;
                        memset(&h, 0xAA, sizeof h);
                        assert_int_equal(ws_parse_hdr(b, hl, &h), (int)hl);
                        assert_int_equal(h.hlen, hl);
                        assert_true(h.len == lens[li]);
                        assert_int_equal(h.fin, (unsigned)fin);
                        assert_int_equal(h.rsv1, (unsigned)rsv1);
                        assert_int_equal(h.rsv2, 0);
                        assert_int_equal(h.rsv3, 0);
                        assert_int_equal(h.opcode, ops[oi]);
                        assert_int_equal(h.masked, (unsigned)m);
                        if (m)
                            assert_memory_equal(h.mask, mask, 4);
                        /* more bytes (the payload) do not change the answer */
                        unsigned char big[WS_MAX_HDR + 8] = { 0 };
                        memcpy(big, b, hl);
                        assert_int_equal(ws_parse_hdr(big, sizeof big, &h), (int)hl);
                        /* every proper prefix needs more */
                        for (size_t k = 0; k < hl; k++)
                            assert_int_equal(ws_parse_hdr(b, k, &h), 0);
                    }
}

static void test_hdr_bytes(void **st)
{
    (void)st;
    unsigned char b[WS_MAX_HDR];
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_TEXT, 0, 5, NULL), 2);
    assert_memory_equal(b, "\x81\x05", 2);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_BINARY, 1, 125, NULL), 2);
    assert_memory_equal(b, "\xC2\x7D", 2);
    assert_int_equal(ws_encode_hdr(b, 0, WS_OP_TEXT, 0, 126, NULL), 4);
    assert_memory_equal(b, "\x01\x7E\x00\x7E", 4);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_BINARY, 0, 65535, NULL), 4);
    assert_memory_equal(b, "\x82\x7E\xFF\xFF", 4);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_BINARY, 0, 65536, NULL), 10);
    assert_memory_equal(b, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_BINARY, 0, 0x100000000ULL, NULL), 10);
    assert_memory_equal(b, "\x82\x7F\x00\x00\x00\x01\x00\x00\x00\x00", 10);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_BINARY, 0, 0x7FFFFFFFFFFFFFFFULL, NULL), 10);
    assert_memory_equal(b, "\x82\x7F\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 10);
    static const unsigned char mask[4] = { 1, 2, 3, 4 };
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_PING, 0, 0, mask), 6);
    assert_memory_equal(b, "\x89\x80\x01\x02\x03\x04", 6);
    assert_int_equal(ws_encode_hdr(b, 1, WS_OP_TEXT, 0, 300, mask), 8);
    assert_memory_equal(b, "\x81\xFE\x01\x2C\x01\x02\x03\x04", 8);

    ws_hdr h;
    static const unsigned char rsv[] = { 0xF1, 0x00 };
    assert_int_equal(ws_parse_hdr(rsv, 2, &h), 2);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.rsv1, 1);
    assert_int_equal(h.rsv2, 1);
    assert_int_equal(h.rsv3, 1);
    static const unsigned char rsv3only[] = { 0x92, 0x00 };
    assert_int_equal(ws_parse_hdr(rsv3only, 2, &h), 2);
    assert_int_equal(h.rsv1, 0);
    assert_int_equal(h.rsv2, 0);
    assert_int_equal(h.rsv3, 1);
    assert_int_equal(h.opcode, WS_OP_BINARY);
}

static void expect_bad(const unsigned char *b, size_t n, size_t proven_at)
{
    ws_hdr h;
    for (size_t k = 0; k <= n; k++) {
        int rc = ws_parse_hdr(b, k, &h);
        if (k < proven_at)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, -EPROTO);
    }
}

static void test_hdr_nonminimal(void **st)
{
    (void)st;
    /* 16-bit lengths below 126 */
    static const unsigned char a[] = { 0x82, 0x7E, 0x00, 0x7D };
    expect_bad(a, sizeof a, 4);
    static const unsigned char a0[] = { 0x82, 0xFE, 0x00, 0x00, 1, 2, 3, 4 };
    expect_bad(a0, sizeof a0, 4);
    /* 64-bit lengths that fit 16 bits */
    static const unsigned char b[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    expect_bad(b, sizeof b, 10);
    static const unsigned char b0[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0 };
    expect_bad(b0, sizeof b0, 10);
    static const unsigned char b1[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5 };
    expect_bad(b1, sizeof b1, 10);
    /* the top bit of a 64-bit length: refused from its first byte on */
    static const unsigned char c[] = { 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    expect_bad(c, sizeof c, 3);
    static const unsigned char c1[] = { 0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4 };
    expect_bad(c1, sizeof c1, 3);
    /* the smallest lengths of each form are fine */
    ws_hdr h;
    static const unsigned char ok16[] = { 0x82, 0x7E, 0x00, 0x7E };
    assert_int_equal(ws_parse_hdr(ok16, 4, &h), 4);
    assert_true(h.len == 126);
    static const unsigned char ok64[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 };
    assert_int_equal(ws_parse_hdr(ok64, 10, &h), 10);
    assert_true(h.len == 65536);
}

static void test_hdr_control(void **st)
{
    (void)st;
    static const unsigned ctl[] = { WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG };
    for (int i = 0; i < 3; i++) {
        ws_hdr h;
        unsigned char b[WS_MAX_HDR];
        /* final, 0..125: fine, masked or not */
        size_t hl = ws_encode_hdr(b, 1, ctl[i], 0, WS_MAX_CONTROL, NULL);
        assert_int_equal(ws_parse_hdr(b, hl, &h), 2);
        assert_int_equal(h.opcode, ctl[i]);
        assert_true(h.len == 125);
        static const unsigned char mk[4] = { 9, 8, 7, 6 };
        hl = ws_encode_hdr(b, 1, ctl[i], 0, 0, mk);
        assert_int_equal(ws_parse_hdr(b, hl, &h), 6);
        /* longer than 125: refused at the length byte */
        hl = ws_encode_hdr(b, 1, ctl[i], 0, 126, NULL);
        expect_bad(b, hl, 2);
        hl = ws_encode_hdr(b, 1, ctl[i], 0, 65536, NULL);
        expect_bad(b, hl, 2);
        /* not final: refused at the first byte */
        hl = ws_encode_hdr(b, 0, ctl[i], 0, 0, NULL);
        expect_bad(b, hl, 1);
    }
}

static void test_hdr_opcodes(void **st)
{
    (void)st;
    for (unsigned op = 0; op < 16; op++) {
        unsigned char b[2] = { (unsigned char)(0x80 | op), 0x00 };
        ws_hdr h;
        int known = op <= 2 || (op >= 8 && op <= 10);
        if (known) {
            assert_int_equal(ws_parse_hdr(b, 2, &h), 2);
            assert_int_equal(h.opcode, op);
        } else {
            expect_bad(b, 2, 1);
        }
    }
}

/* ---- masking ---------------------------------------------------------------------- */

static void test_mask(void **st)
{
    (void)st;
    static const unsigned char mask[4] = { 0x37, 0xFA, 0x21, 0x3D };
    /* RFC 6455 5.7: "Hello" masked */
    unsigned char hello[5] = { 'H', 'e', 'l', 'l', 'o' };
    ws_mask(hello, 5, mask, 0);
    assert_memory_equal(hello, "\x7f\x9f\x4d\x51\x58", 5);

    static const uint64_t offs[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x100000003ULL, 0xFFFFFFFFFFFFFFFEULL };
    for (size_t oi = 0; oi < sizeof offs / sizeof offs[0]; oi++)
        for (size_t n = 0; n <= 17; n++) {
            unsigned char buf[32], ref[32];
            for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = ref[i] = (unsigned char)(i * 29 + 7);
            for (size_t i = 0; i < n; i++)
                ref[i] ^= mask[(offs[oi] + i) & 3];
            ws_mask(buf, n, mask, offs[oi]);
            assert_memory_equal(buf, ref, sizeof buf); /* nothing past n touched */
            /* in two pieces at every split point */
            for (size_t k = 0; k <= n; k++) {
                unsigned char two[32];
                for (size_t i = 0; i < sizeof two; i++)
                    two[i] = (unsigned char)(i * 29 + 7);
                ws_mask(two, k, mask, offs[oi]);
                ws_mask(two + k, n - k, mask, offs[oi] + k);
                assert_memory_equal(two, ref, sizeof two);
            }
        }
    /* unaligned start, long run */
    unsigned char big[1003], ref[1003];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = ref[i] = (unsigned char)(i ^ 0x5A);
    for (size_t i = 3; i < sizeof ref; i++)
        ref[i] ^= mask[(i - 3 + 6) & 3];
    ws_mask(big + 3, sizeof big - 3, mask, 6);
    assert_memory_equal(big, ref, sizeof big);
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

typedef struct u8v {
    const char *s;
    size_t n;
} u8v;
#define V(lit) { lit, sizeof(lit) - 1 }

static const u8v u8_valid[] = {
    V(""),
    V("hello, world: plain ASCII past eight bytes"),
    V("\x7F\x00\x01"),
    V("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), /* κόσμε */
    V("\xC2\x80"),                                     /* U+0080 */
    V("\xDF\xBF"),                                     /* U+07FF */
    V("\xE0\xA0\x80"),                                 /* U+0800 */
    V("\xED\x9F\xBF"),                                 /* U+D7FF */
    V("\xEE\x80\x80"),                                 /* U+E000 */
    V("\xEF\xBF\xBF"),                                 /* U+FFFF */
    V("\xEF\xBB\xBF"),                                 /* BOM */
    V("\xF0\x90\x80\x80"),                             /* U+10000 */
    V("\xF1\x80\x80\x80"),
    V("\xF3\xBF\xBF\xBF"),
    V("\xF4\x8F\xBF\xBF"), /* U+10FFFF */
    V("abcdefgh\xF0\x9F\x98\x80ijklmnopq\xE2\x82\xAC"),
};

static const u8v u8_invalid[] = {
    V("\x80"),
    V("\xBF"),
    V("abcdefghijklmnop\xFF"),
    V("\xC0\x80"),             /* overlong NUL */
    V("\xC1\xBF"),             /* overlong 2-byte */
    V("\xE0\x80\x80"),         /* overlong 3-byte */
    V("\xE0\x9F\xBF"),         /* overlong U+07FF */
    V("\xF0\x80\x80\x80"),     /* overlong 4-byte */
    V("\xF0\x8F\xBF\xBF"),     /* overlong U+FFFF */
    V("\xED\xA0\x80"),         /* U+D800 */
    V("\xED\xAD\xBF"),         /* U+DB7F */
    V("\xED\xB0\x80"),         /* U+DC00 */
    V("\xED\xBF\xBF"),         /* U+DFFF */
    V("\xED\xA0\x80\xED\xB0\x80"), /* a surrogate pair */
    V("\xF4\x90\x80\x80"),     /* U+110000 */
    V("\xF4\xBF\xBF\xBF"),
    V("\xF5\x80\x80\x80"),
    V("\xF8\x88\x80\x80\x80"),
    V("\xFC\x84\x80\x80\x80\x80"),
    V("\xFE"),
    V("\xFF"),
    V("\xC2\x41"),             /* a lead without its continuation */
    V("\xE2\x82\x41"),
    V("\xF0\x9F\x98\x41"),
    V("\xC2\xC2\x80"),
    V("\xE2\x82\xAC\xAC"),     /* one continuation too many */
};

/* a valid prefix, incomplete at the end */
static const u8v u8_truncated[] = {
    V("\xC2"), V("\xE2\x82"), V("\xE0"), V("\xE0\xA0"), V("\xED\x9F"),
    V("\xF0"), V("\xF0\x9F"), V("\xF0\x9F\x98"), V("\xF4\x8F\xBF"), V("abc\xCE"),
};

/* Feeds s in pieces of the cuts (sorted, within n); -1 as soon as a piece
 * fails. */
static int u8_split(const u8v *v, size_t cut1, size_t cut2)
{
    const unsigned char *p = (const unsigned char *)v->s;
    int st = ws_utf8_step(0, p, cut1);
    if (st < 0)
        return st;
    st = ws_utf8_step(st, p + cut1, cut2 - cut1);
    if (st < 0)
        return st;
    return ws_utf8_step(st, p + cut2, v->n - cut2);
}

static int u8_bytewise(const u8v *v)
{
    int st = 0;
    for (size_t i = 0; i < v->n && st >= 0; i++)
        st = ws_utf8_step(st, (const unsigned char *)v->s + i, 1);
    return st;
}

static void test_utf8(void **st0)
{
    (void)st0;
    for (size_t i = 0; i < sizeof u8_valid / sizeof u8_valid[0]; i++) {
        const u8v *v = &u8_valid[i];
        if (ws_utf8_step(0, (const unsigned char *)v->s, v->n) != 0)
            fail_msg("valid vector %zu refused", i);
        assert_int_equal(u8_bytewise(v), 0);
        for (size_t a = 0; a <= v->n; a++)
            for (size_t b = a; b <= v->n; b++)
                if (u8_split(v, a, b) != 0)
                    fail_msg("valid vector %zu refused split at %zu,%zu", i, a, b);
    }
    for (size_t i = 0; i < sizeof u8_invalid / sizeof u8_invalid[0]; i++) {
        const u8v *v = &u8_invalid[i];
        if (ws_utf8_step(0, (const unsigned char *)v->s, v->n) != -1)
            fail_msg("invalid vector %zu accepted", i);
        assert_int_equal(u8_bytewise(v), -1);
        for (size_t a = 0; a <= v->n; a++)
            for (size_t b = a; b <= v->n; b++)
                if (u8_split(v, a, b) != -1)
                    fail_msg("invalid vector %zu accepted split at %zu,%zu", i, a, b);
    }
    for (size_t i = 0; i < sizeof u8_truncated / sizeof u8_truncated[0]; i++) {
        const u8v *v = &u8_truncated[i];
        if (ws_utf8_step(0, (const unsigned char *)v->s, v->n) <= 0)
            fail_msg("truncated vector %zu not pending", i);
        assert_true(u8_bytewise(v) > 0);
        for (size_t a = 0; a <= v->n; a++)
            assert_true(u8_split(v, a, v->n) > 0);
    }
    /* a failed state stays failed */
    assert_int_equal(ws_utf8_step(-1, (const unsigned char *)"a", 1), -1);
    assert_int_equal(ws_utf8_step(-1, NULL, 0), -1);
    /* a pending state with no bytes stays pending */
    int s = ws_utf8_step(0, (const unsigned char *)"\xE2", 1);
    assert_true(s > 0);
    assert_int_equal(ws_utf8_step(s, NULL, 0), s);
    /* every code point, encoded by hand, is accepted; ws_utf8_step and this
     * encoder agree on the surrogate gap */
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x3000 ? 1 : 97)) {
        unsigned char e[4];
        size_t n;
        if (cp < 0x80) {
            e[0] = (unsigned char)cp;
            n = 1;
        } else if (cp < 0x800) {
            e[0] = (unsigned char)(0xC0 | cp >> 6);
            e[1] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            e[0] = (unsigned char)(0xE0 | cp >> 12);
            e[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            e[2] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            e[0] = (unsigned char)(0xF0 | cp >> 18);
            e[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
            e[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            e[3] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 4;
        }
        int want = (cp >= 0xD800 && cp <= 0xDFFF) ? -1 : 0;
        if (ws_utf8_step(0, e, n) != want)
            fail_msg("U+%04X: got %d want %d", (unsigned)cp, ws_utf8_step(0, e, n), want);
    }
    for (uint32_t cp = 0xD800; cp <= 0xDFFF; cp++) {
        unsigned char e[3] = { (unsigned char)(0xE0 | cp >> 12), (unsigned char)(0x80 | (cp >> 6 & 0x3F)),
                               (unsigned char)(0x80 | (cp & 0x3F)) };
        assert_int_equal(ws_utf8_step(0, e, 3), -1);
    }
}

/* ---- accept key ------------------------------------------------------------------- */

static void test_accept(void **st)
{
    (void)st;
    char out[29];
    memset(out, 'x', sizeof out);
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", out), 0);
    assert_int_equal(strlen(out), 28);
    assert_string_not_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",        /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===",      /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ",         /* no padding */
        "dGhlIHNhbXBsZSBub25jZQAA",       /* 18 bytes, no padding */
        "dGhlIHNhbXBsZSBub25jZR==",       /* bits in the padding */
        "dGhlIHNhbXBsZSBub25j*Q==",       /* not base64 */
        "dGhlIHNhbXBsZSBub25jZ\x00==",
        " dGhlIHNhbXBsZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub2=jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ws_accept_key(bad[i], out) != -EINVAL)
            fail_msg("bad key %zu accepted", i);
    assert_int_equal(ws_accept_key(NULL, out), -EINVAL);
}

/* ---- permessage-deflate negotiation ------------------------------------------------ */

#define PMD_PLAIN "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

static void neg(const char *offer, int want, const char *want_resp)
{
    char resp[256];
    memset(resp, 'x', sizeof resp);
    int rc = ws_pmd_negotiate(offer, resp, sizeof resp);
    if (rc != want)
        fail_msg("offer [%s]: got %d want %d", offer ? offer : "(null)", rc, want);
    if (want == 1 && strcmp(resp, want_resp) != 0)
        fail_msg("offer [%s]: answered [%s] want [%s]", offer, resp, want_resp);
}

static void test_pmd(void **st)
{
    (void)st;
    neg(NULL, 0, NULL);
    neg("", 0, NULL);
    neg("x-webkit-deflate-frame", 0, NULL);
    neg("permessage-deflate-x", 0, NULL);
    neg("permessage-deflate", 1, PMD_PLAIN);
    neg("  permessage-deflate  ", 1, PMD_PLAIN);
    neg(",, permessage-deflate ,", 1, PMD_PLAIN);
    /* Chrome and Firefox */
    neg("permessage-deflate; client_max_window_bits", 1, PMD_PLAIN);
    neg("permessage-deflate;client_max_window_bits", 1, PMD_PLAIN);
    neg("permessage-deflate\t;\tclient_max_window_bits=15", 1, PMD_PLAIN);
    neg("permessage-deflate; client_max_window_bits=8", 1, PMD_PLAIN);
    neg("permessage-deflate; client_max_window_bits=\"10\"", 1, PMD_PLAIN);
    neg("permessage-deflate; client_no_context_takeover; server_no_context_takeover", 1, PMD_PLAIN);
    neg("permessage-deflate; server_max_window_bits=10", 1, PMD_PLAIN "; server_max_window_bits=10");
    neg("permessage-deflate; server_max_window_bits=8; client_max_window_bits", 1,
        PMD_PLAIN "; server_max_window_bits=8");
    neg("permessage-deflate; server_max_window_bits=\"15\"", 1, PMD_PLAIN "; server_max_window_bits=15");
    /* malformed window sizes */
    neg("permessage-deflate; client_max_window_bits=7", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=16", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=010", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=\"\"", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=1a", 0, NULL);
    neg("permessage-deflate; server_max_window_bits", 0, NULL);
    neg("permessage-deflate; server_max_window_bits=9999999999999999999", 0, NULL);
    /* values where none belongs, unknown and duplicate parameters */
    neg("permessage-deflate; server_no_context_takeover=1", 0, NULL);
    neg("permessage-deflate; client_no_context_takeover=\"\"", 0, NULL);
    neg("permessage-deflate; foo", 0, NULL);
    neg("permessage-deflate; foo=1", 0, NULL);
    neg("permessage-deflate; client_no_context_takeover; client_no_context_takeover", 0, NULL);
    neg("permessage-deflate; client_max_window_bits; client_max_window_bits=10", 0, NULL);
    neg("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", 0, NULL);
    /* syntax */
    neg("permessage-deflate;", 0, NULL);
    neg("permessage-deflate; =3", 0, NULL);
    neg("permessage-deflate junk", 0, NULL);
    neg("permessage-deflate; server_max_window_bits=\"10", 0, NULL);
    neg("permessage-deflate; server_max_window_bits=10 11", 0, NULL);
    neg("permessage-deflate; client_max_window_bits=\x01", 0, NULL);
    /* the first acceptable offer wins */
    neg("permessage-deflate; foo, permessage-deflate", 1, PMD_PLAIN);
    neg("permessage-deflate; server_max_window_bits=9, permessage-deflate", 1,
        PMD_PLAIN "; server_max_window_bits=9");
    neg("permessage-deflate, permessage-deflate; server_max_window_bits=9", 1, PMD_PLAIN);
    neg("permessage-deflate; server_max_window_bits=\"1,5\", permessage-deflate; server_max_window_bits=12", 1,
        PMD_PLAIN "; server_max_window_bits=12");
    neg("foo; bar=\"a,b;c\", permessage-deflate; client_max_window_bits", 1, PMD_PLAIN);
    neg("foo; bar=\"a,\\\"b\", permessage-deflate", 1, PMD_PLAIN);
    neg("permessage-deflate; x=\"unterminated, permessage-deflate", 0, NULL);
    /* a quoted string where no value belongs is still skipped whole */
    neg("foo\"a,b\", permessage-deflate", 1, PMD_PLAIN);
    neg("foo\"a, permessage-deflate", 0, NULL);
    /* the answer does not fit */
    char small[20];
    assert_int_equal(ws_pmd_negotiate("permessage-deflate", small, sizeof small), -ENOSPC);
    char exact[sizeof PMD_PLAIN];
    assert_int_equal(ws_pmd_negotiate("permessage-deflate", exact, sizeof exact), 1);
    assert_string_equal(exact, PMD_PLAIN);
    assert_int_equal(ws_pmd_negotiate("permessage-deflate", exact, sizeof exact - 1), -ENOSPC);
}

/* ---- inflater ---------------------------------------------------------------------- */

/* Compresses in as one message the way a client does (raw deflate, sync
 * flush, the 00 00 ff ff tail dropped); with final, a BFINAL block instead. */
static size_t compress_msg(const unsigned char *in, size_t n, unsigned char *out, size_t cap, int final)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int r = deflate(&zs, final ? Z_FINISH : Z_SYNC_FLUSH);
    assert_true(r == Z_OK || r == Z_STREAM_END);
    assert_int_equal(zs.avail_in, 0);
    size_t len = cap - zs.avail_out;
    deflateEnd(&zs);
    if (!final) {
        assert_true(len >= 4);
        assert_memory_equal(out + len - 4, "\x00\x00\xff\xff", 4);
        len -= 4;
    }
    return len;
}

static void test_inflate_real(void **st)
{
    (void)st;
    ws_inflater *z = ws_inflater_new();
    assert_non_null(z);
    static unsigned char msg[20000], comp[30000], out[20001];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (unsigned char)("{\"type\":\"publish\",\"room\":\"lobby\",\"data\":"[i % 40] + (i / 997) % 3);
    for (int final = 0; final < 2; final++) {
        size_t cl = compress_msg(msg, sizeof msg, comp, sizeof comp, final);
        assert_true(cl < sizeof msg / 4);
        memset(out, 0, sizeof out);
        assert_int_equal(ws_inflate(z, comp, cl, out, sizeof out), (long)sizeof msg);
        assert_memory_equal(out, msg, sizeof msg);
        /* exactly cap fits, one byte less does not */
        assert_int_equal(ws_inflate(z, comp, cl, out, sizeof msg), (long)sizeof msg);
        assert_memory_equal(out, msg, sizeof msg);
        assert_int_equal(ws_inflate(z, comp, cl, out, sizeof msg - 1), -EMSGSIZE);
    }
    /* messages are independent: a second one after a failed one */
    static const char hi[] = "hello, hello, hello, hello";
    size_t cl = compress_msg((const unsigned char *)hi, sizeof hi - 1, comp, sizeof comp, 0);
    assert_int_equal(ws_inflate(z, (const unsigned char *)"\xff\xff\xff", 3, out, sizeof out), -EPROTO);
    assert_int_equal(ws_inflate(z, comp, cl, out, sizeof out), (long)(sizeof hi - 1));
    assert_memory_equal(out, hi, sizeof hi - 1);
    assert_int_equal(ws_inflate(z, comp, cl, out, sizeof out), (long)(sizeof hi - 1));
    /* an empty message, compressed (one byte 00), and an empty payload */
    cl = compress_msg((const unsigned char *)"", 0, comp, sizeof comp, 0);
    assert_int_equal(cl, 1);
    assert_int_equal(comp[0], 0);
    assert_int_equal(ws_inflate(z, comp, cl, out, sizeof out), 0);
    assert_int_equal(ws_inflate(z, comp, 0, out, sizeof out), 0);
    assert_int_equal(ws_inflate(z, comp, 0, out, 0), 0);
    /* the tail sent too: the appended one is then a stored block cut short */
    cl = compress_msg((const unsigned char *)hi, sizeof hi - 1, comp, sizeof comp, 0);
    memcpy(comp + cl, "\x00\x00\xff\xff", 4);
    assert_int_equal(ws_inflate(z, comp, cl + 4, out, sizeof out), -EPROTO);
    /* the message without its last byte (the sync flush's block header) */
    assert_int_equal(ws_inflate(z, comp, cl - 1, out, sizeof out), -EPROTO);
    /* bytes after a final block */
    cl = compress_msg((const unsigned char *)hi, sizeof hi - 1, comp, sizeof comp, 1);
    comp[cl] = 0x42;
    assert_int_equal(ws_inflate(z, comp, cl + 1, out, sizeof out), -EPROTO);
    ws_inflater_free(z);
    ws_inflater_free(NULL);
}

static void test_inflate_bomb(void **st)
{
    (void)st;
    ws_inflater *z = ws_inflater_new();
    assert_non_null(z);
    const size_t big = 1u << 20, cap = 64u << 10;
    unsigned char *zeros = calloc(1, big);
    unsigned char *comp = malloc(big);
    unsigned char *out = malloc(cap + 64);
    assert_non_null(zeros);
    assert_non_null(comp);
    assert_non_null(out);
    for (int final = 0; final < 2; final++) {
        size_t cl = compress_msg(zeros, big, comp, big, final);
        assert_true(cl < 2048);
        memset(out, 0xA5, cap + 64);
        assert_int_equal(ws_inflate(z, comp, cl, out, cap), -EMSGSIZE);
        for (size_t i = cap; i < cap + 64; i++)
            assert_int_equal(out[i], 0xA5); /* nothing written past cap */
        /* with room for it all, the same message inflates */
        unsigned char *all = malloc(big);
        assert_non_null(all);
        assert_int_equal(ws_inflate(z, comp, cl, all, big), (long)big);
        assert_memory_equal(all, zeros, big);
        free(all);
    }
    free(zeros);
    free(comp);
    free(out);
    ws_inflater_free(z);
}

static void test_inflate_garbage(void **st)
{
    (void)st;
    ws_inflater *z = ws_inflater_new();
    assert_non_null(z);
    unsigned char out[4096];
    /* reserved block type 3 */
    assert_int_equal(ws_inflate(z, (const unsigned char *)"\x07", 1, out, sizeof out), -EPROTO);
    assert_int_equal(ws_inflate(z, (const unsigned char *)"\xff\xff\xff\xff", 4, out, sizeof out), -EPROTO);
    /* a stored block whose length and complement disagree */
    assert_int_equal(ws_inflate(z, (const unsigned char *)"\x00\x05\x00\x00\x00", 5, out, sizeof out), -EPROTO);
    /* a stored block announcing 5 bytes and carrying 2 */
    assert_int_equal(ws_inflate(z, (const unsigned char *)"\x00\x05\x00\xfa\xff" "ab", 7, out, sizeof out),
                     -EPROTO);
    /* pseudo-random bytes: never more than cap, mostly refused */
    unsigned seed = 12345;
    int refused = 0;
    for (int t = 0; t < 200; t++) {
        unsigned char g[64];
        for (size_t i = 0; i < sizeof g; i++) {
            seed = seed * 1103515245u + 12345u;
            g[i] = (unsigned char)(seed >> 16);
        }
        long r = ws_inflate(z, g, sizeof g, out, sizeof out);
        assert_true(r == -EPROTO || r == -EMSGSIZE || (r >= 0 && r <= (long)sizeof out));
        refused += r == -EPROTO;
    }
    assert_true(refused > 150);
    /* a real message cut short: refused or a prefix of the message */
    static const char text[] = "The quick brown fox jumps over the lazy dog, again and again and again.";
    unsigned char comp[256];
    size_t cl = compress_msg((const unsigned char *)text, sizeof text - 1, comp, sizeof comp, 0);
    for (size_t k = 1; k < cl; k++) {
        long r = ws_inflate(z, comp, k, out, sizeof out);
        assert_true(r == -EPROTO || (r >= 0 && r < (long)sizeof text - 1 && !memcmp(out, text, (size_t)r)));
    }
    ws_inflater_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_roundtrip), cmocka_unit_test(test_hdr_bytes),
        cmocka_unit_test(test_hdr_nonminimal), cmocka_unit_test(test_hdr_control),
        cmocka_unit_test(test_hdr_opcodes),   cmocka_unit_test(test_mask),
        cmocka_unit_test(test_utf8),          cmocka_unit_test(test_accept),
        cmocka_unit_test(test_pmd),           cmocka_unit_test(test_inflate_real),
        cmocka_unit_test(test_inflate_bomb),  cmocka_unit_test(test_inflate_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
