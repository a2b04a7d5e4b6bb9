/* test_opkey.c -- the operator key (lib/opkey) and secrets read from
 * <name>_FILE (lib/config.c cfg_secret), cmocka. A configuration that must
 * stop the process is run in a child, which must exit with status 2. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "opkey.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "operator-key-0123456789abcdef"

static void test_check(void **state)
{
    (void)state;
    assert_int_equal(opkey_check(KEY, "Bearer " KEY), 0);
    assert_int_equal(opkey_check(KEY, "bearer " KEY), 0);
    assert_int_equal(opkey_check(KEY, "BEARER  " KEY), 0);
    assert_int_equal(opkey_check(NULL, "Bearer " KEY), -ENOENT);
    assert_int_equal(opkey_check(NULL, NULL), -ENOENT);
    static const char *bad[] = { NULL, "", "Bearer", "Bearer ", KEY, "Basic " KEY, "Bearer " KEY "x",
                                 "Bearer x" KEY, "Bearer operator-key-0123456789abcdeF", "Bearer operator-key" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (opkey_check(KEY, bad[i]) != -EACCES)
            fail_msg("'%s' accepted", bad[i] ? bad[i] : "(none)");
}

static char tmpdir[64];

static const char *write_file(const char *name, const char *data, size_t n)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

/* Runs cfg_secret(name) in a child; returns its exit status. */
static int child_status(const char *name)
{
    fflush(NULL);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        cfg_secret(name, NULL);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_secret_file(void **state)
{
    (void)state;
    unsetenv("TETHER_T1");
    setenv("TETHER_T1_FILE", write_file("k1", KEY "\r\n \n", strlen(KEY) + 4), 1);
    assert_string_equal(cfg_secret("TETHER_T1", NULL), KEY);

    /* The variable itself wins over the file. */
    setenv("TETHER_T2", "direct-value", 1);
    setenv("TETHER_T2_FILE", write_file("k2", "from-file", 9), 1);
    assert_string_equal(cfg_secret("TETHER_T2", NULL), "direct-value");

    /* Neither: the default. */
    unsetenv("TETHER_T3");
    unsetenv("TETHER_T3_FILE");
    assert_string_equal(cfg_secret("TETHER_T3", "dflt"), "dflt");
    assert_null(cfg_secret("TETHER_T4", NULL));

    /* A file that cannot be used stops the process, even beside the variable. */
    setenv("TETHER_T5_FILE", "/nonexistent/operator.key", 1);
    assert_int_equal(child_status("TETHER_T5"), 2);
    setenv("TETHER_T6_FILE", write_file("k6", "\n\n", 2), 1);
    assert_int_equal(child_status("TETHER_T6"), 2);
    setenv("TETHER_T7_FILE", write_file("k7", "ab\0cd", 5), 1);
    assert_int_equal(child_status("TETHER_T7"), 2);
    static char big[70000];
    memset(big, 'k', sizeof(big));
    setenv("TETHER_T8_FILE", write_file("k8", big, sizeof(big)), 1);
    assert_int_equal(child_status("TETHER_T8"), 2);
    setenv("TETHER_T9", "set", 1);
    setenv("TETHER_T9_FILE", "/nonexistent/operator.key", 1);
    assert_int_equal(child_status("TETHER_T9"), 2);
}

static void test_load(void **state)
{
    (void)state;
    /* opkey_load reads its variables once per process: each case in a child. */
    fflush(NULL);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        setenv("TETHER_OPERATOR_KEY", "short", 1);
        opkey_load();
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        unsetenv("TETHER_OPERATOR_KEY");
        setenv("TETHER_OPERATOR_KEY_FILE", write_file("op", KEY "\n", strlen(KEY) + 1), 1);
        const char *k = opkey_load();
        _exit(k && !strcmp(k, KEY) ? 0 : 1);
    }
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        unsetenv("TETHER_OPERATOR_KEY");
        unsetenv("TETHER_OPERATOR_KEY_FILE");
        _exit(opkey_load() == NULL ? 0 : 1);
    }
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-opkey.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    /* The files write_file made, then the directory (it has no subdirectories). */
    DIR *d = opendir(tmpdir);
    if (!d)
        return -1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(tmpdir) < 0 ? -1 : rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
