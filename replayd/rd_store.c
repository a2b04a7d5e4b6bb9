/* rd_store.c -- replayd's Redis data model (see rd_store.h for the API).
 *
 * The keys (meta, log, dedup buckets), their TTLs and the invariants the
 * append script keeps: docs/architecture.md, "Redis key layout". The
 * scripts: replayd/lua/append.lua and range.lua.
 *
 * One script call appends the batches of one loop iteration, several rooms
 * at once (up to RD_CALL_MSGS messages): the per-call cost (EVALSHA itself,
 * TIME) is paid once, and each room's own work (meta read and write, push,
 * dedup buckets) once per room and batch. A call spans rooms, so on a Redis
 * Cluster its keys would have to share a slot: Tether's Redis is one primary
 * (hiredis has no cluster client), and rooms are still hash-tagged so that a
 * sharding layer can keep a room's keys together. Measured on the 2-core dev
 * machine (bench/run.sh --only publish: 50 rooms, ~4 appends per room and
 * iteration): ~23 us of Redis CPU per append with one room per call and a
 * key per dedup record, ~17 us with both changes (and 31.5 vs 36-41 us in
 * test_replayd's 100-room throughput case, 12 vs 15.5 us with one room).
 */
#include "rd_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "hmap.h"
#include "log.h"
#include "rd_known.h"
#include "rd_reply.h"

/* Rooms whose floors a replayd remembers (~200 bytes each). */
#define RD_KNOWN_ROOMS 100000

/* The append script: replayd/lua/append.lua says its KEYS, ARGV and reply
 * (the floors, duplicates, the order of writes). */
static const char APPEND_LUA[] = {
#include "replayd/lua/append.lua.h"
    0
};

/* A page of a room's history: replayd/lua/range.lua. */
static const char RANGE_LUA[] = {
#include "replayd/lua/range.lua.h"
    0
};

typedef struct batch batch;
struct batch {
    batch *next;
    rd_store *s;
    rd_op *head, *tail;
    size_t n, bytes;
    int open; /* still the room's entry in s->open */
    /* The floor sent with it (see APPEND_LUA): the highest known seq of the
     * room, from this replayd's own appends or from the callers. */
    char floor_epoch[RD_MAX_EPOCH + 1];
    uint64_t floor_seq;
};

#define KEY_PREFIX "tether:{"
#define KEY_MAX (sizeof(KEY_PREFIX) + RD_MAX_ROOM + 8 + 4 + RD_MAX_USER + 1 + RD_MAX_ID + 16)

struct rd_store {
    loop *l;
    redis *wr;  /* appends and heads */
    redis *rd;  /* ranges */
    redis_script *append_sc;
    redis_script *range_sc;
    char size_s[40], hist_ttl_s[16], dedup_ttl_s[16], meta_ttl_s[16];
    uint64_t epoch_seed, epoch_ctr;
    char *scratch;   /* keys and entry tails of a batch; redis copies them at once */
    size_t scratch_cap;
    hmap *open;      /* room -> the batch still taking appends this iteration */
    batch *flush_head, *flush_tail; /* batches to send, in creation order */
    batch *free_batches;
    rd_known *known;    /* room -> epoch and highest seq handed out here: floors */
    unsigned long long epoch_restarts;
    loop_timer flush_t; /* 0 ms: sends the iteration's batches (stoppable, unlike a defer) */
    unsigned long long batches;
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
    snprintf(s->size_s, sizeof(s->size_s), "%u:%u:%u", (unsigned)cfg->history_size, (unsigned)cfg->history_burst,
             (unsigned)cfg->history_min_age_ms);
    snprintf(s->hist_ttl_s, sizeof(s->hist_ttl_s), "%u", (unsigned)cfg->history_ttl_s);
    snprintf(s->dedup_ttl_s, sizeof(s->dedup_ttl_s), "%u", (unsigned)cfg->dedup_ttl_s);
    uint32_t meta = cfg->meta_ttl_s < cfg->history_ttl_s ? cfg->history_ttl_s : cfg->meta_ttl_s;
    snprintf(s->meta_ttl_s, sizeof(s->meta_ttl_s), "%u", (unsigned)meta);
    redis_opts wo = { .name = "append", .cmd_timeout_ms = cfg->cmd_timeout_ms };
    redis_opts ro = { .name = "read", .cmd_timeout_ms = cfg->cmd_timeout_ms };
    s->open = hmap_new();
    s->known = rd_known_new(RD_KNOWN_ROOMS);
    if (!s->open || !s->known)
        goto fail;
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
    hmap_free(s->open);
    rd_known_free(s->known);
    free(s);
    errno = e;
    return NULL;
}

void rd_store_free(rd_store *s)
{
    if (!s)
        return;
    /* Batches not sent yet: their appends never reached Redis. */
    loop_timer_stop(s->l, &s->flush_t);
    while (s->flush_head) {
        batch *b = s->flush_head;
        s->flush_head = b->next;
        for (rd_op *op = b->head, *nx; op; op = nx) {
            nx = op->next;
            s->inflight--;
            op->cb.append(-ECANCELED, NULL, op->arg);
        }
        free(b);
    }
    redis_free(s->wr);
    redis_free(s->rd);
    while (s->free_batches) {
        batch *b = s->free_batches;
        s->free_batches = b->next;
        free(b);
    }
    hmap_free(s->open);
    rd_known_free(s->known);
    free(s->scratch);
    free(s);
}

int rd_store_ready(const rd_store *s) { return redis_ready(s->wr) && redis_ready(s->rd); }

const redis *rd_store_conn(const rd_store *s, int which) { return which ? s->rd : s->wr; }

size_t rd_store_inflight(const rd_store *s) { return s->inflight; }
unsigned long long rd_store_epoch_restarts(const rd_store *s) { return s->epoch_restarts; }
int rd_store_known(const rd_store *s, const char *room, const char **epoch, uint64_t *seq)
{
    return rd_known_get(s->known, room, epoch, seq);
}
size_t rd_store_known_rooms(const rd_store *s) { return rd_known_count(s->known); }

unsigned long long rd_store_batches(const rd_store *s) { return s->batches; }

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

/* ---- append (batched per room) ------------------------------------------------ */

static int scratch_reserve(rd_store *s, size_t need)
{
    if (need <= s->scratch_cap)
        return 0;
    size_t cap = s->scratch_cap ? s->scratch_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *n = realloc(s->scratch, cap);
    if (!n)
        return -ENOMEM;
    s->scratch = n;
    s->scratch_cap = cap;
    return 0;
}

static void batch_put(rd_store *s, batch *b)
{
    b->next = s->free_batches;
    s->free_batches = b;
}

/* One EVALSHA: the batches of one or more rooms, in flush order. */
typedef struct call {
    rd_store *s;
    size_t nb, nmsgs, bytes;
    batch *b[RD_CALL_ROOMS];
} call;

/* Takes an answered append into the floors, and says so when a room started
 * a new epoch although a seq of its previous one was known: its meta was
 * lost (expired, flushed) or rolled back (Redis restored older). */
static void learn(rd_store *s, batch *b, const rd_op *op, const rd_append_res *res)
{
    if (!res->duplicate && b->floor_epoch[0] && strcmp(res->epoch, b->floor_epoch) != 0) {
        s->epoch_restarts++;
        LOG_WARN("room started a new epoch", "{s:s,s:s,s:I,s:s,s:s}", "room", op->room, "known_epoch",
                 b->floor_epoch, "known_seq", (json_int_t)b->floor_seq, "epoch", res->epoch, "why",
                 "its meta was lost or Redis came back older than it acknowledged");
        b->floor_epoch[0] = '\0'; /* once per batch */
    }
    /* A duplicate's answer is its first append's: maybe of an epoch that is
     * gone (a retry across a flush), which must not replace the one known;
     * in the known epoch it may be above it (the first attempt's answer was
     * lost with a recycled connection), and its head must say so. */
    if (res->duplicate)
        rd_known_raise(s->known, op->room, res->epoch, res->seq);
    else
        rd_known_note(s->known, op->room, res->epoch, res->seq);
}

/* Answers every op of the call, in order, with rep's results (or status),
 * then recycles its batches and the call. */
static void call_done(rd_store *s, call *c, int status, const redisReply *rep)
{
    /* cppcheck-suppress nullPointer ; status 0 always comes with a reply */
    if (status == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != c->nmsgs))
        status = reply_error(s, "append", rep);
    size_t i = 0;
    for (size_t k = 0; k < c->nb; k++) {
        batch *b = c->b[k];
        /* A callback may reuse its op at once (a new append): read next first. */
        for (rd_op *op = b->head, *nx; op; op = nx, i++) {
            nx = op->next;
            rd_append_res res;
            int st = status;
            /* cppcheck-suppress nullPointer ; as above */
            if (st == 0 && rd_reply_append(rep->element[i], &res) < 0)
                st = reply_error(s, "append", rep->element[i]);
            if (st == 0)
                learn(s, b, op, &res);
            s->inflight--;
            op->cb.append(st, st == 0 ? &res : NULL, op->arg);
        }
        batch_put(s, b);
    }
    free(c);
}

static void on_call(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    call *c = arg;
    call_done(c->s, c, status, rep);
}

#define CALL_KEYS (3 * RD_CALL_ROOMS)
#define CALL_ARGS (6 + 3 * RD_CALL_ROOMS + 2 * RD_CALL_MSGS)

/* The batch's floor: the highest seq known to have been handed out in the
 * room, from this replayd's own appends or from a caller (a gateway that
 * delivered it), with its epoch. */
static void pick_floor(rd_store *s, batch *b)
{
    const char *ep = NULL;
    uint64_t seq = 0;
    rd_known_get(s->known, b->head->room, &ep, &seq);
    for (const rd_op *op = b->head; op; op = op->next) {
        if (op->floor_epoch && op->floor_epoch[0] && op->floor_seq > seq) {
            ep = op->floor_epoch;
            seq = op->floor_seq;
        }
    }
    /* Both sources hold epochs of at most RD_MAX_EPOCH (rd_api checks). */
    snprintf(b->floor_epoch, sizeof(b->floor_epoch), "%s", ep ? ep : "");
    b->floor_seq = ep ? seq : 0;
}

/* Sends one call as one EVALSHA (see APPEND_LUA for the layout). */
static void call_send(rd_store *s, call *c)
{
    const char **argv = malloc((CALL_KEYS + CALL_ARGS) * (sizeof(*argv) + 2 * sizeof(size_t)));
    size_t *lens = argv ? (size_t *)(argv + CALL_KEYS + CALL_ARGS) : NULL;
    /* Every key, field and tail is laid out in scratch; offsets first,
     * pointers after, since scratch may move while it grows. */
    size_t *off = lens ? lens + CALL_KEYS + CALL_ARGS : NULL;
    size_t nk = 3 * c->nb, na = 6 + 3 * c->nb + 2 * c->nmsgs;
    size_t need = c->nb * 3 * KEY_MAX + c->nmsgs * (RD_MAX_USER + RD_MAX_ID + 64) + c->bytes +
                  c->nb * (24 + RD_MAX_EPOCH + 24);
    char epoch[9];
    int rc = -ENOMEM;
    if (!argv || (rc = scratch_reserve(s, need)) < 0)
        goto fail;
    char *base = s->scratch, *p = base;
    size_t k = 0; /* index over keys then args */
    for (size_t g = 0; g < c->nb; g++) {
        const rd_op *o0 = c->b[g]->head;
        static const char *const sfx[3] = { "meta", "log", "dd" };
        for (int j = 0; j < 3; j++) {
            off[k] = (size_t)(p - base);
            p += key_base(p, o0->room, o0->room_len);
            p += put(p, sfx[j], strlen(sfx[j]));
            lens[k] = (size_t)(p - base) - off[k];
            k++;
        }
    }
    k = nk + 6;
    for (size_t g = 0; g < c->nb; g++) {
        off[k] = (size_t)(p - base);
        p += (size_t)sprintf(p, "%zu", c->b[g]->n);
        lens[k] = (size_t)(p - base) - off[k];
        k++;
    }
    for (size_t g = 0; g < c->nb; g++) {
        batch *b = c->b[g];
        pick_floor(s, b);
        off[k] = (size_t)(p - base);
        p += put(p, b->floor_epoch, strlen(b->floor_epoch));
        lens[k] = (size_t)(p - base) - off[k];
        k++;
        off[k] = (size_t)(p - base);
        p += (size_t)sprintf(p, "%llu", (unsigned long long)b->floor_seq);
        lens[k] = (size_t)(p - base) - off[k];
        k++;
    }
    for (size_t g = 0; g < c->nb; g++) {
        for (const rd_op *op = c->b[g]->head; op; op = op->next) {
            off[k] = (size_t)(p - base);
            p += (size_t)sprintf(p, "%zu:", op->user_len);
            p += put(p, op->user, op->user_len);
            *p++ = ':';
            p += put(p, op->id, op->id_len);
            lens[k] = (size_t)(p - base) - off[k];
            k++;
            off[k] = (size_t)(p - base);
            p += (size_t)sprintf(p, "%zu %zu\n", op->id_len, op->user_len);
            p += put(p, op->id, op->id_len);
            *p++ = '|';
            p += put(p, op->user, op->user_len);
            *p++ = '|';
            p += put(p, op->data, op->data_len);
            lens[k] = (size_t)(p - base) - off[k];
            k++;
        }
    }
    for (k = 0; k < nk + na; k++)
        if (k < nk || k >= nk + 6)
            argv[k] = base + off[k];
    char nbs[24];
    rd_store_epoch_suffix(s, epoch);
    snprintf(nbs, sizeof(nbs), "%zu", c->nb);
    const char *hdr[6] = { epoch, s->size_s, s->hist_ttl_s, s->dedup_ttl_s, s->meta_ttl_s, nbs };
    for (int j = 0; j < 6; j++) {
        argv[nk + (size_t)j] = hdr[j];
        lens[nk + (size_t)j] = strlen(hdr[j]);
    }
    rc = redis_evalsha(s->wr, s->append_sc, on_call, c, (int)nk, (int)na, argv, lens);
    free(argv);
    argv = NULL;
    if (rc == 0) {
        s->batches++;
        return;
    }
fail:
    free(argv);
    /* Redis went away since the appends were accepted: they fail like a
     * lost connection would make them fail. */
    call_done(s, c, rc == -ENOTCONN ? -ECONNRESET : rc, NULL);
}

/* Sends the iteration's batches, as few calls as the limits allow. */
static void flush_batches(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    rd_store *s = arg;
    batch *b = s->flush_head;
    s->flush_head = s->flush_tail = NULL;
    call *c = NULL;
    while (b) {
        batch *nx = b->next;
        if (b->open)
            hmap_del(s->open, b->head->room);
        b->open = 0;
        if (c && (c->nb == RD_CALL_ROOMS || c->nmsgs + b->n > RD_CALL_MSGS || c->bytes + b->bytes > RD_BATCH_BYTES)) {
            call_send(s, c);
            c = NULL;
        }
        if (!c && !(c = calloc(1, sizeof(*c)))) {
            /* No memory for the call: this batch's appends fail. */
            call one = { .s = s, .nb = 1, .nmsgs = b->n, .bytes = b->bytes };
            call *cp = malloc(sizeof(*cp));
            if (cp) {
                *cp = one;
                cp->b[0] = b;
                call_done(s, cp, -ENOMEM, NULL);
            } else {
                for (rd_op *op = b->head, *nop; op; op = nop) {
                    nop = op->next;
                    s->inflight--;
                    op->cb.append(-ENOMEM, NULL, op->arg);
                }
                batch_put(s, b);
            }
            b = nx;
            continue;
        }
        c->s = s;
        c->b[c->nb++] = b;
        c->nmsgs += b->n;
        c->bytes += b->bytes;
        b = nx;
    }
    if (c)
        call_send(s, c);
}

int rd_store_append(rd_store *s, rd_op *op, const char *room, size_t room_len, const char *user,
                    size_t user_len, const char *id, size_t id_len, const char *data, size_t data_len,
                    const rd_floor *floor, rd_append_cb *cb, void *arg)
{
    if (room_len > RD_MAX_ROOM || user_len > RD_MAX_USER || id_len > RD_MAX_ID || data_len > RD_MAX_DATA)
        return -EINVAL;
    if (!redis_up(s->wr))
        return -ENOTCONN;
    size_t bytes = data_len + id_len + user_len;
    batch *b = hmap_get(s->open, room);
    if (b && (b->n == RD_BATCH_MAX || b->bytes + bytes > RD_BATCH_BYTES)) {
        /* Full: it keeps its place in the flush order; a new one follows it. */
        hmap_del(s->open, room);
        b->open = 0;
        b = NULL;
    }
    if (!b) {
        b = s->free_batches;
        if (b)
            s->free_batches = b->next;
        else if (!(b = malloc(sizeof(*b))))
            return -ENOMEM;
        memset(b, 0, sizeof(*b));
        b->s = s;
        if (hmap_put(s->open, room, b) < 0) {
            batch_put(s, b);
            return -ENOMEM;
        }
        b->open = 1;
        if (s->flush_tail)
            s->flush_tail->next = b;
        else
            s->flush_head = b;
        s->flush_tail = b;
    }
    if (!loop_timer_active(&s->flush_t) && loop_timer_start(s->l, &s->flush_t, 0, 0, flush_batches, s) < 0) {
        if (!b->n) {
            hmap_del(s->open, room);
            b->open = 0;
        }
        return -ENOMEM;
    }
    op->s = s;
    op->cb.append = cb;
    op->arg = arg;
    op->next = NULL;
    op->room = room;
    op->room_len = room_len;
    op->user = user;
    op->user_len = user_len;
    op->id = id;
    op->id_len = id_len;
    op->data = data;
    op->data_len = data_len;
    op->floor_epoch = floor ? floor->epoch : NULL;
    op->floor_seq = floor ? floor->seq : 0;
    if (b->tail)
        b->tail->next = op;
    else
        b->head = op;
    b->tail = op;
    b->n++;
    b->bytes += bytes;
    s->inflight++;
    return 0;
}

/* ---- range --------------------------------------------------------------------- */

static void on_range(redis *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    rd_op *op = arg;
    rd_store *s = op->s;
    rd_range_res *res = NULL;
    s->inflight--;
    if (status == 0 && rd_reply_range(rep, op, &res) < 0)
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
    op->after = after_seq;
    op->from_oldest = from_oldest;
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
    if (status == 0 && rd_reply_head(rep, &epoch, &top) < 0)
        status = reply_error(s, "head", rep);
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
