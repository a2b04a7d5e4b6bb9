/* gw_order.c -- the gateway's per-room ordering core: epoch, head, ring,
 * pending list, gap detection and repair reads, with no I/O (gw_order.h).
 *
 * Messages are delivered strictly in seq order: one that arrives early waits
 * in 'pend' while the missing ones are read from replayd (repair). A hole
 * replayd can no longer fill (trimmed history) becomes GW_OA_GAP, never
 * silence. Until the first range read says where the room is ('known'),
 * live messages are held, all of one epoch (the newest seen, pend_epoch).
 *
 * Epochs are compared as strings; replayd makes them start with a fixed-width
 * hex timestamp so a newer epoch sorts after an older one, and a stale reply
 * (read before the epoch changed) is recognised and re-read.
 */
#include "gw_order.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_order {
    char epoch[GW_MAX_EPOCH + 1];
    char pend_epoch[GW_MAX_EPOCH + 1]; /* before known: the epoch of pend */
    int known;    /* epoch/head learned from replayd */
    int resync;   /* a newer epoch was seen: re-read the room's head */
    int repairing;
    uint64_t head;     /* highest contiguous seq delivered */
    uint64_t max_seen; /* highest seq known to exist */
    gw_msg **ring;     /* recent messages, by seq % ring_size */
    gw_msg **pend;     /* out of order, ascending seq */
    uint32_t npend, ring_size, pend_max, page;
    void (*release)(gw_msg *);
    gw_order_emit *emit;
    void *arg;
};

gw_msg *gw_msg_new(const gw_order_in *m)
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

void gw_msg_unref(gw_order *o, gw_msg *g)
{
    if (!g || --g->refs)
        return;
    if (o && o->release)
        o->release(g);
    free(g->id);
    free(g->from);
    free(g->data);
    free(g);
}

gw_order *gw_order_new(uint32_t ring_size, uint32_t pend_max, uint32_t page, void (*release)(gw_msg *),
                       gw_order_emit *emit, void *arg)
{
    gw_order *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->ring_size = ring_size ? ring_size : 1;
    o->pend_max = pend_max ? pend_max : 1;
    o->page = page;
    o->release = release;
    o->emit = emit;
    o->arg = arg;
    o->ring = calloc(o->ring_size, sizeof(*o->ring));
    o->pend = calloc(o->pend_max, sizeof(*o->pend));
    if (!o->ring || !o->pend) {
        free(o->ring);
        free(o->pend);
        free(o);
        return NULL;
    }
    return o;
}

static void ring_clear(gw_order *o)
{
    for (uint32_t i = 0; i < o->ring_size; i++) {
        gw_msg_unref(o, o->ring[i]);
        o->ring[i] = NULL;
    }
}

static void pend_clear(gw_order *o)
{
    for (uint32_t i = 0; i < o->npend; i++)
        gw_msg_unref(o, o->pend[i]);
    o->npend = 0;
}

void gw_order_free(gw_order *o)
{
    if (!o)
        return;
    ring_clear(o);
    pend_clear(o);
    free(o->ring);
    free(o->pend);
    free(o);
}

int gw_order_known(const gw_order *o) { return o->known; }
const char *gw_order_epoch(const gw_order *o) { return o->epoch; }
uint64_t gw_order_head(const gw_order *o) { return o->head; }
uint64_t gw_order_max_seen(const gw_order *o) { return o->max_seen; }
int gw_order_repairing(const gw_order *o) { return o->repairing; }
uint32_t gw_order_npend(const gw_order *o) { return o->npend; }

gw_msg *gw_order_ring(const gw_order *o, uint64_t seq)
{
    gw_msg *g = o->ring[seq % o->ring_size];
    return g && g->seq == seq ? g : NULL;
}

static int epoch_newer(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la == lb)
        return strcmp(a, b) > 0;
    return 1; /* different formats: the one we see now wins */
}

static void set_epoch(char *dst, const char *ep) { snprintf(dst, GW_MAX_EPOCH + 1, "%s", ep); }

static void schedule_repair(gw_order *o, uint64_t delay_ms)
{
    if (o->repairing)
        return;
    gw_order_act a = { .kind = GW_OA_REPAIR, .delay_ms = delay_ms };
    o->emit(o->arg, &a);
}

static void pend_insert(gw_order *o, gw_msg *g)
{
    uint32_t i = 0;
    while (i < o->npend && o->pend[i]->seq < g->seq)
        i++;
    if (i < o->npend && o->pend[i]->seq == g->seq) {
        gw_msg_unref(o, g);
        return;
    }
    if (o->npend == o->pend_max) {
        /* Full: forget the newest; max_seen still says it exists, so the
         * repair reads it back from replayd. */
        if (i == o->pend_max) {
            gw_msg_unref(o, g);
            return;
        }
        gw_msg_unref(o, o->pend[--o->npend]);
    }
    memmove(&o->pend[i + 1], &o->pend[i], (o->npend - i) * sizeof(*o->pend));
    o->pend[i] = g;
    o->npend++;
}

/* g (seq == head + 1) becomes head and goes into the ring. Takes over g. */
static void deliver(gw_order *o, gw_msg *g, int repaired)
{
    o->head = g->seq;
    if (g->seq > o->max_seen)
        o->max_seen = g->seq;
    uint32_t slot = (uint32_t)(g->seq % o->ring_size);
    gw_msg_unref(o, o->ring[slot]);
    o->ring[slot] = g;
    gw_order_act a = { .kind = GW_OA_DELIVER, .msg = g, .repaired = repaired };
    o->emit(o->arg, &a);
}

static void flush_pend(gw_order *o)
{
    uint32_t i = 0;
    while (i < o->npend && o->pend[i]->seq <= o->head + 1) {
        gw_msg *g = o->pend[i++];
        if (g->seq == o->head + 1)
            deliver(o, g, 0);
        else
            gw_msg_unref(o, g);
    }
    memmove(o->pend, o->pend + i, (o->npend - i) * sizeof(*o->pend));
    o->npend -= i;
}

/* A hole [from, to] that replayd no longer has. */
static void gap(gw_order *o, uint64_t from, uint64_t to)
{
    gw_order_act a = { .kind = GW_OA_GAP, .from = from, .to = to };
    o->emit(o->arg, &a);
    o->head = to;
}

/* The room's history now has another epoch: everything known is void. */
static void adopt(gw_order *o, const gw_order_range *rr)
{
    char old[GW_MAX_EPOCH + 1];
    set_epoch(old, o->epoch);
    set_epoch(o->epoch, rr->epoch);
    o->resync = 0;
    ring_clear(o);
    pend_clear(o);
    o->known = 1;
    o->head = rr->top;
    o->max_seen = rr->top;
    gw_order_act a = { .kind = GW_OA_EPOCH,
                       .from = rr->first_available ? rr->first_available : rr->top + 1,
                       .to = rr->top,
                       .old_epoch = old };
    o->emit(o->arg, &a);
}

int gw_order_learn(gw_order *o, const gw_order_range *rr)
{
    const char *ep = rr->epoch ? rr->epoch : "";
    if (!o->known) {
        if (o->npend && strcmp(ep, o->pend_epoch) != 0) {
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
            int stale = epoch_newer(o->pend_epoch, ep);
            pend_clear(o);
            o->max_seen = 0;
            if (stale)
                return GW_LEARN_STALE;
        }
        o->known = 1;
        set_epoch(o->epoch, ep);
        o->head = rr->top;
        if (rr->top > o->max_seen)
            o->max_seen = rr->top;
        flush_pend(o);
        if (o->max_seen > o->head)
            schedule_repair(o, 20);
        return GW_LEARN_OK;
    }
    if (strcmp(ep, o->epoch) == 0) {
        o->resync = 0;
        if (rr->top > o->max_seen) {
            o->max_seen = rr->top;
            schedule_repair(o, 20);
        }
        return GW_LEARN_OK;
    }
    if (!*ep)
        return GW_LEARN_STALE; /* a read from before the room existed */
    if (!o->epoch[0] && o->head == 0) {
        /* The room had no history when we learned it; its first epoch is
         * not a change: messages 1..top are simply new. */
        set_epoch(o->epoch, ep);
        pend_clear(o);
        if (rr->top > o->max_seen)
            o->max_seen = rr->top;
        schedule_repair(o, 0);
        return GW_LEARN_OK;
    }
    if (epoch_newer(ep, o->epoch)) {
        adopt(o, rr);
        return GW_LEARN_RESET;
    }
    return GW_LEARN_STALE;
}

int gw_order_repair_next(gw_order *o, gw_order_read *rd)
{
    if (o->repairing)
        return 0;
    int need_epoch = !o->known || o->resync;
    if (!need_epoch && o->max_seen <= o->head)
        return 0;
    memset(rd, 0, sizeof(*rd));
    if (need_epoch) {
        rd->from_oldest = 1;
        rd->limit = 1;
    } else {
        rd->epoch = o->epoch;
        rd->after_seq = o->head;
        rd->limit = o->page;
    }
    o->repairing = 1;
    return 1;
}

void gw_order_repair_abort(gw_order *o) { o->repairing = 0; }

void gw_order_on_repair(gw_order *o, const gw_order_range *rr)
{
    o->repairing = 0;
    if (!rr) {
        schedule_repair(o, 500);
        return;
    }
    int lr = gw_order_learn(o, rr);
    if (lr == GW_LEARN_STALE) {
        schedule_repair(o, 100);
        return;
    }
    if (lr == GW_LEARN_RESET)
        return;
    uint64_t before = o->head;
    for (size_t i = 0; i < rr->n; i++) {
        const gw_order_in *m = &rr->msgs[i];
        if (m->seq <= o->head)
            continue;
        if (m->seq > o->head + 1)
            gap(o, o->head + 1, m->seq - 1);
        gw_msg *g = gw_msg_new(m);
        if (!g)
            break;
        deliver(o, g, 1);
    }
    uint64_t fa = rr->first_available;
    if (o->head == before && rr->top > o->head && fa > o->head + 1)
        gap(o, o->head + 1, (fa - 1 < rr->top ? fa - 1 : rr->top));
    if (rr->top < o->max_seen && o->head >= rr->top && !rr->more) {
        /* Announced more than replayd has (e.g. a head from before a Redis
         * restart that lost writes): nothing to wait for. */
        o->max_seen = o->head;
    }
    flush_pend(o);
    if (o->max_seen > o->head)
        schedule_repair(o, 0);
}

void gw_order_on_live(gw_order *o, const char *epoch, const gw_order_in *m)
{
    const char *ep = epoch ? epoch : "";
    if (!o->known) {
        /* Held until the first read says where the room is; held messages
         * are of one epoch, the newest seen (gw_order_learn checks it). */
        if (o->npend && strcmp(ep, o->pend_epoch) != 0) {
            if (!epoch_newer(ep, o->pend_epoch))
                return;
            pend_clear(o);
            o->max_seen = 0;
        }
        set_epoch(o->pend_epoch, ep);
    }
    if (o->known && strcmp(ep, o->epoch) != 0) {
        if (!o->epoch[0] && o->head == 0) {
            set_epoch(o->epoch, ep);
        } else if (epoch_newer(ep, o->epoch)) {
            /* Learn the new epoch with a read; it will bring this message. */
            o->resync = 1;
            schedule_repair(o, 0);
            return;
        } else {
            return; /* stale */
        }
    }
    if (o->known && m->seq <= o->head)
        return;
    if (m->seq > o->max_seen)
        o->max_seen = m->seq;
    gw_msg *g = gw_msg_new(m);
    if (!g)
        return;
    if (o->known && m->seq == o->head + 1) {
        deliver(o, g, 0);
        flush_pend(o);
        return;
    }
    pend_insert(o, g);
    if (o->known)
        schedule_repair(o, 20);
}

void gw_order_on_head(gw_order *o, const char *epoch, uint64_t seq)
{
    if (!o->known)
        return;
    const char *ep = epoch ? epoch : "";
    if (strcmp(ep, o->epoch) != 0) {
        if (*ep && (o->epoch[0] == 0 || epoch_newer(ep, o->epoch))) {
            if (!o->epoch[0] && o->head == 0) {
                set_epoch(o->epoch, ep);
            } else {
                o->resync = 1;
                schedule_repair(o, 0);
                return;
            }
        } else {
            return;
        }
    }
    if (seq > o->max_seen)
        o->max_seen = seq;
    if (o->max_seen > o->head)
        schedule_repair(o, 20);
}
