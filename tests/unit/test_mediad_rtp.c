/* test_mediad_rtp.c -- mediad's RTP/RTCP helpers and the per-listener
 * switching context (mediad/md_rtp.c, compiled in: it is pure C).
 *
 * The switching context is what makes talker changes seamless for a
 * listener: one SSRC, sequence numbers that continue by one across a
 * change, timestamps that advance by the wall time that passed, the marker
 * bit on the first packet of each source, and reordered packets mapped
 * without disturbing the next switch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mediad/md_rtp.c"

static void test_classify(void **state)
{
    (void)state;
    uint8_t dtls[13] = { 22, 0xfe, 0xfd };
    uint8_t stun[20] = { 0x00, 0x01 };
    uint8_t rtp[12] = { 0x80, 111 };
    uint8_t rtp_m[12] = { 0x80, 0x80 | 111 };
    uint8_t sr[8] = { 0x80, 200 };
    uint8_t rr[8] = { 0x81, 201 };
    uint8_t short_rtp[8] = { 0x80, 111 };
    assert_int_equal(md_rtp_classify(dtls, sizeof(dtls)), MD_PKT_DTLS);
    assert_int_equal(md_rtp_classify(stun, sizeof(stun)), MD_PKT_OTHER);
    assert_int_equal(md_rtp_classify(rtp, sizeof(rtp)), MD_PKT_RTP);
    assert_int_equal(md_rtp_classify(rtp_m, sizeof(rtp_m)), MD_PKT_RTP);
    assert_int_equal(md_rtp_classify(sr, sizeof(sr)), MD_PKT_RTCP);
    assert_int_equal(md_rtp_classify(rr, sizeof(rr)), MD_PKT_RTCP);
    assert_int_equal(md_rtp_classify(short_rtp, sizeof(short_rtp)), MD_PKT_OTHER);
    assert_int_equal(md_rtp_classify(rtp, 0), MD_PKT_OTHER);
}

static void test_parse(void **state)
{
    (void)state;
    md_rtp_hdr h;
    uint8_t p[64] = { 0x80, 0x80 | 96, 0x12, 0x34, 0, 0, 0x03, 0xc0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3 };
    assert_int_equal(md_rtp_parse(p, 15, &h), 0);
    assert_int_equal(h.marker, 1);
    assert_int_equal(h.pt, 96);
    assert_int_equal(h.seq, 0x1234);
    assert_int_equal(h.ts, 960);
    assert_int_equal(h.ssrc, 0xdeadbeef);
    assert_int_equal(h.hdr_len, 12);
    assert_int_equal(h.payload_len, 3);
    /* Two CSRCs, a one-word extension and two bytes of padding. */
    uint8_t q[64] = { 0xb2, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9 };
    size_t off = 12 + 8;
    q[off + 2] = 0;
    q[off + 3] = 1;
    off += 8;
    q[off] = 0xaa;
    q[off + 1] = 0xbb;
    q[off + 2] = 0;
    q[off + 3] = 2;
    assert_int_equal(md_rtp_parse(q, off + 4, &h), 0);
    assert_int_equal(h.hdr_len, 28);
    assert_int_equal(h.payload_len, 2);
    /* Malformed: version, CSRC count past the end, extension past the end,
     * padding longer than the packet. */
    uint8_t bad[16] = { 0x40, 111 };
    assert_int_equal(md_rtp_parse(bad, 16, &h), -EINVAL);
    bad[0] = 0x8f;
    assert_int_equal(md_rtp_parse(bad, 16, &h), -EINVAL);
    bad[0] = 0x90;
    bad[14] = 0xff;
    assert_int_equal(md_rtp_parse(bad, 16, &h), -EINVAL);
    bad[0] = 0xa0;
    bad[15] = 200;
    assert_int_equal(md_rtp_parse(bad, 16, &h), -EINVAL);
    bad[15] = 0;
    assert_int_equal(md_rtp_parse(bad, 16, &h), -EINVAL);
    assert_int_equal(md_rtp_parse(bad, 11, &h), -EINVAL);
}

static void map(md_rw *rw, uint64_t src, uint16_t seq, uint32_t ts, uint64_t now, uint16_t *os, uint32_t *ot, int *m)
{
    md_rw_map(rw, src, seq, ts, now, os, ot, m);
}

static void test_switching_context(void **state)
{
    (void)state;
    md_rw rw;
    uint16_t s;
    uint32_t t;
    int m;
    md_rw_init(&rw, 65534, 4000000000u);
    /* Source A from its own random base. */
    map(&rw, 1, 1000, 50000, 100, &s, &t, &m);
    assert_int_equal(s, 65534);
    assert_int_equal(t, 4000000000u);
    assert_int_equal(m, 1);
    map(&rw, 1, 1001, 50960, 120, &s, &t, &m);
    assert_int_equal(s, 65535);
    assert_int_equal(t, 4000000960u);
    assert_int_equal(m, 0);
    map(&rw, 1, 1002, 51920, 140, &s, &t, &m);
    assert_int_equal(s, 0);        /* wraps */
    assert_int_equal(t, 4000001920u);
    /* A reordered older packet maps back without moving "last". */
    map(&rw, 1, 1000, 50000, 145, &s, &t, &m);
    assert_int_equal(s, 65534);
    assert_int_equal(rw.last_seq, 0);
    /* Source B, 500 ms after A's last packet: seq + 1, ts + 500 ms * 48. */
    map(&rw, 2, 7, 123, 640, &s, &t, &m);
    assert_int_equal(s, 1);
    assert_int_equal(t, 4000001920u + 500 * 48);
    assert_int_equal(m, 1);
    map(&rw, 2, 8, 123 + 960, 660, &s, &t, &m);
    assert_int_equal(s, 2);
    assert_int_equal(t, 4000001920u + 500 * 48 + 960);
    assert_int_equal(m, 0);
    /* Back to A at once: at least one 20 ms frame of timestamp. */
    map(&rw, 1, 1003, 52880, 660, &s, &t, &m);
    assert_int_equal(s, 3);
    assert_int_equal(t, 4000001920u + 500 * 48 + 960 + 960);
    assert_int_equal(m, 1);
    /* Timestamp wrap on the source side stays continuous on ours. */
    md_rw_init(&rw, 10, 0);
    map(&rw, 5, 1, 0xfffffc40u, 0, &s, &t, &m);
    map(&rw, 5, 2, 0x00000000u, 20, &s, &t, &m);
    assert_int_equal(s, 11);
    assert_int_equal(t, 960);
    /* A silence of 13 hours (2^31 ticks would read as a step back): the
     * timestamp advances by MD_RW_MAX_ADVANCE; found by fuzz_rtp. */
    md_rw_init(&rw, 10, 1000);
    map(&rw, 1, 1, 1, 0, &s, &t, &m);
    map(&rw, 2, 1, 1, 13ull * 3600 * 1000, &s, &t, &m);
    assert_int_equal(m, 1);
    assert_int_equal(t, 1000 + MD_RW_MAX_ADVANCE);
    assert_true((int32_t)(t - 1000) > 0);
}

static void test_build_and_reports(void **state)
{
    (void)state;
    uint8_t out[64];
    const uint8_t pl[3] = { 9, 8, 7 };
    int n = md_rtp_build(out, sizeof(out), 1, 111, 0xabcd, 0x01020304, 0x0a0b0c0d, pl, 3);
    assert_int_equal(n, 15);
    md_rtp_hdr h;
    assert_int_equal(md_rtp_parse(out, (size_t)n, &h), 0);
    assert_int_equal(h.marker, 1);
    assert_int_equal(h.pt, 111);
    assert_int_equal(h.seq, 0xabcd);
    assert_int_equal(h.ts, 0x01020304);
    assert_int_equal(h.ssrc, 0x0a0b0c0d);
    assert_memory_equal(out + 12, pl, 3);
    assert_int_equal(md_rtp_build(out, 14, 0, 111, 1, 1, 1, pl, 3), -ENOSPC);
    uint8_t r[256];
    n = md_rtcp_sr(r, sizeof(r), 77, 1700000000123ull, 5000, 10, 1000, "cname");
    assert_true(n > 28);
    assert_int_equal(n % 4, 0);
    assert_int_equal(md_rtp_classify(r, (size_t)n), MD_PKT_RTCP);
    assert_int_equal(r[1], 200);
    assert_int_equal((r[2] << 8 | r[3]) + 1, 7);              /* SR length in words - 1 */
    size_t sdes_at = 28;
    assert_int_equal(r[sdes_at + 1], 202);
    assert_int_equal(((r[sdes_at + 2] << 8 | r[sdes_at + 3]) + 1) * 4, n - 28);
    /* NTP seconds since 1900. */
    uint32_t secs = (uint32_t)r[8] << 24 | (uint32_t)r[9] << 16 | (uint32_t)r[10] << 8 | r[11];
    assert_int_equal(secs, 1700000000u + 2208988800u);
    n = md_rtcp_rr(r, sizeof(r), 1, 2, 70000, "c");
    assert_true(n > 32);
    assert_int_equal(n % 4, 0);
    assert_int_equal(r[1], 201);
    assert_int_equal(r[0] & 0x1f, 1);
    assert_int_equal(md_rtcp_sr(r, 20, 1, 1, 1, 1, 1, "c"), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_switching_context),
        cmocka_unit_test(test_build_and_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
