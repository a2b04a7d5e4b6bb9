/* rd_store.c -- replayd's Redis data model (see rd_store.h for the API).
 *
 * Keys, all tagged with {room} so that Redis Cluster (or our own consistent
 * hashing) keeps one room's keys on one shard and a script may touch them all:
 *
 *   tether:{room}:meta   hash {epoch, top}. epoch: 20 hex digits, the
 *                        creation time (Redis clock, ms, 12 digits) then 8
 *                        random ones from the replayd that created it: unique,
 *                        and a later epoch sorts after an earlier one (fixed
 *                        width), which is how subscribers tell a stale event
 *                        of the old epoch from the new epoch. top: the last
 *                        seq handed out. TTL max(history TTL, 24 h),
 *                        refreshed by every append: a room whose messages
 *                        expired still knows its epoch and top, so a resume
 *                        reports a trim ("first_available" > position + 1)
 *                        instead of a new epoch. Only a lost meta (flush,
 *                        eviction, a day of silence) starts a new epoch.
 *   tether:{room}:log    stream, entry id "<seq>-0", fields i (client id),
 *                        f (from user), t (ts, ms since the Unix epoch, Redis
 *                        clock), d (data). Exactly TETHER_HISTORY_SIZE entries
 *                        at most (XADD MAXLEN, exact); TTL TETHER_HISTORY_TTL_S
 *                        refreshed by every append. Streams give O(log n) reads
 *                        by seq (XRANGE from "<after+1>-0") and a compact
 *                        encoding with the field names stored once per node.
 *   tether:{room}:dd:<len(user)>:<user>:<id>
 *                        string "epoch:seq:ts", TTL TETHER_DEDUP_TTL_S: the
 *                        result of the first append of (room, user, id). The
 *                        user's length is in the key because both user and id
 *                        may contain ':' ("a:b"+"c" must not meet "a"+"b:c").
 *
 * Invariants kept by the append script (one script = atomic in Redis): a
 * stored message's seq is top at the time it was stored; seqs of an epoch
 * have no holes (the stream entry is written before top moves, so a failing
 * XADD leaves nothing half done); a new epoch deletes any stale log, whose
 * entry ids would belong to the old numbering.
 *
 * Timestamps come from Redis's clock (TIME inside the script), so that the
 * ts of a room's messages follow seq order whichever replica sequenced them.
 */
#include "rd_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"

static const char APPEND_LUA[] =
    "local d = redis.call('GET', KEYS[3])\n"
    "if d then\n"
    "  local e, s, t = string.match(d, '^([^:]*):(%d+):(%d+)$')\n"
    "  if e then return {e, tonumber(s), tonumber(t), 1} end\n"
    "end\n"
    "local now = redis.call('TIME')\n"
    "local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)\n"
    "local m = redis.call('HMGET', KEYS[1], 'epoch', 'top')\n"
    "local epoch, top = m[1], tonumber(m[2])\n"
    "if not epoch or not top then\n"
    "  epoch = string.format('%012x', ts) .. ARGV[1]\n"
    "  top = 0\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "top = top + 1\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], string.format('%d-0', top),\n"
    "           'i', ARGV[2], 'f', ARGV[3], 't', string.format('%d', ts), 'd', ARGV[4])\n"
    "redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', top)\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[8])\n"
    "redis.call('SET', KEYS[3], string.format('%s:%d:%d', epoch, top, ts), 'EX', ARGV[7])\n"
    "return {epoch, top, ts, 0}\n";

/* Returns {epoch, top, first_available, more, (seq, id, from, ts, data)...}. */
static const char RANGE_LUA[] =
    "local m = redis.call('HMGET', KEYS[1], 'epoch', 'top')\n"
    "local epoch, top = m[1], tonumber(m[2])\n"
    "if not epoch or not top then return {'', 0, 1, 0} end\n"
    "local first = top + 1\n"
    "local h = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "if h[1] then first = tonumber(string.match(h[1][1], '^(%d+)')) end\n"
    "local after = tonumber(ARGV[1])\n"
    "if ARGV[3] == '1' or after < first - 1 then after = first - 1 end\n"
    "local out = {epoch, top, first, 0}\n"
    "if after >= top then return out end\n"
    "local limit = tonumber(ARGV[2])\n"
    "local es = redis.call('XRANGE', KEYS[2], string.format('%d-0', after + 1), '+', 'COUNT', limit)\n"
    "local last = after\n"
    "for _, e in ipairs(es) do\n"
    "  local f = e[2]\n"
    "  last = tonumber(string.match(e[1], '^(%d+)'))\n"
    "  out[#out + 1] = last\n"
    "  out[#out + 1] = f[2]\n"
    "  out[#out + 1] = f[4]\n"
    "  out[#out + 1] = tonumber(f[6])\n"
    "  out[#out + 1] = f[8]\n"
    "end\n"
    "if #es == limit and last < top then out[4] = 1 end\n"
    "return out\n";

#define KEY_PREFIX "tether:{"
#define KEY_MAX (sizeof(KEY_PREFIX) + RD_MAX_ROOM + 8 + 4 + RD_MAX_USER + 1 + RD_MAX_ID + 16)

struct rd_store {
    loop *l;
    redis *wr;  /* appends and heads */
    redis *rd;  /* ranges */
    redis_script *append_sc;
    redis_script *range_sc;
    char size_s[16], hist_ttl_s[16], dedup_ttl_s[16], meta_ttl_s[16];
    uint64_t epoch_seed, epoch_ctr;
    size_t inflight;
    uint64_t last_warn;
};

/* ---- keys ---------------------------------------------------------------------- */

static size_t put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}

/* "tether:{room}:" into buf; returns its length. */
static size_t key_base(char *buf, const char *room, size_t room_len)
{
    size_t n = put(buf, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    n += put(buf + n, room, room_len);
    n += put(buf + n, "}:", 2);
    return n;
}

/* ---- epochs -------------------------------------------------------------------- */

/* splitmix64 over seed + counter: cheap, no syscall per append, and random
 * seeds make processes disagree. The suffix only has to tell apart two
 * epochs of one room created within the same millisecond. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rd_store_epoch_suffix(rd_store *s, char buf[9])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = mix64(s->epoch_seed + ++s->epoch_ctr);
    for (int i = 7; i >= 0; i--) {
        buf[i] = hex[v & 15];
        v >>= 4;
    }
    buf[8] = '\0';
}

/* ---- lifecycle ----------------------------------------------------------------- */

rd_store *rd_store_new(loop *l, const rd_store_cfg *cfg)
{
    rd_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->l = l;
    if (getrandom(&s->epoch_seed, sizeof(s->epoch_seed), 0) != sizeof(s->epoch_seed))
        s->epoch_seed = (uint64_t)loop_wall_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    snprintf(s->size_s, sizeof(s->size_s), "%u", (unsigned)cfg->history_size);
    snprintf(s->hist_ttl_s, sizeof(s->hist_ttl_s), "%u", (unsigned)cfg->history_ttl_s);
    snprintf(s->dedup_ttl_s, sizeof(s->dedup_ttl_s), "%u", (unsigned)cfg->dedup_ttl_s);
    uint32_t meta = cfg->meta_ttl_s < cfg->history_ttl_s ? cfg->history_ttl_s : cfg->meta_ttl_s;
    snprintf(s->meta_ttl_s, sizeof(s->meta_ttl_s), "%u", (unsigned)meta);
    redis_opts wo = { .name = "append", .cmd_timeout_ms = cfg->cmd_timeout_ms };
    redis_opts ro = { .name = "read", .cmd_timeout_ms = cfg->cmd_timeout_ms };
    s->wr = redis_new(l, cfg->redis_url, &wo);
    s->rd = s->wr ? redis_new(l, cfg->redis_url, &ro) : NULL;
    if (!s->wr || !s->rd)
        goto fail;
    s->append_sc = redis_script_new(s->wr, APPEND_LUA);
    s->range_sc = redis_script_new(s->rd, RANGE_LUA);
    if (!s->append_sc || !s->range_sc) {
        errno = ENOMEM;
        goto fail;
    }
    return s;
fail:;
    int e = errno;
    redis_free(s->wr);
    redis_free(s->rd);
    free(s);
    errno = e;
    return NULL;
}

void rd_store_free(rd_store *s)
{
    if (!s)
        return;
    redis_free(s->wr);
    redis_free(s->rd);
    free(s);
}

int rd_store_ready(const rd_store *s) { return redis_ready(s->wr) && redis_ready(s->rd); }

const redis *rd_store_conn(const rd_store *s, int which) { return which ? s->rd : s->wr; }

size_t rd_store_inflight(const rd_store *s) { return s->inflight; }

/* Error replies mean a bug or a sick Redis; one line a second is enough. */
static int reply_error(rd_store *s, const char *what, const redisReply *rep)
{
    uint64_t now = loop_now_ms(s->l);
    if (now - s->last_warn >= 1000) {
        s->last_warn = now;
        LOG_WARN("store: redis error reply", "{s:s,s:s}", "op", what, "error",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply type");
    }
    return rep->type == REDIS_REPLY_ERROR ? -EIO : -EPROTO;
}

/* ---- append -------------------------------------------------------------------- */

static void on_append(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    rd_op *op = arg;
    rd_store *s = op->s;
    rd_append_res res = { .seq = 0 };
    s->inflight--;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 && rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[0]->len <= RD_MAX_EPOCH && rep->element[1]->type == REDIS_REPLY_INTEGER &&
            rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[3]->type == REDIS_REPLY_INTEGER) {
            memcpy(res.epoch, rep->element[0]->str, rep->element[0]->len);
            res.epoch[rep->element[0]->len] = '\0';
            res.seq = (uint64_t)rep->element[1]->integer;
            res.ts = (int64_t)rep->element[2]->integer;
            res.duplicate = rep->element[3]->integer != 0;
        } else {
            status = reply_error(s, "append", rep);
        }
    }
    op->cb.append(status, status == 0 ? &res : NULL, op->arg);
}

int rd_store_append(rd_store *s, rd_op *op, const char *room, size_t room_len, const char *user,
                    size_t user_len, const char *id, size_t id_len, const char *data, size_t data_len,
                    rd_append_cb *cb, void *arg)
{
    if (room_len > RD_MAX_ROOM || user_len > RD_MAX_USER || id_len > RD_MAX_ID)
        return -EINVAL;
    char kmeta[KEY_MAX], klog[KEY_MAX], kdd[KEY_MAX], epoch[9];
    size_t nb = key_base(kmeta, room, room_len);
    memcpy(klog, kmeta, nb);
    memcpy(kdd, kmeta, nb);
    size_t nm = nb + put(kmeta + nb, "meta", 4);
    size_t nl = nb + put(klog + nb, "log", 3);
    size_t nd = nb + (size_t)sprintf(kdd + nb, "dd:%zu:", user_len);
    nd += put(kdd + nd, user, user_len);
    kdd[nd++] = ':';
    nd += put(kdd + nd, id, id_len);
    rd_store_epoch_suffix(s, epoch);
    const char *argv[11] = { kmeta, klog, kdd, epoch, id, user, data, s->size_s, s->hist_ttl_s, s->dedup_ttl_s,
                             s->meta_ttl_s };
    size_t lens[11] = { nm, nl, nd, 8, id_len, user_len, data_len, strlen(s->size_s), strlen(s->hist_ttl_s),
                        strlen(s->dedup_ttl_s), strlen(s->meta_ttl_s) };
    op->s = s;
    op->cb.append = cb;
    op->arg = arg;
    int rc = redis_evalsha(s->wr, s->append_sc, on_append, op, 3, 8, argv, lens);
    if (rc == 0)
        s->inflight++;
    return rc;
}

/* ---- range --------------------------------------------------------------------- */

void rd_range_res_free(rd_range_res *res)
{
    if (!res)
        return;
    freeReplyObject(res->rep);
    free(res->msgs);
    free(res);
}

static int is_int(const redisReply *e) { return e->type == REDIS_REPLY_INTEGER; }
static int is_str(const redisReply *e) { return e->type == REDIS_REPLY_STRING; }

/* Checks the reply's shape and builds the result, taking the reply over. */
static int parse_range(redisReply *rep, rd_range_res **out)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 || (rep->elements - 4) % 5 != 0 ||
        !is_str(rep->element[0]) || !is_int(rep->element[1]) || !is_int(rep->element[2]) ||
        !is_int(rep->element[3]))
        return -EPROTO;
    size_t n = (rep->elements - 4) / 5;
    for (size_t i = 0; i < n; i++) {
        redisReply **e = rep->element + 4 + 5 * i;
        if (!is_int(e[0]) || !is_str(e[1]) || !is_str(e[2]) || !is_int(e[3]) || !is_str(e[4]))
            return -EPROTO;
    }
    rd_range_res *res = calloc(1, sizeof(*res));
    rd_msg *msgs = n ? calloc(n, sizeof(*msgs)) : NULL;
    redisReply *own = res && (msgs || !n) ? redis_reply_take(rep) : NULL;
    if (!own) {
        free(msgs);
        free(res);
        return -ENOMEM;
    }
    res->rep = own;
    res->msgs = msgs;
    res->n = n;
    res->epoch = own->element[0]->str;
    res->top = (uint64_t)own->element[1]->integer;
    res->first_available = (uint64_t)own->element[2]->integer;
    res->more = own->element[3]->integer != 0;
    for (size_t i = 0; i < n; i++) {
        redisReply **e = own->element + 4 + 5 * i;
        msgs[i] = (rd_msg){ .seq = (uint64_t)e[0]->integer,
                            .id = e[1]->str,
                            .from = e[2]->str,
                            .ts = (int64_t)e[3]->integer,
                            .data = e[4]->str,
                            .data_len = e[4]->len };
    }
    *out = res;
    return 0;
}

static void on_range(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    rd_op *op = arg;
    rd_store *s = op->s;
    rd_range_res *res = NULL;
    s->inflight--;
    if (status == 0 && parse_range(rep, &res) < 0)
        status = reply_error(s, "range", rep);
    op->cb.range(status, res, op->arg);
}

int rd_store_range(rd_store *s, rd_op *op, const char *room, uint64_t after_seq, uint32_t limit,
                   int from_oldest, rd_range_cb *cb, void *arg)
{
    size_t room_len = strlen(room);
    if (room_len > RD_MAX_ROOM)
        return -EINVAL;
    if (limit == 0 || limit > RD_RANGE_MAX_LIMIT)
        limit = RD_RANGE_MAX_LIMIT;
    char kmeta[KEY_MAX], klog[KEY_MAX], after[24], lim[16];
    size_t nb = key_base(kmeta, room, room_len);
    memcpy(klog, kmeta, nb);
    size_t nm = nb + put(kmeta + nb, "meta", 4);
    size_t nl = nb + put(klog + nb, "log", 3);
    int na = snprintf(after, sizeof(after), "%llu", (unsigned long long)after_seq);
    int nlim = snprintf(lim, sizeof(lim), "%u", (unsigned)limit);
    const char *argv[5] = { kmeta, klog, after, lim, from_oldest ? "1" : "0" };
    size_t lens[5] = { nm, nl, (size_t)na, (size_t)nlim, 1 };
    op->s = s;
    op->cb.range = cb;
    op->arg = arg;
    int rc = redis_evalsha(s->rd, s->range_sc, on_range, op, 2, 3, argv, lens);
    if (rc == 0)
        s->inflight++;
    return rc;
}

/* ---- heads --------------------------------------------------------------------- */

static void on_head(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    rd_op *op = arg;
    rd_store *s = op->s;
    const char *epoch = "";
    uint64_t top = 0;
    s->inflight--;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
            redisReply *e = rep->element[0], *t = rep->element[1];
            if (is_str(e) && is_str(t)) {
                epoch = e->str;
                top = strtoull(t->str, NULL, 10);
            }
        } else {
            status = reply_error(s, "head", rep);
        }
    }
    op->cb.head(status, epoch, top, op->arg);
}

int rd_store_head(rd_store *s, rd_op *op, const char *room, rd_head_cb *cb, void *arg)
{
    size_t room_len = strlen(room);
    if (room_len > RD_MAX_ROOM)
        return -EINVAL;
    char kmeta[KEY_MAX];
    size_t nb = key_base(kmeta, room, room_len);
    size_t nm = nb + put(kmeta + nb, "meta", 4);
    const char *argv[4] = { "HMGET", kmeta, "epoch", "top" };
    size_t lens[4] = { 5, nm, 5, 3 };
    op->s = s;
    op->cb.head = cb;
    op->arg = arg;
    int rc = redis_command(s->wr, on_head, op, 4, argv, lens);
    if (rc == 0)
        s->inflight++;
    return rc;
}
