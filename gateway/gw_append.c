/* gw_append.c -- publishes on their way to replayd: the appends of one loop
 * iteration leave together, as one AppendBatchReq (bus.proto), and the reply's
 * results are handed to each append's callback as if it had been sent alone.
 *
 * Why: a request and its reply per publish cost a ZeroMQ message each way,
 * with its protobuf envelope, in the gateway, in replayd and in both
 * processes' ZeroMQ I/O threads. Nothing waits for a batch to fill: it is
 * sent at the end of the batch of work that queued it (gw_conn_flush_all, or
 * a deferred call for any other path). A lone append goes as a plain
 * AppendReq. Retries are whole batches with the same ids: replayd's dedup
 * answers the items it already appended with their first result.
 *
 * Rolling upgrades: replayd must know AppendBatchReq before gateways send it
 * (upgrade replayd first; docs/operations.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

#define GW_APPEND_BATCH_MAX 256

typedef struct app_item {
    rpc_reply_cb *cb;
    void *arg;
    Tether__Bus__AppendReq req;
    char floor_epoch[GW_MAX_EPOCH + 1];
    char strs[]; /* user, room, id, data, NUL-terminated */
} app_item;

typedef struct app_batch {
    size_t n;
    app_item *items[GW_APPEND_BATCH_MAX];
} app_batch;

static app_batch *g_open;
static int g_deferred;

static void free_batch(app_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i]);
    free(b);
}

/* One item's answer, as the envelope a single AppendReq would have had. */
static void answer(app_item *it, rpc_client *rc, int status, const Tether__Bus__AppendResult *r)
{
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    if (status < 0 || !r) {
        it->cb(rc, status < 0 ? status : -EPROTO, NULL, it->arg);
        return;
    }
    if (r->rep) {
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REP;
        env.append_rep = r->rep;
    } else if (r->error) {
        env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ERROR;
        env.error = r->error;
    } else {
        it->cb(rc, -EPROTO, NULL, it->arg);
        return;
    }
    it->cb(rc, 0, &env, it->arg);
}

static void on_batch_reply(rpc_client *rc, int status, const bus_env *rep, void *arg)
{
    app_batch *b = arg;
    if (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_BATCH_REP &&
        rep->append_batch_rep->n_items == b->n) {
        for (size_t i = 0; i < b->n; i++)
            answer(b->items[i], rc, 0, rep->append_batch_rep->items[i]);
    } else {
        /* A timeout after the last attempt, an error for the whole request
         * (e.g. "unsupported request" from a replayd that predates batches)
         * or a malformed reply: every item gets it. */
        for (size_t i = 0; i < b->n; i++)
            b->items[i]->cb(rc, status, status == 0 ? rep : NULL, b->items[i]->arg);
    }
    free_batch(b);
}

void gw_append_flush(void)
{
    app_batch *b = g_open;
    if (!b)
        return;
    g_open = NULL;
    if (!b->n) { /* its only item ran out of memory */
        free(b);
        return;
    }
    G.st.publishes += b->n;
    if (b->n == 1) {
        /* Alone: a plain AppendReq, answered straight to its callback. */
        app_item *it = b->items[0];
        bus_env req = TETHER__BUS__ENVELOPE__INIT;
        req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REQ;
        req.append_req = &it->req;
        if (!rpc_call(G.replayd, &req, G.cfg.publish_timeout_ms, G.cfg.publish_attempts, it->cb, it->arg))
            it->cb(NULL, -ENOMEM, NULL, it->arg);
        free_batch(b);
        return;
    }
    Tether__Bus__AppendReq *reqs[GW_APPEND_BATCH_MAX];
    for (size_t i = 0; i < b->n; i++)
        reqs[i] = &b->items[i]->req;
    Tether__Bus__AppendBatchReq br = TETHER__BUS__APPEND_BATCH_REQ__INIT;
    br.n_items = b->n;
    br.items = reqs;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_BATCH_REQ;
    req.append_batch_req = &br;
    if (!rpc_call(G.replayd, &req, G.cfg.publish_timeout_ms, G.cfg.publish_attempts, on_batch_reply, b)) {
        for (size_t i = 0; i < b->n; i++)
            b->items[i]->cb(NULL, -ENOMEM, NULL, b->items[i]->arg);
        free_batch(b);
    }
}

static void flush_deferred(loop *l, void *arg)
{
    (void)l;
    (void)arg;
    g_deferred = 0;
    gw_append_flush();
}

uint64_t gw_append(const char *user, const char *room, const char *id, const char *data, rpc_reply_cb *cb, void *arg)
{
    size_t lu = strlen(user), lr = strlen(room), li = strlen(id), ld = strlen(data);
    if (g_open && g_open->n == GW_APPEND_BATCH_MAX)
        gw_append_flush();
    if (!g_open && !(g_open = calloc(1, sizeof(*g_open))))
        return 0;
    app_item *it = malloc(sizeof(*it) + lu + lr + li + ld + 4);
    if (!it)
        return 0;
    if (!g_deferred) {
        if (loop_defer(G.l, flush_deferred, NULL) < 0) {
            free(it);
            return 0;
        }
        g_deferred = 1;
    }
    tether__bus__append_req__init(&it->req);
    char *p = it->strs;
    it->req.user = memcpy(p, user, lu + 1);
    p += lu + 1;
    it->req.room = memcpy(p, room, lr + 1);
    p += lr + 1;
    it->req.id = memcpy(p, id, li + 1);
    p += li + 1;
    it->req.data = memcpy(p, data, ld + 1);
    /* Read when the publish is queued: a retry carries the same floor,
     * which is still true (seqs handed out stay handed out). */
    if (gw_room_floor(room, it->floor_epoch, sizeof(it->floor_epoch), &it->req.floor_seq))
        it->req.floor_epoch = it->floor_epoch;
    it->cb = cb;
    it->arg = arg;
    g_open->items[g_open->n++] = it;
    return 1;
}
