/* ss_store.h -- sessiond's Redis connection and its scripts.
 *
 * One connection carries everything: replies come back in the order Redis
 * ran the scripts, so the presence changes a replica publishes follow the
 * order in which they happened. Every call is one EVALSHA of a script of
 * ss_lua.c, whose reply has one shape, {code, gw_status, data, changes},
 * parsed here into an ss_res.
 *
 * If a call returns an error its callback never runs. Callback statuses: 0
 * with res, or -ETIMEDOUT / -ECONNRESET (Redis did not answer in time or the
 * connection dropped: the script may or may not have run), -EIO (an error
 * reply), -EPROTO (unexpected reply shape), -ECANCELED (store freed).
 */
#ifndef TETHER_SS_STORE_H
#define TETHER_SS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "redis.h"

typedef enum {
    SS_OPEN,
    SS_CLOSE,
    SS_ROOM,
    SS_QUALITY,
    SS_PRESENCE,
    SS_GET,
    SS_HEARTBEAT,
    SS_SWEEP,
    SS_SNAP_PART,
    SS_SNAP_FINISH,
    SS_STATS,
    SS_NSCRIPTS
} ss_script;

typedef struct ss_store ss_store;

/* A parsed reply; everything is borrowed for the callback's duration. */
typedef struct ss_res {
    const char *code;           /* "ok", "forbidden", "notfound", "stale", "claimed" */
    long long gw_status;        /* 0 known, 1 new incarnation, 2 resurrected, 3 stale */
    const redisReply *data;     /* array, per script */
    const redisReply *changes;  /* array of strings: room, user, state, ... */
} ss_res;

typedef void ss_store_cb(int status, const ss_res *res, void *arg);

/* Script arguments, built up then handed to ss_store_run (which copies
 * them). Strings are borrowed until then; numbers are formatted inside. */
typedef struct ss_args {
    size_t n, cap;
    const char **v;
    size_t *l;
    char (*num)[32];
    int oom;
} ss_args;

void ss_args_init(ss_args *a);
void ss_args_free(ss_args *a);
void ss_args_str(ss_args *a, const char *s);   /* NULL is "" */
void ss_args_u64(ss_args *a, uint64_t v);
void ss_args_i64(ss_args *a, int64_t v);
void ss_args_dbl(ss_args *a, double v);

/* Connects in the background (see ss_store_ready). url is copied. Returns
 * NULL (errno set; EINVAL for a bad URL). */
ss_store *ss_store_new(loop *l, const char *url, uint32_t cmd_timeout_ms);
/* Fails calls in flight with -ECANCELED (their callbacks run), frees. NULL: no-op. */
void ss_store_free(ss_store *s);

/* Runs script sc with args (copied before returning). Returns 0 (cb runs
 * once later), -ENOTCONN when Redis is not connected, -ENOMEM. */
int ss_store_run(ss_store *s, ss_script sc, ss_args *args, ss_store_cb *cb, void *arg);

/* 1 when connected and answering PINGs. */
int ss_store_ready(const ss_store *s);
int ss_store_up(const ss_store *s);
const redis *ss_store_redis(const ss_store *s);
size_t ss_store_inflight(const ss_store *s);

/* Checks a script's reply shape and fills res (borrowing from rep).
 * Returns 0 or -EPROTO. */
int ss_reply_parse(const redisReply *rep, ss_res *res);
/* data[i] as an integer (0 when absent or not an integer). */
long long ss_res_int(const ss_res *r, size_t i);
/* data[i] as a string (NULL when absent or not a string). */
const char *ss_res_str(const ss_res *r, size_t i);
/* Number of presence changes in r, and the i-th one's fields. */
size_t ss_res_nchanges(const ss_res *r);
void ss_res_change(const ss_res *r, size_t i, const char **room, const char **user, const char **state);

#endif
