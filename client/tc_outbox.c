/* tc_outbox.c -- what the client owes the server (see tc_outbox.h).
 *
 * Two lists: 'queue' (to send, ordered by serial) and 'fly' (sent on this
 * link, in send order). Acks usually come for the oldest in-flight publish,
 * so looking an id up from the head of 'fly' is short in practice; the
 * outbox is small by design (100 by default), so no index is kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tc_outbox.h"

typedef struct ob_list {
    tc_ob_entry *head, *tail;
    uint32_t n;
} ob_list;

struct tc_outbox {
    uint32_t max;
    uint32_t ptt_stale_ms;
    uint64_t next_serial;
    ob_list queue, fly;
    tc_outbox_stats st;
};

static void list_unlink(ob_list *l, tc_ob_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
    l->n--;
}

static void list_append(ob_list *l, tc_ob_entry *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    l->n++;
}

/* Inserts e by serial, walking from the tail: requeued entries are older
 * than most of the queue, but the common case (a new entry) is an append. */
static void list_insert_sorted(ob_list *l, tc_ob_entry *e)
{
    tc_ob_entry *p = l->tail;
    while (p && p->serial > e->serial)
        p = p->prev;
    if (!p) {
        e->prev = NULL;
        e->next = l->head;
        if (l->head)
            l->head->prev = e;
        else
            l->tail = e;
        l->head = e;
        l->n++;
        return;
    }
    e->prev = p;
    e->next = p->next;
    if (p->next)
        p->next->prev = e;
    else
        l->tail = e;
    p->next = e;
    l->n++;
}

static void entry_free(tc_ob_entry *e)
{
    if (!e)
        return;
    free(e->room);
    free(e->id);
    free(e->data);
    free(e);
}

static void list_clear(ob_list *l)
{
    tc_ob_entry *e = l->head;
    while (e) {
        tc_ob_entry *n = e->next;
        entry_free(e);
        e = n;
    }
    memset(l, 0, sizeof(*l));
}

tc_outbox *tc_outbox_new(uint32_t max, uint32_t ptt_stale_ms)
{
    tc_outbox *ob = calloc(1, sizeof(*ob));
    if (!ob)
        return NULL;
    ob->max = max ? max : 100;
    ob->ptt_stale_ms = ptt_stale_ms ? ptt_stale_ms : 2000;
    return ob;
}

void tc_outbox_free(tc_outbox *ob)
{
    if (!ob)
        return;
    list_clear(&ob->queue);
    list_clear(&ob->fly);
    free(ob);
}

uint32_t tc_outbox_len(const tc_outbox *ob)
{
    return ob->queue.n + ob->fly.n;
}

int tc_outbox_has_room(const tc_outbox *ob)
{
    return tc_outbox_len(ob) < ob->max;
}

static int is_ptt(const tc_ob_entry *e)
{
    return e->kind == TC_OB_PTT_REQUEST || e->kind == TC_OB_PTT_RELEASE;
}

/* Frees the oldest queued ptt entry to make room. Returns 1 if one went. */
static int evict_ptt(tc_outbox *ob)
{
    for (tc_ob_entry *e = ob->queue.head; e; e = e->next) {
        if (is_ptt(e)) {
            list_unlink(&ob->queue, e);
            entry_free(e);
            ob->st.ptt_full_dropped++;
            return 1;
        }
    }
    return 0;
}

tc_ob_entry *tc_outbox_find(tc_outbox *ob, const char *id)
{
    for (tc_ob_entry *e = ob->fly.head; e; e = e->next)
        if (e->kind == TC_OB_PUBLISH && strcmp(e->id, id) == 0)
            return e;
    for (tc_ob_entry *e = ob->queue.head; e; e = e->next)
        if (e->kind == TC_OB_PUBLISH && strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

int tc_outbox_publish(tc_outbox *ob, const char *room, const char *id, const char *data, uint64_t now_ms,
                      uint64_t now_us)
{
    int rc = 0;
    tc_ob_entry *e = NULL;
    if (!room || !id || !data)
        return -EINVAL;
    if (tc_outbox_find(ob, id))
        return -EEXIST;
    if (tc_outbox_len(ob) >= ob->max && !evict_ptt(ob)) {
        ob->st.publish_rejected++;
        return -ENOBUFS;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    e->kind = TC_OB_PUBLISH;
    e->room = strdup(room);
    e->id = strdup(id);
    e->data = strdup(data);
    if (!e->room || !e->id || !e->data) {
        rc = -ENOMEM;
        goto out;
    }
    e->serial = ++ob->next_serial;
    e->created_ms = now_ms;
    e->created_us = now_us;
    list_append(&ob->queue, e);
    e = NULL;
out:
    entry_free(e);
    return rc;
}

int tc_outbox_ptt(tc_outbox *ob, const char *room, int request, uint64_t now_ms)
{
    if (!room)
        return -EINVAL;
    if (!request) {
        /* A release makes a queued request for the same room pointless. */
        for (tc_ob_entry *e = ob->queue.head, *n; e; e = n) {
            n = e->next;
            if (e->kind == TC_OB_PTT_REQUEST && strcmp(e->room, room) == 0) {
                list_unlink(&ob->queue, e);
                entry_free(e);
                ob->st.ptt_cancelled++;
            }
        }
    }
    if (tc_outbox_len(ob) >= ob->max) {
        ob->st.ptt_full_dropped++;
        return -ENOBUFS;
    }
    tc_ob_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->kind = request ? TC_OB_PTT_REQUEST : TC_OB_PTT_RELEASE;
    e->room = strdup(room);
    if (!e->room) {
        free(e);
        return -ENOMEM;
    }
    e->serial = ++ob->next_serial;
    e->created_ms = now_ms;
    list_append(&ob->queue, e);
    return 0;
}

unsigned tc_outbox_expire(tc_outbox *ob, uint64_t now_ms, void (*dropped)(void *arg, const char *room), void *arg)
{
    unsigned n = 0;
    for (tc_ob_entry *e = ob->queue.head, *nx; e; e = nx) {
        nx = e->next;
        if (e->kind != TC_OB_PTT_REQUEST || now_ms < e->created_ms || now_ms - e->created_ms < ob->ptt_stale_ms)
            continue;
        list_unlink(&ob->queue, e);
        if (dropped)
            dropped(arg, e->room);
        entry_free(e);
        ob->st.ptt_stale_dropped++;
        n++;
    }
    return n;
}

tc_ob_entry *tc_outbox_next(tc_outbox *ob, uint64_t now_ms, uint64_t *wait_ms)
{
    tc_ob_entry *e = ob->queue.head;
    if (wait_ms)
        *wait_ms = 0;
    if (!e)
        return NULL;
    if (e->not_before_ms > now_ms) {
        if (wait_ms)
            *wait_ms = e->not_before_ms - now_ms;
        return NULL;
    }
    return e;
}

void tc_outbox_sent(tc_outbox *ob, tc_ob_entry *e)
{
    if (e->inflight)
        return;
    list_unlink(&ob->queue, e);
    if (e->kind != TC_OB_PUBLISH) {
        entry_free(e);
        return;
    }
    e->sends++;
    e->inflight = 1;
    list_append(&ob->fly, e);
}

void tc_outbox_remove(tc_outbox *ob, tc_ob_entry *e)
{
    list_unlink(e->inflight ? &ob->fly : &ob->queue, e);
    entry_free(e);
}

void tc_outbox_retry(tc_outbox *ob, tc_ob_entry *e, uint64_t not_before_ms)
{
    if (!e->inflight)
        return;
    list_unlink(&ob->fly, e);
    e->inflight = 0;
    e->not_before_ms = not_before_ms;
    ob->st.resent++;
    list_insert_sorted(&ob->queue, e);
}

void tc_outbox_link_down(tc_outbox *ob)
{
    while (ob->fly.head) {
        tc_ob_entry *e = ob->fly.head;
        list_unlink(&ob->fly, e);
        e->inflight = 0;
        e->not_before_ms = 0;
        ob->st.resent++;
        list_insert_sorted(&ob->queue, e);
    }
}

void tc_outbox_stats_get(const tc_outbox *ob, tc_outbox_stats *st)
{
    *st = ob->st;
    st->len = tc_outbox_len(ob);
    st->inflight = ob->fly.n;
    st->queued = ob->queue.n;
}
