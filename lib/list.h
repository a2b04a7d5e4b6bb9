/* list.h -- intrusive circular doubly linked list (in the spirit of the
 * Linux kernel's list.h and libuv's queue.h, written for Tether).
 *
 * A list is a list_node head; an element embeds a list_node and is found
 * back from it with list_entry(). The head links to itself when empty, so
 * insertion and removal never test for the ends. A node is "unlinked" when
 * it points to itself or was never linked (all zeros, as calloc leaves it):
 * list_remove() on an unlinked node is a no-op and list_linked() says 0.
 *
 *   list_node head;  list_init(&head);
 *   list_insert_head(&head, &c->link);
 *   list_foreach_safe(n, tmp, &head) { conn *c = list_entry(n, conn, link); ... }
 *
 * list_foreach_safe() allows removing (even freeing) the current element;
 * list_foreach() allows no removal at all.
 */
#ifndef TETHER_LIST_H
#define TETHER_LIST_H

#include <stddef.h>

typedef struct list_node {
    struct list_node *prev, *next;
} list_node;

/* Static initializer of a head: list_node h = LIST_HEAD_INIT(h); */
#define LIST_HEAD_INIT(h) { &(h), &(h) }

/* The element of type `type` whose member `member` is the node ptr. */
#define list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void list_init(list_node *h) { h->prev = h->next = h; }

static inline int list_empty(const list_node *h) { return h->next == h; }

/* 1 when n is on a list (a node that is not a head). */
static inline int list_linked(const list_node *n) { return n->next != NULL && n->next != n; }

static inline void list_insert_between(list_node *n, list_node *prev, list_node *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

/* Inserts n first / last on h. n must not be linked. */
static inline void list_insert_head(list_node *h, list_node *n) { list_insert_between(n, h, h->next); }
static inline void list_insert_tail(list_node *h, list_node *n) { list_insert_between(n, h->prev, h); }

/* Unlinks n from its list and leaves it unlinked; no-op if it is not linked. */
static inline void list_remove(list_node *n)
{
    if (!list_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* First / last node of h, or NULL when empty. */
static inline list_node *list_first(const list_node *h) { return h->next == h ? NULL : h->next; }
static inline list_node *list_last(const list_node *h) { return h->prev == h ? NULL : h->prev; }

/* The node after n on the list headed by h, or NULL at the end. */
static inline list_node *list_next(const list_node *h, const list_node *n) { return n->next == h ? NULL : n->next; }

#define list_foreach(pos, h) for ((pos) = (h)->next; (pos) != (h); (pos) = (pos)->next)

#define list_foreach_safe(pos, tmp, h) for ((pos) = (h)->next, (tmp) = (pos)->next; (pos) != (h); (pos) = (tmp), (tmp) = (pos)->next)

#endif
