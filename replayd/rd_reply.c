/* rd_reply.c -- what replayd reads back from Redis: stored log entries and
 * the replies of its scripts and head reads (see rd_reply.h). Pure functions
 * on hiredis reply trees, apart from any connection, so that they can be
 * fuzzed (tests/fuzz/fuzz_replayd.c). */
#include "rd_reply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int is_int(const redisReply *e) { return e->type == REDIS_REPLY_INTEGER; }
static int is_str(const redisReply *e) { return e->type == REDIS_REPLY_STRING; }

/* Parses one stored entry in place (the data model is in rd_store.c): the '|'
 * after id and from become NULs. Returns 0 or -EPROTO. */
int rd_reply_entry(redisReply *e, rd_msg *m)
{
    char *p = e->str, *end = e->str + e->len, *q;
    unsigned long long seq, idlen, ulen;
    long long ts;
    errno = 0;
    seq = strtoull(p, &q, 10);
    if (q == p || *q != ' ')
        return -EPROTO;
    p = q + 1;
    ts = strtoll(p, &q, 10);
    if (q == p || *q != ' ')
        return -EPROTO;
    p = q + 1;
    idlen = strtoull(p, &q, 10);
    if (q == p || *q != ' ')
        return -EPROTO;
    p = q + 1;
    ulen = strtoull(p, &q, 10);
    if (q == p || *q != '\n' || errno)
        return -EPROTO;
    p = q + 1;
    if (idlen > RD_MAX_ID || ulen > RD_MAX_USER || (size_t)(end - p) < idlen + ulen + 2 || p[idlen] != '|' ||
        p[idlen + 1 + ulen] != '|')
        return -EPROTO;
    m->seq = seq;
    m->ts = ts;
    m->id = p;
    p[idlen] = '\0';
    m->from = p + idlen + 1;
    p[idlen + 1 + ulen] = '\0';
    m->data = p + idlen + ulen + 2;
    m->data_len = (size_t)(end - m->data);
    return 0;
}

int rd_reply_append(const redisReply *e, rd_append_res *res)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 || e->elements > 5 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[0]->len > RD_MAX_EPOCH || strlen(e->element[0]->str) != e->element[0]->len ||
        e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_INTEGER || e->element[3]->type != REDIS_REPLY_INTEGER)
        return -EPROTO;
    memcpy(res->epoch, e->element[0]->str, e->element[0]->len);
    res->epoch[e->element[0]->len] = '\0';
    res->seq = (uint64_t)e->element[1]->integer;
    res->ts = (int64_t)e->element[2]->integer;
    res->duplicate = e->element[3]->integer != 0;
    res->has_stored = 0;
    if (e->elements == 5 && e->element[4]->type == REDIS_REPLY_STRING && e->element[4]->len > 0) {
        /* The reply is ours until the callback returns; parse in place. */
        if (rd_reply_entry((redisReply *)e->element[4], &res->stored) == 0 && res->stored.seq == res->seq)
            res->has_stored = 1;
    }
    return 0;
}

/* Checks the reply's shape and builds the result, taking the reply over. */
int rd_reply_range(redisReply *rep, const rd_op *op, rd_range_res **out)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5 || !is_str(rep->element[0]) ||
        !is_int(rep->element[1]) || !is_int(rep->element[2]) || !is_int(rep->element[3]) ||
        rep->element[4]->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    /* An epoch as the append script makes them ("" for a room without
     * meta), and a position that can be: 1 <= first_available <= top + 1. */
    const redisReply *ep = rep->element[0];
    long long top = rep->element[1]->integer, first = rep->element[2]->integer;
    if (ep->len > RD_MAX_EPOCH || strlen(ep->str) != ep->len || top < 0 || first < 1 || first - 1 > top)
        return -EPROTO;
    redisReply *es = rep->element[4];
    size_t n = es->elements;
    for (size_t i = 0; i < n; i++)
        if (!is_str(es->element[i]))
            return -EPROTO;
    rd_range_res *res = calloc(1, sizeof(*res));
    rd_msg *msgs = n ? calloc(n, sizeof(*msgs)) : NULL;
    redisReply *own = res && (msgs || !n) ? redis_reply_take(rep) : NULL;
    if (!own) {
        free(msgs);
        free(res);
        return -ENOMEM;
    }
    res->rep = own;
    res->msgs = msgs;
    res->n = n;
    res->epoch = own->element[0]->str;
    res->top = (uint64_t)own->element[1]->integer;
    res->first_available = (uint64_t)own->element[2]->integer;
    res->more = own->element[3]->integer != 0;
    es = own->element[4];
    for (size_t i = 0; i < n; i++) {
        /* The seqs must be contiguous and end where asked: a list that lost
         * its invariant is reported, never served as if it were right. */
        if (rd_reply_entry(es->element[i], &msgs[i]) < 0 || (i > 0 && msgs[i].seq != msgs[i - 1].seq + 1) ||
            msgs[i].seq < res->first_available || msgs[i].seq > res->top ||
            (i == 0 && msgs[0].seq != (op->from_oldest || op->after + 1 < res->first_available
                                           ? res->first_available
                                           : op->after + 1))) {
            rd_range_res_free(res);
            return -EPROTO;
        }
    }
    *out = res;
    return 0;
}

void rd_range_res_free(rd_range_res *res)
{
    if (!res)
        return;
    freeReplyObject(res->rep);
    free(res->msgs);
    free(res);
}

int rd_reply_head(const redisReply *rep, const char **epoch, uint64_t *top)
{
    *epoch = "";
    *top = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
        return -EPROTO;
    const redisReply *e = rep->element[0], *t = rep->element[1];
    if (is_str(e) && is_str(t)) {
        if (e->len > RD_MAX_EPOCH || strlen(e->str) != e->len)
            return -EPROTO;
        *epoch = e->str;
        *top = strtoull(t->str, NULL, 10);
    }
    return 0;
}
