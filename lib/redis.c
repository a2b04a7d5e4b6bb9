/* redis.c -- Redis connections on the loop: connect (plain TCP or TLS),
 * handshake, timeouts, reconnection, scripts (see redis.h for the contract).
 *
 * The transport is ours: a non-blocking socket, OpenSSL on it for
 * rediss://, hiredis's redisReader for the replies and RESP formatting of our
 * own (req_format). Debian's hiredis 0.14 has no TLS, and its async context
 * added nothing the FIFO below does not already do.
 *
 * Shape of a connection's life:
 *
 *   DOWN --retry timer--> CONNECTING --PING answered--> UP --error/timeout--> DOWN
 *
 * CONNECTING goes through TCP connect, the TLS handshake (rediss://), then
 * the pipelined handshake (AUTH, SELECT, SCRIPT LOAD..., ROLE for Sentinel,
 * PING) queued in the output buffer from the start. Only the handshake is on
 * the wire; callers get -ENOTCONN and retry through their own clients, which
 * is cheaper and safer than queueing requests that could otherwise run
 * before AUTH or SELECT. TLS's WANT_READ / WANT_WRITE become the events
 * watched on the socket: nothing polls.
 *
 * redis+sentinel://: the master's handle has two internal handles on the
 * sentinels (tried in turn): one for SENTINEL get-master-addr-by-name,
 * asked before every connection attempt, one subscribed to +switch-master,
 * which drops the connection at once when the master moves.
 *
 * Every command, internal or not, is an rreq in one FIFO per handle, in send
 * order. Redis answers in that order too, so the FIFO head is always the
 * next reply due and its deadline is the earliest one: the timeout sweep is a
 * single comparison. rreqs come from a free list and keep their formatted
 * command buffer across uses, so a steady stream of commands allocates
 * nothing here (redisReader still allocates the replies).
 * The buffer is kept until the reply because a NOSCRIPT answer means the
 * same bytes must be sent again.
 */
#include "redis.h"
#include "config.h"
#include "pct.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"

#define REDIS_BACKOFF_MIN_MS 100u
#define REDIS_BACKOFF_MAX_MS 2000u
#define REDIS_FREE_KEEP 1024        /* rreqs kept on the free list */
#define REDIS_BUF_KEEP (256 * 1024) /* larger command buffers are not kept */
#define REDIS_MAX_ARGS 1024
#define REDIS_MAX_ADDRS 4            /* resolved addresses tried in turn */
#define REDIS_READ_CHUNK 16384

enum { ST_DOWN, ST_CONNECTING, ST_UP };
enum { PH_TCP, PH_TLS, PH_OPEN }; /* where a connection (not DOWN) stands */
enum { K_USER, K_AUTH, K_SELECT, K_LOAD, K_ROLE, K_HANDSHAKE_PING, K_PING };

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

struct redis {
    loop *l;
    char name[32];
    char host[256];
    int port, db;
    char user[128];
    char password[256]; /* from the URL (url_password) or the password file */
    int url_password;
    int auth_failed;    /* the last AUTH was refused: its error is logged once */
    int auth_optional;  /* a sentinel given the master's password: may have none */
    uint32_t timeout_ms, ping_ms;
    int tls;               /* rediss:// */
    SSL_CTX *tls_ctx;
    /* The connection; fd is -1 when DOWN. */
    int fd;
    int phase;
    unsigned ev;           /* events watched on fd */
    int watched;
    SSL *ssl;
    int rd_wants_w;        /* SSL_read asked for writability */
    int wr_wants_r;        /* SSL_write asked for readability */
    redisReader *reader;
    char *obuf;            /* formatted commands not yet written: [ooff, olen) */
    size_t olen, ooff, ocap;
    uint64_t gen;          /* bumped when a connection closes */
    struct sockaddr_storage addr[REDIS_MAX_ADDRS];
    socklen_t addrlen[REDIS_MAX_ADDRS];
    int naddr, iaddr;
    /* Several hosts (the sentinels of sq and ss): tried in turn. */
    int nhosts, ihost;
    struct {
        char host[256];
        int port;
    } hosts[REDIS_MAX_SENTINELS];
    /* redis+sentinel:// (the master's handle): */
    int sentinel;
    char master[128];
    redis *sq;             /* SENTINEL queries */
    redis *ss;             /* the +switch-master subscription */
    int discovering;       /* a get-master-addr-by-name is in flight */
    /* Internal handles (sq, ss): */
    int subscriber;        /* "message" arrays go to on_push, not to the FIFO */
    void (*on_up)(redis *r, void *arg);
    void (*on_push)(redis *r, redisReply *msg, void *arg);
    void *hook_arg;
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

/* Parses host[:port] in [s, e) ([v6] literals too). Returns 0 or -EINVAL. */
static int parse_hostport(const char *s, const char *e, char *host, size_t hostlen, int *port, int defport)
{
    const char *hs, *he, *p;
    if (s < e && *s == '[') {
        hs = s + 1;
        he = memchr(hs, ']', (size_t)(e - hs));
        if (!he)
            return -EINVAL;
        p = he + 1;
        if (p < e && *p != ':')
            return -EINVAL;
    } else {
        hs = s;
        he = memchr(s, ':', (size_t)(e - s));
        if (!he)
            he = e;
        p = he;
    }
    size_t n = (size_t)(he - hs);
    if (n == 0 || n >= hostlen || memchr(hs, ',', n) || memchr(hs, '/', n))
        return -EINVAL;
    memcpy(host, hs, n);
    host[n] = '\0';
    *port = defport;
    if (p < e) { /* ":port" */
        long v = 0;
        const char *d = p + 1;
        if (d == e)
            return -EINVAL;
        for (; d < e; d++) {
            if (*d < '0' || *d > '9' || v > 65535)
                return -EINVAL;
            v = v * 10 + (*d - '0');
        }
        if (v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

/* Parses "/db" (or "" or "/"), the whole rest of the URL. */
static int parse_db(const char *p, int *db)
{
    *db = 0;
    if (!*p)
        return 0;
    if (*p != '/')
        return -EINVAL;
    p++;
    if (!*p)
        return 0;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000)
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > 1000000)
        return -EINVAL;
    *db = (int)v;
    return 0;
}

int redis_url_parse(const char *url, redis_target *u)
{
    memset(u, 0, sizeof(*u));
    if (!url)
        return -EINVAL;
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        p = url + 9;
        u->tls = 1;
    } else if (strncmp(url, "redis+sentinel://", 17) == 0) {
        p = url + 17;
        u->sentinel = 1;
    } else {
        return -EINVAL;
    }
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
    /* The authority ends at the first '/' outside a [v6] literal. */
    const char *e = p;
    for (int in_v6 = 0; *e && (in_v6 || *e != '/'); e++) {
        if (*e == '[')
            in_v6 = 1;
        else if (*e == ']')
            in_v6 = 0;
    }
    if (!u->sentinel) {
        if (parse_hostport(p, e, u->host, sizeof(u->host), &u->port, 6379) < 0)
            return -EINVAL;
        return parse_db(e, &u->db) < 0 ? -EINVAL : 0;
    }
    /* redis+sentinel://host:port[,host:port...]/<master-name>[/db] */
    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *he = c ? c : e;
        if (u->nsentinels == REDIS_MAX_SENTINELS)
            return -EINVAL;
        if (parse_hostport(p, he, u->sentinels[u->nsentinels].host, sizeof(u->sentinels[0].host),
                           &u->sentinels[u->nsentinels].port, 26379) < 0)
            return -EINVAL;
        u->nsentinels++;
        p = c ? c + 1 : e;
        if (c && p == e)
            return -EINVAL; /* trailing comma */
    }
    if (!u->nsentinels || *e != '/')
        return -EINVAL;
    const char *ms = e + 1, *me = strchr(ms, '/');
    if (!me)
        me = ms + strlen(ms);
    if (pct_decode(ms, (size_t)(me - ms), u->master, sizeof(u->master)) < 0 || !u->master[0])
        return -EINVAL;
    for (const char *m = u->master; *m; m++)
        if ((unsigned char)*m <= ' ' || *m == 0x7f)
            return -EINVAL;
    return parse_db(me, &u->db) < 0 ? -EINVAL : 0;
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

/* ---- TLS settings ----------------------------------------------------------------- */

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"));
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
    char es[120] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, es, sizeof(es));
    ERR_clear_error();
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, es);
}

/* The client context of rediss:// from TETHER_REDIS_CA (else the system's
 * trust store), TETHER_REDIS_CERT / TETHER_REDIS_KEY and
 * TETHER_REDIS_TLS_INSECURE. NULL with err set on failure. */
static SSL_CTX *tls_ctx_new(char *err, size_t errlen)
{
    const char *ca = getenv("TETHER_REDIS_CA"), *cert = getenv("TETHER_REDIS_CERT"),
               *key = getenv("TETHER_REDIS_KEY");
    int has_cert = cert && *cert, has_key = key && *key;
    if (has_cert != has_key) {
        snprintf(err, errlen, "TETHER_REDIS_CERT and TETHER_REDIS_KEY go together");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_err(err, errlen, "TLS");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Writes resume from obuf, which may grow (move) between attempts. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca && *ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            ssl_err(err, errlen, "TETHER_REDIS_CA");
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_err(err, errlen, "TLS trust store");
        goto fail;
    }
    if (has_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            ssl_err(err, errlen, "TETHER_REDIS_CERT");
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            ssl_err(err, errlen, "TETHER_REDIS_KEY");
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, env_true("TETHER_REDIS_TLS_INSECURE") ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int sentinel_password(char *buf, size_t len);

void redis_config_note(void)
{
    cfg_str("TETHER_REDIS_PASSWORD_FILE", "");
    cfg_str("TETHER_REDIS_CA", "");
    cfg_str("TETHER_REDIS_CERT", "");
    cfg_str("TETHER_REDIS_KEY", "");
    cfg_bool("TETHER_REDIS_TLS_INSECURE", 0);
    cfg_secret("TETHER_SENTINEL_PASSWORD", "");
    cfg_str("TETHER_SENTINEL_PASSWORD_FILE", "");
}

int redis_check_config(const char *url, char *err, size_t errlen)
{
    redis_target u;
    int rc = 0;
    if (redis_url_parse(url, &u) < 0) {
        snprintf(err, errlen, "expected redis[s]://[user[:password]@]host[:port][/db]");
        rc = -EINVAL;
    } else if (!u.has_password) {
        char pw[sizeof(u.password)];
        int n = redis_password_file(pw, sizeof(pw));
        OPENSSL_cleanse(pw, sizeof(pw));
        if (n < 0) {
            snprintf(err, errlen, "TETHER_REDIS_PASSWORD_FILE: %s", strerror(-n));
            rc = n;
        } else if (u.user[0] && n == 0) {
            snprintf(err, errlen, "an ACL user needs a password (in the URL or TETHER_REDIS_PASSWORD_FILE)");
            rc = -EINVAL;
        }
    }
    if (rc == 0 && u.sentinel) {
        char spw[256];
        int sp = sentinel_password(spw, sizeof(spw));
        OPENSSL_cleanse(spw, sizeof(spw));
        if (sp < 0) {
            snprintf(err, errlen, "TETHER_SENTINEL_PASSWORD_FILE: %s", strerror(-sp));
            rc = sp;
        }
    }
    if (rc == 0 && u.tls) {
        SSL_CTX *ctx = tls_ctx_new(err, errlen);
        if (!ctx)
            rc = -EINVAL;
        SSL_CTX_free(ctx);
    }
    OPENSSL_cleanse(&u, sizeof(u));
    return rc;
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

/* Unlinks and returns the oldest command in flight (NULL if none). */
static rreq *fifo_pop(redis *r)
{
    rreq *q = r->head;
    if (!q)
        return NULL;
    r->head = q->next;
    if (r->head)
        r->head->prev = NULL;
    else
        r->tail = NULL;
    q->next = q->prev = NULL;
    r->inflight--;
    return q;
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

/* ---- transport: socket, TLS, output buffer ------------------------------------- */

static void on_fd(loop *l, int fd, unsigned events, void *arg);

static void ev_set(redis *r, unsigned ev)
{
    if (r->watched && ev == r->ev)
        return;
    if (!r->watched) {
        if (loop_add_fd(r->l, r->fd, ev, on_fd, r) < 0) {
            LOG_ERROR("redis: cannot watch socket", "{s:s,s:i}", "conn", r->name, "fd", r->fd);
            return;
        }
        r->watched = 1;
    } else {
        loop_mod_fd(r->l, r->fd, ev);
    }
    r->ev = ev;
}

/* What an open connection waits for: always replies; writability while
 * output is pending (unless TLS first needs to read) or TLS reading asks. */
static void ev_update(redis *r)
{
    if (r->fd < 0 || r->phase != PH_OPEN)
        return;
    unsigned ev = LOOP_READ;
    if ((r->olen > r->ooff && !r->wr_wants_r) || r->rd_wants_w)
        ev |= LOOP_WRITE;
    ev_set(r, ev);
}

static int out_append(redis *r, const char *p, size_t n)
{
    if (r->ooff && r->ooff == r->olen)
        r->ooff = r->olen = 0;
    if (r->olen + n > r->ocap && r->ooff) {
        /* SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows moving a pending write. */
        memmove(r->obuf, r->obuf + r->ooff, r->olen - r->ooff);
        r->olen -= r->ooff;
        r->ooff = 0;
    }
    if (r->olen + n > r->ocap) {
        size_t cap = r->ocap ? r->ocap : 4096;
        while (cap < r->olen + n)
            cap *= 2;
        char *nb = realloc(r->obuf, cap);
        if (!nb)
            return -ENOMEM;
        r->obuf = nb;
        r->ocap = cap;
    }
    memcpy(r->obuf + r->olen, p, n);
    r->olen += n;
    return 0;
}

/* Closes the socket only (the handshake queued in obuf survives, for the
 * next address). */
static void sock_close(redis *r)
{
    if (r->fd < 0)
        return;
    if (r->watched)
        loop_del_fd(r->l, r->fd);
    r->watched = 0;
    r->ev = 0;
    if (r->ssl) {
        SSL_free(r->ssl);
        r->ssl = NULL;
    }
    close(r->fd);
    r->fd = -1;
}

static void conn_close(redis *r)
{
    sock_close(r);
    if (r->reader) {
        redisReaderFree(r->reader);
        r->reader = NULL;
    }
    r->olen = r->ooff = 0;
    if (r->ocap > REDIS_BUF_KEEP) {
        free(r->obuf);
        r->obuf = NULL;
        r->ocap = 0;
    }
    r->rd_wants_w = r->wr_wants_r = 0;
    r->gen++;
}

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
    if (r->nhosts > 1) {
        r->ihost = (r->ihost + 1) % r->nhosts;
        memcpy(r->host, r->hosts[r->ihost].host, sizeof(r->host));
        r->port = r->hosts[r->ihost].port;
    }
    LOG_WARN(was_up ? "redis: connection lost" : "redis: connect failed", "{s:s,s:s,s:i,s:i}", "conn",
             r->name, "error", r->err, "port", r->port, "retry_ms", (int)r->backoff_ms);
    loop_timer_start(r->l, &r->retry, r->backoff_ms, 0, on_retry, r);
    r->backoff_ms = r->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void finish(redis *r, rreq *q, int status, redisReply *rep);

/* Fails every command in flight, oldest first. */
static void fail_inflight(redis *r, int status)
{
    rreq *q;
    while ((q = fifo_pop(r)) != NULL) {
        if (q->kind == K_LOAD)
            q->script->loading = 0;
        finish(r, q, status, NULL);
    }
}

/* Drops the current connection (if any): closes it, schedules the
 * reconnect, then fails every command in flight with status (their
 * callbacks see the handle DOWN already). */
static void recycle(redis *r, int status, const char *why)
{
    if (r->state == ST_DOWN)
        return;
    conn_close(r);
    went_down(r, why);
    fail_inflight(r, status);
}

/* The reason of a TLS failure, into buf. */
static void tls_reason(redis *r, int sslerr, const char *what, char *buf, size_t len)
{
    long v = r->ssl ? SSL_get_verify_result(r->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK) {
        snprintf(buf, len, "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(v));
    } else if (e) {
        char es[120];
        ERR_error_string_n(e, es, sizeof(es));
        snprintf(buf, len, "%s: %s", what, es);
    } else if (sslerr == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, len, "%s: %s", what, strerror(errno));
    } else {
        snprintf(buf, len, "%s: connection closed", what);
    }
    ERR_clear_error();
}

static int is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* TCP is up on a rediss:// connection: starts TLS with SNI (for names) and
 * verification of the server's name or address against its certificate. */
static int tls_start(redis *r)
{
    r->ssl = SSL_new(r->tls_ctx);
    if (!r->ssl || SSL_set_fd(r->ssl, r->fd) != 1)
        return -ENOMEM;
    if (is_ip_literal(r->host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), r->host) != 1)
            return -EINVAL;
    } else {
        if (SSL_set_tlsext_host_name(r->ssl, r->host) != 1 || SSL_set1_host(r->ssl, r->host) != 1)
            return -EINVAL;
    }
    r->phase = PH_TLS;
    return 0;
}

static void tls_handshake(redis *r)
{
    ERR_clear_error();
    int rc = SSL_connect(r->ssl);
    if (rc == 1) {
        r->phase = PH_OPEN;
        ev_update(r);
        return;
    }
    int e = SSL_get_error(r->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        ev_set(r, LOOP_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        ev_set(r, LOOP_WRITE);
        return;
    }
    char why[sizeof(r->err)];
    tls_reason(r, e, "TLS handshake", why, sizeof(why));
    recycle(r, -ECONNRESET, why);
}

/* Starts a non-blocking connect to addr[i], or the next one that accepts
 * the attempt. Returns 0, or -1 with r->err set. */
static int sock_connect(redis *r, int i)
{
    for (; i < r->naddr; i++) {
        int fd = socket(r->addr[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(r->err, sizeof(r->err), "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *)&r->addr[i], r->addrlen[i]) == 0 || errno == EINPROGRESS) {
            r->fd = fd;
            r->iaddr = i;
            r->phase = PH_TCP;
            ev_set(r, LOOP_WRITE);
            return 0;
        }
        snprintf(r->err, sizeof(r->err), "connect: %s", strerror(errno));
        close(fd);
    }
    return -1;
}

static void tcp_done(redis *r)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        char why[sizeof(r->err)];
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        sock_close(r);
        if (sock_connect(r, r->iaddr + 1) == 0)
            return;
        recycle(r, -ECONNRESET, why);
        return;
    }
    if (r->tls) {
        if (tls_start(r) < 0) {
            recycle(r, -ECONNRESET, "TLS: cannot set up the session");
            return;
        }
        tls_handshake(r);
        return;
    }
    r->phase = PH_OPEN;
    ev_update(r);
}

static void on_reply(redis *r, rreq *q, redisReply *rep);

/* Hands every complete reply to the FIFO head. Returns -1 when the
 * connection went away meanwhile. */
static int dispatch(redis *r)
{
    uint64_t gen = r->gen;
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            char why[sizeof(r->err)];
            snprintf(why, sizeof(why), "protocol error: %s", r->reader->errstr);
            recycle(r, -ECONNRESET, why);
            return -1;
        }
        if (!rep)
            return 0;
        redisReply *m = rep;
        if (r->subscriber && m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
            m->element[0]->type == REDIS_REPLY_STRING && strcmp(m->element[0]->str, "message") == 0) {
            r->last_reply = loop_now_ms(r->l);
            if (r->on_push)
                r->on_push(r, m, r->hook_arg);
            freeReplyObject(rep);
            if (r->gen != gen)
                return -1;
            continue;
        }
        rreq *q = fifo_pop(r);
        if (!q) {
            freeReplyObject(rep);
            recycle(r, -ECONNRESET, "a reply to no command");
            return -1;
        }
        r->last_reply = loop_now_ms(r->l);
        on_reply(r, q, rep);
        freeReplyObject(rep);
        if (r->gen != gen)
            return -1;
    }
}

static void do_read(redis *r)
{
    char buf[REDIS_READ_CHUNK];
    for (;;) {
        size_t n;
        if (r->ssl) {
            ERR_clear_error();
            int rc = SSL_read(r->ssl, buf, sizeof(buf));
            if (rc <= 0) {
                int e = SSL_get_error(r->ssl, rc);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    r->rd_wants_w = 1;
                    break;
                }
                char why[sizeof(r->err)];
                if (e == SSL_ERROR_ZERO_RETURN)
                    snprintf(why, sizeof(why), "server closed the connection");
                else
                    tls_reason(r, e, "TLS read", why, sizeof(why));
                recycle(r, -ECONNRESET, why);
                return;
            }
            n = (size_t)rc;
        } else {
            ssize_t rc = recv(r->fd, buf, sizeof(buf), 0);
            if (rc < 0 && errno == EINTR)
                continue;
            if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (rc <= 0) {
                recycle(r, -ECONNRESET, rc == 0 ? "server closed the connection" : strerror(errno));
                return;
            }
            n = (size_t)rc;
        }
        if (redisReaderFeed(r->reader, buf, n) != REDIS_OK) {
            recycle(r, -ECONNRESET, "out of memory reading replies");
            return;
        }
        if (dispatch(r) < 0)
            return;
        /* Plain sockets are level-triggered: a short read drained them. TLS
         * may hold decrypted bytes the socket no longer signals: read on
         * until it asks for more. */
        if (!r->ssl && n < sizeof(buf))
            break;
    }
    ev_update(r);
}

static void do_write(redis *r)
{
    while (r->ooff < r->olen) {
        size_t n = r->olen - r->ooff;
        if (r->ssl) {
            ERR_clear_error();
            int rc = SSL_write(r->ssl, r->obuf + r->ooff, n > INT_MAX ? INT_MAX : (int)n);
            if (rc <= 0) {
                int e = SSL_get_error(r->ssl, rc);
                if (e == SSL_ERROR_WANT_WRITE)
                    break;
                if (e == SSL_ERROR_WANT_READ) {
                    r->wr_wants_r = 1;
                    break;
                }
                char why[sizeof(r->err)];
                tls_reason(r, e, "TLS write", why, sizeof(why));
                recycle(r, -ECONNRESET, why);
                return;
            }
            r->ooff += (size_t)rc;
        } else {
            ssize_t rc = send(r->fd, r->obuf + r->ooff, n, MSG_NOSIGNAL);
            if (rc < 0 && errno == EINTR)
                continue;
            if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (rc < 0) {
                recycle(r, -ECONNRESET, strerror(errno));
                return;
            }
            r->ooff += (size_t)rc;
        }
    }
    if (r->ooff == r->olen)
        r->ooff = r->olen = 0;
    ev_update(r);
}

static void on_fd(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    redis *r = arg;
    uint64_t gen = r->gen;
    if (r->phase == PH_TCP) {
        tcp_done(r);
        return;
    }
    if (r->phase == PH_TLS) {
        tls_handshake(r);
        return;
    }
    int rd = (events & (LOOP_READ | LOOP_ERROR)) != 0, wr = (events & LOOP_WRITE) != 0;
    if (r->rd_wants_w && wr) {
        r->rd_wants_w = 0;
        rd = 1;
    }
    if (rd)
        do_read(r);
    if (r->gen != gen)
        return;
    if (r->wr_wants_r && rd) {
        r->wr_wants_r = 0;
        wr = 1;
    }
    if (wr)
        do_write(r);
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

static int send_req(redis *r, rreq *q)
{
    if (r->state == ST_DOWN || r->fd < 0)
        return -ENOTCONN;
    if (out_append(r, q->buf, q->len) < 0)
        return -ENOMEM;
    fifo_push(r, q);
    ev_update(r);
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

/* PONG, or ["pong", ""] on a subscribed connection. */
static int is_pong(const redisReply *rep)
{
    if (is_status(rep, "PONG"))
        return 1;
    return rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(rep->element[0]->str, "pong") == 0;
}

static void on_internal(redis *r, rreq *q, redisReply *rep)
{
    switch (q->kind) {
    case K_ROLE:
        /* Sentinel: the node the sentinels named may have been demoted
         * since; a replica is never written to. */
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_STRING ||
            strcmp(rep->element[0]->str, "master") != 0) {
            char why[sizeof(r->err)];
            snprintf(why, sizeof(why), "ROLE: %.60s is not the master (%.40s)", r->host,
                     rep->type == REDIS_REPLY_ARRAY && rep->elements && rep->element[0]->str ? rep->element[0]->str
                     : rep->str                                                               ? rep->str
                                                                                              : "unexpected reply");
            recycle(r, -ECONNRESET, why);
        }
        break;
    case K_AUTH:
        /* Sentinels often have no password of their own while the Redis
         * nodes do: the master's password, tried on them, is not an error. */
        if (rep->type == REDIS_REPLY_ERROR && r->auth_optional && strstr(rep->str, "without any password configured"))
            break;
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
        if (!is_pong(rep)) {
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
        if (r->on_up)
            r->on_up(r, r->hook_arg);
        break;
    case K_PING:
        r->ping_inflight = 0;
        r->ping_ok = is_pong(rep);
        if (!r->ping_ok)
            snprintf(r->err, sizeof(r->err), "PING: %s", rep->str ? rep->str : "unexpected reply");
        break;
    default:
        break;
    }
}

static void on_reply(redis *r, rreq *q, redisReply *rep)
{
    if (q->kind != K_USER) {
        on_internal(r, q, rep);
        req_put(r, q);
        return;
    }
    if (q->script && !q->resent && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
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
    int readonly = r->sentinel && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "READONLY", 8) == 0;
    finish(r, q, 0, rep);
    /* Demoted under us: find the master again. */
    if (readonly)
        recycle(r, -ECONNRESET, "READONLY: the node became a replica");
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

/* Resolves the host into r->addr. Returns 0 or -1 with r->err set. */
static int resolve(redis *r)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", r->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int rc = getaddrinfo(r->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(r->err, sizeof(r->err), "resolve %.100s: %s", r->host, gai_strerror(rc));
        return -1;
    }
    r->naddr = 0;
    for (struct addrinfo *a = res; a && r->naddr < REDIS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(r->addr[0]))
            continue;
        memcpy(&r->addr[r->naddr], a->ai_addr, a->ai_addrlen);
        r->addrlen[r->naddr++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
    if (!r->naddr) {
        snprintf(r->err, sizeof(r->err), "resolve %.100s: no address", r->host);
        return -1;
    }
    return 0;
}

static void connect_addr(redis *r);

/* The sentinel's answer to get-master-addr-by-name: connects there. */
static void on_master_addr(redis *sq, int status, redisReply *rep, void *arg)
{
    (void)sq;
    redis *r = arg;
    r->discovering = 0;
    if (r->freeing || r->state != ST_DOWN)
        return;
    if (status < 0 || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof(r->host)) {
        snprintf(r->err, sizeof(r->err), "sentinel: no address for master '%.60s' (%s)", r->master,
                 status < 0 || !rep ? "no answer" : rep->type == REDIS_REPLY_NIL ? "unknown name"
                                          : rep->str                     ? rep->str
                                                                         : "unexpected reply");
        went_down(r, NULL);
        return;
    }
    long port = strtol(rep->element[1]->str, NULL, 10);
    if (port < 1 || port > 65535) {
        went_down(r, "sentinel: bad master port");
        return;
    }
    if (strcmp(r->host, rep->element[0]->str) != 0 || r->port != (int)port)
        LOG_INFO("redis: sentinels name the master", "{s:s,s:s,s:s,s:i}", "conn", r->name, "master", r->master,
                 "host", rep->element[0]->str, "port", (int)port);
    memcpy(r->host, rep->element[0]->str, rep->element[0]->len + 1);
    r->port = (int)port;
    connect_addr(r);
}

static void connect_now(redis *r)
{
    if (r->state != ST_DOWN || r->freeing || r->discovering)
        return;
    /* A password file that cannot be read now keeps the last password read:
     * a rotation in progress must not turn into an outage. */
    if (load_password(r) < 0 && !r->password[0]) {
        went_down(r, NULL);
        return;
    }
    if (!r->sentinel) {
        connect_addr(r);
        return;
    }
    /* Every attempt asks the sentinels first: after a loss the master may
     * be another node. */
    if (!redis_up(r->sq)) {
        snprintf(r->err, sizeof(r->err), "no sentinel answers (%.120s)",
                 redis_last_error(r->sq)[0] ? redis_last_error(r->sq) : "connecting");
        went_down(r, NULL);
        return;
    }
    const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", r->master };
    if (redis_command(r->sq, on_master_addr, r, 3, argv, NULL) < 0) {
        went_down(r, "sentinel: query not sent");
        return;
    }
    r->discovering = 1;
}

static void connect_addr(redis *r)
{
    r->reader = redisReaderCreate();
    if (!r->reader) {
        went_down(r, "out of memory");
        return;
    }
    if (resolve(r) < 0 || sock_connect(r, 0) < 0) {
        conn_close(r);
        went_down(r, NULL);
        return;
    }
    r->state = ST_CONNECTING;
    /* The handshake waits in obuf until TCP (and TLS) are up. */
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
    if (rc == 0 && r->sentinel) {
        const char *argv[1] = { "ROLE" };
        rc = send_internal(r, K_ROLE, NULL, 1, argv);
    }
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
    if (r->state != ST_DOWN && r->head && due <= now) {
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

/* A handle with its timers, not connecting yet. */
static redis *handle_alloc(loop *l, const redis_opts *o, const char *suffix)
{
    redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->l = l;
    r->fd = -1;
    snprintf(r->name, sizeof(r->name), "%s%s", o && o->name ? o->name : "redis", suffix);
    r->timeout_ms = o && o->cmd_timeout_ms ? o->cmd_timeout_ms : 1000;
    r->ping_ms = o && o->ping_ms ? o->ping_ms : 1000;
    r->backoff_ms = REDIS_BACKOFF_MIN_MS;
    /* The sweep's granularity bounds how late a timeout is noticed. */
    uint32_t tick = r->timeout_ms / 10;
    tick = tick < 10 ? 10 : tick > 100 ? 100 : tick;
    if (loop_timer_start(l, &r->tick, tick, tick, on_tick, r) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

/* Connect from the loop, so that scripts registered right after redis_new
 * are part of the first handshake. */
static void handle_start(redis *r) { loop_timer_start(r->l, &r->retry, 0, 0, on_retry, r); }

/* Connects now if the handle is waiting for its retry timer. */
static void kick(redis *r)
{
    if (r->state != ST_DOWN || r->discovering || r->freeing)
        return;
    loop_timer_stop(r->l, &r->retry);
    r->backoff_ms = REDIS_BACKOFF_MIN_MS;
    connect_now(r);
}

/* A sentinel answers again: the master's handle need not wait its backoff. */
static void on_sentinel_up(redis *sq, void *arg)
{
    (void)sq;
    kick(arg);
}

static void on_switch_noop(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    (void)status;
    (void)rep;
    (void)arg;
}

static void on_sub_up(redis *ss, void *arg)
{
    (void)arg;
    const char *argv[2] = { "SUBSCRIBE", "+switch-master" };
    redis_command(ss, on_switch_noop, NULL, 2, argv, NULL);
}

/* "+switch-master" "<name> <old-ip> <old-port> <new-ip> <new-port>" */
static void on_switch(redis *ss, redisReply *msg, void *arg)
{
    (void)ss;
    redis *r = arg;
    const redisReply *body = msg->element[2];
    if (body->type != REDIS_REPLY_STRING)
        return;
    size_t n = strlen(r->master);
    if (body->len <= n || strncmp(body->str, r->master, n) != 0 || body->str[n] != ' ')
        return;
    LOG_WARN("redis: sentinels switched the master", "{s:s,s:s,s:s}", "conn", r->name, "master", r->master,
             "switch", body->str + n + 1);
    /* Already on the new master (found by a re-discovery): stay. */
    char oh[64], nh[64];
    int op = 0, np = 0;
    if (sscanf(body->str + n + 1, "%63s %d %63s %d", oh, &op, nh, &np) == 4 && r->state != ST_DOWN &&
        strcmp(r->host, nh) == 0 && r->port == np)
        return;
    if (r->state != ST_DOWN)
        recycle(r, -ECONNRESET, "the sentinels switched the master");
    kick(r);
}

static redis *sentinel_handle(loop *l, const redis_opts *o, const redis_target *u, const char *suffix,
                              const char *password)
{
    redis *s = handle_alloc(l, o, suffix);
    if (!s)
        return NULL;
    s->nhosts = u->nsentinels;
    for (int i = 0; i < u->nsentinels; i++) {
        memcpy(s->hosts[i].host, u->sentinels[i].host, sizeof(s->hosts[i].host));
        s->hosts[i].port = u->sentinels[i].port;
    }
    memcpy(s->host, s->hosts[0].host, sizeof(s->host));
    s->port = s->hosts[0].port;
    s->url_password = 1;
    snprintf(s->password, sizeof(s->password), "%s", password);
    return s;
}

/* The sentinels' password: TETHER_SENTINEL_PASSWORD, the first line of
 * TETHER_SENTINEL_PASSWORD_FILE, or NULL (the master's userinfo). */
static int sentinel_password(char *buf, size_t len)
{
    const char *v = getenv("TETHER_SENTINEL_PASSWORD");
    if (v && *v) {
        if (strlen(v) >= len)
            return -ENAMETOOLONG;
        snprintf(buf, len, "%s", v);
        return 1;
    }
    const char *path = getenv("TETHER_SENTINEL_PASSWORD_FILE");
    if (!path || !*path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return 1;
}

redis *redis_new(loop *l, const char *url, const redis_opts *o)
{
    redis_target u;
    int prc = redis_url_parse(url, &u);
    redis *r = prc == 0 ? handle_alloc(l, o, "") : NULL;
    if (prc == 0 && !r)
        prc = -ENOMEM;
    if (prc == 0) {
        memcpy(r->host, u.host, sizeof(r->host));
        memcpy(r->user, u.user, sizeof(r->user));
        r->port = u.port;
        r->db = u.db;
        r->tls = u.tls;
        r->sentinel = u.sentinel;
        memcpy(r->master, u.master, sizeof(r->master));
        r->url_password = u.has_password;
        if (u.has_password)
            memcpy(r->password, u.password, sizeof(r->password));
        else
            prc = load_password(r);
        /* An ACL user needs a password (the URL's or the file's). */
        if (prc == 0 && r->user[0] && !r->password[0])
            prc = -EINVAL;
    }
    if (prc == 0 && r->tls) {
        char terr[160];
        r->tls_ctx = tls_ctx_new(terr, sizeof(terr));
        if (!r->tls_ctx) {
            LOG_ERROR("redis: TLS set-up failed", "{s:s,s:s}", "conn", r->name, "error", terr);
            prc = -EINVAL;
        } else if (env_true("TETHER_REDIS_TLS_INSECURE")) {
            LOG_WARN("redis: TETHER_REDIS_TLS_INSECURE: the server's certificate is not verified (tests only)",
                     "{s:s}", "conn", r->name);
        }
    }
    if (prc == 0 && r->sentinel) {
        char spw[256];
        int sp = sentinel_password(spw, sizeof(spw));
        if (sp < 0) {
            prc = sp;
        } else {
            if (sp == 0)
                snprintf(spw, sizeof(spw), "%s", r->password);
            r->sq = sentinel_handle(l, o, &u, "/sentinel", spw);
            r->ss = sentinel_handle(l, o, &u, "/sentinel-sub", spw);
            if (!r->sq || !r->ss) {
                prc = -ENOMEM;
            } else {
                if (sp == 0) {
                    memcpy(r->sq->user, r->user, sizeof(r->user));
                    memcpy(r->ss->user, r->user, sizeof(r->user));
                    r->sq->auth_optional = r->ss->auth_optional = 1;
                }
                r->sq->on_up = on_sentinel_up;
                r->sq->hook_arg = r;
                r->ss->subscriber = 1;
                r->ss->on_up = on_sub_up;
                r->ss->on_push = on_switch;
                r->ss->hook_arg = r;
                handle_start(r->sq);
                handle_start(r->ss);
            }
        }
        OPENSSL_cleanse(spw, sizeof(spw));
    }
    OPENSSL_cleanse(&u, sizeof(u));
    if (prc < 0) {
        redis_free(r);
        errno = -prc;
        return NULL;
    }
    handle_start(r);
    return r;
}

void redis_free(redis *r)
{
    if (!r)
        return;
    r->freeing = 1;
    /* The sentinels' handles first: a query in flight calls back into r,
     * which sees freeing. */
    redis_free(r->sq);
    redis_free(r->ss);
    loop_timer_stop(r->l, &r->tick);
    loop_timer_stop(r->l, &r->retry);
    conn_close(r);
    r->state = ST_DOWN;
    fail_inflight(r, -ECANCELED);
    free(r->obuf);
    if (r->tls_ctx)
        SSL_CTX_free(r->tls_ctx);
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
    if (r->state != ST_DOWN)
        send_load(r, s);
    return s;
}

const char *redis_script_sha(const redis_script *s) { return s->sha; }

static int submit(redis *r, redis_script *s, redis_reply_cb *cb, void *arg, int npre, const char *const *pre,
                  const size_t *prelen, int argc, const char *const *argv, const size_t *lens)
{
    if (r->state != ST_UP) {
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
