/* wsframe.c -- RFC 6455 framing (see wsframe.h): frame headers, masking,
 * UTF-8 validation, the handshake's accept key and permessage-deflate's
 * negotiation and inflation. */
#include "wsframe.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

int ws_parse_hdr(const unsigned char *buf, size_t n, ws_hdr *h)
{
    if (n < 2)
        return 0;
    memset(h, 0, sizeof(*h));
    h->fin = (buf[0] >> 7) & 1;
    h->rsv1 = (buf[0] >> 6) & 1;
    h->rsv2 = (buf[0] >> 5) & 1;
    h->rsv3 = (buf[0] >> 4) & 1;
    h->opcode = buf[0] & 0x0f;
    h->masked = (buf[1] >> 7) & 1;
    unsigned l7 = buf[1] & 0x7f;
    switch (h->opcode) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        break;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!h->fin || l7 > WS_MAX_CONTROL)
            return -EPROTO;
        break;
    default:
        return -EPROTO;
    }
    size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (h->masked ? 4 : 0);
    if (n < need)
        return 0;
    size_t o = 2;
    if (l7 == 126) {
        h->len = ((uint64_t)buf[2] << 8) | buf[3];
        if (h->len < 126)
            return -EPROTO;
        o = 4;
    } else if (l7 == 127) {
        h->len = 0;
        for (int i = 0; i < 8; i++)
            h->len = (h->len << 8) | buf[2 + i];
        if (h->len >> 63 || h->len <= 0xffff)
            return -EPROTO;
        o = 10;
    } else {
        h->len = l7;
    }
    if (h->masked) {
        memcpy(h->mask, buf + o, 4);
        o += 4;
    }
    h->hlen = o;
    return (int)o;
}

size_t ws_encode_hdr(unsigned char *out, int fin, unsigned opcode, int rsv1, uint64_t len, const unsigned char *mask)
{
    size_t o;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    unsigned char m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (unsigned char)(m | len);
        o = 2;
    } else if (len <= 0xffff) {
        out[1] = (unsigned char)(m | 126);
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        o = 4;
    } else {
        out[1] = (unsigned char)(m | 127);
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        o = 10;
    }
    if (mask) {
        memcpy(out + o, mask, 4);
        o += 4;
    }
    return o;
}

void ws_mask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) & 3];
}

/* The state packs the bytes still expected (bits 0-2) and the bounds of the
 * next continuation byte (bits 8-15 low, 16-23 high) that exclude overlongs,
 * surrogates and code points above U+10FFFF. */
int ws_utf8_step(int state, const unsigned char *p, size_t n)
{
    unsigned need = (unsigned)state & 7, lo = ((unsigned)state >> 8) & 0xff, hi = ((unsigned)state >> 16) & 0xff;
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (need) {
            if (c < lo || c > hi)
                return -1;
            need--;
            lo = 0x80;
            hi = 0xbf;
            continue;
        }
        if (c < 0x80)
            continue;
        lo = 0x80;
        hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return -1;
        }
    }
    return need ? (int)(need | (lo << 8) | (hi << 16)) : 0;
}

int ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char raw[20];
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return -EINVAL;
    unsigned char dec[20];
    if (EVP_DecodeBlock(dec, (const unsigned char *)key, 24) != 18)
        return -EINVAL;
    char buf[24 + sizeof(guid)];
    memcpy(buf, key, 24);
    memcpy(buf + 24, guid, sizeof(guid));
    SHA1((const unsigned char *)buf, 24 + sizeof(guid) - 1, raw);
    EVP_EncodeBlock((unsigned char *)out, raw, 20);
    out[28] = 0;
    return 0;
}

/* ---- permessage-deflate ------------------------------------------------------------ */

/* Checks one offer's parameters (after the extension name, up to ',').
 * Returns 1 when acceptable. */
static int pmd_params_ok(const char *p, const char *end)
{
    int seen[4] = { 0, 0, 0, 0 };
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
            p++;
        if (p >= end)
            break;
        const char *nb = p;
        while (p < end && *p != ';' && *p != '=' && *p != ' ' && *p != '\t')
            p++;
        size_t nl = (size_t)(p - nb);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *vb = NULL, *ve = NULL;
        if (p < end && *p == '=') {
            p++;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            int q = p < end && *p == '"';
            if (q)
                p++;
            vb = p;
            while (p < end && *p != ';' && *p != '"' && *p != ' ' && *p != '\t')
                p++;
            ve = p;
            if (q && p < end && *p == '"')
                p++;
            while (p < end && *p != ';')
                p++;
        }
        static const char *names[] = { "server_no_context_takeover", "client_no_context_takeover",
                                       "server_max_window_bits", "client_max_window_bits" };
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (nl == strlen(names[i]) && !strncasecmp(nb, names[i], nl))
                k = i;
        if (k < 0 || seen[k]++)
            return 0;
        if (k < 2 && vb)
            return 0;
        if (k == 2 || (k == 3 && vb)) {
            /* server_max_window_bits constrains only our (absent) compressor;
             * client_max_window_bits: our inflater takes any window. */
            if (!vb || ve - vb < 1 || ve - vb > 2)
                return 0;
            int v = 0;
            for (const char *c = vb; c < ve; c++) {
                if (!isdigit((unsigned char)*c))
                    return 0;
                v = v * 10 + (*c - '0');
            }
            if (v < 8 || v > 15)
                return 0;
        }
    }
    return 1;
}

int ws_pmd_negotiate(const char *offer, char *resp, size_t resplen)
{
    if (!offer)
        return 0;
    const char *p = offer;
    while (*p) {
        const char *e = strchr(p, ',');
        if (!e)
            e = p + strlen(p);
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t'))
            q++;
        static const char name[] = "permessage-deflate";
        size_t nl = sizeof(name) - 1;
        if ((size_t)(e - q) >= nl && !strncasecmp(q, name, nl) &&
            (q + nl == e || q[nl] == ';' || q[nl] == ' ' || q[nl] == '\t') && pmd_params_ok(q + nl, e)) {
            int n = snprintf(resp, resplen, "permessage-deflate; client_no_context_takeover");
            return n < 0 || (size_t)n >= resplen ? -ENOSPC : 1;
        }
        p = *e ? e + 1 : e;
    }
    return 0;
}

struct ws_inflater {
    z_stream zs;
};

ws_inflater *ws_inflater_new(void)
{
    ws_inflater *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    if (inflateInit2(&z->zs, -15) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

void ws_inflater_free(ws_inflater *z)
{
    if (!z)
        return;
    inflateEnd(&z->zs);
    free(z);
}

long ws_inflate(ws_inflater *z, const unsigned char *in, size_t n, unsigned char *out, size_t cap)
{
    /* RFC 7692 7.2.2: the sender removed the final 00 00 ff ff. */
    static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };
    if (inflateReset(&z->zs) != Z_OK)
        return -EPROTO;
    size_t total = 0;
    for (int part = 0; part < 2; part++) {
        z->zs.next_in = (unsigned char *)(part ? tail : in);
        z->zs.avail_in = (uInt)(part ? sizeof(tail) : n);
        if (!part && n > UINT32_MAX)
            return -EMSGSIZE;
        while (z->zs.avail_in) {
            unsigned char spare;
            int full = total == cap;
            z->zs.next_out = full ? &spare : out + total;
            z->zs.avail_out = full ? 1 : (uInt)(cap - total > UINT32_MAX ? UINT32_MAX : cap - total);
            uInt before = z->zs.avail_out;
            int r = inflate(&z->zs, Z_SYNC_FLUSH);
            size_t made = before - z->zs.avail_out;
            if (full && made)
                return -EMSGSIZE;
            total += full ? 0 : made;
            if (r == Z_STREAM_END)
                return part ? (long)total : (z->zs.avail_in ? -EPROTO : (long)total);
            if (r == Z_BUF_ERROR && z->zs.avail_in && !made && !full)
                return -EPROTO;
            if (r != Z_OK && r != Z_BUF_ERROR)
                return -EPROTO;
            if (full && !made && z->zs.avail_in && r == Z_BUF_ERROR)
                return -EPROTO;
        }
    }
    return (long)total;
}
