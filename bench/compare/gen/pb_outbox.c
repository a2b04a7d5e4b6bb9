/* pb_outbox.c -- what a publisher connection sent and has not had answered.
 *
 * Tether acknowledges each publish (ack with the publish id) and nchan
 * answers each POST (in order, HTTP/1.1). A publisher keeps every
 * unanswered publish here and, when its connection comes back after a loss
 * (the server was killed), sends them again, as a real client of either
 * would: Tether with the same id (the gateway drops a duplicate), nchan as a
 * new POST (nchan has no idempotency key, so subscribers may get it twice:
 * the generator counts that). Socket.IO publishes get no answer, so there is
 * nothing to resend: what was in flight is simply gone.
 *
 * A ring indexed by id: ids are consecutive per connection, at most
 * PB_OUTBOX_CAP of them unanswered at once.
 */
#include <errno.h>
#include <stdlib.h>

#include "pb.h"

pb_outbox *pb_outbox_new(void)
{
    return calloc(1, sizeof(pb_outbox));
}

void pb_outbox_free(pb_outbox *o)
{
    free(o);
}

int pb_outbox_add(pb_outbox *o, uint32_t room, uint64_t seq, uint64_t t_ns, uint64_t *id)
{
    if (o->next - o->oldest >= PB_OUTBOX_CAP)
        return -EAGAIN;
    pb_out *e = &o->slot[o->next % PB_OUTBOX_CAP];
    e->id = o->next;
    e->room = room;
    e->seq = seq;
    e->t_ns = t_ns;
    e->live = 1;
    *id = o->next++;
    o->live++;
    return 0;
}

static void advance(pb_outbox *o)
{
    while (o->oldest < o->next && !o->slot[o->oldest % PB_OUTBOX_CAP].live)
        o->oldest++;
}

int pb_outbox_done(pb_outbox *o, uint64_t id, uint64_t *t_ns)
{
    if (id < o->oldest || id >= o->next)
        return -ENOENT;
    pb_out *e = &o->slot[id % PB_OUTBOX_CAP];
    if (!e->live || e->id != id)
        return -ENOENT;
    e->live = 0;
    o->live--;
    if (t_ns)
        *t_ns = e->t_ns;
    advance(o);
    return 0;
}

int pb_outbox_done_oldest(pb_outbox *o, uint64_t *t_ns)
{
    advance(o);
    if (o->oldest >= o->next)
        return -ENOENT;
    return pb_outbox_done(o, o->oldest, t_ns);
}

void pb_outbox_each(pb_outbox *o, void (*cb)(const pb_out *e, void *arg), void *arg)
{
    for (uint64_t id = o->oldest; id < o->next; id++) {
        const pb_out *e = &o->slot[id % PB_OUTBOX_CAP];
        if (e->live && e->id == id)
            cb(e, arg);
    }
}
