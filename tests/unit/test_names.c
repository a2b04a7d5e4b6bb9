/* test_names.c -- the user id rules of lib/names (cmocka): every refused
 * class (C0, DEL, C1, each bidirectional control, invalid UTF-8 of each
 * kind, NUL inside, length) at the start, middle and end of a name, and
 * valid names in many scripts, right at the edges of the refused ranges. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "names.h"

#include <stdio.h>
#include <string.h>

/* Checks "a<bad>b", "<bad>b" and "a<bad>" (bad: n bytes) against why. */
static void refused_everywhere(const char *bad, size_t n, const char *why)
{
    char buf[64];
    const char *shapes[3][2] = { { "a", "b" }, { "", "b" }, { "a", "" } };
    for (int i = 0; i < 3; i++) {
        size_t a = strlen(shapes[i][0]), b = strlen(shapes[i][1]);
        memcpy(buf, shapes[i][0], a);
        memcpy(buf + a, bad, n);
        memcpy(buf + a + n, shapes[i][1], b);
        const char *got = names_user_check(buf, a + n + b);
        if (!got || strcmp(got, why) != 0)
            fail_msg("shape %d of a %zu-byte sequence starting 0x%02x: got %s, want %s", i, n, (unsigned char)bad[0],
                     got ? got : "valid", why);
    }
}

/* A code point as UTF-8 into out; returns its length. */
static size_t enc(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The code point cp, UTF-8 encoded, refused with why wherever it stands. */
static void cp_refused_everywhere(uint32_t cp, const char *why)
{
    char b[4];
    size_t n = enc(cp, b);
    refused_everywhere(b, n, why);
}

static void test_c0_del_c1(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp < 0x20; cp++)
        cp_refused_everywhere(cp, "control character");
    refused_everywhere("\x7f", 1, "control character");
    for (uint32_t cp = 0x80; cp <= 0x9f; cp++)
        cp_refused_everywhere(cp, "control character");
    /* A NUL inside the given length is a control, not the end. */
    assert_string_equal(names_user_check("ab\0cd", 5), "control character");
    assert_false(names_user_valid("tab\there"));
}

static void test_bidi(void **state)
{
    (void)state;
    static const uint32_t bidi[] = { 0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c,
                                     0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069 };
    for (size_t i = 0; i < sizeof(bidi) / sizeof(bidi[0]); i++)
        cp_refused_everywhere(bidi[i], "bidirectional control");
    /* "admin" shown reversed: the classic spoof. */
    char spoof[16];
    size_t n = enc(0x202e, spoof);
    memcpy(spoof + n, "nimda", sizeof("nimda"));
    assert_false(names_user_valid(spoof));
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        { "\x80", 1 },                 /* lone continuation */
        { "\xbf", 1 },
        { "\xc3", 1 },                 /* truncated 2-byte */
        { "\xe2\x82", 2 },             /* truncated 3-byte */
        { "\xf0\x9f\x98", 3 },         /* truncated 4-byte */
        { "\xc3\x28", 2 },             /* bad continuation */
        { "\xe2\x28\xa1", 3 },
        { "\xf0\x9f\x28\x80", 4 },
        { "\xc0\xaf", 2 },             /* overlong '/' */
        { "\xc1\xbf", 2 },
        { "\xe0\x80\xaf", 3 },         /* overlong 3-byte */
        { "\xf0\x80\x80\xaf", 4 },     /* overlong 4-byte */
        { "\xc0\x80", 2 },             /* overlong NUL */
        { "\xed\xa0\x80", 3 },         /* surrogate U+D800 */
        { "\xed\xbf\xbf", 3 },         /* surrogate U+DFFF */
        { "\xf4\x90\x80\x80", 4 },     /* U+110000 */
        { "\xf5\x80\x80\x80", 4 },
        { "\xf8\x88\x80\x80\x80", 5 }, /* 5-byte form */
        { "\xfe", 1 },
        { "\xff", 1 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused_everywhere(bad[i].s, bad[i].n, "invalid UTF-8");
}

static void test_length(void **state)
{
    (void)state;
    char name[NAMES_MAX_USER + 2];
    assert_string_equal(names_user_check("", 0), "empty");
    assert_string_equal(names_user_check(NULL, 3), "empty");
    assert_false(names_user_valid(NULL));
    assert_false(names_user_valid(""));
    memset(name, 'u', NAMES_MAX_USER);
    name[NAMES_MAX_USER] = 0;
    assert_true(names_user_valid(name));
    name[NAMES_MAX_USER] = 'u';
    name[NAMES_MAX_USER + 1] = 0;
    assert_string_equal(names_user_check(name, NAMES_MAX_USER + 1), "too long");
    /* 42 three-byte characters = 126 bytes: fits; one more does not. */
    size_t o = 0;
    for (int i = 0; i < 43; i++)
        o += enc(0x4e2d, name + o);
    assert_null(names_user_check(name, 126));
    assert_string_equal(names_user_check(name, o), "too long");
}

static void test_valid(void **state)
{
    (void)state;
    static const char *ok[] = {
        "alice",
        "alice@example.com",
        "user:with,commas and spaces",
        "~!#$%^&*()_+{}|\"<>?`-=[]\\;',./",
        "j\xc3\xbcrgen",                              /* jürgen */
        "\xc2\xa0nbsp",                               /* U+00A0: the first after C1 */
        "\xd0\x9e\xd0\xbb\xd1\x8f",                   /* Оля */
        "\xd8\xb9\xd9\x84\xd9\x8a",                   /* علي (Arabic letters, no bidi control) */
        "\xd7\xa9\xd7\xa8\xd7\x94",                   /* שרה */
        "\xe4\xb8\xad\xe6\x96\x87",                   /* 中文 */
        "\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\x82",       /* हिं */
        "\xf0\x9f\x98\x80smile",                      /* U+1F600 */
        "\xf4\x8f\xbf\xbf",                           /* U+10FFFF */
        "\xd8\x9b\xd8\x9d",                           /* U+061B, U+061D: beside U+061C */
        "\xe2\x80\x8d\xe2\x80\x90",                   /* U+200D, U+2010: beside U+200E/F */
        "\xe2\x80\xa9\xe2\x80\xaf",                   /* U+2029, U+202F: beside U+202A..E */
        "\xe2\x81\xa5\xe2\x81\xaa",                   /* U+2065, U+206A: beside U+2066..9 */
        "\xee\x80\x80",                               /* U+E000 private use */
        "\xef\xbf\xbd",                               /* U+FFFD */
        "\xed\x9f\xbf",                               /* U+D7FF: below the surrogates */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        const char *why = names_user_check(ok[i], strlen(ok[i]));
        if (why)
            fail_msg("'%s' refused: %s", ok[i], why);
        assert_true(names_user_valid(ok[i]));
    }
    /* The given length bounds the check: what follows is not read. */
    assert_null(names_user_check("bob\x01", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c0_del_c1),   cmocka_unit_test(test_bidi),  cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_length),      cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
