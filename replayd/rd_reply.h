/* rd_reply.h -- parsing what replayd reads back from Redis: the stored log
 * entries (format in rd_store.c), the append script's per-message results,
 * the range script's reply and the head read's. Redis is trusted to run our
 * scripts, not to hold intact data: every shape and number is checked, and
 * a reply that breaks an invariant is -EPROTO, never a wrong answer.
 */
#ifndef TETHER_RD_REPLY_H
#define TETHER_RD_REPLY_H

#include <stdint.h>

#include "rd_store.h"

/* Parses one stored entry (a string reply) in place: the '|' after id and
 * from become NULs; m's strings point into e. Returns 0 or -EPROTO. */
int rd_reply_entry(redisReply *e, rd_msg *m);
/* One message's result of the append script, {epoch, seq, ts, duplicate
 * [, stored entry]}, into res (res->stored points into e). 0 or -EPROTO. */
int rd_reply_append(const redisReply *e, rd_append_res *res);
/* The range script's reply {epoch, top, first_available, more, entries}
 * for the read op asked for (op->after, op->from_oldest): the epoch at most
 * RD_MAX_EPOCH bytes, 1 <= first_available <= top + 1, the entries
 * contiguous, within [first_available, top] and starting where asked. On
 * success *out is new and has taken rep's contents over (rd_range_res_free).
 * Returns 0, -EPROTO or -ENOMEM. */
int rd_reply_range(redisReply *rep, const rd_op *op, rd_range_res **out);
/* HMGET meta epoch top: *epoch ("" when absent; points into rep) and *top.
 * Returns 0 or -EPROTO (not a two-element array, or an epoch over
 * RD_MAX_EPOCH bytes or with a NUL). */
int rd_reply_head(const redisReply *rep, const char **epoch, uint64_t *top);

#endif
