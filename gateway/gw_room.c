/* gw_room.c -- per-room ordering, gap repair and resume on the gateway.
 *
 * A gw_room exists while a local connection subscribes to it. It knows the
 * room's epoch and 'head', the highest seq delivered contiguously to its live
 * subscribers, and keeps the last ring_size messages. Messages from the bus
 * are delivered strictly in seq order: one that arrives early waits in 'pend'
 * while the missing ones are read from replayd (repair). A hole replayd can no
 * longer fill (trimmed history) becomes a `gap` frame, never silence.
 *
 * A subscriber (gw_sub) has its own position 'pos'. It is live when pos ==
 * head and gets each new message as it is delivered; otherwise it catches up,
 * first from the ring, then by range reads, page by page, and joins the live
 * stream the moment it reaches head. That is the history-to-live merge: live
 * messages that arrive during a resume are simply messages the subscriber
 * will reach, so none is lost and none is sent twice.
 *
 * A subscription to a room's topic takes effect asynchronously. Until it
 * has, messages published to the room pass this gateway by, and the first
 * history read could not be trusted to be followed by every live message. So
 * a new room publishes a probe on its own topic until the probe comes back
 * through busd ('bus_ready'); only then are its first range reads sent. Every
 * message sequenced after such a read is then certain to reach this gateway
 * (or to show up as a hole and be repaired).
 *
 * Epochs are compared as strings; replayd makes them start with a fixed-width
 * hex timestamp so a newer epoch sorts after an older one, and a stale reply
 * (read before the epoch changed) is recognised and re-read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "gw_media.h"
#include "gw_session.h"
#include "log.h"

#define PAGE 500
#define PEND_MAX 2048
#define RANGE_TIMEOUT_MS 1500
#define RANGE_ATTEMPTS 4

enum { LEARN_OK = 0, LEARN_RESET = 1, LEARN_STALE = 2 };

static void sub_advance(gw_sub *s);
static void sub_read(gw_sub *s);
static int sub_try_instant(gw_sub *s);
static void room_schedule_repair(gw_room *r, uint64_t delay_ms);

/* ---- messages -------------------------------------------------------------------- */

static gw_msg *msg_new(const Tether__Bus__RoomMessage *m)
{
    gw_msg *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->refs = 1;
    g->seq = m->seq;
    g->ts = m->ts;
    g->id = strdup(m->id ? m->id : "");
    g->from = strdup(m->from ? m->from : "");
    g->data = strdup(m->data && *m->data ? m->data : "null");
    if (!g->id || !g->from || !g->data) {
        free(g->id);
        free(g->from);
        free(g->data);
        free(g);
        return NULL;
    }
    return g;
}

static void msg_unref(gw_msg *g)
{
    if (!g || --g->refs)
        return;
    gw_buf_unref(g->enc[0]);
    gw_buf_unref(g->enc[1]);
    free(g->id);
    free(g->from);
    free(g->data);
    free(g);
}

static gw_buf *msg_enc(gw_room *r, gw_msg *g, int proto)
{
    if (!g->enc[proto]) {
        gw_msgv v = { r->name, r->epoch, g->id, g->from, g->data, g->seq, g->ts };
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

/* ---- rooms ------------------------------------------------------------------------- */

static int epoch_newer(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la == lb)
        return strcmp(a, b) > 0;
    return 1; /* different formats: the one we see now wins */
}

static void probe_fire(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    gw_room *r = arg;
    bus_env ev = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = 25;
    ev.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    ev.heartbeat = &hb;
    bus_publish(G.bus, r->topic, &ev);
}

static gw_room *room_get(const char *name, int create)
{
    gw_room *r = hmap_get(G.rooms, name);
    if (r || !create)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->ring = calloc(G.cfg.ring_size, sizeof(*r->ring));
    r->pend = calloc(PEND_MAX, sizeof(*r->pend));
    static uint64_t gens;
    r->gen = ++gens;
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->topic, sizeof(r->topic), "room.%s", name);
    snprintf(r->ptopic, sizeof(r->ptopic), "presence.%s", name);
    if (!r->ring || !r->pend || hmap_put(G.rooms, name, r) < 0) {
        free(r->ring);
        free(r->pend);
        free(r);
        return NULL;
    }
    bus_subscribe(G.bus, r->topic);
    bus_subscribe(G.bus, r->ptopic);
    loop_timer_start(G.l, &r->probe_timer, 0, 25, probe_fire, r);
    gw_media_room_open(r);
    return r;
}

int gw_room_floor(const char *room, char *epoch, size_t cap, uint64_t *seq)
{
    const gw_room *r = room_get(room, 0);
    /* head: every seq up to it was delivered (or declared lost with a gap)
     * in r->epoch, so Redis handed all of them out. */
    size_t n = r ? strlen(r->epoch) : 0;
    if (!r || !r->known || !n || !r->head || n >= cap)
        return 0;
    memcpy(epoch, r->epoch, n + 1);
    *seq = r->head;
    return 1;
}

static void ring_clear(gw_room *r)
{
    for (uint32_t i = 0; i < G.cfg.ring_size; i++) {
        msg_unref(r->ring[i]);
        r->ring[i] = NULL;
    }
}

static void pend_clear(gw_room *r)
{
    for (uint32_t i = 0; i < r->npend; i++)
        msg_unref(r->pend[i]);
    r->npend = 0;
}

static void room_free(gw_room *r)
{
    gw_media_room_close(r);
    loop_timer_stop(G.l, &r->repair_timer);
    loop_timer_stop(G.l, &r->probe_timer);
    if (r->repairing)
        rpc_cancel(G.replayd, r->repair_req);
    bus_unsubscribe(G.bus, r->topic);
    bus_unsubscribe(G.bus, r->ptopic);
    hmap_del(G.rooms, r->name);
    ring_clear(r);
    pend_clear(r);
    free(r->ring);
    free(r->pend);
    free(r);
}

static gw_msg *ring_get(gw_room *r, uint64_t seq)
{
    gw_msg *g = r->ring[seq % G.cfg.ring_size];
    return g && g->seq == seq ? g : NULL;
}

static void pend_insert(gw_room *r, gw_msg *g)
{
    uint32_t i = 0;
    while (i < r->npend && r->pend[i]->seq < g->seq)
        i++;
    if (i < r->npend && r->pend[i]->seq == g->seq) {
        msg_unref(g);
        return;
    }
    if (r->npend == PEND_MAX) {
        /* Full: forget the newest; max_seen still says it exists, so the
         * repair reads it back from replayd. */
        if (i == PEND_MAX) {
            msg_unref(g);
            return;
        }
        msg_unref(r->pend[--r->npend]);
    }
    memmove(&r->pend[i + 1], &r->pend[i], (r->npend - i) * sizeof(*r->pend));
    r->pend[i] = g;
    r->npend++;
}

/* Delivers g (seq == head + 1) to every live subscriber. Takes over g. */
static void room_deliver(gw_room *r, gw_msg *g)
{
    r->head = g->seq;
    if (g->seq > r->max_seen)
        r->max_seen = g->seq;
    uint32_t slot = (uint32_t)(g->seq % G.cfg.ring_size);
    msg_unref(r->ring[slot]);
    r->ring[slot] = g;
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        if (!s->announced || s->reading)
            continue;
        if (s->pos + 1 == g->seq) {
            gw_conn_send(s->conn, msg_enc(r, g, s->conn->proto));
            s->pos = g->seq;
            G.st.delivered++;
        } else if (s->pos < r->head) {
            sub_advance(s);
        }
    }
}

static void flush_pend(gw_room *r)
{
    uint32_t i = 0;
    while (i < r->npend && r->pend[i]->seq <= r->head + 1) {
        gw_msg *g = r->pend[i++];
        if (g->seq == r->head + 1)
            room_deliver(r, g);
        else
            msg_unref(g);
    }
    memmove(r->pend, r->pend + i, (r->npend - i) * sizeof(*r->pend));
    r->npend -= i;
}

/* A hole [from, to] that replayd no longer has: tell live subscribers. */
static void room_gap(gw_room *r, uint64_t from, uint64_t to)
{
    G.st.gaps_unrepaired++;
    LOG_WARN("unrepairable gap", "{s:s,s:I,s:I}", "room", r->name, "from", (json_int_t)from, "to", (json_int_t)to);
    for (gw_sub *s = r->subs; s; s = s->rnext) {
        if (!s->announced || s->reading || s->pos >= to)
            continue;
        if (s->pos + 1 >= from) {
            gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, r->name, s->pos + 1, to));
            s->pos = to;
        }
    }
    r->head = to;
}

/* The room's history now has another epoch: everything known is void. Every
 * announced subscriber gets a new `subscribed` with recovered: false and then
 * the messages still buffered in the new epoch. */
static void room_adopt(gw_room *r, const Tether__Bus__RangeRoom *rr)
{
    G.st.epoch_changes++;
    LOG_WARN("room epoch changed", "{s:s,s:s,s:s,s:I}", "room", r->name, "old", r->epoch, "new", rr->epoch,
             "top", (json_int_t)rr->top);
    snprintf(r->epoch, sizeof(r->epoch), "%s", rr->epoch);
    r->resync = 0;
    ring_clear(r);
    pend_clear(r);
    r->known = 1;
    r->head = rr->top;
    r->max_seen = rr->top;
    uint64_t fa = rr->first_available ? rr->first_available : rr->top + 1;
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        if (!s->announced)
            continue;
        uint32_t missed = rr->top >= fa ? (uint32_t)(rr->top - fa + 1) : 0;
        gw_gapv gap = { s->pos + 1, fa };
        gw_conn_send_take(s->conn, gw_enc_subscribed(s->conn->proto, r->name, r->epoch, rr->top, 0, missed, &gap));
        s->pos = fa - 1;
        if (!s->reading)
            sub_advance(s);
    }
}

/* Takes what a range reply says about the room. */
static int room_learn(gw_room *r, const Tether__Bus__RangeRoom *rr)
{
    const char *ep = rr->epoch ? rr->epoch : "";
    if (!r->known) {
        if (r->npend && strcmp(ep, r->pend_epoch) != 0) {
            /* Messages of another epoch came by bus while the read was on
             * its way. A newer one: Redis ran the read before their append
             * (replayd reads and appends on two connections, and the reply
             * and the bus message race here); learning "no history" (or the
             * old epoch) with them pending made the room (epoch "", head 1)
             * and the real epoch then looked like a change: recovered: false
             * for a room that lost nothing. Read again: that read runs after
             * the append and names their epoch. An older one: late messages
             * of a history that is gone, never to be delivered as this
             * epoch's. Either way the pending copies go; the read brings
             * whatever a subscriber needs. */
            int stale = epoch_newer(r->pend_epoch, ep);
            pend_clear(r);
            r->max_seen = 0;
            if (stale)
                return LEARN_STALE;
        }
        r->known = 1;
        snprintf(r->epoch, sizeof(r->epoch), "%s", ep);
        r->head = rr->top;
        if (rr->top > r->max_seen)
            r->max_seen = rr->top;
        flush_pend(r);
        if (r->max_seen > r->head)
            room_schedule_repair(r, 20);
        return LEARN_OK;
    }
    if (strcmp(ep, r->epoch) == 0) {
        r->resync = 0;
        if (rr->top > r->max_seen) {
            r->max_seen = rr->top;
            room_schedule_repair(r, 20);
        }
        return LEARN_OK;
    }
    if (!*ep)
        return LEARN_STALE; /* a read from before the room existed */
    if (!r->epoch[0] && r->head == 0) {
        /* The room had no history when we learned it; its first epoch is
         * not a change: messages 1..top are simply new. */
        snprintf(r->epoch, sizeof(r->epoch), "%s", ep);
        pend_clear(r);
        if (rr->top > r->max_seen)
            r->max_seen = rr->top;
        room_schedule_repair(r, 0);
        return LEARN_OK;
    }
    if (epoch_newer(ep, r->epoch)) {
        room_adopt(r, rr);
        return LEARN_RESET;
    }
    return LEARN_STALE;
}

/* ---- repair -------------------------------------------------------------------------- */

typedef struct repair_ctx {
    char room[GW_MAX_ROOM + 1];
    uint64_t gen;
} repair_ctx;

static void repair_reply(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    repair_ctx *x = arg;
    gw_room *r = room_get(x->room, 0);
    int ok = r && r->gen == x->gen;
    free(x);
    if (!ok)
        return;
    r->repairing = 0;
    if (status < 0 || !rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP ||
        rep->range_rep->n_rooms != 1) {
        room_schedule_repair(r, 500);
        return;
    }
    const Tether__Bus__RangeRoom *rr = rep->range_rep->rooms[0];
    int lr = room_learn(r, rr);
    if (lr == LEARN_STALE) {
        room_schedule_repair(r, 100);
        return;
    }
    if (lr == LEARN_RESET)
        return;
    uint64_t before = r->head;
    for (size_t i = 0; i < rr->n_messages; i++) {
        const Tether__Bus__RoomMessage *m = rr->messages[i];
        if (m->seq <= r->head)
            continue;
        if (m->seq > r->head + 1)
            room_gap(r, r->head + 1, m->seq - 1);
        gw_msg *g = msg_new(m);
        if (!g)
            break;
        room_deliver(r, g);
        G.st.gaps_repaired++;
    }
    uint64_t fa = rr->first_available;
    if (r->head == before && rr->top > r->head && fa > r->head + 1)
        room_gap(r, r->head + 1, (fa - 1 < rr->top ? fa - 1 : rr->top));
    if (rr->top < r->max_seen && r->head >= rr->top && !rr->more) {
        /* Announced more than replayd has (e.g. a head from before a Redis
         * restart that lost writes): nothing to wait for. */
        r->max_seen = r->head;
    }
    flush_pend(r);
    if (r->max_seen > r->head)
        room_schedule_repair(r, 0);
}

static void repair_fire(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    gw_room *r = arg;
    if (r->repairing)
        return;
    int need_epoch = !r->known || r->resync;
    if (!need_epoch && r->max_seen <= r->head)
        return;
    repair_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    snprintf(x->room, sizeof(x->room), "%s", r->name);
    x->gen = r->gen;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    Tether__Bus__RangeItem it = TETHER__BUS__RANGE_ITEM__INIT, *itp = &it;
    it.room = r->name;
    if (need_epoch) {
        it.from_oldest = 1;
        it.limit = 1;
    } else {
        it.epoch = r->epoch;
        it.after_seq = r->head;
        it.limit = PAGE;
    }
    rq.n_items = 1;
    rq.items = &itp;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    req.range_req = &rq;
    r->repairing = 1;
    G.st.range_requests++;
    r->repair_req = rpc_call(G.replayd, &req, RANGE_TIMEOUT_MS, RANGE_ATTEMPTS, repair_reply, x);
    if (!r->repair_req) {
        r->repairing = 0;
        free(x);
    }
}

static void room_schedule_repair(gw_room *r, uint64_t delay_ms)
{
    if (r->repairing || loop_timer_active(&r->repair_timer))
        return;
    loop_timer_start(G.l, &r->repair_timer, delay_ms, 0, repair_fire, r);
}

/* ---- bus events ------------------------------------------------------------------------- */

static void on_room_message(gw_room *r, const Tether__Bus__RoomMessage *m)
{
    const char *ep = m->epoch ? m->epoch : "";
    if (!r->known) {
        /* Held until the first read says where the room is; held messages
         * are of one epoch, the newest seen (room_learn checks it). */
        if (r->npend && strcmp(ep, r->pend_epoch) != 0) {
            if (!epoch_newer(ep, r->pend_epoch))
                return;
            pend_clear(r);
            r->max_seen = 0;
        }
        snprintf(r->pend_epoch, sizeof(r->pend_epoch), "%s", ep);
    }
    if (r->known && strcmp(ep, r->epoch) != 0) {
        if (!r->epoch[0] && r->head == 0) {
            snprintf(r->epoch, sizeof(r->epoch), "%s", ep);
        } else if (epoch_newer(ep, r->epoch)) {
            /* Learn the new epoch with a read; it will bring this message. */
            r->resync = 1;
            room_schedule_repair(r, 0);
            return;
        } else {
            return; /* stale */
        }
    }
    if (r->known && m->seq <= r->head)
        return;
    if (m->seq > r->max_seen)
        r->max_seen = m->seq;
    gw_msg *g = msg_new(m);
    if (!g)
        return;
    if (r->known && m->seq == r->head + 1) {
        room_deliver(r, g);
        flush_pend(r);
        return;
    }
    pend_insert(r, g);
    if (r->known)
        room_schedule_repair(r, 20);
}

static void on_room_head(gw_room *r, const Tether__Bus__RoomHead *h)
{
    if (!r->known)
        return;
    const char *ep = h->epoch ? h->epoch : "";
    if (strcmp(ep, r->epoch) != 0) {
        if (*ep && (r->epoch[0] == 0 || epoch_newer(ep, r->epoch))) {
            if (!r->epoch[0] && r->head == 0) {
                snprintf(r->epoch, sizeof(r->epoch), "%s", ep);
            } else {
                r->resync = 1;
                room_schedule_repair(r, 0);
                return;
            }
        } else {
            return;
        }
    }
    if (h->seq > r->max_seen)
        r->max_seen = h->seq;
    if (r->max_seen > r->head)
        room_schedule_repair(r, 20);
}

static void on_probe(const bus_env *env)
{
    const Tether__Bus__Source *me = bus_source(G.bus);
    if (!env->source || env->source->incarnation != me->incarnation || !env->source->instance ||
        strcmp(env->source->instance, me->instance) != 0)
        return; /* another gateway's probe */
    gw_room *r = room_get(env->topic + 5, 0);
    if (!r || r->bus_ready)
        return;
    r->bus_ready = 1;
    loop_timer_stop(G.l, &r->probe_timer);
    for (gw_sub *s = r->subs, *nx; s; s = nx) {
        nx = s->rnext;
        gw_sub_resume_read(s);
    }
}

void gw_room_on_bus(const bus_env *env)
{
    const char *room = NULL;
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT) {
        on_probe(env);
        return;
    }
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE && env->room_message)
        room = env->room_message->room;
    else if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_HEAD && env->room_head)
        room = env->room_head->room;
    if (!room)
        return;
    gw_room *r = room_get(room, 0);
    if (!r)
        return; /* a prefix match (room.ab for room.a) or a room we left */
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE)
        on_room_message(r, env->room_message);
    else
        on_room_head(r, env->room_head);
}

unsigned gw_room_count(void) { return (unsigned)hmap_count(G.rooms); }

/* ---- subscribers ---------------------------------------------------------------------- */

typedef struct read_ctx {
    uint64_t conn_id;
    uint32_t n;
    struct {
        char room[GW_MAX_ROOM + 1];
        uint64_t gen;
    } it[];
} read_ctx;

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
        send_pb_message(s, s->room->epoch, m);
        s->pos = m->seq;
    }
}

/* The first reply for a subscription: `subscribed`, then what was missed. */
static void sub_initial(gw_sub *s, const Tether__Bus__RangeRoom *rr)
{
    gw_room *r = s->room;
    int lr = room_learn(r, rr);
    if (lr == LEARN_STALE) {
        sub_read(s);
        return;
    }
    const char *ep = rr->epoch ? rr->epoch : "";
    uint64_t top = rr->top;
    uint64_t fa = rr->first_available ? rr->first_available : top + 1;
    int recovered = 1;
    uint64_t start;
    gw_gapv gap = { 0, 0 };
    switch (s->want.kind) {
    case GW_POS_LIVE:
        start = r->head + 1;
        if (r->head > top)
            top = r->head;
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
    gw_conn_send_take(s->conn, gw_enc_subscribed(s->conn->proto, r->name, r->epoch[0] ? r->epoch : ep, top,
                                                 recovered, (uint32_t)missed, recovered ? NULL : &gap));
    s->announced = 1;
    gw_sess_after_subscribed(s);
    s->pos = start - 1;
    if (s->want.kind != GW_POS_LIVE)
        sub_deliver_list(s, rr, 1);
    sub_advance(s);
}

/* A catch-up page. */
static void sub_page(gw_sub *s, const Tether__Bus__RangeRoom *rr)
{
    gw_room *r = s->room;
    int lr = room_learn(r, rr);
    if (lr == LEARN_RESET)
        return; /* room_adopt re-announced and advanced s */
    if (lr == LEARN_STALE) {
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
    if (s->pos == before && rr->top <= s->pos && s->pos < r->head) {
        /* replayd has less than this gateway delivered: the ring is the only
         * copy left; if it does not have the next one, say so. */
        if (!ring_get(r, s->pos + 1)) {
            gw_conn_send_take(s->conn, gw_enc_gap(s->conn->proto, r->name, s->pos + 1, r->head));
            s->pos = r->head;
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
        it->epoch = s->room->epoch;
        it->after_seq = s->pos;
        it->limit = PAGE;
    }
}

/* One batched range read for subs[0..n). */
static void read_batch(gw_conn *c, gw_sub **all, uint32_t nall)
{
    /* First reads of rooms whose bus subscription is not confirmed yet wait
     * for on_probe(), which reads them. */
    gw_sub *stackv[16];
    gw_sub **subs = nall <= 16 ? stackv : calloc(nall, sizeof(*subs));
    uint32_t n = 0;
    if (!subs)
        return;
    for (uint32_t i = 0; i < nall; i++)
        if (all[i]->announced || (all[i]->room->bus_ready && !all[i]->presence_pending))
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
    if (s->reading || !r->known)
        return;
    while (s->pos < r->head) {
        gw_msg *g = ring_get(r, s->pos + 1);
        if (!g) {
            sub_read(s);
            return;
        }
        gw_conn_send(s->conn, msg_enc(r, g, s->conn->proto));
        G.st.delivered++;
        s->pos = g->seq;
    }
}

gw_sub *gw_conn_find_sub(gw_conn *c, const char *room)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (strcmp(c->subs[i]->room->name, room) == 0)
            return c->subs[i];
    return NULL;
}

void gw_sub_stop(gw_sub *s)
{
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
    gw_sub_presence_clear(s);
    free(s);
    if (--r->nsubs == 0)
        room_free(r);
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
    gw_room *r = room_get(room, 1);
    gw_sub *s = r ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        if (r && r->nsubs == 0)
            room_free(r);
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
    gw_sess_room(c, room, 1);
    gw_sess_members(s);
    return s;
}

void gw_sub_resume_read(gw_sub *s)
{
    if (s->announced || s->reading || s->presence_pending)
        return;
    if (!sub_try_instant(s) && s->room->bus_ready)
        sub_read(s);
}

/* A live-only subscription to a room this gateway already follows needs no read. */
static int sub_try_instant(gw_sub *s)
{
    gw_room *r = s->room;
    if (s->want.kind != GW_POS_LIVE || !r->known || !r->bus_ready || s->presence_pending)
        return 0;
    gw_conn_send_take(s->conn, gw_enc_subscribed(s->conn->proto, r->name, r->epoch, r->max_seen > r->head ? r->max_seen : r->head, 1, 0, NULL));
    s->announced = 1;
    gw_sess_after_subscribed(s);
    s->pos = r->head;
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
