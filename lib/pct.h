/* pct.h -- percent-decoding (RFC 3986 %XX) for names taken from URLs: the
 * gateway's HTTP paths and TETHER_REDIS's userinfo and master name. */
#ifndef TETHER_PCT_H
#define TETHER_PCT_H

#include <stddef.h>

/* Decodes in[0..n) into out (cap bytes, NUL-terminated). A truncated or
 * non-hex escape, %00 or a raw NUL byte, or a result that does not fit:
 * -EINVAL. Returns the decoded length otherwise. */
int pct_decode(const char *in, size_t n, char *out, size_t cap);

#endif
