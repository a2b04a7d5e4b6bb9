/* fuzz_sessiond.c -- libFuzzer target for what sessiond reads back from
 * Redis: its scripts' replies (sessiond/ss_reply.c) and the session record
 * of the get script (sessiond/ss_record.c), with the two views made of it,
 * the SessGetRep sent on the bus and the operators' JSON.
 *
 * An input is one reply in RESP, read by hiredis's own reader. Beyond "no
 * crash, no leak", it abort()s unless:
 *   - a parsed reply has a code, changes in threes of strings, and accessors
 *     that answer 0 / NULL outside the data;
 *   - a parsed record has a session and a user, at most one position per
 *     distinct room, epochs within SS_MAX_EPOCH, and exactly the rooms and
 *     positions of its fields (p:<room> "<epoch> <seq>", m:<room>);
 *   - its SessGetRep packs and unpacks to the same session, user and rooms;
 *   - its JSON exists whenever every string in it is UTF-8 (what JSON can
 *     carry), and names the same session and user.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "sessiond/ss_record.h"
#include "sessiond/ss_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_sessiond: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* hiredis 0.14 allocates an array's element vector as soon as it reads the
 * count; a session has at most a few hundred fields. */
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

static int utf8(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    json_decref(j);
    return !s || j != NULL;
}

static void check_res(const redisReply *rep, const ss_res *res)
{
    CHECK(res->code == rep->element[0]->str && res->data == rep->element[2]);
    CHECK(res->changes->elements % 3 == 0 && ss_res_nchanges(res) == res->changes->elements / 3);
    for (size_t i = 0; i < ss_res_nchanges(res); i++) {
        const char *room = NULL, *user = NULL, *state = NULL;
        ss_res_change(res, i, &room, &user, &state);
        CHECK(room && user && state);
    }
    for (size_t i = 0; i <= res->data->elements; i++) {
        const redisReply *e = i < res->data->elements ? res->data->element[i] : NULL;
        if (!e || (e->type != REDIS_REPLY_INTEGER && e->type != REDIS_REPLY_STRING))
            CHECK(ss_res_int(res, i) == 0);
        CHECK((ss_res_str(res, i) != NULL) == (e && e->type == REDIS_REPLY_STRING));
    }
}

/* The record's rooms must be exactly those its fields name. */
static void check_rooms(const ss_res *res, const ss_record *rec)
{
    const redisReply *f = res->data->element[2];
    for (size_t i = 0; i < rec->nrooms; i++) {
        const ss_room_pos *p = &rec->rooms[i];
        int named = 0;
        CHECK(p->room && strlen(p->epoch) <= SS_MAX_EPOCH);
        CHECK(p->member || p->has_pos);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(rec->rooms[j].room, p->room) != 0);
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            const char *k = f->element[j]->str;
            if ((k[0] == 'm' || k[0] == 'p') && k[1] == ':' && strcmp(k + 2, p->room) == 0)
                named = 1;
        }
        CHECK(named);
    }
}

static void check_pb(const ss_record *rec)
{
    Tether__Bus__SessGetRep rep = TETHER__BUS__SESS_GET_REP__INIT, *back;
    Tether__Bus__RoomPos *pos = calloc(rec->nrooms + 1, sizeof(*pos));
    Tether__Bus__RoomPos **posp = calloc(rec->nrooms + 1, sizeof(*posp));
    uint8_t *buf;
    size_t n;

    CHECK(pos && posp);
    ss_record_to_pb(rec, &rep, pos, posp);
    n = tether__bus__sess_get_rep__get_packed_size(&rep);
    CHECK((buf = malloc(n + 1)));
    CHECK(tether__bus__sess_get_rep__pack(&rep, buf) == n);
    back = tether__bus__sess_get_rep__unpack(NULL, n, buf);
    CHECK(back);
    CHECK(back->found && strcmp(back->session, rec->session) == 0 && strcmp(back->user, rec->user) == 0);
    CHECK(back->n_rooms == rec->nrooms && back->connected == (rec->connected != 0));
    for (size_t i = 0; i < rec->nrooms; i++) {
        CHECK(strcmp(back->rooms[i]->room, rec->rooms[i].room) == 0);
        CHECK(strcmp(back->rooms[i]->epoch, rec->rooms[i].epoch) == 0 && back->rooms[i]->seq == rec->rooms[i].seq);
    }
    tether__bus__sess_get_rep__free_unpacked(back, NULL);
    free(buf);
    free(pos);
    free(posp);
}

static void check_json(const ss_record *rec)
{
    json_t *j = ss_record_to_json(rec);
    int all_utf8 = utf8(rec->session) && utf8(rec->user) && utf8(rec->gateway) && utf8(rec->incarnation) &&
                   utf8(rec->conn) && utf8(rec->client) && utf8(rec->why) && utf8(rec->quality) && utf8(rec->recs);

    for (size_t i = 0; i < rec->nrooms; i++)
        all_utf8 = all_utf8 && utf8(rec->rooms[i].room) && utf8(rec->rooms[i].epoch);
    if (!j) {
        CHECK(!all_utf8);
        return;
    }
    CHECK(strcmp(json_string_value(json_object_get(j, "session")), rec->session) == 0);
    CHECK(strcmp(json_string_value(json_object_get(j, "user")), rec->user) == 0);
    char *s = json_dumps(j, JSON_COMPACT);
    CHECK(s);
    free(s);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *r;
    void *v = NULL;
    ss_res res;
    ss_record rec;

    if (!counts_ok((const char *)data, size))
        return 0;
    CHECK((r = redisReaderCreate()));
    if (redisReaderFeed(r, (const char *)data, size) != REDIS_OK || redisReaderGetReply(r, &v) != REDIS_OK)
        v = NULL;
    redisReaderFree(r);
    if (!v)
        return 0;
    redisReply *rep = v;
    memset(&res, 0, sizeof res);
    if (ss_reply_parse(rep, &res) == 0) {
        check_res(rep, &res);
        int rc = ss_record_parse(&res, &rec);
        CHECK(rc == 0 || rc == -EPROTO);
        if (rc == 0) {
            CHECK(rec.session && rec.user && rec.why && rec.quality && rec.recs);
            CHECK(rec.nrooms <= res.data->element[2]->elements / 2);
            check_rooms(&res, &rec);
            check_pb(&rec);
            check_json(&rec);
            ss_record_free(&rec);
        } else {
            CHECK(rec.rooms == NULL);
        }
    }
    freeReplyObject(rep);
    return 0;
}
