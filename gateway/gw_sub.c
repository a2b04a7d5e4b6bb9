/* gw_sub.c -- subscribers: the first `subscribed`, catch-up and range reads.
 *
 * A subscriber (gw_sub) has its own position 'pos'. It is live when pos ==
 * the room's head and gets each new message as the ordering core delivers
 * it; otherwise it catches up, first from the core's ring, then by range
 * reads, page by page, and joins the live stream the moment it reaches head.
 * That is the history-to-live merge: live messages that arrive during a
 * resume are simply messages the subscriber will reach, so none is lost and
 * none is sent twice.
 *
 * First reads of a room wait until its bus subscription is confirmed (the
 * probe in gw_room.c), and until the members asked for the subscriber are
 * there (held).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "gw_sub.h"
#include "log.h"

#define PAGE 500
#define RANGE_TIMEOUT_MS 1500
#define RANGE_ATTEMPTS 4

static void sub_advance(gw_sub *s);
static void sub_read(gw_sub *s);
static int sub_try_instant(gw_sub *s);

static void sub_announced(gw_sub *s)
{
    const gw_room_hooks *h = gw_room_hooks_get();
    s->announced = 1;
    if (h->sub_announced)
        h->sub_announced(s);
}

static gw_buf *msg_enc(gw_room *r, gw_msg *g, int proto)
{
    if (!g->enc[proto]) {
        gw_msgv v = { r->name, gw_order_epoch(r->order), g->id, g->from, g->data, g->seq, g->ts };
        g->enc[proto] = gw_enc_message(proto, &v);
    }
    return g->enc[proto];
}

/* Sends one message straight from a range reply (not kept in the ring). */
static void send_pb_message(gw_sub *s, const char *epoch, const Tether__Bus__RoomMessage *m)
{
    gw_msgv v = { s->room->name, epoch, m->id ? m->id : "", m->from ? m->from : "",
                  m->data && *m->data ? m->data : "null", m->seq, m->ts };
    gw_conn_send_take(s->conn, gw_enc_message(s->conn->proto, &v));
    G.st.delivered++;
}

/* ---- the ordering core's actions --------------------------------------------------- */

void gw_sub_on_deliver(gw_room *r, gw_msg *g)
{
    uint64_t head = gw_order_head(r->order);
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        if (!s->announced || s->reading)
            continue;
        if (s->pos + 1 == g->seq) {
            gw_conn_send(s->conn, msg_enc(r, g, s->conn->proto));
            s->pos = g->seq;
            G.st.delivered++;
        } else if (s->pos < head) {
            sub_advance(s);
        }
    }
}

void gw_sub_on_gap(gw_room *r, uint64_t from, uint64_t to)
{
    for (gw_sub *s = r->subs; s; s = s->rnext) {
        if (!s->announced || s->reading || s->pos >= to)
            continue;
        if (s->pos + 1 >= from) {
            gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, r->name, s->pos + 1, to));
            s->pos = to;
        }
    }
}

/* Every announced subscriber gets a new `subscribed` with recovered: false
 * and then the messages still buffered in the new epoch. */
void gw_sub_on_epoch(gw_room *r, uint64_t first_available, uint64_t top)
{
    uint64_t fa = first_available;
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        if (!s->announced)
            continue;
        uint32_t missed = top >= fa ? (uint32_t)(top - fa + 1) : 0;
        gw_gapv gap = { s->pos + 1, fa };
        gw_conn_send_take(s->conn,
                          gw_enc_subscribed(s->conn->proto, r->name, gw_order_epoch(r->order), top, 0, missed, &gap));
        s->pos = fa - 1;
        if (!s->reading)
            sub_advance(s);
    }
}

void gw_sub_on_bus_ready(gw_room *r)
{
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        gw_sub_resume_read(s);
    }
}

/* ---- range replies ------------------------------------------------------------------- */

typedef struct read_ctx {
    uint64_t conn_id;
    uint32_t n;
    struct {
        char room[GW_MAX_ROOM + 1];
        uint64_t gen;
    } it[];
} read_ctx;

/* What rr says about the room, for the ordering core (its messages are the
 * subscriber's, not the room's). */
static int learn(gw_room *r, const Tether__Bus__RangeRoom *rr)
{
    gw_order_range v = { rr->epoch, rr->top, rr->first_available, rr->more, 0, NULL };
    return gw_order_learn(r->order, &v);
}

/* Sends the messages of rr that follow s->pos. In a catch-up page a hole
 * means the history was trimmed meanwhile: a `gap` frame says so. In the
 * first reply (contiguous_only) a hole only means the read started after
 * the client's position (a wrong epoch asks for everything buffered): stop
 * there and let sub_advance() read the rest. */
static void sub_deliver_list(gw_sub *s, const Tether__Bus__RangeRoom *rr, int contiguous_only)
{
    for (size_t i = 0; i < rr->n_messages; i++) {
        const Tether__Bus__RoomMessage *m = rr->messages[i];
        if (m->seq <= s->pos)
            continue;
        if (m->seq > s->pos + 1 && contiguous_only)
            return;
        if (m->seq > s->pos + 1)
            gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, s->room->name, s->pos + 1, m->seq - 1));
        send_pb_message(s, gw_order_epoch(s->room->order), m);
        s->pos = m->seq;
    }
}

/* The first reply for a subscription: `subscribed`, then what was missed. */
static void sub_initial(gw_sub *s, const Tether__Bus__RangeRoom *rr)
{
    gw_room *r = s->room;
    int lr = learn(r, rr);
    if (lr == GW_LEARN_STALE) {
        sub_read(s);
        return;
    }
    const char *ep = rr->epoch ? rr->epoch : "";
    const char *rep = gw_order_epoch(r->order);
    uint64_t head = gw_order_head(r->order);
    uint64_t top = rr->top;
    uint64_t fa = rr->first_available ? rr->first_available : top + 1;
    int recovered = 1;
    uint64_t start;
    gw_gapv gap = { 0, 0 };
    switch (s->want.kind) {
    case GW_POS_LIVE:
        start = head + 1;
        if (head > top)
            top = head;
        break;
    case GW_POS_OLDEST:
        start = fa;
        break;
    case GW_POS_EXACT:
    default:
        if (strcmp(s->want.epoch, ep) != 0) {
            recovered = 0;
            gap = (gw_gapv){ s->want.seq == UINT64_MAX ? s->want.seq : s->want.seq + 1, fa };
            start = fa;
        } else if (s->want.seq > top) {
            /* The client is ahead of the stored history (writes lost). */
            recovered = 0;
            gap = (gw_gapv){ top + 1, top + 1 };
            start = top + 1;
        } else if (s->want.seq + 1 < fa) {
            recovered = 0;
            gap = (gw_gapv){ s->want.seq + 1, fa };
            start = fa;
        } else {
            start = s->want.seq + 1;
        }
        break;
    }
    uint64_t missed = (s->want.kind != GW_POS_LIVE && top >= start) ? top - start + 1 : 0;
    if (s->want.kind == GW_POS_EXACT)
        G.st.resumes++;
    gw_conn_send_take(s->conn, gw_enc_subscribed(s->conn->proto, r->name, rep[0] ? rep : ep, top, recovered,
                                                 (uint32_t)missed, recovered ? NULL : &gap));
    sub_announced(s);
    s->pos = start - 1;
    if (s->want.kind != GW_POS_LIVE)
        sub_deliver_list(s, rr, 1);
    sub_advance(s);
}

/* A catch-up page. */
static void sub_page(gw_sub *s, const Tether__Bus__RangeRoom *rr)
{
    gw_room *r = s->room;
    int lr = learn(r, rr);
    if (lr == GW_LEARN_RESET)
        return; /* gw_sub_on_epoch re-announced and advanced s */
    if (lr == GW_LEARN_STALE) {
        sub_read(s);
        return;
    }
    uint64_t before = s->pos;
    sub_deliver_list(s, rr, 0);
    uint64_t fa = rr->first_available;
    if (s->pos == before && rr->top > s->pos && fa > s->pos + 1) {
        uint64_t to = fa - 1 < rr->top ? fa - 1 : rr->top;
        gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, r->name, s->pos + 1, to));
        s->pos = to;
    }
    uint64_t head = gw_order_head(r->order);
    if (s->pos == before && rr->top <= s->pos && s->pos < head) {
        /* replayd has less than this gateway delivered: the ring is the only
         * copy left; if it does not have the next one, say so. */
        if (!gw_order_ring(r->order, s->pos + 1)) {
            gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, r->name, s->pos + 1, head));
            s->pos = head;
        }
    }
    sub_advance(s);
}

static void read_reply(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    read_ctx *x = arg;
    gw_conn *conn = gw_conn_find(x->conn_id);
    if (!conn) {
        free(x);
        return;
    }
    const Tether__Bus__RangeRep *rr = (status == 0 && rep && rep->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP)
                                          ? rep->range_rep
                                          : NULL;
    for (uint32_t i = 0; i < x->n; i++) {
        gw_sub *s = gw_conn_find_sub(conn, x->it[i].room);
        if (!s || s->gen != x->it[i].gen)
            continue;
        s->reading = 0;
        const Tether__Bus__RangeRoom *room = NULL;
        for (size_t j = 0; rr && j < rr->n_rooms; j++)
            if (rr->rooms[j]->room && strcmp(rr->rooms[j]->room, s->room->name) == 0)
                room = rr->rooms[j];
        if (!room) {
            /* replayd unreachable or refused: keep trying; the client sees
             * a late `subscribed`, never a wrong one. */
            if (status == -ETIMEDOUT)
                LOG_WARN("range read timed out, retrying", "{s:s}", "room", s->room->name);
            sub_read(s);
            continue;
        }
        if (!s->announced)
            sub_initial(s, room);
        else
            sub_page(s, room);
        conn = gw_conn_find(x->conn_id); /* sending may have closed it */
        if (!conn)
            break;
    }
    free(x);
}

/* ---- range reads ---------------------------------------------------------------------- */

static void fill_item(gw_sub *s, Tether__Bus__RangeItem *it)
{
    tether__bus__range_item__init(it);
    it->room = s->room->name;
    if (!s->announced) {
        switch (s->want.kind) {
        case GW_POS_LIVE:
            it->from_oldest = 1;
            it->limit = 1;
            break;
        case GW_POS_OLDEST:
            it->from_oldest = 1;
            it->limit = PAGE;
            break;
        case GW_POS_EXACT:
            it->epoch = s->want.epoch;
            it->after_seq = s->want.seq;
            it->limit = PAGE;
            break;
        }
    } else {
        it->epoch = (char *)gw_order_epoch(s->room->order);
        it->after_seq = s->pos;
        it->limit = PAGE;
    }
}

/* One batched range read for subs[0..n). */
static void read_batch(gw_conn *c, gw_sub **all, uint32_t nall)
{
    /* First reads of rooms whose bus subscription is not confirmed yet wait
     * for gw_sub_on_bus_ready(), which reads them. */
    gw_sub *stackv[16];
    gw_sub **subs = nall <= 16 ? stackv : calloc(nall, sizeof(*subs));
    uint32_t n = 0;
    if (!subs)
        return;
    for (uint32_t i = 0; i < nall; i++)
        if (all[i]->announced || (all[i]->room->bus_ready && !all[i]->held))
            subs[n++] = all[i];
    if (!n) {
        if (subs != stackv)
            free(subs);
        return;
    }
    read_ctx *x = calloc(1, sizeof(*x) + n * sizeof(x->it[0]));
    Tether__Bus__RangeItem *items = calloc(n, sizeof(*items));
    Tether__Bus__RangeItem **ptrs = calloc(n, sizeof(*ptrs));
    if (!x || !items || !ptrs)
        goto out;
    x->conn_id = c->id;
    x->n = n;
    for (uint32_t i = 0; i < n; i++) {
        fill_item(subs[i], &items[i]);
        ptrs[i] = &items[i];
        snprintf(x->it[i].room, sizeof(x->it[i].room), "%s", subs[i]->room->name);
        x->it[i].gen = subs[i]->gen;
        subs[i]->reading = 1;
    }
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    rq.n_items = n;
    rq.items = ptrs;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    req.range_req = &rq;
    G.st.range_requests++;
    if (rpc_call(G.replayd, &req, RANGE_TIMEOUT_MS, RANGE_ATTEMPTS, read_reply, x))
        x = NULL;
    else
        for (uint32_t i = 0; i < n; i++)
            subs[i]->reading = 0;
out:
    free(x);
    free(items);
    free(ptrs);
    if (subs != stackv)
        free(subs);
}

static void sub_read(gw_sub *s) { read_batch(s->conn, &s, 1); }

/* Moves s towards the room's head: from the ring while it has the next
 * message, else by a range read. Live once pos reaches head. */
static void sub_advance(gw_sub *s)
{
    gw_room *r = s->room;
    if (s->reading || !gw_order_known(r->order))
        return;
    while (s->pos < gw_order_head(r->order)) {
        gw_msg *g = gw_order_ring(r->order, s->pos + 1);
        if (!g) {
            sub_read(s);
            return;
        }
        gw_conn_send(s->conn, msg_enc(r, g, s->conn->proto));
        G.st.delivered++;
        s->pos = g->seq;
    }
}

/* ---- subscriptions ------------------------------------------------------------------- */

gw_sub *gw_conn_find_sub(gw_conn *c, const char *room)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (strcmp(c->subs[i]->room->name, room) == 0)
            return c->subs[i];
    return NULL;
}

void gw_sub_stop(gw_sub *s)
{
    const gw_room_hooks *h = gw_room_hooks_get();
    gw_conn *c = s->conn;
    gw_room *r = s->room;
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (c->subs[i] == s) {
            c->subs[i] = c->subs[--c->nsubs];
            break;
        }
    if (s->rprev)
        s->rprev->rnext = s->rnext;
    else
        r->subs = s->rnext;
    if (s->rnext)
        s->rnext->rprev = s->rprev;
    if (h->sub_stopping)
        h->sub_stopping(s);
    free(s);
    if (--r->nsubs == 0)
        gw_room_free(r);
}

/* Creates (or re-creates) the subscription; returns it, or NULL with *err. */
static gw_sub *sub_create(gw_conn *c, const char *room, const gw_pos *want, int *err)
{
    gw_sub *old = gw_conn_find_sub(c, room);
    if (old)
        gw_sub_stop(old);
    if (c->nsubs >= G.cfg.lim.max_rooms) {
        *err = GW_E_INVALID;
        return NULL;
    }
    if (c->nsubs == c->capsubs) {
        uint32_t n = c->capsubs ? c->capsubs * 2 : 4;
        gw_sub **a = realloc(c->subs, n * sizeof(*a));
        if (!a) {
            *err = GW_E_INTERNAL;
            return NULL;
        }
        c->subs = a;
        c->capsubs = n;
    }
    gw_room *r = gw_room_get(room, 1);
    gw_sub *s = r ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        if (r && r->nsubs == 0)
            gw_room_free(r);
        *err = GW_E_INTERNAL;
        return NULL;
    }
    static uint64_t gens;
    s->gen = ++gens;
    s->room = r;
    s->conn = c;
    s->want = *want;
    s->rnext = r->subs;
    if (r->subs)
        r->subs->rprev = s;
    r->subs = s;
    r->nsubs++;
    c->subs[c->nsubs++] = s;
    const gw_room_hooks *h = gw_room_hooks_get();
    if (h->sub_created)
        h->sub_created(s);
    return s;
}

void gw_sub_resume_read(gw_sub *s)
{
    if (s->announced || s->reading || s->held)
        return;
    if (!sub_try_instant(s) && s->room->bus_ready)
        sub_read(s);
}

/* A live-only subscription to a room this gateway already follows needs no read. */
static int sub_try_instant(gw_sub *s)
{
    gw_room *r = s->room;
    if (s->want.kind != GW_POS_LIVE || !gw_order_known(r->order) || !r->bus_ready || s->held)
        return 0;
    uint64_t head = gw_order_head(r->order), max_seen = gw_order_max_seen(r->order);
    gw_conn_send_take(s->conn, gw_enc_subscribed(s->conn->proto, r->name, gw_order_epoch(r->order),
                                                 max_seen > head ? max_seen : head, 1, 0, NULL));
    sub_announced(s);
    s->pos = head;
    return 1;
}

int gw_sub_start(gw_conn *c, const char *room, const gw_pos *want)
{
    int err = 0;
    gw_sub *s = sub_create(c, room, want, &err);
    if (!s)
        return err;
    if (!sub_try_instant(s))
        sub_read(s);
    return 0;
}

void gw_sub_start_many(gw_conn *c, const gw_room_pos *rooms, size_t n)
{
    gw_sub **batch = calloc(n ? n : 1, sizeof(*batch));
    uint32_t nb = 0;
    uint64_t cid = c->id;
    for (size_t i = 0; i < n; i++) {
        int err = 0;
        gw_sub *s = sub_create(c, rooms[i].room, &rooms[i].pos, &err);
        if (!s) {
            char why[GW_MAX_ROOM + 40];
            snprintf(why, sizeof(why), "cannot subscribe to %s", rooms[i].room);
            gw_conn_error(c, err, why, NULL);
            continue;
        }
        if (sub_try_instant(s))
            continue;
        if (batch)
            batch[nb++] = s;
        else
            sub_read(s);
        if (!gw_conn_find(cid))
            break;
    }
    if (batch && gw_conn_find(cid))
        read_batch(c, batch, nb);
    free(batch);
}
