/* fuzz_sdp.c -- libFuzzer target for mediad's SDP offer parser (mediad/md_sdp.c),
 * the one piece of mediad that reads text a client wrote.
 *
 * The module is pure C and is compiled in here. Beyond "no crash, no leak":
 * a parsed offer that mediad would accept gets an answer, and that answer
 * must itself parse and select the same Opus payload type and keying (what
 * a client does with it). The same bytes also go through the trickled
 * candidate check and the base64 decoder.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mediad/md_sdp.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_sdp: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#define FP "5D:1E:9A:27:2B:8C:0E:7F:66:41:A8:CB:03:2D:90:11:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"

static md_sdp offer, back;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    if (md_sdp_parse((const char *)data, size, &offer, &why) < 0) {
        CHECK(why != NULL);
    } else {
        md_sdp_pick p;
        if (md_sdp_select(&offer, &p, &why) == 0) {
            const char *cands[] = { "candidate:1 1 UDP 2015363327 127.0.0.1 10004 typ host" };
            md_sdp_answer_params a = {
                .sess_id = 1, .sess_version = 2, .pick = &p, .ufrag = "UFRG", .pwd = "0123456789012345678901",
                .fp_alg = "sha-256", .fp = FP, .setup = MD_SETUP_PASSIVE, .crypto_tag = p.crypto ? p.crypto->tag : 0,
                .crypto_suite = p.crypto ? p.crypto->suite : "", .crypto_key = "S0VZS0VZ",
                .dir = md_sdp_answer_dir(offer.m[p.index].dir), .ssrc = 7, .cname = "c", .msid_stream = "s",
                .msid_track = "t", .cands = cands, .ncands = 1,
            };
            static char ans[16384];
            int n = md_sdp_answer(&offer, &a, ans, sizeof(ans));
            if (n > 0) {
                CHECK((size_t)n == strlen(ans));
                CHECK(md_sdp_parse(ans, (size_t)n, &back, &why) == 0);
                CHECK(back.nmedia == offer.nmedia);
                CHECK(back.m[p.index].opus_pt == offer.m[p.index].opus_pt);
                CHECK(back.m[p.index].ncand == 1);
            }
        } else {
            CHECK(why != NULL);
        }
    }
    char s[512], out[MD_SDP_MAX_CAND_LEN + 1];
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    memcpy(s, data, n);
    s[n] = 0;
    if (md_sdp_candidate(s, out, sizeof(out)) == 0)
        CHECK(strncmp(out, "candidate:", 10) == 0);
    uint8_t key[64];
    int k = md_b64_decode(s, key, sizeof(key));
    CHECK(k <= (int)sizeof(key));
    return 0;
}
