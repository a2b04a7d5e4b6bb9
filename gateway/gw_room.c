/* gw_room.c -- the gateway's rooms: bus subscriptions, the probe, repair
 * reads, and the glue between a room's ordering core and its subscribers.
 *
 * A gw_room exists while a local connection subscribes to it. Its ordering
 * (epoch, head, ring, pending messages, gaps) is the pure core in gw_order.c;
 * this file feeds it the bus events and the repair replies, runs the repair
 * timer and read it asks for, and passes its actions on to gw_sub.c, which
 * delivers to subscribers and catches them up (the history-to-live merge).
 *
 * A subscription to a room's topic takes effect asynchronously. Until it
 * has, messages published to the room pass this gateway by, and the first
 * history read could not be trusted to be followed by every live message. So
 * a new room publishes a probe on its own topic until the probe comes back
 * through busd ('bus_ready'); only then are its first range reads sent. Every
 * message sequenced after such a read is then certain to reach this gateway
 * (or to show up as a hole and be repaired).
 *
 * Other modules (media, sessions) learn of rooms through the hooks table
 * registered with gw_room_set_hooks().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "gw_sub.h"
#include "log.h"

#define PAGE 500
#define PEND_MAX 2048
#define RANGE_TIMEOUT_MS 1500
#define RANGE_ATTEMPTS 4

static gw_room_hooks hooks;

void gw_room_set_hooks(const gw_room_hooks *h) { hooks = *h; }

const gw_room_hooks *gw_room_hooks_get(void) { return &hooks; }

static void repair_fire(loop *l, loop_timer *t, void *arg);

/* ---- the ordering core's actions --------------------------------------------------- */

static void msg_release(gw_msg *g)
{
    gw_buf_unref(g->enc[0]);
    gw_buf_unref(g->enc[1]);
}

static void room_act(void *arg, const gw_order_act *a)
{
    gw_room *r = arg;
    switch (a->kind) {
    case GW_OA_DELIVER:
        if (a->repaired)
            G.st.gaps_repaired++;
        gw_sub_on_deliver(r, a->msg);
        break;
    case GW_OA_GAP:
        G.st.gaps_unrepaired++;
        LOG_WARN("unrepairable gap", "{s:s,s:I,s:I}", "room", r->name, "from", (json_int_t)a->from, "to",
                 (json_int_t)a->to);
        gw_sub_on_gap(r, a->from, a->to);
        break;
    case GW_OA_EPOCH:
        G.st.epoch_changes++;
        LOG_WARN("room epoch changed", "{s:s,s:s,s:s,s:I}", "room", r->name, "old", a->old_epoch, "new",
                 gw_order_epoch(r->order), "top", (json_int_t)a->to);
        gw_sub_on_epoch(r, a->from, a->to);
        break;
    case GW_OA_REPAIR:
        if (!loop_timer_active(&r->repair_timer))
            loop_timer_start(G.l, &r->repair_timer, a->delay_ms, 0, repair_fire, r);
        break;
    }
}

/* ---- rooms ------------------------------------------------------------------------- */

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

gw_room *gw_room_get(const char *name, int create)
{
    gw_room *r = hmap_get(G.rooms, name);
    if (r || !create)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->order = gw_order_new(G.cfg.ring_size, PEND_MAX, PAGE, msg_release, room_act, r);
    static uint64_t gens;
    r->gen = ++gens;
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->topic, sizeof(r->topic), "room.%s", name);
    snprintf(r->ptopic, sizeof(r->ptopic), "presence.%s", name);
    if (!r->order || hmap_put(G.rooms, name, r) < 0) {
        gw_order_free(r->order);
        free(r);
        return NULL;
    }
    bus_subscribe(G.bus, r->topic);
    bus_subscribe(G.bus, r->ptopic);
    loop_timer_start(G.l, &r->probe_timer, 0, 25, probe_fire, r);
    if (hooks.room_open)
        hooks.room_open(r);
    return r;
}

int gw_room_floor(const char *room, char *epoch, size_t cap, uint64_t *seq)
{
    const gw_room *r = gw_room_get(room, 0);
    /* head: every seq up to it was delivered (or declared lost with a gap)
     * in the room's epoch, so Redis handed all of them out. */
    const char *ep = r ? gw_order_epoch(r->order) : "";
    size_t n = strlen(ep);
    if (!r || !gw_order_known(r->order) || !n || !gw_order_head(r->order) || n >= cap)
        return 0;
    memcpy(epoch, ep, n + 1);
    *seq = gw_order_head(r->order);
    return 1;
}

const char *gw_room_epoch(const gw_room *r) { return gw_order_epoch(r->order); }

void gw_room_free(gw_room *r)
{
    if (hooks.room_close)
        hooks.room_close(r);
    loop_timer_stop(G.l, &r->repair_timer);
    loop_timer_stop(G.l, &r->probe_timer);
    if (gw_order_repairing(r->order))
        rpc_cancel(G.replayd, r->repair_req);
    bus_unsubscribe(G.bus, r->topic);
    bus_unsubscribe(G.bus, r->ptopic);
    hmap_del(G.rooms, r->name);
    gw_order_free(r->order);
    free(r);
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
    gw_room *r = gw_room_get(x->room, 0);
    int ok = r && r->gen == x->gen;
    free(x);
    if (!ok)
        return;
    if (status < 0 || !rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP ||
        rep->range_rep->n_rooms != 1) {
        gw_order_on_repair(r->order, NULL);
        return;
    }
    const Tether__Bus__RangeRoom *rr = rep->range_rep->rooms[0];
    gw_order_in stackv[64];
    gw_order_in *msgs = rr->n_messages <= 64 ? stackv : calloc(rr->n_messages, sizeof(*msgs));
    if (!msgs) {
        gw_order_on_repair(r->order, NULL);
        return;
    }
    gw_order_range v = { rr->epoch, rr->top, rr->first_available, rr->more, rr->n_messages, msgs };
    for (size_t i = 0; i < v.n; i++) {
        const Tether__Bus__RoomMessage *m = rr->messages[i];
        msgs[i] = (gw_order_in){ m->seq, m->ts, m->id, m->from, m->data };
    }
    gw_order_on_repair(r->order, &v);
    if (msgs != stackv)
        free(msgs);
}

static void repair_fire(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    gw_room *r = arg;
    gw_order_read rd;
    if (!gw_order_repair_next(r->order, &rd))
        return;
    repair_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        gw_order_repair_abort(r->order);
        return;
    }
    snprintf(x->room, sizeof(x->room), "%s", r->name);
    x->gen = r->gen;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    Tether__Bus__RangeItem it = TETHER__BUS__RANGE_ITEM__INIT, *itp = &it;
    it.room = r->name;
    it.from_oldest = rd.from_oldest;
    it.epoch = (char *)rd.epoch;
    it.after_seq = rd.after_seq;
    it.limit = rd.limit;
    rq.n_items = 1;
    rq.items = &itp;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    req.range_req = &rq;
    G.st.range_requests++;
    r->repair_req = rpc_call(G.replayd, &req, RANGE_TIMEOUT_MS, RANGE_ATTEMPTS, repair_reply, x);
    if (!r->repair_req) {
        free(x);
        gw_order_repair_abort(r->order);
    }
}

/* ---- bus events ------------------------------------------------------------------------- */

static void on_probe(const bus_env *env)
{
    const Tether__Bus__Source *me = bus_source(G.bus);
    if (!env->source || env->source->incarnation != me->incarnation || !env->source->instance ||
        strcmp(env->source->instance, me->instance) != 0)
        return; /* another gateway's probe */
    gw_room *r = gw_room_get(env->topic + 5, 0);
    if (!r || r->bus_ready)
        return;
    r->bus_ready = 1;
    loop_timer_stop(G.l, &r->probe_timer);
    gw_sub_on_bus_ready(r);
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
    gw_room *r = gw_room_get(room, 0);
    if (!r)
        return; /* a prefix match (room.ab for room.a) or a room we left */
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE) {
        const Tether__Bus__RoomMessage *m = env->room_message;
        gw_order_in in = { m->seq, m->ts, m->id, m->from, m->data };
        gw_order_on_live(r->order, m->epoch, &in);
    } else {
        gw_order_on_head(r->order, env->room_head->epoch, env->room_head->seq);
    }
}

unsigned gw_room_count(void) { return (unsigned)hmap_count(G.rooms); }
