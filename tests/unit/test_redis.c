/* test_redis.c -- lib/redis against a real redis-server started by the test:
 * URL parsing and redaction, AUTH (password, ACL user, password file and its
 * rotation, a wrong password), TLS (a CA, server and client certificates
 * made with openssl: right CA, wrong CA, address mismatch, client
 * certificate required, reconnection), handshake (SELECT), pipelining order, EVALSHA and NOSCRIPT
 * recovery, command timeouts that recycle the connection, -ENOTCONN while
 * down, reconnection after a Redis restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "redis.h"
#include "test_replayd_util.h"

static loop *L;
static int g_port;
static pid_t g_redis;

/* Runs the loop until *flag is non-zero or ms pass. Returns *flag. */
static int run_until(volatile int *flag, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (!*flag && tu_ms() < end)
        loop_run_once(L, 10);
    return *flag;
}

static int wait_ready(redis *r, unsigned ms)
{
    uint64_t end = tu_ms() + ms;
    while (!redis_ready(r) && tu_ms() < end)
        loop_run_once(L, 10);
    return redis_ready(r);
}

typedef struct result {
    int done;
    int status;
    int type;
    long long integer;
    char str[256];
} result;

static void on_result(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    result *x = arg;
    x->done = 1;
    x->status = status;
    if (rep) {
        x->type = rep->type;
        x->integer = rep->integer;
        if (rep->str)
            snprintf(x->str, sizeof(x->str), "%s", rep->str);
    }
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_redis");
    L = loop_new();
    g_port = tu_free_port();
    g_redis = tu_redis_start(g_port);
    return L && g_redis > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_stop(g_redis, SIGKILL, 2000);
    loop_free(L);
    return 0;
}

static redis *connect_db(int db, uint32_t timeout_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/%d", g_port, db);
    redis_opts o = { .name = "test", .cmd_timeout_ms = timeout_ms, .ping_ms = 100 };
    return redis_new(L, url, &o);
}

static void test_parse_url(void **state)
{
    (void)state;
    redis_target u;
    assert_int_equal(redis_url_parse("redis://127.0.0.1:6380/3", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "");
    assert_int_equal(u.has_password, 0);
    assert_int_equal(redis_url_parse("redis://redis", &u), 0);
    assert_string_equal(u.host, "redis");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(redis_url_parse("redis://[::1]:7000/", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 0);
    assert_int_equal(redis_url_parse("redis://[fe80::1%25eth0]", &u), 0);
    assert_string_equal(u.host, "fe80::1%25eth0");
    assert_int_equal(u.port, 6379);
    /* Password only: AUTH pw. */
    assert_int_equal(redis_url_parse("redis://:s3cret@h:1/2", &u), 0);
    assert_string_equal(u.user, "");
    assert_int_equal(u.has_password, 1);
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 2);
    /* ACL user and password, percent-decoded; raw '@' and '/' in the password. */
    assert_int_equal(redis_url_parse("redis://te%74her:p%40ss%3Aw%2F0rd@[::1]:6390/1", &u), 0);
    assert_string_equal(u.user, "tether");
    assert_string_equal(u.password, "p@ss:w/0rd");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 1);
    assert_int_equal(redis_url_parse("redis://app:a@b/c@host", &u), 0);
    assert_string_equal(u.password, "a@b/c");
    assert_string_equal(u.host, "host");
    /* User alone (the password comes from the file). */
    assert_int_equal(redis_url_parse("redis://app@host:7/0", &u), 0);
    assert_string_equal(u.user, "app");
    assert_int_equal(u.has_password, 0);
    assert_int_equal(u.sentinel, 0);
    assert_int_equal(u.tls, 0);
    /* TLS. */
    assert_int_equal(redis_url_parse("rediss://:pw@[2001:db8::7]:6380/4", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "2001:db8::7");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 4);
    assert_string_equal(u.password, "pw");
    /* Sentinel: hosts (default port 26379, v6 literals), master name, db. */
    assert_int_equal(redis_url_parse("redis+sentinel://app:s%2Fcr@s1,s2:26380,[::1]:7/mymaster/3", &u), 0);
    assert_int_equal(u.sentinel, 1);
    assert_int_equal(u.nsentinels, 3);
    assert_string_equal(u.sentinels[0].host, "s1");
    assert_int_equal(u.sentinels[0].port, 26379);
    assert_string_equal(u.sentinels[1].host, "s2");
    assert_int_equal(u.sentinels[1].port, 26380);
    assert_string_equal(u.sentinels[2].host, "::1");
    assert_int_equal(u.sentinels[2].port, 7);
    assert_string_equal(u.master, "mymaster");
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "s/cr");
    assert_int_equal(redis_url_parse("redis+sentinel://127.0.0.1:26379/m", &u), 0);
    assert_int_equal(u.nsentinels, 1);
    assert_string_equal(u.master, "m");
    assert_int_equal(u.db, 0);
    static const char *const bad_sentinel[] = {
        "redis+sentinel://h1,h2", "redis+sentinel://h1/", "redis+sentinel://h1,/m", "redis+sentinel://,h1/m",
        "redis+sentinel:///m", "redis+sentinel://h1/m/x", "redis+sentinel://h1/m%20x", "redis+sentinel://h1:0/m",
        "redis+sentinel://a,b,c,d,e,f,g,h,i/m",
    };
    for (size_t i = 0; i < sizeof(bad_sentinel) / sizeof(bad_sentinel[0]); i++) {
        if (redis_url_parse(bad_sentinel[i], &u) != -EINVAL)
            fail_msg("accepted %s", bad_sentinel[i]);
    }
    /* Bad forms. */
    static const char *const bad[] = {
        "http://x:1/0", "redis:/x", "redis://", "redis://:1/0", "redis://x:0/0", "redis://x:65536",
        "redis://x:-1", "redis://x:+1", "redis://x:1/a", "redis://x:1/-1", "redis://x:1/0/1", "redis://x?db=1",
        "redis://x#f", "redis://[::1", "redis://[::1]x", "redis://[]:1", "redis://@x", "redis://u:p@",
        "redis://:p%4@x", "redis://:p%zz@x", "redis://:p%00@x", "redis://u%@x", "redis://x:",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (redis_url_parse(bad[i], &u) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
    char big[700];
    snprintf(big, sizeof(big), "redis://:%0300d@x", 0);
    assert_int_equal(redis_url_parse(big, &u), -EINVAL);
    snprintf(big, sizeof(big), "redis://%0300d", 0);
    assert_int_equal(redis_url_parse(big, &u), -EINVAL);
    assert_int_equal(redis_url_parse(NULL, &u), -EINVAL);
    assert_int_equal(redis_new(L, "nope", NULL), NULL);
    assert_int_equal(errno, EINVAL);
    /* An ACL user with no password anywhere is refused at once. */
    unsetenv("TETHER_REDIS_PASSWORD_FILE");
    assert_int_equal(redis_new(L, "redis://app@127.0.0.1:1", NULL), NULL);
    assert_int_equal(errno, EINVAL);
}

static void test_redact(void **state)
{
    (void)state;
    char out[128];
    assert_string_equal(cfg_redact_url("redis://:s3cret@h:1/2", out, sizeof(out)), "redis://:***@h:1/2");
    assert_string_equal(cfg_redact_url("redis://app:a@b/c@host/0", out, sizeof(out)), "redis://app:***@host/0");
    assert_string_equal(cfg_redact_url("redis://app@host", out, sizeof(out)), "redis://app@host");
    assert_string_equal(cfg_redact_url("redis://[::1]:6379/0", out, sizeof(out)), "redis://[::1]:6379/0");
    assert_string_equal(cfg_redact_url("redis+sentinel://u:pw@s1,s2/m/0", out, sizeof(out)),
                        "redis+sentinel://u:***@s1,s2/m/0");
    assert_string_equal(cfg_redact_url("rediss://:p@ss@h", out, sizeof(out)), "rediss://:***@h");
    assert_string_equal(cfg_redact_url("tcp://127.0.0.1:5550", out, sizeof(out)), "tcp://127.0.0.1:5550");
    assert_string_equal(cfg_redact_url("not a url: x@y", out, sizeof(out)), "not a url: x@y");
    assert_string_equal(cfg_redact_url(NULL, out, sizeof(out)), "");
    /* Truncation never reveals the password. */
    char small[12];
    cfg_redact_url("redis://u:topsecret@host", small, sizeof(small));
    assert_null(strstr(small, "top"));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* One synchronous command on a new connection as the default user. */
static void admin(const char *fmt, ...)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);
    assert_true(c && !c->err);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", fmt, rep->str);
    freeReplyObject(rep);
    redisFree(c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int run_cmd(redis *r, result *x, int argc, const char *const *argv)
{
    memset(x, 0, sizeof(*x));
    if (redis_command(r, on_result, x, argc, argv, NULL) < 0)
        return 0;
    return run_until(&x->done, 2000);
}

static void test_auth_acl(void **state)
{
    (void)state;
    admin("ACL SETUSER tether reset on >p@ss:w/0rd ~tether:* +@all");
    char url[128];
    snprintf(url, sizeof(url), "redis://tether:p%%40ss%%3Aw%%2F0rd@127.0.0.1:%d/0", g_port);
    redis_opts o = { .name = "acl", .cmd_timeout_ms = 1000, .ping_ms = 100 };
    redis *r = redis_new(L, url, &o);
    assert_non_null(r);
    assert_true(wait_ready(r, 3000));
    result x;
    const char *who[] = { "ACL", "WHOAMI" };
    assert_true(run_cmd(r, &x, 2, who));
    assert_string_equal(x.str, "tether");
    const char *ok[] = { "SET", "tether:acl", "1" };
    assert_true(run_cmd(r, &x, 3, ok));
    assert_int_equal(x.type, REDIS_REPLY_STATUS);
    const char *no[] = { "SET", "other:acl", "1" };
    assert_true(run_cmd(r, &x, 3, no));
    assert_int_equal(x.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(x.str, "NOPERM"));
    /* AUTH again first thing after a reconnect: without it the new
     * connection would be the default user. */
    redis_stats st0 = redis_get_stats(r);
    admin("CLIENT KILL USER tether");
    uint64_t end = tu_ms() + 3000;
    while (redis_get_stats(r).reconnects == st0.reconnects && tu_ms() < end)
        loop_run_once(L, 10);
    assert_true(wait_ready(r, 3000));
    assert_true(run_cmd(r, &x, 2, who));
    assert_string_equal(x.str, "tether");
    redis_free(r);
    admin("DEL tether:acl");
}

static void test_auth_wrong_then_file_rotation(void **state)
{
    (void)state;
    admin("ACL SETUSER rot reset on >first ~tether:* +@all");
    char url[128], path[256];
    snprintf(url, sizeof(url), "redis://rot:wrong@127.0.0.1:%d/0", g_port);
    redis_opts o = { .name = "wrong", .cmd_timeout_ms = 1000, .ping_ms = 100 };
    /* A wrong password: never up, a clear error, retried (no crash). */
    redis *r = redis_new(L, url, &o);
    assert_non_null(r);
    assert_false(wait_ready(r, 800));
    assert_non_null(strstr(redis_last_error(r), "AUTH refused"));
    assert_non_null(strstr(redis_last_error(r), "WRONGPASS"));
    assert_null(strstr(redis_last_error(r), "wrong"));
    assert_true(redis_get_stats(r).disconnects >= 2);
    redis_free(r);

    /* The password file, re-read before each attempt. */
    snprintf(path, sizeof(path), "%s/redis-pw-%d", tu_dir(), g_port);
    write_file(path, "first\n");
    setenv("TETHER_REDIS_PASSWORD_FILE", path, 1);
    snprintf(url, sizeof(url), "redis://rot@127.0.0.1:%d/0", g_port);
    r = redis_new(L, url, &o);
    assert_non_null(r);
    assert_true(wait_ready(r, 3000));
    /* Rotation: the server changes first, the connection drops, the file
     * catches up later; the next attempt after that gets in. */
    admin("ACL SETUSER rot resetpass >second");
    redis_stats st0 = redis_get_stats(r);
    admin("CLIENT KILL USER rot");
    uint64_t end = tu_ms() + 3000;
    while (redis_get_stats(r).disconnects < st0.disconnects + 2 && tu_ms() < end)
        loop_run_once(L, 10);
    assert_false(wait_ready(r, 300));
    assert_non_null(strstr(redis_last_error(r), "WRONGPASS"));
    write_file(path, "second\r\n");
    assert_true(wait_ready(r, 4000));
    result x;
    const char *who[] = { "ACL", "WHOAMI" };
    assert_true(run_cmd(r, &x, 2, who));
    assert_string_equal(x.str, "rot");
    redis_free(r);
    /* An unreadable file is an error of redis_new. */
    setenv("TETHER_REDIS_PASSWORD_FILE", "/nonexistent/pw", 1);
    assert_null(redis_new(L, url, &o));
    assert_int_equal(errno, ENOENT);
    unsetenv("TETHER_REDIS_PASSWORD_FILE");
    unlink(path);
}

static void test_select_and_pipeline_order(void **state)
{
    (void)state;
    redis *r = connect_db(5, 1000);
    assert_non_null(r);
    /* Before the handshake, commands are refused rather than queued. */
    const char *del[] = { "DEL", "ctr" };
    assert_int_equal(redis_command(r, on_result, NULL, 2, del, NULL), -ENOTCONN);
    assert_true(wait_ready(r, 3000));
    result d = { 0 };
    assert_int_equal(redis_command(r, on_result, &d, 2, del, NULL), 0);
    /* 5000 INCRs in flight at once: callbacks must see 1..5000 in order. */
    enum { N = 5000 };
    static result rs[N];
    memset(rs, 0, sizeof(rs));
    const char *incr[] = { "INCR", "ctr" };
    for (int i = 0; i < N; i++)
        assert_int_equal(redis_command(r, on_result, &rs[i], 2, incr, NULL), 0);
    assert_true(redis_inflight(r) >= (size_t)N);
    assert_true(run_until(&rs[N - 1].done, 5000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].status, 0);
        assert_int_equal(rs[i].integer, i + 1);
    }
    /* It ran in db 5, not db 0. */
    redisReply *rep = tu_redis(g_port, "GET ctr");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_NIL);
    freeReplyObject(rep);
    rep = tu_redis(g_port, "EVAL %s 0", "redis.call('SELECT', 5) return redis.call('GET', 'ctr')");
    assert_non_null(rep);
    assert_string_equal(rep->str, "5000");
    freeReplyObject(rep);
    /* Binary-safe arguments. */
    const char *set[] = { "SET", "bin", "a\0b" };
    size_t lens[] = { 3, 3, 3 };
    result s = { 0 };
    assert_int_equal(redis_command(r, on_result, &s, 3, set, lens), 0);
    const char *strlen_cmd[] = { "STRLEN", "bin" };
    result sl = { 0 };
    assert_int_equal(redis_command(r, on_result, &sl, 2, strlen_cmd, NULL), 0);
    assert_true(run_until(&sl.done, 2000));
    assert_int_equal(sl.integer, 3);
    redis_free(r);
}

static void test_evalsha_noscript(void **state)
{
    (void)state;
    redis *r = connect_db(0, 1000);
    redis_script *sc = redis_script_new(r, "return tonumber(ARGV[1]) + redis.call('INCR', KEYS[1])");
    assert_non_null(sc);
    assert_int_equal(strlen(redis_script_sha(sc)), 40);
    assert_true(wait_ready(r, 3000));
    const char *args[] = { "sc:k", "100" };
    result a = { 0 };
    assert_int_equal(redis_evalsha(r, sc, on_result, &a, 1, 1, args, NULL), 0);
    assert_true(run_until(&a.done, 2000));
    assert_int_equal(a.status, 0);
    assert_int_equal(a.integer, 101);
    /* Flush the script cache under the connection; 50 pipelined calls must
     * all run exactly once, in order, after a transparent reload. */
    redisReply *rep = tu_redis(g_port, "SCRIPT FLUSH");
    assert_non_null(rep);
    freeReplyObject(rep);
    static result rs[50];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 50; i++)
        assert_int_equal(redis_evalsha(r, sc, on_result, &rs[i], 1, 1, args, NULL), 0);
    assert_true(run_until(&rs[49].done, 3000));
    for (int i = 0; i < 50; i++) {
        assert_int_equal(rs[i].status, 0);
        assert_int_equal(rs[i].type, REDIS_REPLY_INTEGER);
        assert_int_equal(rs[i].integer, 100 + 2 + i);
    }
    assert_true(redis_get_stats(r).script_reloads >= 1);
    redis_free(r);
}

static void test_timeout_recycles(void **state)
{
    (void)state;
    redis *r = connect_db(0, 300);
    assert_true(wait_ready(r, 3000));
    /* Redis stops answering for 1 s: the command in flight must fail with
     * -ETIMEDOUT near 300 ms, not succeed a second later. */
    redisContext *blocker = tu_redis_block(g_port, "1");
    assert_non_null(blocker);
    const char *ping[] = { "PING" };
    result p = { 0 };
    uint64_t t0 = tu_ms();
    assert_int_equal(redis_command(r, on_result, &p, 1, ping, NULL), 0);
    assert_true(run_until(&p.done, 3000));
    uint64_t took = tu_ms() - t0;
    assert_int_equal(p.status, -ETIMEDOUT);
    assert_true(took >= 200 && took < 900);
    assert_true(redis_get_stats(r).timeouts >= 1);
    assert_false(redis_ready(r));
    /* Refused while down, then back on its own. */
    assert_int_equal(redis_command(r, on_result, &p, 1, ping, NULL), -ENOTCONN);
    assert_true(wait_ready(r, 5000));
    result q = { 0 };
    assert_int_equal(redis_command(r, on_result, &q, 1, ping, NULL), 0);
    assert_true(run_until(&q.done, 2000));
    assert_int_equal(q.status, 0);
    assert_string_equal(q.str, "PONG");
    redisFree(blocker);
    redis_free(r);
}

static void test_restart_reconnects(void **state)
{
    (void)state;
    redis *r = connect_db(0, 1000);
    redis_script *sc = redis_script_new(r, "return 7");
    assert_true(wait_ready(r, 3000));
    /* Commands in flight when Redis dies fail with a connection error. */
    redisContext *blocker = tu_redis_block(g_port, "0.5");
    result p = { 0 };
    const char *ping[] = { "PING" };
    assert_int_equal(redis_command(r, on_result, &p, 1, ping, NULL), 0);
    loop_run_once(L, 50);
    tu_stop(g_redis, SIGKILL, 2000);
    redisFree(blocker);
    assert_true(run_until(&p.done, 2000));
    assert_int_equal(p.status, -ECONNRESET);
    /* Down: -ENOTCONN, not ready, and retrying in the background. */
    uint64_t end = tu_ms() + 1000;
    while (tu_ms() < end)
        loop_run_once(L, 20);
    assert_false(redis_ready(r));
    assert_int_equal(redis_command(r, on_result, &p, 1, ping, NULL), -ENOTCONN);
    unsigned long long disc = redis_get_stats(r).disconnects;
    assert_true(disc >= 2); /* the drop, then failed attempts */
    /* Back on the same port with an empty script cache: the handshake loads
     * the script again, so EVALSHA works without a NOSCRIPT round. */
    g_redis = tu_redis_start(g_port);
    assert_true(g_redis > 0);
    assert_true(wait_ready(r, 5000));
    assert_true(redis_get_stats(r).reconnects >= 1);
    unsigned long long reloads = redis_get_stats(r).script_reloads;
    result e = { 0 };
    assert_int_equal(redis_evalsha(r, sc, on_result, &e, 0, 0, NULL, NULL), 0);
    assert_true(run_until(&e.done, 2000));
    assert_int_equal(e.status, 0);
    assert_int_equal(e.integer, 7);
    assert_int_equal(redis_get_stats(r).script_reloads, reloads);
    redis_free(r);
}

static int g_cancelled;
static void on_cancel(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    (void)rep;
    (void)arg;
    if (status == -ECANCELED)
        g_cancelled++;
}

static void test_free_cancels(void **state)
{
    (void)state;
    redis *r = connect_db(0, 1000);
    assert_true(wait_ready(r, 3000));
    const char *ping[] = { "PING" };
    for (int i = 0; i < 10; i++)
        assert_int_equal(redis_command(r, on_cancel, NULL, 1, ping, NULL), 0);
    g_cancelled = 0;
    redis_free(r);
    assert_int_equal(g_cancelled, 10);
    redis_free(NULL);
}

/* ---- TLS ------------------------------------------------------------------------ */

static char g_tls_dir[256];

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    /* The test's own fixed openssl commands in its own directory: no outside input. */
    return system(cmd); // NOLINT(cert-env33-c)
}

/* A CA, a server certificate for localhost / 127.0.0.1 and a client
 * certificate signed by it, and an unrelated CA. */
static void make_certs(void)
{
    snprintf(g_tls_dir, sizeof(g_tls_dir), "%s/tls-%d", tu_dir(), (int)getpid());
    const char *d = g_tls_dir;
    assert_int_equal(sh("(mkdir -p %s && cd %s && "
                        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=tether-test-ca && "
                        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other-ca && "
                        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost && "
                        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > srv.ext && "
                        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile srv.ext && "
                        "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=tether-client && "
                        "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt -days 2)"
                        " >/dev/null 2>&1",
                        d, d),
                     0);
}

/* A Redis with a plain port (for admin) and a TLS port on 127.0.0.1 and
 * 127.0.0.2 that requires client certificates when auth_clients. */
static pid_t tls_redis_start(int port, int tls_port, int auth_clients)
{
    char ports[16], tports[16], log[256], cert[300], key[300], ca[300];
    snprintf(ports, sizeof(ports), "%d", port);
    snprintf(tports, sizeof(tports), "%d", tls_port);
    snprintf(log, sizeof(log), "%s/redis-tls-%d.log", tu_dir(), tls_port);
    snprintf(cert, sizeof(cert), "%s/srv.crt", g_tls_dir);
    snprintf(key, sizeof(key), "%s/srv.key", g_tls_dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_tls_dir);
    const char *argv[] = { "redis-server", "--port", ports, "--tls-port", tports, "--bind", "127.0.0.1", "127.0.0.2",
                           "--save", "", "--appendonly", "no", "--tls-cert-file", cert, "--tls-key-file", key,
                           "--tls-ca-cert-file", ca, "--tls-auth-clients", auth_clients ? "yes" : "no",
                           "--requirepass", "tls-pw", NULL };
    pid_t pid = tu_spawn(argv, NULL, log);
    if (pid < 0)
        return -1;
    uint64_t end = tu_ms() + 5000;
    while (tu_ms() < end) {
        redisReply *rep = tu_redis(port, "PING");
        int up = rep != NULL; /* NOAUTH is an answer too */
        freeReplyObject(rep);
        if (up)
            return pid;
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    tu_stop(pid, SIGKILL, 1000);
    return -1;
}

static void tls_env(const char *ca, int client_cert)
{
    char path[320];
    if (ca) {
        snprintf(path, sizeof(path), "%s/%s", g_tls_dir, ca);
        setenv("TETHER_REDIS_CA", path, 1);
    } else {
        unsetenv("TETHER_REDIS_CA");
    }
    if (client_cert) {
        snprintf(path, sizeof(path), "%s/cli.crt", g_tls_dir);
        setenv("TETHER_REDIS_CERT", path, 1);
        snprintf(path, sizeof(path), "%s/cli.key", g_tls_dir);
        setenv("TETHER_REDIS_KEY", path, 1);
    } else {
        unsetenv("TETHER_REDIS_CERT");
        unsetenv("TETHER_REDIS_KEY");
    }
    unsetenv("TETHER_REDIS_TLS_INSECURE");
}

static redis *tls_connect(const char *host, int tls_port)
{
    char url[128];
    snprintf(url, sizeof(url), "rediss://:tls-pw@%s:%d/2", host, tls_port);
    redis_opts o = { .name = "tls", .cmd_timeout_ms = 1000, .ping_ms = 100 };
    return redis_new(L, url, &o);
}

/* Refused: never up within ms, and the reason names needle. */
static void assert_refused(const char *host, int tls_port, const char *needle)
{
    redis *r = tls_connect(host, tls_port);
    assert_non_null(r);
    assert_false(wait_ready(r, 700));
    if (!strstr(redis_last_error(r), needle))
        fail_msg("error '%s' does not say '%s'", redis_last_error(r), needle);
    assert_true(redis_get_stats(r).disconnects >= 1);
    redis_free(r);
}

static void test_tls(void **state)
{
    (void)state;
    make_certs();
    int port = tu_free_port(), tport = tu_free_port();
    pid_t pid = tls_redis_start(port, tport, 0);
    assert_true(pid > 0);
    char err[256];

    /* The right CA, by address and by name (SNI, DNS name in the SAN). */
    tls_env("ca.crt", 0);
    static const char *const hosts[] = { "127.0.0.1", "localhost" };
    for (int i = 0; i < 2; i++) {
        redis *r = tls_connect(hosts[i], tport);
        assert_non_null(r);
        assert_true(wait_ready(r, 3000));
        result x;
        const char *set[] = { "SET", "tether:tls", "over tls" };
        assert_true(run_cmd(r, &x, 3, set));
        assert_int_equal(x.type, REDIS_REPLY_STATUS);
        /* A large value crosses many TLS records both ways. */
        static char big[300000];
        memset(big, 'x', sizeof(big) - 1);
        const char *setb[] = { "SET", "tether:big", big };
        assert_true(run_cmd(r, &x, 3, setb));
        const char *strlen_[] = { "STRLEN", "tether:big" };
        assert_true(run_cmd(r, &x, 2, strlen_));
        assert_int_equal(x.integer, (long long)sizeof(big) - 1);
        /* A dropped TLS connection comes back with AUTH and SELECT. */
        redis_stats st0 = redis_get_stats(r);
        redisContext *c = redisConnect("127.0.0.1", port);
        assert_true(c && !c->err);
        freeReplyObject(redisCommand(c, "AUTH tls-pw"));
        freeReplyObject(redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes"));
        redisFree(c);
        uint64_t end = tu_ms() + 3000;
        while (redis_get_stats(r).reconnects == st0.reconnects && tu_ms() < end)
            loop_run_once(L, 10);
        assert_true(wait_ready(r, 3000));
        const char *get[] = { "GET", "tether:tls" };
        assert_true(run_cmd(r, &x, 2, get));
        assert_string_equal(x.str, "over tls");
        redis_free(r);
    }
    /* Another CA: refused, and said so. */
    tls_env("other.crt", 0);
    assert_refused("127.0.0.1", tport, "certificate verify failed");
    /* The right CA but an address the certificate does not name. */
    tls_env("ca.crt", 0);
    assert_refused("127.0.0.2", tport, "certificate verify failed");
    /* TETHER_REDIS_TLS_INSECURE (tests only) skips verification. */
    tls_env("other.crt", 0);
    setenv("TETHER_REDIS_TLS_INSECURE", "1", 1);
    redis *r = tls_connect("127.0.0.2", tport);
    assert_true(wait_ready(r, 3000));
    redis_free(r);
    /* Plain Redis protocol against the TLS port never comes up. */
    tls_env("ca.crt", 0);
    char url[96];
    snprintf(url, sizeof(url), "redis://:tls-pw@127.0.0.1:%d", tport);
    redis_opts o = { .name = "plain-to-tls", .cmd_timeout_ms = 300, .ping_ms = 100 };
    r = redis_new(L, url, &o);
    assert_false(wait_ready(r, 800));
    redis_free(r);
    /* Bad TLS files are configuration errors. */
    setenv("TETHER_REDIS_CA", "/nonexistent/ca.crt", 1);
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", tport);
    assert_true(redis_check_config(url, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "TETHER_REDIS_CA"));
    assert_null(redis_new(L, url, NULL));
    tls_env("ca.crt", 0);
    setenv("TETHER_REDIS_CERT", "/nonexistent/cli.crt", 1);
    assert_true(redis_check_config(url, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "TETHER_REDIS_CERT"));
    tls_env("ca.crt", 0);
    assert_int_equal(redis_check_config(url, err, sizeof(err)), 0);
    tu_stop(pid, SIGKILL, 2000);

    /* A server that requires client certificates. */
    port = tu_free_port();
    tport = tu_free_port();
    pid = tls_redis_start(port, tport, 1);
    assert_true(pid > 0);
    tls_env("ca.crt", 0);
    assert_refused("127.0.0.1", tport, "");
    tls_env("ca.crt", 1);
    r = tls_connect("127.0.0.1", tport);
    assert_true(wait_ready(r, 3000));
    redis_free(r);
    tu_stop(pid, SIGKILL, 2000);
    tls_env(NULL, 0);
    sh("rm -rf %s", g_tls_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_auth_acl),
        cmocka_unit_test(test_auth_wrong_then_file_rotation),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_select_and_pipeline_order),
        cmocka_unit_test(test_evalsha_noscript),
        cmocka_unit_test(test_timeout_recycles),
        cmocka_unit_test(test_free_cancels),
        cmocka_unit_test(test_restart_reconnects),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
