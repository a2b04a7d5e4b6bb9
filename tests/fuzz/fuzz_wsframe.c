/* fuzz_wsframe.c -- libFuzzer target for the RFC 6455 framer (lib/wsframe.c).
 *
 * The first byte picks what the rest is:
 *
 *  - even: a stream of frames as a server reads it. Each header that parses
 *    is re-encoded and must give the same bytes (lengths are always in their
 *    shortest form); its payload is unmasked in two pieces at a point the
 *    input chooses and must equal unmasking it whole, and masking again
 *    gives back the wire bytes. Data frames are assembled into messages (a
 *    continuation without a start, or a start inside a message, ends the
 *    stream, as it closes a connection); a text message is validated with
 *    ws_utf8_step fragment by fragment and the answer must equal a plain
 *    reference decoder's on the whole message; a message with RSV1 is
 *    inflated with a 64 KiB cap and must stay within it, and an inflated text
 *    message is validated the same way.
 *  - odd: a Sec-WebSocket-Extensions value for ws_pmd_negotiate (an accepted
 *    offer's answer starts with both no_context_takeover parameters and,
 *    offered back, is accepted with the same answer), then the same bytes as
 *    a Sec-WebSocket-Key (only a 24-character key may be accepted, and then
 *    the answer is 28 base64 characters).
 *
 * Anything broken abort()s; ASan/UBSan/LeakSanitizer do the rest.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_MAX (256u << 10)
#define INFLATE_CAP (64u << 10)

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_wsframe: %s\n", what);
        abort();
    }
}

/* A plain UTF-8 decoder: 1 when p[0..n) is valid. */
static int utf8_ref(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static ws_inflater *inflater;
static unsigned char msg[MSG_MAX], inflated[INFLATE_CAP + 16];

static void frames(const uint8_t *data, size_t size)
{
    size_t off = 0, mlen = 0;
    int in_msg = 0, text = 0, compressed = 0, ust = 0;
    while (off < size) {
        ws_hdr h;
        int rc = ws_parse_hdr(data + off, size - off, &h);
        if (rc <= 0)
            return;
        check((size_t)rc == h.hlen && h.hlen <= WS_MAX_HDR, "header length");
        check(h.opcode <= WS_OP_BINARY || (h.opcode >= WS_OP_CLOSE && h.opcode <= WS_OP_PONG), "opcode");
        unsigned char enc[WS_MAX_HDR];
        size_t el = ws_encode_hdr(enc, (int)h.fin, h.opcode, (int)h.rsv1, h.len, h.masked ? h.mask : NULL);
        unsigned char wire0 = data[off] & (unsigned char)~0x30; /* RSV2/3: not encodable */
        check(el == h.hlen && enc[0] == wire0 && !memcmp(enc + 1, data + off + 1, el - 1), "re-encoding");
        if (h.opcode >= WS_OP_CLOSE)
            check(h.fin && h.len <= WS_MAX_CONTROL, "control frame");
        off += h.hlen;
        size_t plen = h.len < size - off ? (size_t)h.len : size - off;
        int whole = plen == h.len;
        unsigned char *pl = malloc(plen ? plen : 1);
        unsigned char *ref = malloc(plen ? plen : 1);
        check(pl && ref, "malloc");
        memcpy(pl, data + off, plen);
        memcpy(ref, data + off, plen);
        if (h.masked) {
            size_t cut = plen ? data[off] % (plen + 1) : 0;
            ws_mask(pl, cut, h.mask, 0);
            ws_mask(pl + cut, plen - cut, h.mask, cut);
            ws_mask(ref, plen, h.mask, 0);
            check(!memcmp(pl, ref, plen), "split unmasking");
            for (size_t i = 0; i < plen; i++)
                check((ref[i] ^ h.mask[i & 3]) == data[off + i], "unmasking");
        }
        off += plen;
        if (h.opcode == WS_OP_TEXT || h.opcode == WS_OP_BINARY) {
            if (in_msg)
                goto out;
            in_msg = 1, text = h.opcode == WS_OP_TEXT, compressed = (int)h.rsv1, ust = 0, mlen = 0;
        } else if (h.opcode == WS_OP_CONT) {
            if (!in_msg)
                goto out;
        } else {
            free(pl);
            free(ref);
            continue;
        }
        if (mlen + plen > MSG_MAX)
            goto out;
        memcpy(msg + mlen, pl, plen);
        mlen += plen;
        if (text && !compressed && ust >= 0)
            ust = ws_utf8_step(ust, pl, plen);
        if (h.fin && whole) {
            in_msg = 0;
            if (compressed) {
                long n = ws_inflate(inflater, msg, mlen, inflated, INFLATE_CAP);
                check(n == -EPROTO || n == -EMSGSIZE || n == -ENOMEM || (n >= 0 && n <= (long)INFLATE_CAP),
                      "inflate result");
                if (n >= 0 && text) {
                    int s = ws_utf8_step(0, inflated, (size_t)n);
                    check((s == 0) == utf8_ref(inflated, (size_t)n), "utf8 of an inflated message");
                }
            } else if (text) {
                check((ust == 0) == utf8_ref(msg, mlen), "utf8 across fragments");
            }
        }
        free(pl);
        free(ref);
        continue;
    out:
        free(pl);
        free(ref);
        return;
    }
}

static void handshake(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    check(s != NULL, "malloc");
    memcpy(s, data, size);
    s[size] = '\0';
    char resp[128];
    int rc = ws_pmd_negotiate(s, resp, sizeof resp);
    check(rc == 0 || rc == 1, "negotiation result");
    if (rc == 1) {
        static const char head[] = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";
        check(!strncmp(resp, head, sizeof head - 1), "answer");
        char again[128];
        check(ws_pmd_negotiate(resp, again, sizeof again) == 1 && !strcmp(again, resp), "answer re-offered");
    }
    char acc[29];
    rc = ws_accept_key(s, acc);
    check(rc == 0 || rc == -EINVAL, "accept result");
    if (rc == 0) {
        check(strlen(s) == 24 && strlen(acc) == 28, "accept lengths");
        for (int i = 0; i < 28; i++)
            check(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", acc[i]) != NULL,
                  "accept charset");
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!inflater) {
        inflater = ws_inflater_new();
        check(inflater != NULL, "inflater");
    }
    if (size < 1)
        return 0;
    if (data[0] & 1)
        handshake(data + 1, size - 1);
    else
        frames(data + 1, size - 1);
    return 0;
}
