/* gw_frame_fast.c -- the publish frame's fast path: a single-pass scanner for
 * the common shape of a JSON publish ({"type":"publish","room":..,"id":..,
 * "data":..} in any order) that writes the compact form of data as it goes.
 *
 * Why: jansson builds a tree of the whole frame, then gw_frame.c dumps data
 * back to text; measured at ~9 us of the gateway's ~32 us of CPU per
 * acknowledged publish (bench/run.sh --only publish). This scanner does the
 * same job in one pass without allocating beyond the output buffer.
 *
 * The rule that keeps it honest: it only accepts input whose result it can
 * guarantee to be byte-for-byte what the jansson path (gw_decode_json's slow
 * path) produces, and says "not mine" for everything else, which then goes
 * the slow way, errors included. So it never answers with an error and it
 * never decides anything jansson would decide differently. It declines:
 *   - any top-level key but type/room/id/data, any repeated key, any missing;
 *   - non-ASCII, control characters or escapes in type/room/id, names the
 *     validators refuse, a type other than "publish";
 *   - in data: \u and \/ escapes (jansson rewrites them), numbers with a
 *     fraction or exponent (jansson reprints doubles with %.17g), "-0" and
 *     integers of more than 18 digits (jansson prints 0 / may refuse them),
 *     invalid UTF-8 (jansson refuses it), objects with more than 32 keys (the
 *     duplicate check here is quadratic), nesting deeper than 32, compact data
 *     over GW_MAX_DATA.
 * What it accepts, jansson reprints identically: whitespace dropped,
 * separators bare, the escapes \" \\ \b \f \n \r \t kept as they are (the
 * only spelling jansson writes for those characters), non-ASCII UTF-8 raw,
 * keys in input order. tests/fuzz/fuzz_frame.c checks the equivalence on every
 * input it generates, and tests/unit/test_frame.c on hand-picked ones.
 */
#include <stdlib.h>
#include <string.h>

#include "gw_frame.h"

#define FAST_MAX_DEPTH 32
#define FAST_MAX_KEYS 32

typedef struct scan {
    const unsigned char *p, *end;
    char *o;          /* output cursor (data only) */
    int depth;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Length of the valid UTF-8 sequence at p (1-4), 0 if invalid: no overlong
 * forms, no surrogates, nothing above U+10FFFF (what jansson refuses). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        n = 2;
        cp = c & 0x1F;
    } else if (c < 0xF0) {
        n = 3;
        cp = c & 0x0F;
    } else if (c < 0xF5) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A string inside data, copied to the output as is. s->p is at the opening
 * quote. Returns 0, or -1 to decline. */
static int copy_string(scan *s)
{
    const unsigned char *start = s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            size_t n = (size_t)(s->p - start);
            memcpy(s->o, start, n);
            s->o += n;
            return 0;
        }
        if (c == '\\') {
            if (s->end - s->p < 2)
                return -1;
            unsigned e = s->p[1];
            if (e != '"' && e != '\\' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
                return -1;
            s->p += 2;
        } else if (c < 0x20) {
            return -1;
        } else {
            size_t n = utf8_len(s->p, s->end);
            if (!n)
                return -1;
            s->p += n;
        }
    }
    return -1;
}

static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static int copy_number(scan *s)
{
    const unsigned char *start = s->p;
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end || !is_digit(*s->p))
        return -1;
    if (*s->p == '0') {
        s->p++;
        if (start[0] == '-')
            return -1; /* "-0": jansson prints 0 */
    } else {
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    }
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E' || is_digit(*s->p)))
        return -1;
    size_t n = (size_t)(s->p - start);
    if (n - (start[0] == '-') > 18)
        return -1;
    memcpy(s->o, start, n);
    s->o += n;
    return 0;
}

static int copy_literal(scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    memcpy(s->o, lit, n);
    s->o += n;
    s->p += n;
    return 0;
}

static int copy_value(scan *s);

/* Opens a container: copies its opening byte and skips whitespace. Returns
 * 1 when it closes at once (copied too), 0 when an item follows. */
static int open_container(scan *s, unsigned char close)
{
    *s->o++ = *s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        *s->o++ = (char)close;
        return 1;
    }
    return 0;
}

/* After an item: 1 at the container's end (copied), 0 after a comma (the
 * next item follows), -1 on anything else. */
static int after_item(scan *s, unsigned char close)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == close) {
        s->p++;
        *s->o++ = (char)close;
        return 1;
    }
    if (*s->p != ',')
        return -1;
    s->p++;
    *s->o++ = ',';
    skip_ws(s);
    return 0;
}

static int copy_object(scan *s)
{
    const char *keys[FAST_MAX_KEYS];
    size_t klen[FAST_MAX_KEYS];
    size_t nkeys = 0;
    if (open_container(s, '}'))
        return 0;
    for (;;) {
        if (s->p >= s->end || *s->p != '"' || nkeys == FAST_MAX_KEYS)
            return -1;
        char *k = s->o;
        if (copy_string(s) < 0)
            return -1;
        /* Each accepted spelling decodes to one string and back, so equal
         * bytes are equal keys and different bytes different keys. */
        size_t kl = (size_t)(s->o - k);
        for (size_t i = 0; i < nkeys; i++)
            if (klen[i] == kl && memcmp(keys[i], k, kl) == 0)
                return -1;
        keys[nkeys] = k;
        klen[nkeys++] = kl;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        *s->o++ = ':';
        skip_ws(s);
        if (copy_value(s) < 0)
            return -1;
        int r = after_item(s, '}');
        if (r)
            return r < 0 ? -1 : 0;
    }
}

static int copy_array(scan *s)
{
    if (open_container(s, ']'))
        return 0;
    for (;;) {
        if (copy_value(s) < 0)
            return -1;
        int r = after_item(s, ']');
        if (r)
            return r < 0 ? -1 : 0;
    }
}

/* One JSON value at s->p (no leading whitespace), compact, to s->o. */
static int copy_value(scan *s)
{
    if (s->p >= s->end)
        return -1;
    int r;
    switch (*s->p) {
    case '"':
        return copy_string(s);
    case '{':
    case '[':
        if (++s->depth > FAST_MAX_DEPTH)
            return -1;
        r = *s->p == '{' ? copy_object(s) : copy_array(s);
        s->depth--;
        return r;
    case 't':
        return copy_literal(s, "true", 4);
    case 'f':
        return copy_literal(s, "false", 5);
    case 'n':
        return copy_literal(s, "null", 4);
    default:
        return copy_number(s);
    }
}

/* A plain ASCII string (no escapes, no control characters) at s->p: its
 * body's span. Returns 0, or -1 to decline. */
static int plain_string(scan *s, const char **str, size_t *len)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const unsigned char *b = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' || *s->p < 0x20 || *s->p >= 0x80)
            return -1;
        s->p++;
    }
    if (s->p >= s->end)
        return -1;
    *str = (const char *)b;
    *len = (size_t)(s->p - b);
    s->p++;
    return 0;
}

/* Copies a plain string of at most cap bytes into dst and validates it. */
static int take_name(scan *s, char *dst, size_t cap, int (*valid)(const char *))
{
    const char *v;
    size_t n;
    if (plain_string(s, &v, &n) < 0 || n > cap)
        return -1;
    memcpy(dst, v, n);
    dst[n] = 0;
    return valid(dst) ? 0 : -1;
}

enum { K_TYPE = 1, K_ROOM = 2, K_ID = 4, K_DATA = 8 };

int gw_json_compact_fast(const char *buf, size_t len, char **out, size_t *out_len)
{
    scan s = { (const unsigned char *)buf, (const unsigned char *)buf + len, NULL, 0 };
    char *o = malloc(len + 1);
    if (!o)
        return 0;
    s.o = o;
    skip_ws(&s);
    if (copy_value(&s) < 0)
        goto decline;
    skip_ws(&s);
    if (s.p != s.end || (size_t)(s.o - o) > GW_MAX_DATA)
        goto decline;
    *s.o = 0;
    *out = o;
    *out_len = (size_t)(s.o - o);
    return 1;
decline:
    free(o);
    return 0;
}

int gw_decode_json_fast(const char *buf, size_t len, gw_cframe *out)
{
    scan s = { (const unsigned char *)buf, (const unsigned char *)buf + len, NULL, 0 };
    unsigned seen = 0;
    char *data = NULL;
    gw_cframe f;
    memset(&f, 0, sizeof(f));
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return 0;
    s.p++;
    for (;;) {
        const char *k;
        size_t kl;
        unsigned key;
        skip_ws(&s);
        if (plain_string(&s, &k, &kl) < 0)
            goto decline;
        if (kl == 4 && !memcmp(k, "type", 4))
            key = K_TYPE;
        else if (kl == 4 && !memcmp(k, "room", 4))
            key = K_ROOM;
        else if (kl == 2 && !memcmp(k, "id", 2))
            key = K_ID;
        else if (kl == 4 && !memcmp(k, "data", 4))
            key = K_DATA;
        else
            goto decline;
        if (seen & key)
            goto decline;
        seen |= key;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            goto decline;
        s.p++;
        skip_ws(&s);
        if (key == K_TYPE) {
            const char *v;
            size_t n;
            if (plain_string(&s, &v, &n) < 0 || n != 7 || memcmp(v, "publish", 7) != 0)
                goto decline;
        } else if (key == K_ROOM) {
            if (take_name(&s, f.room, GW_MAX_ROOM, gw_valid_room) < 0)
                goto decline;
        } else if (key == K_ID) {
            if (take_name(&s, f.id, GW_MAX_ID, gw_valid_id) < 0)
                goto decline;
        } else {
            /* The compact form is never longer than the text it came from. */
            data = malloc((size_t)(s.end - s.p) + 1);
            if (!data)
                goto decline;
            s.o = data;
            if (copy_value(&s) < 0 || (size_t)(s.o - data) > GW_MAX_DATA)
                goto decline;
            *s.o = 0;
            f.data_len = (size_t)(s.o - data);
        }
        skip_ws(&s);
        if (s.p >= s.end)
            goto decline;
        if (*s.p == '}') {
            s.p++;
            break;
        }
        if (*s.p != ',')
            goto decline;
        s.p++;
    }
    skip_ws(&s);
    if (s.p != s.end || seen != (K_TYPE | K_ROOM | K_ID | K_DATA))
        goto decline;
    f.type = GW_C_PUBLISH;
    f.data = data;
    *out = f;
    return 1;
decline:
    free(data);
    return 0;
}
