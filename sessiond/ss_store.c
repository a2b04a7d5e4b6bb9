/* ss_store.c -- sessiond's Redis connection and script calls (see ss_store.h). */
#include "ss_store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ss_lua.h"

struct ss_store {
    loop *l;
    redis *r;
    redis_script *sc[SS_NSCRIPTS];
    size_t inflight;
    uint64_t last_warn;
};

typedef struct ss_op {
    ss_store *s;
    ss_script sc;
    ss_store_cb *cb;
    void *arg;
} ss_op;

static const char *const script_names[SS_NSCRIPTS] = {
    "open", "close", "room", "quality", "presence", "get", "heartbeat", "sweep", "snap_part", "snap_finish", "stats",
};

/* ---- arguments --------------------------------------------------------------------- */

void ss_args_init(ss_args *a) { memset(a, 0, sizeof(*a)); }

void ss_args_free(ss_args *a)
{
    free(a->v);
    free(a->l);
    free(a->num);
    memset(a, 0, sizeof(*a));
}

/* Makes room for one more argument; returns its index or -1 (oom is set). */
static long grow(ss_args *a)
{
    if (a->oom)
        return -1;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        const char **v = realloc(a->v, cap * sizeof(*v));
        if (v)
            a->v = v;
        size_t *l = v ? realloc(a->l, cap * sizeof(*l)) : NULL;
        if (l)
            a->l = l;
        char(*num)[32] = l ? realloc(a->num, cap * sizeof(*num)) : NULL;
        if (!num) {
            a->oom = 1;
            return -1;
        }
        a->num = num;
        a->cap = cap;
    }
    return (long)a->n++;
}

void ss_args_str(ss_args *a, const char *s)
{
    long i = grow(a);
    if (i < 0)
        return;
    a->v[i] = s ? s : "";
    a->l[i] = strlen(a->v[i]);
}

/* Numbers live in num[i]; v[i] stays NULL until ss_store_run, because num
 * may move while the list grows. */
static void number(ss_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void number(ss_args *a, const char *fmt, ...)
{
    long i = grow(a);
    if (i < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->num[i], sizeof(a->num[i]), fmt, ap);
    va_end(ap);
    a->v[i] = NULL;
    a->l[i] = n > 0 ? (size_t)n : 0;
}

void ss_args_u64(ss_args *a, uint64_t v) { number(a, "%" PRIu64, v); }
void ss_args_i64(ss_args *a, int64_t v) { number(a, "%" PRId64, v); }

void ss_args_dbl(ss_args *a, double v)
{
    if (!isfinite(v))
        v = 0;
    number(a, "%.17g", v);
}

/* ---- replies ------------------------------------------------------------------------ */

static void on_reply(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    ss_op *op = arg;
    ss_store *s = op->s;
    ss_res res = { 0 };
    s->inflight--;
    if (status == 0) {
        int pr = ss_reply_parse(rep, &res);
        if (pr < 0) {
            status = rep->type == REDIS_REPLY_ERROR ? -EIO : pr;
            uint64_t now = loop_now_ms(s->l);
            if (now - s->last_warn >= 1000) {
                s->last_warn = now;
                LOG_WARN("store: bad script reply", "{s:s,s:s}", "script", script_names[op->sc], "error",
                         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply shape");
            }
        }
    }
    ss_store_cb *cb = op->cb;
    void *cb_arg = op->arg;
    free(op);
    cb(status, status == 0 ? &res : NULL, cb_arg);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

ss_store *ss_store_new(loop *l, const char *url, uint32_t cmd_timeout_ms)
{
    static const char *const bodies[SS_NSCRIPTS] = {
        ss_lua_open, ss_lua_close, ss_lua_room,      ss_lua_quality,     ss_lua_presence, ss_lua_get,
        ss_lua_heartbeat, ss_lua_sweep, ss_lua_snap_part, ss_lua_snap_finish, ss_lua_stats,
    };
    ss_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->l = l;
    redis_opts o = { .name = "sessions", .cmd_timeout_ms = cmd_timeout_ms };
    s->r = redis_new(l, url, &o);
    if (!s->r) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    for (int i = 0; i < SS_NSCRIPTS; i++) {
        s->sc[i] = redis_script_new(s->r, bodies[i]);
        if (!s->sc[i]) {
            redis_free(s->r);
            free(s);
            errno = ENOMEM;
            return NULL;
        }
    }
    return s;
}

void ss_store_free(ss_store *s)
{
    if (!s)
        return;
    redis_free(s->r);
    free(s);
}

int ss_store_run(ss_store *s, ss_script sc, ss_args *args, ss_store_cb *cb, void *arg)
{
    if (args->oom)
        return -ENOMEM;
    if (!redis_up(s->r))
        return -ENOTCONN;
    for (size_t i = 0; i < args->n; i++)
        if (!args->v[i])
            args->v[i] = args->num[i];
    ss_op *op = malloc(sizeof(*op));
    if (!op)
        return -ENOMEM;
    op->s = s;
    op->sc = sc;
    op->cb = cb;
    op->arg = arg;
    int rc = redis_evalsha(s->r, s->sc[sc], on_reply, op, 0, (int)args->n, args->v, args->l);
    if (rc < 0) {
        free(op);
        return rc;
    }
    s->inflight++;
    return 0;
}

int ss_store_ready(const ss_store *s) { return redis_ready(s->r); }
int ss_store_up(const ss_store *s) { return redis_up(s->r); }
const redis *ss_store_redis(const ss_store *s) { return s->r; }
size_t ss_store_inflight(const ss_store *s) { return s->inflight; }
