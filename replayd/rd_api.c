/* rd_api.c -- AppendReq / RangeReq handling (see rd_api.h for the semantics).
 *
 * Appends are the hot path (tens of thousands a second): each one takes an
 * append_req from a free list whose buffer already holds the copies of the
 * request's strings from an earlier use, so a steady stream of appends
 * allocates nothing here; the reply and the publication are packed on the
 * stack by rpc/bus for ordinary sizes. Nothing is logged per message.
 */
#include "rd_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "rpc.h"

#define APPEND_FREE_KEEP 4096
#define APPEND_BUF_KEEP (8 * 1024)
#define RD_API_BATCH_MAX 1024 /* items of one AppendBatchReq */

typedef struct append_req append_req;
typedef struct batch_req batch_req;
struct append_req {
    rd_op op;
    rd_api *a;
    rpc_ctx *ctx;     /* a single AppendReq's, or NULL in a batch */
    batch_req *batch; /* the AppendBatchReq it is item idx of */
    size_t idx;
    append_req *next;
    uint64_t t0_us;
    char *room, *user, *id, *data;
    size_t room_len, user_len, id_len, data_len;
    rd_floor floor;
    char floor_epoch[RD_MAX_EPOCH + 1];
    char *buf;
    size_t cap;
};

typedef struct range_req range_req;
typedef struct range_item {
    rd_op op;
    range_req *rq;
    rd_range_res *res;
    char room[RD_MAX_ROOM + 1];
} range_item;

struct range_req {
    rd_api *a;
    rpc_ctx *ctx;
    size_t n, left;
    int failed;
    uint64_t t0_us;
    range_item items[];
};

struct rd_api {
    loop *l;
    rpc_server *srv;
    rd_store *st;
    bus *b;
    rd_heads *heads;
    append_req *free_list;
    size_t nfree;
    size_t inflight;
    int draining;
    rd_api_idle_cb *idle;
    void *idle_arg;
};

static metrics_series *m_appends, *m_dups, *m_ranges, *m_range_rooms, *m_err_invalid, *m_err_nomem,
    *m_drop_store, *m_drop_draining, *m_latency, *m_range_latency;

static void register_metrics(void)
{
    static const double lat[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
    m_appends = metrics_counter("tether_replayd_appends_total", "Messages sequenced and stored.", NULL);
    m_dups = metrics_counter("tether_replayd_duplicates_total",
                             "Appends answered from the dedup record (retries).", NULL);
    m_ranges = metrics_counter("tether_replayd_ranges_total", "Range requests answered.", NULL);
    m_range_rooms = metrics_counter("tether_replayd_range_rooms_total", "Rooms read by range requests.", NULL);
    m_err_invalid = metrics_counter("tether_replayd_request_errors_total", "Requests answered with an error.",
                                    "code=\"4400\"");
    m_err_nomem = metrics_counter("tether_replayd_request_errors_total", "Requests answered with an error.",
                                  "code=\"4500\"");
    m_drop_store = metrics_counter("tether_replayd_requests_dropped_total",
                                   "Requests left unanswered for the client to retry.", "reason=\"store\"");
    m_drop_draining = metrics_counter("tether_replayd_requests_dropped_total",
                                      "Requests left unanswered for the client to retry.", "reason=\"draining\"");
    m_latency = metrics_histogram("tether_replayd_append_latency_seconds",
                                  "From request to reply, for appends that succeeded.", NULL, lat,
                                  sizeof(lat) / sizeof(lat[0]));
    m_range_latency = metrics_histogram("tether_replayd_range_latency_seconds",
                                        "From request to reply, for range requests that succeeded.", NULL, lat,
                                        sizeof(lat) / sizeof(lat[0]));
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- validation ------------------------------------------------------------------ */

static int name_chars(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!c || !strchr(extra, c))
            return 0;
    }
    return 1;
}

int rd_valid_room(const char *s, size_t n) { return n >= 1 && n <= RD_MAX_ROOM && name_chars(s, n, "._:@/-"); }

int rd_valid_id(const char *s, size_t n) { return n >= 1 && n <= RD_MAX_ID && name_chars(s, n, "._:-"); }

/* ---- bookkeeping ----------------------------------------------------------------- */

static void request_done(rd_api *a)
{
    a->inflight--;
    if (a->draining && a->inflight == 0 && a->idle) {
        rd_api_idle_cb *cb = a->idle;
        a->idle = NULL;
        cb(a->idle_arg);
    }
}

static void reply_error(rd_api *a, rpc_ctx *ctx, uint32_t code, const char *reason, metrics_series *m)
{
    metrics_inc(m);
    rpc_reply_error(a->srv, ctx, code, reason);
}

/* Leaves a request unanswered: its client times out and retries. */
static void drop(rpc_ctx *ctx, metrics_series *m)
{
    metrics_inc(m);
    rpc_ctx_drop(ctx);
}

/* ---- append ---------------------------------------------------------------------- */

static append_req *append_get(rd_api *a, size_t need)
{
    append_req *q = a->free_list;
    if (q) {
        a->free_list = q->next;
        a->nfree--;
    } else {
        q = calloc(1, sizeof(*q));
        if (!q)
            return NULL;
        q->a = a;
    }
    if (need > q->cap) {
        size_t cap = q->cap ? q->cap : 512;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(q->buf, cap);
        if (!nb) {
            free(q->buf);
            free(q);
            return NULL;
        }
        q->buf = nb;
        q->cap = cap;
    }
    return q;
}

static void append_put(rd_api *a, append_req *q)
{
    q->ctx = NULL;
    if (a->nfree >= APPEND_FREE_KEEP || q->cap > APPEND_BUF_KEEP) {
        free(q->buf);
        free(q);
        return;
    }
    q->next = a->free_list;
    a->free_list = q;
    a->nfree++;
}

static char *copy_in(char **p, const char *s, size_t n)
{
    char *d = *p;
    memcpy(d, s, n); /* NOLINT(clang-analyzer-core.NonNullParamChecker): *p is q->buf, q->cap >= need bytes */
    d[n] = '\0';
    *p += n + 1;
    return d;
}

static void publish(rd_api *a, const append_req *q, const rd_append_res *res)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RoomMessage m = TETHER__BUS__ROOM_MESSAGE__INIT;
    m.room = q->room;
    m.epoch = (char *)res->epoch;
    m.seq = res->seq;
    m.id = q->id;
    m.from = q->user;
    m.ts = res->ts;
    m.data = q->data;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE;
    env.room_message = &m;
    char topic[RD_MAX_ROOM + 8];
    memcpy(topic, "room.", 5);
    memcpy(topic + 5, q->room, q->room_len + 1);
    /* A failure (high-water mark) is counted by the bus; subscribers find
     * the hole through the next seq or the next head. */
    bus_publish(a->b, topic, &env);
}

/* A duplicate's stored copy, published again: gateways drop seqs they have,
 * and one that missed the first publication gets it now. */
static void publish_stored(rd_api *a, const append_req *q, const rd_append_res *res)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RoomMessage m = TETHER__BUS__ROOM_MESSAGE__INIT;
    m.room = q->room;
    m.epoch = (char *)res->epoch;
    m.seq = res->stored.seq;
    m.id = (char *)res->stored.id;
    m.from = (char *)res->stored.from;
    m.ts = res->stored.ts;
    m.data = (char *)res->stored.data;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE;
    env.room_message = &m;
    char topic[RD_MAX_ROOM + 8];
    memcpy(topic, "room.", 5);
    memcpy(topic + 5, q->room, q->room_len + 1);
    bus_publish(a->b, topic, &env);
}

/* After an append is answered: metrics, and the message on the bus. */
static void appended(rd_api *a, const append_req *q, const rd_append_res *res)
{
    metrics_observe(m_latency, (double)(now_us() - q->t0_us) / 1e6);
    if (res->duplicate) {
        metrics_inc(m_dups);
        if (res->has_stored)
            publish_stored(a, q, res);
    } else {
        metrics_inc(m_appends);
        publish(a, q, res);
    }
    /* Duplicates too: if the first attempt's publication never left
     * (replayd died between Redis and the bus), the head repairs it. */
    rd_heads_touch(a->heads, q->room);
}

static void batch_item_done(batch_req *bq, append_req *q, int status, const rd_append_res *res);

static void on_appended(int status, const rd_append_res *res, void *arg)
{
    append_req *q = arg;
    rd_api *a = q->a;
    if (q->batch) {
        batch_item_done(q->batch, q, status, res);
        return;
    }
    if (status < 0) {
        drop(q->ctx, m_drop_store);
    } else {
        bus_env env = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__AppendRep rep = TETHER__BUS__APPEND_REP__INIT;
        rep.room = q->room;
        rep.epoch = (char *)res->epoch;
        rep.seq = res->seq;
        rep.duplicate = res->duplicate;
        rep.ts = res->ts;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP;
        env.append_rep = &rep;
        rpc_reply(a->srv, q->ctx, &env);
        appended(a, q, res);
    }
    append_put(a, q);
    request_done(a);
}

/* The item's strings, checked: NULL, or why it is refused (4400). */
static const char *check_item(const Tether__Bus__AppendReq *r)
{
    const char *room = r->room ? r->room : "", *user = r->user ? r->user : "", *id = r->id ? r->id : "",
               *data = r->data ? r->data : "";
    size_t user_len = strlen(user);
    return !rd_valid_room(room, strlen(room))               ? "invalid room"
           : !rd_valid_id(id, strlen(id))                   ? "invalid id"
           : user_len == 0 || user_len > RD_MAX_USER        ? "invalid user"
           : strlen(data) > RD_MAX_DATA                     ? "data too large"
                                                            : NULL;
}

/* A copy of a checked item, or NULL (out of memory). */
static append_req *item_copy(rd_api *a, const Tether__Bus__AppendReq *r)
{
    const char *room = r->room ? r->room : "", *user = r->user ? r->user : "", *id = r->id ? r->id : "",
               *data = r->data ? r->data : "";
    size_t room_len = strlen(room), user_len = strlen(user), id_len = strlen(id), data_len = strlen(data);
    append_req *q = append_get(a, room_len + user_len + id_len + data_len + 4);
    if (!q)
        return NULL;
    q->t0_us = now_us();
    char *p = q->buf;
    q->room = copy_in(&p, room, room_len);
    q->user = copy_in(&p, user, user_len);
    q->id = copy_in(&p, id, id_len);
    q->data = copy_in(&p, data, data_len);
    q->room_len = room_len;
    /* A floor that cannot be an epoch is ignored, not refused: it only ever
     * adds protection. */
    const char *fe = r->floor_epoch ? r->floor_epoch : "";
    size_t fl = strlen(fe);
    if (fl && fl <= RD_MAX_EPOCH && r->floor_seq) {
        memcpy(q->floor_epoch, fe, fl + 1);
        q->floor.epoch = q->floor_epoch;
        q->floor.seq = r->floor_seq;
    } else {
        q->floor_epoch[0] = '\0';
        q->floor.epoch = NULL;
        q->floor.seq = 0;
    }
    q->user_len = user_len;
    q->id_len = id_len;
    q->data_len = data_len;
    q->ctx = NULL;
    q->batch = NULL;
    return q;
}

static void handle_append(rd_api *a, rpc_ctx *ctx, const Tether__Bus__AppendReq *r)
{
    const char *bad = check_item(r);
    if (bad) {
        reply_error(a, ctx, 4400, bad, m_err_invalid);
        return;
    }
    append_req *q = item_copy(a, r);
    if (!q) {
        reply_error(a, ctx, 4500, "out of memory", m_err_nomem);
        return;
    }
    q->ctx = ctx;
    int rc = rd_store_append(a->st, &q->op, q->room, q->room_len, q->user, q->user_len, q->id, q->id_len, q->data,
                             q->data_len, q->floor.epoch ? &q->floor : NULL, on_appended, q);
    if (rc < 0) {
        drop(ctx, m_drop_store);
        append_put(a, q);
        return;
    }
    a->inflight++;
}

/* ---- append batches (AppendBatchReq) ---------------------------------------------- */

struct batch_req {
    rd_api *a;
    rpc_ctx *ctx;
    size_t n, pending;
    int failed;                    /* the store failed an item: no reply, the caller retries */
    append_req **q;                /* n; NULL for a refused item */
    Tether__Bus__AppendResult *res;
    Tether__Bus__AppendResult **resp;
    Tether__Bus__AppendRep *rep;
    Tether__Bus__ErrorRep *err;
    char (*epoch)[RD_MAX_EPOCH + 1];
};

static void batch_free(batch_req *bq)
{
    if (!bq)
        return;
    free(bq->q);
    free(bq->res);
    free(bq->resp);
    free(bq->rep);
    free(bq->err);
    free(bq->epoch);
    free(bq);
}

static void batch_finish(batch_req *bq)
{
    rd_api *a = bq->a;
    if (bq->failed) {
        drop(bq->ctx, m_drop_store);
    } else {
        bus_env env = TETHER__BUS__ENVELOPE__INIT;
        Tether__Bus__AppendBatchRep br = TETHER__BUS__APPEND_BATCH_REP__INIT;
        br.n_items = bq->n;
        br.items = bq->resp;
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_BATCH_REP;
        env.append_batch_rep = &br;
        rpc_reply(a->srv, bq->ctx, &env);
    }
    for (size_t i = 0; i < bq->n; i++)
        if (bq->q[i])
            append_put(a, bq->q[i]);
    batch_free(bq);
    request_done(a);
}

static void batch_item_done(batch_req *bq, append_req *q, int status, const rd_append_res *res)
{
    rd_api *a = bq->a;
    if (status < 0) {
        bq->failed = 1;
    } else {
        Tether__Bus__AppendRep *rep = &bq->rep[q->idx];
        snprintf(bq->epoch[q->idx], sizeof(bq->epoch[q->idx]), "%s", res->epoch);
        rep->room = q->room;
        rep->epoch = bq->epoch[q->idx];
        rep->seq = res->seq;
        rep->duplicate = res->duplicate;
        rep->ts = res->ts;
        bq->res[q->idx].rep = rep;
        appended(a, q, res);
    }
    if (--bq->pending == 0)
        batch_finish(bq);
}

static void handle_append_batch(rd_api *a, rpc_ctx *ctx, const Tether__Bus__AppendBatchReq *r)
{
    size_t n = r->n_items;
    if (n > RD_API_BATCH_MAX) {
        reply_error(a, ctx, 4413, "too many appends in one batch", m_err_invalid);
        return;
    }
    batch_req *bq = calloc(1, sizeof(*bq));
    size_t m = n ? n : 1;
    if (bq) {
        bq->q = calloc(m, sizeof(*bq->q));
        bq->res = calloc(m, sizeof(*bq->res));
        bq->resp = calloc(m, sizeof(*bq->resp));
        bq->rep = calloc(m, sizeof(*bq->rep));
        bq->err = calloc(m, sizeof(*bq->err));
        bq->epoch = calloc(m, sizeof(*bq->epoch));
    }
    if (!bq || !bq->q || !bq->res || !bq->resp || !bq->rep || !bq->err || !bq->epoch) {
        batch_free(bq);
        reply_error(a, ctx, 4500, "out of memory", m_err_nomem);
        return;
    }
    bq->a = a;
    bq->ctx = ctx;
    bq->n = n;
    bq->pending = n + 1; /* +1 held while the items are handed out */
    a->inflight++;
    for (size_t i = 0; i < n; i++) {
        tether__bus__append_result__init(&bq->res[i]);
        tether__bus__append_rep__init(&bq->rep[i]);
        tether__bus__error_rep__init(&bq->err[i]);
        bq->resp[i] = &bq->res[i];
        const char *bad = check_item(r->items[i]);
        append_req *q = bad ? NULL : item_copy(a, r->items[i]);
        if (!q) {
            metrics_inc(bad ? m_err_invalid : m_err_nomem);
            bq->err[i].code = bad ? 4400 : 4500;
            bq->err[i].reason = (char *)(bad ? bad : "out of memory");
            bq->res[i].error = &bq->err[i];
            bq->pending--;
            continue;
        }
        q->batch = bq;
        q->idx = i;
        bq->q[i] = q;
        if (rd_store_append(a->st, &q->op, q->room, q->room_len, q->user, q->user_len, q->id, q->id_len, q->data,
                            q->data_len, q->floor.epoch ? &q->floor : NULL, on_appended, q) < 0) {
            bq->failed = 1;
            bq->pending--;
        }
    }
    if (--bq->pending == 0)
        batch_finish(bq);
}

/* ---- range ----------------------------------------------------------------------- */

static void range_free(range_req *rq)
{
    for (size_t i = 0; i < rq->n; i++)
        rd_range_res_free(rq->items[i].res);
    free(rq);
}

/* Builds and sends the RangeRep; the message budget keeps one reply bounded. */
static void range_reply(range_req *rq)
{
    rd_api *a = rq->a;
    size_t total = 0;
    for (size_t i = 0; i < rq->n; i++)
        total += rq->items[i].res->n;
    Tether__Bus__RangeRoom *rooms = calloc(rq->n ? rq->n : 1, sizeof(*rooms));
    Tether__Bus__RangeRoom **roomp = calloc(rq->n ? rq->n : 1, sizeof(*roomp));
    Tether__Bus__RoomMessage *msgs = calloc(total ? total : 1, sizeof(*msgs));
    Tether__Bus__RoomMessage **msgp = calloc(total ? total : 1, sizeof(*msgp));
    if (!rooms || !roomp || !msgs || !msgp) {
        reply_error(a, rq->ctx, 4500, "out of memory", m_err_nomem);
        goto out;
    }
    size_t k = 0, used = 0;
    for (size_t i = 0; i < rq->n; i++) {
        const rd_range_res *res = rq->items[i].res;
        Tether__Bus__RangeRoom *rr = &rooms[i];
        tether__bus__range_room__init(rr);
        roomp[i] = rr;
        rr->room = rq->items[i].room;
        rr->epoch = (char *)res->epoch;
        rr->top = res->top;
        rr->first_available = res->first_available;
        rr->more = res->more;
        rr->messages = msgp + k;
        for (size_t j = 0; j < res->n; j++) {
            const rd_msg *m = &res->msgs[j];
            size_t sz = m->data_len + strlen(m->id) + strlen(m->from) + 32;
            /* At least one message per reply, so a huge one still gets through. */
            if (used + sz > RD_API_RANGE_BUDGET && k > 0) {
                rr->more = 1;
                break;
            }
            used += sz;
            Tether__Bus__RoomMessage *pm = &msgs[k];
            tether__bus__room_message__init(pm);
            pm->room = rq->items[i].room;
            pm->epoch = (char *)res->epoch;
            pm->seq = m->seq;
            pm->id = (char *)m->id;
            pm->from = (char *)m->from;
            pm->ts = m->ts;
            pm->data = (char *)m->data;
            msgp[k++] = pm;
            rr->n_messages++;
        }
    }
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RangeRep rep = TETHER__BUS__RANGE_REP__INIT;
    rep.n_rooms = rq->n;
    rep.rooms = roomp;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP;
    env.range_rep = &rep;
    rpc_reply(a->srv, rq->ctx, &env);
    metrics_inc(m_ranges);
    metrics_add(m_range_rooms, (double)rq->n);
    metrics_observe(m_range_latency, (double)(now_us() - rq->t0_us) / 1e6);
out:
    free(rooms);
    free(roomp);
    free(msgs);
    free(msgp);
}

static void range_finish(range_req *rq)
{
    rd_api *a = rq->a;
    if (rq->failed)
        drop(rq->ctx, m_drop_store);
    else
        range_reply(rq);
    range_free(rq);
    request_done(a);
}

static void on_ranged(int status, rd_range_res *res, void *arg)
{
    range_item *it = arg;
    range_req *rq = it->rq;
    if (status < 0)
        rq->failed = 1;
    it->res = res;
    if (--rq->left == 0)
        range_finish(rq);
}

static void handle_range(rd_api *a, rpc_ctx *ctx, const Tether__Bus__RangeReq *r)
{
    if (r->n_items > RD_API_MAX_ITEMS) {
        reply_error(a, ctx, 4400, "too many rooms", m_err_invalid);
        return;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        const char *room = r->items[i]->room ? r->items[i]->room : "";
        if (!rd_valid_room(room, strlen(room))) {
            reply_error(a, ctx, 4400, "invalid room", m_err_invalid);
            return;
        }
    }
    range_req *rq = calloc(1, sizeof(*rq) + r->n_items * sizeof(range_item));
    if (!rq) {
        reply_error(a, ctx, 4500, "out of memory", m_err_nomem);
        return;
    }
    rq->a = a;
    rq->ctx = ctx;
    rq->n = r->n_items;
    rq->left = r->n_items;
    rq->t0_us = now_us();
    a->inflight++;
    if (rq->n == 0) {
        range_finish(rq);
        return;
    }
    for (size_t i = 0; i < rq->n; i++) {
        const Tether__Bus__RangeItem *ri = r->items[i];
        range_item *it = &rq->items[i];
        it->rq = rq;
        snprintf(it->room, sizeof(it->room), "%s", ri->room);
        int rc = rd_store_range(a->st, &it->op, it->room, ri->after_seq, ri->limit, ri->from_oldest, on_ranged, it);
        if (rc < 0) {
            /* The items not sent will never call back: count them done. */
            rq->failed = 1;
            rq->left -= rq->n - i;
            if (rq->left == 0)
                range_finish(rq);
            return;
        }
    }
}

/* ---- server ---------------------------------------------------------------------- */

static void on_request(rpc_server *s, rpc_ctx *ctx, const bus_env *req, void *arg)
{
    (void)s;
    rd_api *a = arg;
    if (a->draining) {
        drop(ctx, m_drop_draining);
        return;
    }
    switch (req->payload_case) {
    case TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REQ:
        handle_append(a, ctx, req->append_req);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_BATCH_REQ:
        handle_append_batch(a, ctx, req->append_batch_req);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ:
        handle_range(a, ctx, req->range_req);
        break;
    default:
        reply_error(a, ctx, 4400, "unsupported request", m_err_invalid);
        break;
    }
}

rd_api *rd_api_new(loop *l, const char *endpoint, rd_store *st, bus *b, rd_heads *h)
{
    rd_api *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->l = l;
    a->st = st;
    a->b = b;
    a->heads = h;
    a->srv = rpc_server_new(l, endpoint, "replayd", on_request, a);
    if (!a->srv) {
        int e = errno;
        free(a);
        errno = e;
        return NULL;
    }
    register_metrics();
    return a;
}

void rd_api_free(rd_api *a)
{
    if (!a)
        return;
    rpc_server_free(a->srv);
    while (a->free_list) {
        append_req *q = a->free_list;
        a->free_list = q->next;
        free(q->buf);
        free(q);
    }
    free(a);
}

void rd_api_drain(rd_api *a, rd_api_idle_cb *idle, void *arg)
{
    a->draining = 1;
    a->idle = idle;
    a->idle_arg = arg;
    if (a->inflight == 0 && idle) {
        a->idle = NULL;
        idle(arg);
    }
}

size_t rd_api_inflight(const rd_api *a) { return a->inflight; }
