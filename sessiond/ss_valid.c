/* ss_valid.c -- input validation for sessiond (see ss_valid.h). */
#include "ss_valid.h"

#include <string.h>

#include "names.h"

static int chars(const char *s, size_t min, size_t max, const char *extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr(extra, c))
            return 0;
    }
    return 1;
}

int ss_valid_session(const char *s) { return chars(s, 1, SS_MAX_SESSION, "_-"); }
int ss_valid_room(const char *s) { return chars(s, 1, SS_MAX_ROOM, "._:@/-"); }
int ss_valid_epoch(const char *s) { return chars(s, 0, SS_MAX_EPOCH, ""); }

int ss_valid_text(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

/* The gateway sends a JWT sub: the same rules as lib/jwtcheck applies. */
int ss_valid_user(const char *s) { return names_user_valid(s); }

int ss_valid_quality(const char *s)
{
    return !s || !*s || !strcmp(s, "good") || !strcmp(s, "fair") || !strcmp(s, "poor");
}
