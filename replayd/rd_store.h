/* rd_store.h -- replayd's Redis data model: append (sequence + store +
 * dedup, one atomic script), range reads and room heads.
 *
 * Two connections: one carries appends and head reads, so that their replies
 * (and what replayd does with them) follow the order Redis executed them in;
 * the other carries range reads, so that a large resume cannot delay acks.
 *
 * Calls take an rd_op the caller embeds in its own request (no allocation
 * here per call); it must stay valid until the callback has run. If a call
 * returns an error its callback never runs.
 *
 * Appends are batched per room: those of one loop iteration for the same
 * room form one batch (at most RD_BATCH_MAX messages), and the iteration's
 * batches go to Redis at its end in as few script calls as RD_CALL_ROOMS,
 * RD_CALL_MSGS and RD_BATCH_BYTES allow, which divides the script's fixed
 * costs (the call itself; each room's meta read and write, TTLs, dedup
 * bucket reads) among them. Nothing waits for a
 * batch to fill; their callbacks run in request order. Callback statuses: 0, or
 * -ETIMEDOUT / -ECONNRESET (Redis did not answer in time, or the connection
 * dropped: the operation may or may not have happened), -EIO (Redis answered
 * with an error), -EPROTO (unexpected reply shape), -ECANCELED (store freed).
 */
#ifndef TETHER_RD_STORE_H
#define TETHER_RD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "redis.h"

#define RD_MAX_ROOM 128
#define RD_MAX_ID 64
#define RD_MAX_USER 128
#define RD_MAX_DATA (64 * 1024)
#define RD_MAX_EPOCH 64
#define RD_RANGE_MAX_LIMIT 1000
#define RD_BATCH_MAX 64           /* appends of one room in one batch */
#define RD_BATCH_BYTES (512 * 1024)
#define RD_CALL_ROOMS 64          /* batches in one script call */
#define RD_CALL_MSGS 256          /* appends in one script call */

typedef struct rd_store rd_store;

typedef struct rd_store_cfg {
    const char *redis_url;
    uint32_t history_size;   /* messages kept per room, at least */
    uint32_t history_burst;  /* at most, counting those kept for their age */
    uint32_t history_min_age_ms; /* younger messages are kept beyond history_size */
    uint32_t history_ttl_s;  /* the message log's TTL, refreshed by each append */
    uint32_t dedup_ttl_s;    /* how long an (user, id) publish is remembered */
    uint32_t meta_ttl_s;     /* the room's {epoch, top}; >= history_ttl_s */
    uint32_t cmd_timeout_ms; /* per Redis command; 0: 1000 */
} rd_store_cfg;

/* One stored message; strings point into the result's reply. */
typedef struct rd_msg {
    uint64_t seq;
    int64_t ts;
    const char *id, *from, *data;
    size_t data_len;
} rd_msg;

typedef struct rd_append_res {
    char epoch[RD_MAX_EPOCH + 1];
    uint64_t seq;
    int64_t ts;
    int duplicate;
    int has_stored;     /* duplicate of a message still in the log: */
    rd_msg stored;      /* its stored copy (valid during the callback) */
} rd_append_res;

/* A range result: new, owned by the callback's receiver (rd_range_res_free). */
typedef struct rd_range_res {
    const char *epoch;        /* "" when the room has no meta */
    uint64_t top;
    uint64_t first_available; /* top + 1 when nothing is stored */
    int more;                 /* the limit was reached before top */
    size_t n;
    rd_msg *msgs;
    redisReply *rep;          /* owns the strings */
} rd_range_res;

typedef void rd_append_cb(int status, const rd_append_res *res, void *arg);
typedef void rd_range_cb(int status, rd_range_res *res, void *arg);
typedef void rd_head_cb(int status, const char *epoch, uint64_t top, void *arg);

typedef struct rd_op rd_op;
struct rd_op {
    rd_store *s;
    union {
        rd_append_cb *append;
        rd_range_cb *range;
        rd_head_cb *head;
    } cb;
    void *arg;
    rd_op *next;     /* append: the next op of its batch */
    const char *room, *user, *id, *data;
    size_t room_len, user_len, id_len, data_len;
    uint64_t after;  /* range: the position asked for, to check the answer */
    int from_oldest;
    const char *floor_epoch; /* append: see rd_floor */
    uint64_t floor_seq;
};

/* What a caller knows of a room: seq was handed out in epoch (a gateway
 * delivered it). Borrowed like the append's strings. */
typedef struct rd_floor {
    const char *epoch;
    uint64_t seq;
} rd_floor;

/* Connects both Redis connections (in the background; see rd_store_ready).
 * cfg is copied. Returns NULL (errno set; EINVAL for a bad URL). */
rd_store *rd_store_new(loop *l, const rd_store_cfg *cfg);
/* Fails pending operations with -ECANCELED (their callbacks run), frees. NULL: no-op. */
void rd_store_free(rd_store *s);

/* Appends one message, or finds the earlier append of (room, user, id).
 * Strings are borrowed until the callback runs (lengths given; validated by
 * the caller). floor (NULL: none) is what the caller knows was handed out
 * in the room: a room whose stored top is below it in the same epoch was
 * rolled back, and starts a new epoch. -ENOTCONN at once when Redis is not
 * connected. */
int rd_store_append(rd_store *s, rd_op *op, const char *room, size_t room_len, const char *user,
                    size_t user_len, const char *id, size_t id_len, const char *data, size_t data_len,
                    const rd_floor *floor, rd_append_cb *cb, void *arg);
/* Reads the room's position and up to limit messages with seq > after_seq
 * (from the oldest stored one when from_oldest). limit is clamped to
 * 1..RD_RANGE_MAX_LIMIT (0: the maximum). */
int rd_store_range(rd_store *s, rd_op *op, const char *room, uint64_t after_seq, uint32_t limit,
                   int from_oldest, rd_range_cb *cb, void *arg);
/* Reads the room's {epoch, top} ("" and 0 when absent), on the append
 * connection: a head read after an append sees at least that append. */
int rd_store_head(rd_store *s, rd_op *op, const char *room, rd_head_cb *cb, void *arg);

void rd_range_res_free(rd_range_res *res);

/* 1 when both connections are up and answer PINGs. */
int rd_store_ready(const rd_store *s);
/* The append (0) and read (1) connections, for health and metrics. */
const redis *rd_store_conn(const rd_store *s, int which);
/* Operations issued and not yet called back. */
size_t rd_store_inflight(const rd_store *s);
/* Appends that found a room in a new epoch although a seq of its previous
 * one was known (meta lost, or Redis rolled back), and rooms with a floor. */
unsigned long long rd_store_epoch_restarts(const rd_store *s);
/* The highest seq this store handed out in room, with its epoch (valid until
 * the next append's answer): 1, or 0 when it does not know the room. */
int rd_store_known(const rd_store *s, const char *room, const char **epoch, uint64_t *seq);
size_t rd_store_known_rooms(const rd_store *s);
/* Append script calls so far (appends / batches = the mean batch size). */
unsigned long long rd_store_batches(const rd_store *s);

/* Writes the random part of a new epoch (8 hex digits + NUL) into buf; the
 * append script puts the creation time in front of it. */
void rd_store_epoch_suffix(rd_store *s, char buf[9]);

#endif
