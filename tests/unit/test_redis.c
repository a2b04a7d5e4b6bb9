/* test_redis.c -- lib/redis against a real redis-server started by the test:
 * URL parsing, handshake (SELECT), pipelining order, EVALSHA and NOSCRIPT
 * recovery, command timeouts that recycle the connection, -ENOTCONN while
 * down, reconnection after a Redis restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

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
    char host[64];
    int port, db;
    assert_int_equal(redis_parse_url("redis://127.0.0.1:6380/3", host, sizeof(host), &port, &db), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(db, 3);
    assert_int_equal(redis_parse_url("redis://redis", host, sizeof(host), &port, &db), 0);
    assert_string_equal(host, "redis");
    assert_int_equal(port, 6379);
    assert_int_equal(db, 0);
    assert_int_equal(redis_parse_url("redis://[::1]:7000/", host, sizeof(host), &port, &db), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_int_equal(db, 0);
    assert_int_equal(redis_parse_url("http://x:1/0", host, sizeof(host), &port, &db), -EINVAL);
    assert_int_equal(redis_parse_url("redis://:pw@x:1/0", host, sizeof(host), &port, &db), -EINVAL);
    assert_int_equal(redis_parse_url("redis://x:0/0", host, sizeof(host), &port, &db), -EINVAL);
    assert_int_equal(redis_parse_url("redis://x:1/a", host, sizeof(host), &port, &db), -EINVAL);
    assert_int_equal(redis_parse_url("redis://:1/0", host, sizeof(host), &port, &db), -EINVAL);
    assert_int_equal(redis_new(L, "nope", NULL), NULL);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_select_and_pipeline_order),
        cmocka_unit_test(test_evalsha_noscript),
        cmocka_unit_test(test_timeout_recycles),
        cmocka_unit_test(test_free_cancels),
        cmocka_unit_test(test_restart_reconnects),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
