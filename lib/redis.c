/* redis.c -- hiredis async on the loop: connect, handshake, timeouts,
 * reconnection, scripts (see redis.h for the contract).
 *
 * Shape of a connection's life:
 *
 *   DOWN --retry timer--> CONNECTING --PING answered--> UP --error/timeout--> DOWN
 *
 * While CONNECTING, only the handshake (SELECT, SCRIPT LOAD..., PING) is on
 * the wire; callers get -ENOTCONN and retry through their own clients, which
 * is cheaper and safer than queueing requests that could otherwise run
 * before SELECT.
 *
 * Every command, internal or not, is an rreq in one FIFO per handle, in send
 * order. hiredis answers in that order too, so the FIFO head is always the
 * next reply due and its deadline is the earliest one: the timeout sweep is a
 * single comparison. rreqs come from a free list and keep their formatted
 * command buffer across uses, so a steady stream of commands allocates
 * nothing here (hiredis still allocates its callback node and the replies).
 * The buffer is kept until the reply because a NOSCRIPT answer means the
 * same bytes must be sent again.
 */
#include "redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"

#define REDIS_BACKOFF_MIN_MS 100u
#define REDIS_BACKOFF_MAX_MS 2000u
#define REDIS_FREE_KEEP 1024        /* rreqs kept on the free list */
#define REDIS_BUF_KEEP (256 * 1024) /* larger command buffers are not kept */
#define REDIS_MAX_ARGS 1024

enum { ST_DOWN, ST_CONNECTING, ST_UP };
enum { K_USER, K_AUTH, K_SELECT, K_LOAD, K_HANDSHAKE_PING, K_PING };

typedef struct rreq rreq;
struct rreq {
    rreq *next, *prev;
    redis *r;
    int kind;
    int resent;
    redis_reply_cb *cb;
    void *arg;
    redis_script *script; /* EVALSHA of this script (K_USER), or the one loaded (K_LOAD) */
    uint64_t deadline;
    char *buf;
    size_t len, cap;
};

struct redis_script {
    redis_script *next;
    char sha[41];
    char *body;
    size_t len;
    int loading; /* a SCRIPT LOAD is on the wire */
};

/* The event glue of one hiredis context; freed by hiredis's cleanup hook. */
typedef struct rconn {
    redis *r;
    redisAsyncContext *ac;
    int fd;
    unsigned ev;
    int watched;
    int fail_status; /* what pending commands get when the context dies */
} rconn;

struct redis {
    loop *l;
    char name[32];
    char host[256];
    int port, db;
    char user[128];
    char password[256]; /* from the URL (url_password) or the password file */
    int url_password;
    int auth_failed;    /* the last AUTH was refused: its error is logged once */
    uint32_t timeout_ms, ping_ms;
    redisAsyncContext *ac; /* the current context, NULL when DOWN */
    int state;
    int freeing;
    int ever_up;
    int ping_ok;
    int ping_inflight;
    uint64_t last_ping;
    uint64_t last_reply;   /* when the last reply arrived (progress of the FIFO) */
    uint32_t backoff_ms;
    loop_timer tick;
    loop_timer retry;
    rreq *head, *tail;
    size_t inflight;
    rreq *free_list;
    size_t nfree;
    redis_script *scripts;
    char err[160];
    redis_stats st;
};

static void connect_now(redis *r);

/* ---- URL ---------------------------------------------------------------------- */

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

/* Percent-decodes s[0..n) into out (outlen bytes, NUL-terminated). */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = hi * 16 + lo;
            if (c == 0)
                return -EINVAL;
            i += 2;
        }
        if (o + 1 >= outlen)
            return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int redis_url_parse(const char *url, redis_target *u)
{
    static const char scheme[] = "redis://";
    memset(u, 0, sizeof(*u));
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return -EINVAL;
    const char *p = url + sizeof(scheme) - 1;
    /* The userinfo ends at the last '@': a password may hold '@' or '/'
     * unescaped, the rest of the URL never holds '@'. */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        if (pct_decode(p, (size_t)(ue - p), u->user, sizeof(u->user)) < 0)
            return -EINVAL;
        if (colon) {
            if (pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof(u->password)) < 0)
                return -EINVAL;
            u->has_password = 1;
        } else if (!u->user[0]) {
            return -EINVAL; /* "redis://@host" */
        }
        p = at + 1;
    }
    if (strpbrk(p, "?#"))
        return -EINVAL;
    const char *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return -EINVAL;
        p = he + 1;
        if (*p && *p != ':' && *p != '/')
            return -EINVAL;
    } else {
        hs = p;
        he = p + strcspn(p, ":/");
        p = he;
    }
    size_t n = (size_t)(he - hs);
    if (n == 0 || n >= sizeof(u->host))
        return -EINVAL;
    memcpy(u->host, hs, n);
    u->host[n] = '\0';
    long v = 6379;
    if (*p == ':') {
        char *end;
        errno = 0;
        v = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || p[1] == '-' || p[1] == '+' || v < 1 || v > 65535)
            return -EINVAL;
        p = end;
    }
    u->port = (int)v;
    v = 0;
    if (*p == '/') {
        p++;
        if (*p) {
            char *end;
            errno = 0;
            v = strtol(p, &end, 10);
            if (errno || end == p || *end || *p == '-' || *p == '+' || v < 0 || v > 1000000)
                return -EINVAL;
            p = end;
        }
    }
    if (*p)
        return -EINVAL;
    u->db = (int)v;
    return 0;
}

int redis_password_file(char *buf, size_t buflen)
{
    const char *path = getenv("TETHER_REDIS_PASSWORD_FILE");
    if (buflen == 0)
        return -ENAMETOOLONG;
    buf[0] = '\0';
    if (!path || !*path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, buflen, f);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err)
        return err;
    size_t len = 0;
    while (len < n && buf[len] != '\n' && buf[len] != '\r')
        len++;
    if (len >= buflen) {
        OPENSSL_cleanse(buf, buflen);
        return -ENAMETOOLONG;
    }
    buf[len] = '\0';
    OPENSSL_cleanse(buf + len, n - len);
    return (int)len;
}

/* ---- request pool and FIFO ------------------------------------------------------ */

static rreq *req_get(redis *r)
{
    rreq *q = r->free_list;
    if (q) {
        r->free_list = q->next;
        r->nfree--;
    } else {
        q = calloc(1, sizeof(*q));
        if (!q)
            return NULL;
    }
    char *buf = q->buf;
    size_t cap = q->cap;
    memset(q, 0, sizeof(*q));
    q->buf = buf;
    q->cap = cap;
    q->r = r;
    return q;
}

static void req_put(redis *r, rreq *q)
{
    if (r->nfree >= REDIS_FREE_KEEP || q->cap > REDIS_BUF_KEEP) {
        free(q->buf);
        free(q);
        return;
    }
    q->next = r->free_list;
    r->free_list = q;
    r->nfree++;
}

static void fifo_push(redis *r, rreq *q)
{
    q->deadline = loop_now_ms(r->l) + r->timeout_ms;
    q->next = NULL;
    q->prev = r->tail;
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->inflight++;
}

static void fifo_remove(redis *r, rreq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        r->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        r->tail = q->prev;
    q->next = q->prev = NULL;
    r->inflight--;
}

/* Formats argc arguments (prefix first, then argv) as a RESP array into q->buf. */
static int req_format(rreq *q, int npre, const char *const *pre, const size_t *prelen, int argc,
                      const char *const *argv, const size_t *lens)
{
    int total = npre + argc;
    if (argc < 0 || total <= 0 || total > REDIS_MAX_ARGS)
        return -E2BIG;
    size_t need = 16;
    for (int i = 0; i < total; i++) {
        size_t n = i < npre ? prelen[i] : (lens ? lens[i - npre] : strlen(argv[i - npre]));
        need += 1 + 20 + 2 + n + 2;
    }
    if (need > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(q->buf, cap);
        if (!nb)
            return -ENOMEM;
        q->buf = nb;
        q->cap = cap;
    }
    char *p = q->buf;
    p += sprintf(p, "*%d\r\n", total);
    for (int i = 0; i < total; i++) {
        const char *s = i < npre ? pre[i] : argv[i - npre];
        size_t n = i < npre ? prelen[i] : (lens ? lens[i - npre] : strlen(s));
        /* The length prefix by hand: snprintf per argument shows in profiles. */
        char digits[24];
        int nd = 0;
        size_t v = n;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        *p++ = '$';
        while (nd)
            *p++ = digits[--nd];
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, s, n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    q->len = (size_t)(p - q->buf);
    return 0;
}

/* ---- event glue (hiredis hooks onto loop_add_fd/loop_mod_fd/loop_del_fd) ------ */

static void on_fd(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    rconn *c = arg;
    redis *r = c->r;
    redisAsyncContext *ac = c->ac;
    /* HandleRead may end in the context's (and c's) destruction; r->ac tells. */
    if (events & (LOOP_READ | LOOP_ERROR))
        redisAsyncHandleRead(ac);
    if ((events & LOOP_WRITE) && r->ac == ac)
        redisAsyncHandleWrite(ac);
}

static void ev_set(rconn *c, unsigned ev)
{
    loop *l = c->r->l;
    if (c->watched && ev == c->ev)
        return;
    if (!c->watched) {
        if (loop_add_fd(l, c->fd, ev, on_fd, c) < 0) {
            LOG_ERROR("redis: cannot watch socket", "{s:i}", "fd", c->fd);
            return;
        }
        c->watched = 1;
    } else {
        loop_mod_fd(l, c->fd, ev);
    }
    c->ev = ev;
}

static void hook_add_read(void *p) { rconn *c = p; ev_set(c, c->ev | LOOP_READ); }
static void hook_del_read(void *p) { rconn *c = p; ev_set(c, c->ev & ~LOOP_READ); }
static void hook_add_write(void *p) { rconn *c = p; ev_set(c, c->ev | LOOP_WRITE); }
static void hook_del_write(void *p) { rconn *c = p; ev_set(c, c->ev & ~LOOP_WRITE); }

static void on_retry(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    connect_now(arg);
}

/* The connection is gone (or never came): schedules the next attempt. */
static void went_down(redis *r, const char *why)
{
    int was_up = r->state == ST_UP;
    r->state = ST_DOWN;
    r->ping_ok = 0;
    r->ping_inflight = 0;
    r->st.disconnects++;
    if (why && *why)
        snprintf(r->err, sizeof(r->err), "%s", why);
    for (redis_script *s = r->scripts; s; s = s->next)
        s->loading = 0;
    if (r->freeing)
        return;
    LOG_WARN(was_up ? "redis: connection lost" : "redis: connect failed", "{s:s,s:s,s:i,s:i}", "conn",
             r->name, "error", r->err, "port", r->port, "retry_ms", (int)r->backoff_ms);
    loop_timer_start(r->l, &r->retry, r->backoff_ms, 0, on_retry, r);
    r->backoff_ms = r->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Marks the current connection lost (idempotent: only the first report of a
 * context's death counts) and schedules a reconnect. */
static void conn_lost(redis *r, const char *why)
{
    if (!r->ac)
        return;
    r->ac = NULL;
    went_down(r, why);
}

static void hook_cleanup(void *p)
{
    rconn *c = p;
    redis *r = c->r;
    if (c->watched)
        loop_del_fd(r->l, c->fd);
    if (r->ac == c->ac)
        conn_lost(r, c->ac->errstr);
    c->ac->ev.data = NULL;
    free(c);
}

/* Drops the current connection on our own initiative: every pending command
 * fails with status. Inside a hiredis callback the free is deferred by
 * hiredis until the callback returns. */
static void recycle(redis *r, int status, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    rconn *c = ac->ev.data;
    c->fail_status = status;
    conn_lost(r, why);
    redisAsyncFree(ac);
}

/* ---- replies ------------------------------------------------------------------- */

static void finish(redis *r, rreq *q, int status, redisReply *rep)
{
    redis_reply_cb *cb = q->cb;
    void *arg = q->arg;
    req_put(r, q);
    if (status < 0)
        r->st.errors++;
    if (cb)
        cb(r, status, rep, arg);
}

static int is_status(const redisReply *rep, const char *s)
{
    return rep && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING) &&
           strcmp(rep->str, s) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

static int send_req(redis *r, rreq *q)
{
    if (redisAsyncFormattedCommand(r->ac, on_reply, q, q->buf, q->len) != REDIS_OK)
        return -ENOTCONN;
    fifo_push(r, q);
    return 0;
}

static int send_internal(redis *r, int kind, redis_script *s, int argc, const char *const *argv)
{
    rreq *q = req_get(r);
    if (!q)
        return -ENOMEM;
    q->kind = kind;
    q->script = s;
    int rc = req_format(q, 0, NULL, NULL, argc, argv, NULL);
    if (rc == 0)
        rc = send_req(r, q);
    if (rc < 0)
        req_put(r, q);
    return rc;
}

static int send_load(redis *r, redis_script *s)
{
    rreq *q = req_get(r);
    if (!q)
        return -ENOMEM;
    q->kind = K_LOAD;
    q->script = s;
    static const char *const pre[2] = { "SCRIPT", "LOAD" };
    static const size_t prelen[2] = { 6, 4 };
    const char *body = s->body;
    int rc = req_format(q, 2, pre, prelen, 1, &body, &s->len);
    if (rc == 0)
        rc = send_req(r, q);
    if (rc < 0) {
        req_put(r, q);
        return rc;
    }
    s->loading = 1;
    return 0;
}

static void on_internal(redis *r, rreq *q, redisReply *rep)
{
    switch (q->kind) {
    case K_AUTH:
        if (rep->type == REDIS_REPLY_ERROR) {
            char why[sizeof(r->err)];
            snprintf(why, sizeof(why), "AUTH refused: %s", rep->str);
            /* Once per distinct refusal, not on every retry. */
            if (!r->auth_failed || strcmp(why, r->err) != 0)
                LOG_ERROR("redis: AUTH refused (check the password of TETHER_REDIS or TETHER_REDIS_PASSWORD_FILE)",
                          "{s:s,s:s,s:s,s:i,s:s}", "conn", r->name, "user", r->user[0] ? r->user : "default",
                          "host", r->host, "port", r->port, "error", rep->str);
            r->auth_failed = 1;
            recycle(r, -ECONNRESET, why);
        } else {
            r->auth_failed = 0;
        }
        break;
    case K_SELECT:
        if (rep->type == REDIS_REPLY_ERROR) {
            LOG_ERROR("redis: SELECT failed", "{s:s,s:i,s:s}", "conn", r->name, "db", r->db, "error", rep->str);
            recycle(r, -ECONNRESET, rep->str);
        }
        break;
    case K_LOAD:
        q->script->loading = 0;
        if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, q->script->sha) != 0)
            LOG_ERROR("redis: SCRIPT LOAD failed", "{s:s,s:s,s:s}", "conn", r->name, "sha", q->script->sha,
                      "error", rep->str ? rep->str : "unexpected reply");
        break;
    case K_HANDSHAKE_PING:
        if (!is_status(rep, "PONG")) {
            recycle(r, -ECONNRESET, rep->str ? rep->str : "bad PING reply");
            break;
        }
        r->state = ST_UP;
        r->ping_ok = 1;
        r->last_ping = loop_now_ms(r->l);
        r->backoff_ms = REDIS_BACKOFF_MIN_MS;
        r->err[0] = '\0';
        if (r->ever_up)
            r->st.reconnects++;
        r->ever_up = 1;
        LOG_INFO("redis: connected", "{s:s,s:s,s:i,s:i,s:s}", "conn", r->name, "host", r->host, "port", r->port,
                 "db", r->db, "auth", r->password[0] ? (r->user[0] ? r->user : "default") : "none");
        break;
    case K_PING:
        r->ping_inflight = 0;
        r->ping_ok = is_status(rep, "PONG");
        if (!r->ping_ok)
            snprintf(r->err, sizeof(r->err), "PING: %s", rep->str ? rep->str : "unexpected reply");
        break;
    default:
        break;
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    rreq *q = privdata;
    redis *r = q->r;
    redisReply *rep = reply;
    rconn *c = ac->ev.data;
    fifo_remove(r, q);
    if (rep)
        r->last_reply = loop_now_ms(r->l);
    if (!rep) {
        /* The context is dying with this command unanswered. */
        int status = c && c->fail_status ? c->fail_status : -ECONNRESET;
        if (r->ac == ac)
            conn_lost(r, ac->errstr[0] ? ac->errstr : "connection closed");
        if (q->kind == K_LOAD)
            q->script->loading = 0;
        finish(r, q, status, NULL);
        return;
    }
    if (q->kind != K_USER) {
        on_internal(r, q, rep);
        req_put(r, q);
        return;
    }
    if (q->script && !q->resent && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
        r->ac == ac) {
        /* The cache was flushed under us. The LOAD goes on the wire before the
         * resend, and this command never ran, so sending it again is exact. */
        r->st.script_reloads++;
        q->resent = 1;
        if (!q->script->loading)
            send_load(r, q->script);
        if (send_req(r, q) == 0)
            return;
        finish(r, q, -ECONNRESET, NULL);
        return;
    }
    finish(r, q, 0, rep);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    /* Failures are reported through the cleanup hook; success needs the
     * handshake PING before the connection counts as up. */
    (void)ac;
    (void)status;
}

/* ---- connection management ------------------------------------------------------ */

/* Refreshes r->password from the password file when the URL has none.
 * Returns 0, or -errno with r->err set. */
static int load_password(redis *r)
{
    if (r->url_password)
        return 0;
    char buf[sizeof(r->password)];
    int n = redis_password_file(buf, sizeof(buf));
    if (n < 0) {
        snprintf(r->err, sizeof(r->err), "TETHER_REDIS_PASSWORD_FILE: %s", strerror(-n));
        return n;
    }
    memcpy(r->password, buf, (size_t)n + 1);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

static void connect_now(redis *r)
{
    if (r->ac || r->freeing)
        return;
    /* A password file that cannot be read now keeps the last password read:
     * a rotation in progress must not turn into an outage. */
    if (load_password(r) < 0 && !r->password[0]) {
        went_down(r, NULL);
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        snprintf(r->err, sizeof(r->err), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        went_down(r, NULL);
        return;
    }
    rconn *c = calloc(1, sizeof(*c));
    if (!c) {
        redisAsyncFree(ac);
        went_down(r, "out of memory");
        return;
    }
    c->r = r;
    c->ac = ac;
    c->fd = ac->c.fd;
    ac->data = r;
    ac->ev.data = c;
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    r->ac = ac;
    r->state = ST_CONNECTING;
    /* Also arms the write watch through which the connect completes. */
    redisAsyncSetConnectCallback(ac, on_connect);
    /* The handshake is pipelined behind the connect: hiredis buffers it. */
    int rc = 0;
    if (r->password[0]) {
        const char *argv[3] = { "AUTH", r->user[0] ? r->user : r->password, r->password };
        rc = send_internal(r, K_AUTH, NULL, r->user[0] ? 3 : 2, argv);
    }
    if (rc == 0 && r->db != 0) {
        char dbs[16];
        snprintf(dbs, sizeof(dbs), "%d", r->db);
        const char *argv[2] = { "SELECT", dbs };
        rc = send_internal(r, K_SELECT, NULL, 2, argv);
    }
    for (redis_script *s = r->scripts; s && rc == 0; s = s->next)
        rc = send_load(r, s);
    if (rc == 0) {
        const char *argv[1] = { "PING" };
        rc = send_internal(r, K_HANDSHAKE_PING, NULL, 1, argv);
    }
    if (rc < 0)
        recycle(r, -ECONNRESET, "handshake could not be queued");
}

static void on_tick(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    redis *r = arg;
    uint64_t now = loop_now_ms(l);
    /* The timeout is a lack of progress: the head (the next reply due) gets
     * timeout_ms from when it was sent or from the last reply, whichever is
     * later. A burst of thousands of pipelined commands that Redis works
     * through steadily is not a dead connection; recycling it would fail
     * every command in flight (a reconnection storm did exactly that). */
    uint64_t due = r->head ? r->head->deadline : 0;
    if (r->head && r->last_reply + r->timeout_ms > due)
        due = r->last_reply + r->timeout_ms;
    if (r->ac && r->head && due <= now) {
        r->st.timeouts++;
        char why[96];
        snprintf(why, sizeof(why), "no reply for %u ms", (unsigned)r->timeout_ms);
        recycle(r, -ETIMEDOUT, why);
        return;
    }
    if (r->state == ST_UP && !r->ping_inflight && now - r->last_ping >= r->ping_ms) {
        const char *argv[1] = { "PING" };
        r->last_ping = now;
        if (send_internal(r, K_PING, NULL, 1, argv) == 0)
            r->ping_inflight = 1;
    }
}

/* ---- public API ------------------------------------------------------------------ */

redis *redis_new(loop *l, const char *url, const redis_opts *o)
{
    redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    redis_target u;
    int prc = redis_url_parse(url, &u);
    if (prc == 0) {
        memcpy(r->host, u.host, sizeof(r->host));
        memcpy(r->user, u.user, sizeof(r->user));
        r->port = u.port;
        r->db = u.db;
        r->url_password = u.has_password;
        if (u.has_password)
            memcpy(r->password, u.password, sizeof(r->password));
        else
            prc = load_password(r);
        /* An ACL user needs a password (the URL's or the file's). */
        if (prc == 0 && r->user[0] && !r->password[0])
            prc = -EINVAL;
    }
    OPENSSL_cleanse(&u, sizeof(u));
    if (prc < 0) {
        OPENSSL_cleanse(r, sizeof(*r));
        free(r);
        errno = -prc;
        return NULL;
    }
    r->l = l;
    snprintf(r->name, sizeof(r->name), "%s", o && o->name ? o->name : "redis");
    r->timeout_ms = o && o->cmd_timeout_ms ? o->cmd_timeout_ms : 1000;
    r->ping_ms = o && o->ping_ms ? o->ping_ms : 1000;
    r->backoff_ms = REDIS_BACKOFF_MIN_MS;
    /* The sweep's granularity bounds how late a timeout is noticed. */
    uint32_t tick = r->timeout_ms / 10;
    tick = tick < 10 ? 10 : tick > 100 ? 100 : tick;
    if (loop_timer_start(l, &r->tick, tick, tick, on_tick, r) < 0) {
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    /* Connect from the loop, so that scripts registered right after
     * redis_new are part of the first handshake. */
    loop_timer_start(l, &r->retry, 0, 0, on_retry, r);
    return r;
}

void redis_free(redis *r)
{
    if (!r)
        return;
    r->freeing = 1;
    r->state = ST_DOWN;
    loop_timer_stop(r->l, &r->tick);
    loop_timer_stop(r->l, &r->retry);
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        rconn *c = ac->ev.data;
        c->fail_status = -ECANCELED;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    while (r->free_list) {
        rreq *q = r->free_list;
        r->free_list = q->next;
        free(q->buf);
        free(q);
    }
    while (r->scripts) {
        redis_script *s = r->scripts;
        r->scripts = s->next;
        free(s->body);
        free(s);
    }
    OPENSSL_cleanse(r->password, sizeof(r->password));
    free(r);
}

redis_script *redis_script_new(redis *r, const char *body)
{
    redis_script *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->len = strlen(body);
    s->body = strdup(body);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!s->body || !EVP_Digest(s->body, s->len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        free(s->body);
        free(s);
        return NULL;
    }
    for (unsigned i = 0; i < 20; i++)
        sprintf(s->sha + 2 * i, "%02x", md[i]);
    /* Append, so scripts load in registration order. */
    redis_script **pp = &r->scripts;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    /* Registered while a connection is already being set up: load it there too. */
    if (r->ac && r->state != ST_DOWN)
        send_load(r, s);
    return s;
}

const char *redis_script_sha(const redis_script *s) { return s->sha; }

static int submit(redis *r, redis_script *s, redis_reply_cb *cb, void *arg, int npre, const char *const *pre,
                  const size_t *prelen, int argc, const char *const *argv, const size_t *lens)
{
    if (r->state != ST_UP || !r->ac) {
        r->st.errors++;
        return -ENOTCONN;
    }
    rreq *q = req_get(r);
    if (!q)
        return -ENOMEM;
    q->kind = K_USER;
    q->cb = cb;
    q->arg = arg;
    q->script = s;
    int rc = req_format(q, npre, pre, prelen, argc, argv, lens);
    if (rc == 0)
        rc = send_req(r, q);
    if (rc < 0) {
        req_put(r, q);
        r->st.errors++;
        return rc;
    }
    r->st.commands++;
    return 0;
}

int redis_command(redis *r, redis_reply_cb *cb, void *arg, int argc, const char *const *argv,
                  const size_t *lens)
{
    return submit(r, NULL, cb, arg, 0, NULL, NULL, argc, argv, lens);
}

int redis_evalsha(redis *r, redis_script *s, redis_reply_cb *cb, void *arg, int nkeys, int nargs,
                  const char *const *argv, const size_t *lens)
{
    char nk[16];
    int n = snprintf(nk, sizeof(nk), "%d", nkeys);
    const char *pre[3] = { "EVALSHA", s->sha, nk };
    size_t prelen[3] = { 7, 40, (size_t)n };
    return submit(r, s, cb, arg, 3, pre, prelen, nkeys + nargs, argv, lens);
}

int redis_ready(const redis *r) { return r->state == ST_UP && r->ping_ok; }

int redis_up(const redis *r) { return r->state == ST_UP; }

const char *redis_state(const redis *r)
{
    return r->state == ST_UP ? "up" : r->state == ST_CONNECTING ? "connecting" : "down";
}

const char *redis_last_error(const redis *r) { return r->err; }

size_t redis_inflight(const redis *r) { return r->inflight; }

redis_stats redis_get_stats(const redis *r) { return r->st; }

redisReply *redis_reply_take(redisReply *rep)
{
    redisReply *n = malloc(sizeof(*n));
    if (!n)
        return NULL;
    *n = *rep;
    rep->str = NULL;
    rep->len = 0;
    rep->element = NULL;
    rep->elements = 0;
    return n;
}
