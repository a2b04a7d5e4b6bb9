/* fuzz_replayd.c -- libFuzzer target for what replayd reads back from Redis
 * (replayd/rd_reply.c): stored log entries, the append script's results, the
 * range script's reply and the head read's.
 *
 * An input is a first line naming what the rest is, then that rest:
 *   "entry\n<bytes>"                 one stored log entry, as a string reply;
 *   "append\n<RESP>"                 the append call's reply: an array of
 *                                    per-message results, or one result;
 *   "range <after> <from_oldest>\n<RESP>"   a range reply for that request;
 *   "head\n<RESP>"                   the HMGET of a room's meta.
 * RESP goes through hiredis's own reader, so the trees are the ones replayd
 * gets. Beyond "no crash, no leak", it abort()s unless:
 *   - an accepted entry's id, from and data lie inside it, id and from within
 *     RD_MAX_ID and RD_MAX_USER bytes and data up to its end, and the entry
 *     written back in the stored format parses to the same fields;
 *   - an accepted append result has an epoch of at most RD_MAX_EPOCH bytes,
 *     and a stored copy only when its seq is the result's;
 *   - an accepted range has as many messages as entries, contiguous seqs
 *     within [first_available, top] starting where the request asked, an
 *     epoch within limits, and 1 <= first_available <= top + 1;
 *   - a refused range gives no result (and leaks nothing, taken over or not).
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replayd/rd_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_replayd: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* hiredis 0.14 allocates an array's element vector as soon as it reads the
 * count; Redis never sends more than a range's RD_RANGE_MAX_LIMIT entries or
 * an append call's RD_CALL_MSGS results. */
#define MAX_ELEMENTS 4096

/* Whether every "*<count>" is -1 (nil) or 0..MAX_ELEMENTS, as hiredis reads
 * it (optional sign, digits up to the CR). Anywhere, not only at line starts:
 * hiredis 0.14 does not check the CRLF after a bulk string, so what it takes
 * for the next reply may start in the middle of a line. */
static int counts_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '*')
            continue;
        size_t j = i + 1, digits = 0;
        int neg = j < n && s[j] == '-';
        unsigned long long v = 0;
        if (j < n && (s[j] == '-' || s[j] == '+'))
            j++;
        for (; j < n && s[j] >= '0' && s[j] <= '9' && digits < 19; j++, digits++)
            v = v * 10 + (unsigned)(s[j] - '0');
        if (digits == 19 || (neg ? v != 1 : v > MAX_ELEMENTS))
            return 0;
    }
    return 1;
}

/* The first reply in s (n bytes), or NULL. */
static redisReply *read_reply(const char *s, size_t n)
{
    redisReader *r = redisReaderCreate();
    void *rep = NULL;

    CHECK(r);
    if (counts_ok(s, n) && redisReaderFeed(r, s, n) == REDIS_OK && redisReaderGetReply(r, &rep) != REDIS_OK)
        rep = NULL;
    redisReaderFree(r);
    return rep;
}

static int inside(const char *p, const redisReply *e) { return p >= e->str && p <= e->str + e->len; }

static void check_entry(redisReply *e)
{
    static char copy[RD_MAX_DATA * 2], again[RD_MAX_DATA * 2];
    size_t len = e->len;
    rd_msg m, m2;

    if (len >= sizeof copy)
        return;
    memcpy(copy, e->str, len + 1);
    memset(&m, 0x5a, sizeof m);
    if (rd_reply_entry(e, &m) < 0)
        return;
    CHECK(inside(m.id, e) && inside(m.from, e) && inside(m.data, e));
    size_t idlen = (size_t)(m.from - 1 - m.id), ulen = (size_t)(m.data - 1 - m.from);
    CHECK(m.id < m.from && m.from < m.data && idlen <= RD_MAX_ID && ulen <= RD_MAX_USER);
    CHECK(m.id[idlen] == '\0' && m.from[ulen] == '\0' && m.data + m.data_len == e->str + e->len);
    CHECK(copy[(size_t)(m.from - 1 - e->str)] == '|' && copy[(size_t)(m.data - 1 - e->str)] == '|');
    /* Written back in the stored format, it reads the same. */
    int h = snprintf(again, sizeof again, "%llu %lld %zu %zu\n", (unsigned long long)m.seq, (long long)m.ts, idlen,
                     ulen);
    CHECK(h > 0 && (size_t)h + idlen + ulen + 2 + m.data_len < sizeof again);
    size_t o = (size_t)h;
    memcpy(again + o, m.id, idlen);
    o += idlen;
    again[o++] = '|';
    memcpy(again + o, m.from, ulen);
    o += ulen;
    again[o++] = '|';
    memcpy(again + o, m.data, m.data_len);
    o += m.data_len;
    again[o] = '\0';
    redisReply r2 = { .type = REDIS_REPLY_STRING, .len = o, .str = again };
    CHECK(rd_reply_entry(&r2, &m2) == 0);
    CHECK(m2.seq == m.seq && m2.ts == m.ts && m2.data_len == m.data_len);
    CHECK(memcmp(m2.id, m.id, idlen + 1) == 0 && memcmp(m2.from, m.from, ulen + 1) == 0);
    CHECK(memcmp(m2.data, m.data, m.data_len) == 0);
}

static void check_append(const redisReply *e)
{
    rd_append_res res;

    if (rd_reply_append(e, &res) < 0)
        return;
    CHECK(e->type == REDIS_REPLY_ARRAY && (e->elements == 4 || e->elements == 5));
    CHECK(strlen(res.epoch) == e->element[0]->len && strlen(res.epoch) <= RD_MAX_EPOCH);
    CHECK(res.seq == (uint64_t)e->element[1]->integer && res.duplicate == (e->element[3]->integer != 0));
    if (res.has_stored) {
        CHECK(e->elements == 5 && res.stored.seq == res.seq);
        CHECK(inside(res.stored.data, e->element[4]) && res.stored.data + res.stored.data_len ==
                                                            e->element[4]->str + e->element[4]->len);
    }
}

static void check_range(redisReply *rep, uint64_t after, int from_oldest)
{
    rd_op op = { .after = after, .from_oldest = from_oldest };
    rd_range_res *res = NULL;
    size_t n = rep->type == REDIS_REPLY_ARRAY && rep->elements == 5 && rep->element[4]->type == REDIS_REPLY_ARRAY
                   ? rep->element[4]->elements
                   : 0;
    int rc = rd_reply_range(rep, &op, &res);

    CHECK(rc == 0 || rc == -EPROTO);
    if (rc < 0) {
        CHECK(res == NULL);
        return;
    }
    CHECK(res && res->rep && res->n == n && (n == 0 || res->msgs));
    CHECK(rep->elements == 0 && rep->element == NULL);
    CHECK(strlen(res->epoch) <= RD_MAX_EPOCH);
    CHECK(res->first_available >= 1 && res->first_available - 1 <= res->top);
    for (size_t i = 0; i < res->n; i++) {
        const rd_msg *m = &res->msgs[i];
        CHECK(m->seq >= res->first_available && m->seq <= res->top);
        CHECK(i == 0 || m->seq == res->msgs[i - 1].seq + 1);
        CHECK(strlen(m->id) <= RD_MAX_ID && strlen(m->from) <= RD_MAX_USER);
    }
    if (n > 0) {
        uint64_t want = from_oldest || after + 1 < res->first_available ? res->first_available : after + 1;
        CHECK(res->msgs[0].seq == want);
    }
    rd_range_res_free(res);
}

static void check_head(const redisReply *rep)
{
    const char *epoch = NULL;
    uint64_t top = 1;

    if (rd_reply_head(rep, &epoch, &top) < 0) {
        CHECK(epoch && !*epoch && top == 0);
        return;
    }
    CHECK(rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
    CHECK(epoch && strlen(epoch) <= RD_MAX_EPOCH);
    if (*epoch)
        CHECK(rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *nl = memchr(s, '\n', size);
    char mode[64];
    size_t ml, rest;
    redisReply *rep;

    if (!nl || (ml = (size_t)(nl - s)) >= sizeof mode)
        return 0;
    memcpy(mode, s, ml);
    mode[ml] = '\0';
    rest = size - ml - 1;
    if (strcmp(mode, "entry") == 0) {
        char *str = malloc(rest + 1);
        CHECK(str);
        memcpy(str, nl + 1, rest);
        str[rest] = '\0';
        redisReply e = { .type = REDIS_REPLY_STRING, .len = rest, .str = str };
        check_entry(&e);
        free(str);
        return 0;
    }
    if (!(rep = read_reply(nl + 1, rest)))
        return 0;
    unsigned long long after = 0;
    int from_oldest = 0;
    if (strcmp(mode, "append") == 0) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < rep->elements; i++)
                check_append(rep->element[i]);
        else
            check_append(rep);
    } else if (sscanf(mode, "range %llu %d", &after, &from_oldest) == 2) {
        check_range(rep, after, from_oldest != 0);
    } else if (strcmp(mode, "head") == 0) {
        check_head(rep);
    }
    freeReplyObject(rep);
    return 0;
}
