/* tc_outbox.h -- what the client owes the server (pure logic, no I/O).
 *
 * Every publish stays here from tc_publish until its ack: queued while the
 * link is down, in flight once sent, back to queued (same id, same order)
 * when the link drops before the ack. Push-to-talk requests and releases
 * wait here only while offline; a request that waited longer than
 * ptt_stale_ms is stale button state and is dropped, not sent.
 *
 * At most max entries (queued + in flight). A publish that finds the outbox
 * full evicts the oldest queued ptt entry if there is one (a publish is data,
 * a ptt request is a button) and is refused otherwise; a ptt entry that finds
 * it full is refused. Every drop is counted.
 *
 * Sending is strictly in order: tc_outbox_next returns the oldest queued
 * entry, or nothing while that one waits for a retry time.
 */
#ifndef TETHER_TC_OUTBOX_H
#define TETHER_TC_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

typedef enum tc_ob_kind {
    TC_OB_PUBLISH = 1,
    TC_OB_PTT_REQUEST,
    TC_OB_PTT_RELEASE,
} tc_ob_kind;

typedef struct tc_ob_entry tc_ob_entry;
struct tc_ob_entry {
    tc_ob_kind kind;
    char *room;
    char *id;              /* publish: the idempotency key */
    char *data;            /* publish: JSON text */
    uint64_t serial;       /* creation order */
    uint64_t created_ms;
    uint64_t created_us;   /* for ack latency */
    uint64_t not_before_ms;/* queued: not sent before this (retry after an error) */
    unsigned sends;        /* times sent so far */
    int inflight;          /* sent on the current link, awaiting its ack */
    tc_ob_entry *prev, *next;
};

typedef struct tc_outbox_stats {
    uint32_t len, inflight, queued;
    uint64_t publish_rejected;   /* refused: full */
    uint64_t ptt_full_dropped;   /* ptt refused or evicted: full */
    uint64_t ptt_stale_dropped;  /* requests older than ptt_stale_ms */
    uint64_t ptt_cancelled;      /* queued requests cancelled by a release */
    uint64_t resent;             /* in-flight publishes requeued for another send */
} tc_outbox_stats;

typedef struct tc_outbox tc_outbox;

/* Returns a new outbox or NULL. max 0 means 100; ptt_stale_ms 0 means 2000. */
tc_outbox *tc_outbox_new(uint32_t max, uint32_t ptt_stale_ms);
/* Frees every entry. NULL is a no-op. */
void tc_outbox_free(tc_outbox *ob);

/* Queues a publish (strings copied). Returns 0, -EEXIST when an entry with
 * this id is already here, -ENOBUFS when full, -ENOMEM. */
int tc_outbox_publish(tc_outbox *ob, const char *room, const char *id, const char *data, uint64_t now_ms,
                      uint64_t now_us);
/* Queues a ptt request (request != 0) or release. A release first removes
 * queued requests for the same room (counted as cancelled). Returns 0,
 * -ENOBUFS when full, -ENOMEM. */
int tc_outbox_ptt(tc_outbox *ob, const char *room, int request, uint64_t now_ms);

/* Drops every queued ptt request older than ptt_stale_ms at now_ms, calling
 * dropped(arg, room) for each before freeing it. Returns how many. */
unsigned tc_outbox_expire(tc_outbox *ob, uint64_t now_ms, void (*dropped)(void *arg, const char *room),
                          void *arg);

/* The oldest queued entry if it may be sent at now_ms, else NULL. When the
 * head waits for a retry time, *wait_ms (if given) gets how long. */
tc_ob_entry *tc_outbox_next(tc_outbox *ob, uint64_t now_ms, uint64_t *wait_ms);
/* e was written to the link: a publish moves to in flight; a ptt entry is
 * freed (e is invalid afterwards). */
void tc_outbox_sent(tc_outbox *ob, tc_ob_entry *e);
/* The publish with this id (queued or in flight), or NULL. */
tc_ob_entry *tc_outbox_find(tc_outbox *ob, const char *id);
/* Removes and frees e (acked, or failed for good). */
void tc_outbox_remove(tc_outbox *ob, tc_ob_entry *e);
/* Puts an in-flight publish back in the queue, in its original place, to be
 * sent again not before not_before_ms (a retryable error). */
void tc_outbox_retry(tc_outbox *ob, tc_ob_entry *e, uint64_t not_before_ms);
/* The link dropped: every in-flight publish is queued again, in order. */
void tc_outbox_link_down(tc_outbox *ob);

void tc_outbox_stats_get(const tc_outbox *ob, tc_outbox_stats *st);
/* Entries (queued + in flight). */
uint32_t tc_outbox_len(const tc_outbox *ob);
/* Non-zero when another publish would be accepted without evicting. */
int tc_outbox_has_room(const tc_outbox *ob);

#endif
