/* names.c -- the user id rules (see names.h). */
#include "names.h"

#include <stdint.h>
#include <string.h>

/* Decodes one UTF-8 sequence at s (n > 0 bytes left) into *cp. Returns its
 * length, or 0 when it is not shortest-form UTF-8 of a scalar value. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b = s[0];
    size_t len;
    uint32_t v, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xc2 && b <= 0xdf) {
        len = 2, v = b & 0x1f, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3, v = b & 0x0f, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4, v = b & 0x07, min = 0x10000;
    } else {
        return 0; /* a continuation byte, an overlong lead (C0, C1) or past U+10FFFF */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static int is_control(uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

static int is_bidi_control(uint32_t cp)
{
    return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

const char *names_user_check(const char *s, size_t len)
{
    if (!s || len == 0)
        return "empty";
    if (len > NAMES_MAX_USER)
        return "too long";
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_next(p + i, len - i, &cp);
        if (!k)
            return "invalid UTF-8";
        if (is_control(cp))
            return "control character";
        if (is_bidi_control(cp))
            return "bidirectional control";
        i += k;
    }
    return NULL;
}

int names_user_valid(const char *s) { return s && !names_user_check(s, strlen(s)); }
