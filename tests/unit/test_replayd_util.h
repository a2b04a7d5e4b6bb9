/* test_replayd_util.h -- helpers for tests that need real processes:
 * free loopback ports, a redis-server of their own, child processes with an
 * environment, a synchronous hiredis client, a bare HTTP GET, and polling
 * with a deadline. Header-only (static) because the Makefile builds each
 * tests/unit/test_*.c alone.
 */
#ifndef TETHER_TEST_REPLAYD_UTIL_H
#define TETHER_TEST_REPLAYD_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

static inline uint64_t tu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A TCP port nobody listens on right now (bind to 0, read it, close). */
static inline int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A private scratch directory for logs, made once per process. */
static inline const char *tu_dir(void)
{
    static char dir[128];
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/tether-test.XXXXXX");
        if (!mkdtemp(dir))
            snprintf(dir, sizeof(dir), "/tmp");
    }
    return dir;
}

/* fork + exec argv with extra "NAME=value" env entries (NULL-terminated, may
 * be NULL); stdout and stderr go to log (appended). Returns the pid or -1. */
static inline pid_t tu_spawn(const char *const argv[], const char *const env[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    for (int i = 0; env && env[i]; i++)
        putenv(strdup(env[i]));
    /* The test process blocks signals for its loop; the child starts clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

/* Sends sig and waits up to ms for the exit. Returns the wait status, or -1
 * if the process is still there (then it is SIGKILLed and reaped). */
static inline int tu_stop(pid_t pid, int sig, unsigned ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    uint64_t end = tu_ms() + ms;
    int st;
    while (tu_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        struct timespec ts = { 0, 5 * 1000000 };
        nanosleep(&ts, NULL); /* waitpid has no timeout; poll at 5 ms */
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* A synchronous command on a fresh connection (1 s timeouts). NULL on failure. */
static inline redisReply *tu_redis(int port, const char *fmt, ...)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* 1 when a PING on port answers PONG. */
static inline int tu_redis_pong(int port)
{
    redisReply *r = tu_redis(port, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    freeReplyObject(r);
    return ok;
}

/* Starts redis-server on port (no persistence, DEBUG allowed from loopback)
 * and waits until it answers. Returns the pid or -1. */
static inline pid_t tu_redis_start(int port)
{
    char ports[16], log[256];
    snprintf(ports, sizeof(ports), "%d", port);
    snprintf(log, sizeof(log), "%s/redis-%d.log", tu_dir(), port);
    const char *argv[] = { "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--enable-debug-command", "local", NULL };
    pid_t pid = tu_spawn(argv, NULL, log);
    if (pid < 0)
        return -1;
    uint64_t end = tu_ms() + 5000;
    while (tu_ms() < end) {
        if (tu_redis_pong(port))
            return pid;
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    tu_stop(pid, SIGKILL, 1000);
    return -1;
}

/* Sends a command on a new connection and does not wait for the reply
 * (DEBUG SLEEP). Returns the context to free later, or NULL. */
static inline redisContext *tu_redis_fire(int port, const char *cmd)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisAppendCommand(c, cmd);
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            break;
    return c;
}

/* Makes Redis unresponsive for secs (DEBUG SLEEP on a side connection) and
 * returns once it really is (a 100 ms PING probe goes unanswered), so the
 * caller's next command is certain to wait. Returns the context to free
 * after the sleep, or NULL. */
static inline redisContext *tu_redis_block(int port, const char *secs)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "DEBUG SLEEP %s", secs);
    redisContext *c = tu_redis_fire(port, cmd);
    if (!c)
        return NULL;
    uint64_t end = tu_ms() + 2000;
    while (tu_ms() < end) {
        struct timeval tv = { 0, 100 * 1000 };
        redisContext *p = redisConnectWithTimeout("127.0.0.1", port, tv);
        int blocked = 1;
        if (p && !p->err) {
            redisSetTimeout(p, tv);
            redisReply *r = redisCommand(p, "PING");
            blocked = r == NULL;
            freeReplyObject(r);
        }
        redisFree(p);
        if (blocked)
            return c;
    }
    redisFree(c);
    return NULL;
}

/* GET path on 127.0.0.1:port; the body (NUL-terminated, truncated to n) into
 * body. Returns the HTTP status or -1. */
/* GET path with an Authorization header (auth, or none when NULL). */
static inline int tu_http_get_auth(int port, const char *path, const char *auth, char *body, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct timeval tv = { 2, 0 };
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    char req[1024];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s\r\n", path,
                      auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    if (write(fd, req, (size_t)rl) != rl) {
        close(fd);
        return -1;
    }
    static char buf[256 * 1024];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    if (body && n) {
        snprintf(body, n, "%s", b ? b + 4 : "");
    }
    return status;
}

static inline int tu_http_get(int port, const char *path, char *body, size_t n)
{
    return tu_http_get_auth(port, path, NULL, body, n);
}

/* The value of the first metrics line starting with prefix (name{labels}),
 * or -1 when absent. */
static inline double tu_metric(int http_port, const char *prefix)
{
    static char body[256 * 1024];
    if (tu_http_get(http_port, "/metrics", body, sizeof(body)) != 200)
        return -1;
    size_t pl = strlen(prefix);
    for (char *line = body; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, pl) == 0 && line[pl] == ' ')
            return strtod(line + pl + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

#endif
