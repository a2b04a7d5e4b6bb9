/* names.h -- what a name may contain: the user id (a JWT's `sub`).
 *
 * A user id is shown to other users (presence, messages), written into logs
 * and used as a key. It must be 1..NAMES_MAX_USER bytes of valid UTF-8
 * (shortest form, no surrogates, at most U+10FFFF) without:
 *   - C0 controls U+0000..U+001F, DEL U+007F, C1 controls U+0080..U+009F;
 *   - the bidirectional controls U+061C, U+200E, U+200F, U+202A..U+202E and
 *     U+2066..U+2069, which make a name display as another one.
 * Every other character, ASCII or not, is allowed.
 */
#ifndef TETHER_NAMES_H
#define TETHER_NAMES_H

#include <stddef.h>

/* Longest user id, in bytes. */
#define NAMES_MAX_USER 128

/* Checks the len bytes at s (NUL bytes inside count as controls). Returns
 * NULL when s is a valid user id, else a short reason ("empty", "too long",
 * "invalid UTF-8", "control character", "bidirectional control"). */
const char *names_user_check(const char *s, size_t len);
/* 1 when the NUL-terminated s is a valid user id, else 0 (NULL: 0). */
int names_user_valid(const char *s);

#endif
