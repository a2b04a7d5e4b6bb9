/* pct.c -- percent-decoding (see pct.h). */
#include "pct.h"

#include <errno.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pct_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int hi = hexval((unsigned char)in[i + 1]), lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return (int)o;
}
