/* test_hmap.c -- lib/hmap and lib/u64map (cmocka): SipHash-2-4 against the
 * reference vectors of the paper's implementation, the spread of the keyed
 * hash over buckets, a fresh key in every process, and both maps' put, get,
 * replace, delete, growth and delete-while-iterating. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hmap.h"
#include "u64map.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Key 00 01 .. 0f, message 00 01 .. n-1: the first 17 of the reference
 * implementation's vectors_sip64 (every tail length, one and two blocks). */
static void test_siphash_vectors(void **state)
{
    (void)state;
    static const uint64_t want[17] = {
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
        0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
        0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
        0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
        0x3f2acc7f57c29bdbULL,
    };
    unsigned char key[16], msg[17];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 17; i++)
        msg[i] = (unsigned char)i;
    for (size_t n = 0; n < 17; n++)
        if (hmap_siphash24(key, msg, n) != want[n])
            fail_msg("length %zu: got %016" PRIx64 ", want %016" PRIx64, n, hmap_siphash24(key, msg, n), want[n]);
}

/* 65536 names that differ only in their last characters, into 1024 buckets:
 * chi-square with 1023 degrees of freedom stays far below 1250 (p < 1e-6
 * for a uniform hash), and every output bit is set about half of the time. */
static void test_distribution(void **state)
{
    (void)state;
    enum { N = 65536, B = 1024 };
    static unsigned count[B];
    unsigned bits[64] = { 0 };
    char k[32];
    for (unsigned i = 0; i < N; i++) {
        int n = snprintf(k, sizeof(k), "room-%u", i);
        uint64_t h = hmap_hash(k, (size_t)n);
        count[h & (B - 1)]++;
        for (int b = 0; b < 64; b++)
            bits[b] += (unsigned)(h >> b) & 1;
    }
    double e = (double)N / B, chi = 0;
    for (unsigned i = 0; i < B; i++)
        chi += ((double)count[i] - e) * ((double)count[i] - e) / e;
    if (chi > 1250)
        fail_msg("chi-square %.1f over %d buckets", chi, B);
    for (int b = 0; b < 64; b++)
        if (fabs((double)bits[b] - N / 2.0) > 6 * sqrt(N / 4.0))
            fail_msg("bit %d set %u times of %d", b, bits[b], N);
}

static const char *self_exe;

/* Runs this binary again (a new process, not a fork that would inherit
 * the key) and reads the key it drew. */
static void child_seed(uint64_t out[2])
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(self_exe, self_exe, "--print-seed", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(fd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    unsigned long long a = 0, b = 0;
    assert_int_equal(sscanf(buf, "%llx %llx", &a, &b), 2);
    out[0] = a;
    out[1] = b;
}

static void test_seed_per_process(void **state)
{
    (void)state;
    uint64_t me[2], me2[2], c1[2], c2[2];
    hmap_seed(me);
    hmap_seed(me2);
    assert_memory_equal(me, me2, sizeof(me));
    child_seed(c1);
    child_seed(c2);
    assert_false(c1[0] == c2[0] && c1[1] == c2[1]);
    assert_false(c1[0] == me[0] && c1[1] == me[1]);
    assert_false(c2[0] == me[0] && c2[1] == me[1]);
    /* and the hash follows the key: a name hashes differently elsewhere */
    unsigned char kb[16];
    for (int i = 0; i < 8; i++) {
        kb[i] = (unsigned char)(me[0] >> (8 * i));
        kb[8 + i] = (unsigned char)(me[1] >> (8 * i));
    }
    assert_true(hmap_hash("lobby", 5) == hmap_siphash24(kb, "lobby", 5));
}

static void test_hmap_basics(void **state)
{
    (void)state;
    hmap *m = hmap_new();
    assert_non_null(m);
    int a, b, c;
    assert_null(hmap_get(m, "x"));
    assert_int_equal(hmap_put(m, "x", &a), 0);
    assert_int_equal(hmap_put(m, "", &b), 0);
    assert_ptr_equal(hmap_get(m, "x"), &a);
    assert_ptr_equal(hmap_get(m, ""), &b);
    assert_int_equal(hmap_put(m, "x", &c), 0);
    assert_int_equal(hmap_count(m), 2);
    assert_ptr_equal(hmap_get(m, "x"), &c);
    assert_ptr_equal(hmap_del(m, "x"), &c);
    assert_null(hmap_del(m, "x"));
    assert_null(hmap_get(m, "x"));
    assert_int_equal(hmap_count(m), 1);
    hmap_free(m);
    hmap_free(NULL);
}

static void test_hmap_growth_and_iteration(void **state)
{
    (void)state;
    enum { N = 20000 };
    hmap *m = hmap_new();
    assert_non_null(m);
    char k[32];
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "s-%lu", (unsigned long)i);
        assert_int_equal(hmap_put(m, k, (void *)(i + 1)), 0);
    }
    assert_int_equal(hmap_count(m), N);
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "s-%lu", (unsigned long)i);
        assert_ptr_equal(hmap_get(m, k), (void *)(i + 1));
    }
    static unsigned char seen[N];
    hmap_iter it = { 0 };
    const char *key;
    void *v;
    size_t n = 0;
    while (hmap_next(m, &it, &key, &v)) {
        uintptr_t i = (uintptr_t)v - 1;
        assert_true(i < sizeof(seen));
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        snprintf(k, sizeof(k), "s-%lu", (unsigned long)i);
        assert_string_equal(key, k);
        if (i % 2)
            assert_ptr_equal(hmap_del(m, k), v);
        n++;
    }
    assert_int_equal(n, N);
    assert_int_equal(hmap_count(m), N / 2);
    hmap_free(m);
}

static void test_u64map_basics(void **state)
{
    (void)state;
    u64map *m = u64map_new();
    assert_non_null(m);
    int a, b, c;
    assert_null(u64map_get(m, 0));
    assert_int_equal(u64map_put(m, 0, &a), 0);
    assert_int_equal(u64map_put(m, UINT64_MAX, &b), 0);
    assert_ptr_equal(u64map_get(m, 0), &a);
    assert_ptr_equal(u64map_get(m, UINT64_MAX), &b);
    assert_null(u64map_get(m, 1));
    assert_int_equal(u64map_put(m, 0, &c), 0);
    assert_int_equal(u64map_count(m), 2);
    assert_ptr_equal(u64map_get(m, 0), &c);
    assert_ptr_equal(u64map_del(m, 0), &c);
    assert_null(u64map_del(m, 0));
    assert_int_equal(u64map_count(m), 1);
    u64map_free(m);
    u64map_free(NULL);
}

/* Sequential ids (gateway connections, rpc calls) and ids far apart (high
 * bits only) through growth, then delete every other one while iterating. */
static void test_u64map_growth_and_iteration(void **state)
{
    (void)state;
    enum { N = 20000 };
    u64map *m = u64map_new();
    assert_non_null(m);
    for (uint64_t i = 1; i <= N; i++) {
        assert_int_equal(u64map_put(m, i, (void *)(uintptr_t)i), 0);
        assert_int_equal(u64map_put(m, i << 40, (void *)(uintptr_t)(i + N)), 0);
    }
    assert_int_equal(u64map_count(m), 2 * N);
    for (uint64_t i = 1; i <= N; i++) {
        assert_ptr_equal(u64map_get(m, i), (void *)(uintptr_t)i);
        assert_ptr_equal(u64map_get(m, i << 40), (void *)(uintptr_t)(i + N));
        assert_null(u64map_get(m, i + 2 * N));
    }
    static unsigned char seen[2 * N + 1];
    u64map_iter it = { 0 };
    uint64_t key;
    void *v;
    size_t n = 0;
    while (u64map_next(m, &it, &key, &v)) {
        uintptr_t i = (uintptr_t)v;
        assert_true(i >= 1 && i < sizeof(seen));
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        assert_true(key == (i <= N ? (uint64_t)i : (uint64_t)(i - N) << 40));
        if (i % 2)
            assert_ptr_equal(u64map_del(m, key), v);
        n++;
    }
    assert_int_equal(n, 2 * N);
    assert_int_equal(u64map_count(m), N);
    for (uint64_t i = 1; i <= N; i++)
        assert_true((u64map_get(m, i) != NULL) == (i % 2 == 0));
    u64map_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-seed") == 0) {
        uint64_t s[2];
        hmap_seed(s);
        printf("%llx %llx\n", (unsigned long long)s[0], (unsigned long long)s[1]);
        return 0;
    }
    self_exe = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),       cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_seed_per_process),      cmocka_unit_test(test_hmap_basics),
        cmocka_unit_test(test_hmap_growth_and_iteration), cmocka_unit_test(test_u64map_basics),
        cmocka_unit_test(test_u64map_growth_and_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
