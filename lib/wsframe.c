/* wsframe.c -- RFC 6455 framing (see wsframe.h): frame headers, masking,
 * incremental UTF-8 validation, the opening handshake's accept key, and the
 * receive side of permessage-deflate (RFC 7692): negotiation and a bounded
 * raw-deflate inflater.
 */
#include "wsframe.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <zlib.h>

/* ---- frame headers ---------------------------------------------------------------- */

static int op_known(unsigned op)
{
    return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

/* Errors are reported as soon as the bytes that prove them have arrived, so a
 * peer cannot hold a connection with a header that is already known bad. */
int ws_parse_hdr(const unsigned char *buf, size_t n, ws_hdr *h)
{
    if (n < 1)
        return 0;
    unsigned b0 = buf[0];
    unsigned op = b0 & 0x0F;
    if (!op_known(op))
        return -EPROTO;
    int control = (op & 0x8) != 0;
    if (control && !(b0 & 0x80))
        return -EPROTO;
    if (n < 2)
        return 0;
    unsigned b1 = buf[1];
    unsigned len7 = b1 & 0x7F;
    if (control && len7 > WS_MAX_CONTROL)
        return -EPROTO;
    size_t hlen = 2;
    uint64_t len = len7;
    if (len7 == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)buf[2] << 8 | buf[3];
        if (len < 126)
            return -EPROTO;
        hlen = 4;
    } else if (len7 == 127) {
        if (n >= 3 && (buf[2] & 0x80))
            return -EPROTO;
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | buf[i];
        if (len <= 0xFFFF)
            return -EPROTO;
        hlen = 10;
    }
    unsigned masked = (b1 & 0x80) != 0;
    if (masked) {
        if (n < hlen + 4)
            return 0;
        memcpy(h->mask, buf + hlen, 4);
        hlen += 4;
    } else {
        memset(h->mask, 0, 4);
    }
    h->fin = (b0 >> 7) & 1;
    h->rsv1 = (b0 >> 6) & 1;
    h->rsv2 = (b0 >> 5) & 1;
    h->rsv3 = (b0 >> 4) & 1;
    h->masked = masked;
    h->opcode = op;
    h->len = len;
    h->hlen = hlen;
    return (int)hlen;
}

size_t ws_encode_hdr(unsigned char *out, int fin, unsigned opcode, int rsv1, uint64_t len, const unsigned char *mask)
{
    size_t i = 0;
    out[i++] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    unsigned char mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[i++] = (unsigned char)(mbit | len);
    } else if (len <= 0xFFFF) {
        out[i++] = mbit | 126;
        out[i++] = (unsigned char)(len >> 8);
        out[i++] = (unsigned char)len;
    } else {
        out[i++] = mbit | 127;
        for (int s = 56; s >= 0; s -= 8)
            out[i++] = (unsigned char)(len >> s);
    }
    if (mask) {
        memcpy(out + i, mask, 4);
        i += 4;
    }
    return i;
}

void ws_mask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset)
{
    unsigned char m[8];
    for (int i = 0; i < 8; i++)
        m[i] = mask[(offset + (uint64_t)i) & 3];
    uint64_t m64;
    memcpy(&m64, m, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= m[i & 7];
}

/* ---- UTF-8 ------------------------------------------------------------------------- */

/* States: 0 between characters; 1, 2, 3 continuation bytes (80..BF) still
 * due; the lead bytes with a narrower first continuation get their own:
 * E0 (A0..BF, no overlong), ED (80..9F, no surrogate), F0 (90..BF, no
 * overlong), F4 (80..8F, nothing above U+10FFFF). */
enum { U_ACC = 0, U_C1, U_C2, U_C3, U_E0, U_ED, U_F0, U_F4 };

int ws_utf8_step(int state, const unsigned char *p, size_t n)
{
    if (state < 0 || state > U_F4)
        return -1;
    size_t i = 0;
    while (i < n) {
        if (state == U_ACC) {
            while (i + 8 <= n) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if (v & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i == n)
                break;
        }
        unsigned c = p[i++];
        switch (state) {
        case U_ACC:
            if (c < 0x80)
                state = U_ACC;
            else if (c >= 0xC2 && c <= 0xDF)
                state = U_C1;
            else if (c == 0xE0)
                state = U_E0;
            else if (c == 0xED)
                state = U_ED;
            else if (c >= 0xE1 && c <= 0xEF)
                state = U_C2;
            else if (c == 0xF0)
                state = U_F0;
            else if (c >= 0xF1 && c <= 0xF3)
                state = U_C3;
            else if (c == 0xF4)
                state = U_F4;
            else
                return -1;
            break;
        case U_C1:
        case U_C2:
        case U_C3:
            if (c < 0x80 || c > 0xBF)
                return -1;
            state--;
            break;
        case U_E0:
            if (c < 0xA0 || c > 0xBF)
                return -1;
            state = U_C1;
            break;
        case U_ED:
            if (c < 0x80 || c > 0x9F)
                return -1;
            state = U_C1;
            break;
        case U_F0:
            if (c < 0x90 || c > 0xBF)
                return -1;
            state = U_C2;
            break;
        default: /* U_F4 */
            if (c < 0x80 || c > 0x8F)
                return -1;
            state = U_C2;
            break;
        }
    }
    return state;
}

/* ---- opening handshake --------------------------------------------------------------- */

static int b64_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    /* 16 bytes in base64: 22 characters, the last of them carrying 2 bits
     * (so one of A Q g w), then "==". */
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return -EINVAL;
    for (int i = 0; i < 22; i++)
        if (!b64_char((unsigned char)key[i]))
            return -EINVAL;
    if (!strchr("AQgw", key[21]))
        return -EINVAL;
    unsigned char buf[24 + sizeof guid - 1];
    memcpy(buf, key, 24);
    memcpy(buf + 24, guid, sizeof guid - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(buf, sizeof buf, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -EIO;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
        return -EIO;
    out[28] = '\0';
    return 0;
}

/* ---- permessage-deflate negotiation ------------------------------------------------------ */

/* A cursor over the header value: the grammar is RFC 7230's #rule of
 * extension = token *( OWS ";" OWS token [ "=" ( token / quoted-string ) ] ). */
typedef struct cur {
    const char *p;
} cur;

static int tchar(int c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void ows(cur *c)
{
    while (*c->p == ' ' || *c->p == '\t')
        c->p++;
}

/* A token into buf (bufsz, NUL-terminated); returns its length, 0 when there
 * is none, -1 when it does not fit (then it is skipped). */
static int token(cur *c, char *buf, size_t bufsz)
{
    size_t n = 0;
    int over = 0;
    while (tchar((unsigned char)*c->p)) {
        if (n + 1 < bufsz)
            buf[n++] = *c->p;
        else
            over = 1;
        c->p++;
    }
    buf[n] = '\0';
    return over ? -1 : (int)n;
}

/* A quoted-string (the cursor on its '"'), unescaped into buf; returns its
 * length, -1 when unterminated (the cursor then at the end) or too long. */
static int quoted(cur *c, char *buf, size_t bufsz)
{
    size_t n = 0;
    int over = 0;
    c->p++;
    for (;;) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\0')
            return -1;
        c->p++;
        if (ch == '"')
            break;
        if (ch == '\\') {
            ch = (unsigned char)*c->p;
            if (ch == '\0')
                return -1;
            c->p++;
        }
        if (n + 1 < bufsz)
            buf[n++] = (char)ch;
        else
            over = 1;
    }
    buf[n] = '\0';
    return over ? -1 : (int)n;
}

/* Skips to the next list element (past the next ',' outside quotes). */
static void skip_element(cur *c)
{
    while (*c->p && *c->p != ',') {
        if (*c->p == '"') {
            char junk[2];
            if (quoted(c, junk, sizeof junk) < 0 && !*c->p)
                return;
        } else {
            c->p++;
        }
    }
    if (*c->p == ',')
        c->p++;
}

/* A window size: 8..15 written without leading zeros. */
static int window_bits(const char *v)
{
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && !v[2])
        return 10 + (v[1] - '0');
    if ((v[0] == '8' || v[0] == '9') && !v[1])
        return v[0] - '0';
    return -1;
}

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

/* Parses one element at the cursor, leaving it past the element's ','.
 * Returns 1 for an acceptable permessage-deflate offer (*smwb its
 * server_max_window_bits or 0), 0 otherwise. */
static int pmd_offer(cur *c, int *smwb)
{
    char name[32], pname[32], val[8];
    int ok = 1, seen = 0;
    *smwb = 0;
    ows(c);
    if (token(c, name, sizeof name) <= 0 || strcasecmp(name, "permessage-deflate") != 0)
        ok = 0;
    for (;;) {
        ows(c);
        if (*c->p == '\0')
            return ok;
        if (*c->p == ',') {
            c->p++;
            return ok;
        }
        if (*c->p != ';' || !ok)
            break;
        c->p++;
        ows(c);
        if (token(c, pname, sizeof pname) <= 0)
            break;
        ows(c);
        int has_val = 0;
        if (*c->p == '=') {
            c->p++;
            ows(c);
            int vl = *c->p == '"' ? quoted(c, val, sizeof val) : token(c, val, sizeof val);
            if (vl <= 0)
                break;
            has_val = 1;
        }
        int bit;
        if (!strcasecmp(pname, "server_no_context_takeover"))
            bit = P_SNCT;
        else if (!strcasecmp(pname, "client_no_context_takeover"))
            bit = P_CNCT;
        else if (!strcasecmp(pname, "server_max_window_bits"))
            bit = P_SMWB;
        else if (!strcasecmp(pname, "client_max_window_bits"))
            bit = P_CMWB;
        else
            break;
        if (seen & bit)
            break;
        seen |= bit;
        if (bit == P_SNCT || bit == P_CNCT) {
            if (has_val)
                break;
        } else if (bit == P_SMWB) {
            if (!has_val || (*smwb = window_bits(val)) < 0)
                break;
        } else if (has_val && window_bits(val) < 0) {
            break;
        }
    }
    skip_element(c);
    return 0;
}

int ws_pmd_negotiate(const char *offer, char *resp, size_t resplen)
{
    if (!offer)
        return 0;
    cur c = { offer };
    while (*c.p) {
        int smwb;
        if (!pmd_offer(&c, &smwb))
            continue;
        int n;
        if (smwb)
            n = snprintf(resp, resplen,
                         "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
                         "server_max_window_bits=%d",
                         smwb);
        else
            n = snprintf(resp, resplen, "permessage-deflate; client_no_context_takeover; server_no_context_takeover");
        if (n < 0 || (size_t)n >= resplen)
            return -ENOSPC;
        return 1;
    }
    return 0;
}

/* ---- inflater ------------------------------------------------------------------------- */

struct ws_inflater {
    z_stream zs;
};

ws_inflater *ws_inflater_new(void)
{
    ws_inflater *z = calloc(1, sizeof *z);
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
    static const unsigned char tail[4] = { 0x00, 0x00, 0xFF, 0xFF };
    z_stream *s = &z->zs;
    /* zlib counts in uInt: a message is at most 4 GiB either way. */
    if (cap > UINT_MAX)
        cap = UINT_MAX;
    if (n > UINT_MAX)
        return -EMSGSIZE;
    /* The tail alone is no whole block; an empty payload can only mean the
     * empty message (which compresses to the one byte 00). */
    if (n == 0)
        return 0;
    if (inflateReset(s) != Z_OK)
        return -EPROTO;
    /* Output goes to out, then to one spare byte: a byte there proves the
     * message is longer than cap without inflating any further. */
    unsigned char spare;
    int spilling = 0, in_tail = 0;
    s->next_in = (unsigned char *)in;
    s->avail_in = (uInt)n;
    s->next_out = out;
    s->avail_out = (uInt)cap;
    for (;;) {
        if (s->avail_out == 0) {
            if (spilling)
                return -EMSGSIZE;
            spilling = 1;
            s->next_out = &spare;
            s->avail_out = 1;
        }
        if (s->avail_in == 0) {
            if (in_tail)
                break;
            in_tail = 1;
            s->next_in = (unsigned char *)tail;
            s->avail_in = sizeof tail;
        }
        int r = inflate(s, Z_SYNC_FLUSH);
        if (r == Z_STREAM_END) {
            /* A final block ends the message: nothing of the payload may
             * follow it (the appended tail is then left unused). */
            if (s->avail_out == 0 && spilling)
                return -EMSGSIZE;
            if (!in_tail && s->avail_in > 0)
                return -EPROTO;
            return (long)(cap - (spilling ? 0 : s->avail_out));
        }
        if (r == Z_MEM_ERROR)
            return -ENOMEM;
        if (r == Z_BUF_ERROR) {
            /* No progress: fine only when the input is used up. */
            if (s->avail_in > 0 && s->avail_out > 0)
                return -EPROTO;
            continue;
        }
        if (r != Z_OK)
            return -EPROTO;
    }
    if (spilling && s->avail_out == 0)
        return -EMSGSIZE;
    /* The tail is an empty stored block: after it inflate stands at a block
     * boundary unless the payload was cut inside a block. */
    if (!(s->data_type & 128))
        return -EPROTO;
    return (long)(cap - (spilling ? 0 : s->avail_out));
}
