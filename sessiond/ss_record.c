/* ss_record.c -- session records: parse, protobuf and JSON views (see ss_record.h). */
#include "ss_record.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t num(const char *s) { return s ? strtoll(s, NULL, 10) : 0; }
/* A stored measurement; anything JSON cannot carry (nan, inf) reads as 0. */
static double dbl(const char *s)
{
    double d = s ? strtod(s, NULL) : 0;
    return isfinite(d) ? d : 0;
}

static ss_room_pos *room_slot(ss_record *rec, size_t cap, const char *room)
{
    for (size_t i = 0; i < rec->nrooms; i++)
        if (!strcmp(rec->rooms[i].room, room)) /* NOLINT(clang-analyzer-core.NonNullParamChecker): set below */
            return &rec->rooms[i];
    if (rec->nrooms == cap)
        return NULL;
    ss_room_pos *p = &rec->rooms[rec->nrooms++];
    memset(p, 0, sizeof(*p));
    p->room = room;
    return p;
}

int ss_record_parse(const ss_res *res, ss_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    const redisReply *d = res->data;
    if (!d || d->elements != 3 || d->element[0]->type != REDIS_REPLY_STRING ||
        d->element[2]->type != REDIS_REPLY_ARRAY || d->element[2]->elements % 2)
        return -EPROTO;
    const redisReply *f = d->element[2];
    for (size_t i = 0; i < f->elements; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING)
            return -EPROTO;
    rec->session = d->element[0]->str;
    rec->expires_ms = d->element[1]->type == REDIS_REPLY_STRING ? num(d->element[1]->str) : 0;
    size_t cap = f->elements / 2;
    rec->rooms = calloc(cap ? cap : 1, sizeof(*rec->rooms));
    if (!rec->rooms)
        return -ENOMEM;
    rec->why = "";
    rec->quality = "";
    rec->recs = "";
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (!strncmp(k, "m:", 2) || !strncmp(k, "p:", 2)) {
            if (k[0] == 'm' && v[0] == 'X')
                continue;
            /* A position must read "<epoch> <seq>"; one that does not names
             * no room. */
            const int is_pos = k[0] == 'p';
            const char *sp = is_pos ? strchr(v, ' ') : NULL;
            size_t el = sp ? (size_t)(sp - v) : 0;
            if (is_pos && (!sp || el > SS_MAX_EPOCH))
                continue;
            ss_room_pos *p = room_slot(rec, cap, k + 2);
            if (!p)
                continue;
            if (!is_pos) {
                p->member = 1;
            } else {
                memcpy(p->epoch, v, el);
                p->epoch[el] = '\0';
                p->seq = strtoull(sp + 1, NULL, 10);
                p->has_pos = 1;
            }
        } else if (!strcmp(k, "user")) {
            rec->user = v;
        } else if (!strcmp(k, "gw")) {
            rec->gateway = v;
        } else if (!strcmp(k, "inc")) {
            rec->incarnation = v;
        } else if (!strcmp(k, "conn")) {
            rec->conn = v;
        } else if (!strcmp(k, "client")) {
            rec->client = v;
        } else if (!strcmp(k, "dr")) {
            rec->why = v;
        } else if (!strcmp(k, "live")) {
            rec->connected = !strcmp(v, "1");
        } else if (!strcmp(k, "created")) {
            rec->created_ms = num(v);
        } else if (!strcmp(k, "last_seen")) {
            rec->last_seen_ms = num(v);
        } else if (!strcmp(k, "disc_at")) {
            rec->disconnected_at_ms = num(v);
        } else if (!strcmp(k, "disconnects")) {
            rec->disconnects = (uint32_t)num(v);
        } else if (!strcmp(k, "q")) {
            rec->quality = v;
        } else if (!strcmp(k, "q_at")) {
            rec->quality_at_ms = num(v);
        } else if (!strcmp(k, "recs")) {
            rec->recs = v;
        } else if (!strcmp(k, "rtt")) {
            rec->rtt_ms = dbl(v);
        } else if (!strcmp(k, "loss")) {
            rec->loss_pct = dbl(v);
        } else if (!strcmp(k, "jitter")) {
            rec->jitter_ms = dbl(v);
        } else if (!strcmp(k, "bw")) {
            rec->bandwidth_kbps = dbl(v);
        }
    }
    if (!rec->user) {
        ss_record_free(rec);
        return -EPROTO;
    }
    if (rec->connected)
        rec->expires_ms = 0;
    return 0;
}

void ss_record_free(ss_record *rec)
{
    if (!rec)
        return;
    free(rec->rooms);
    rec->rooms = NULL;
    rec->nrooms = 0;
}

void ss_record_to_pb(const ss_record *rec, Tether__Bus__SessGetRep *rep, Tether__Bus__RoomPos *pos,
                     Tether__Bus__RoomPos **posp)
{
    rep->found = 1;
    rep->session = (char *)rec->session;
    rep->user = (char *)rec->user;
    rep->gateway = (char *)(rec->gateway ? rec->gateway : "");
    rep->connected = rec->connected;
    rep->last_seen_ms = rec->last_seen_ms;
    rep->disconnects = rec->disconnects;
    rep->quality = (char *)rec->quality;
    rep->rtt_ms = rec->rtt_ms;
    rep->loss_pct = rec->loss_pct;
    rep->jitter_ms = rec->jitter_ms;
    rep->bandwidth_kbps = rec->bandwidth_kbps;
    rep->created_ms = rec->created_ms;
    rep->expires_ms = rec->expires_ms;
    for (size_t i = 0; i < rec->nrooms; i++) {
        tether__bus__room_pos__init(&pos[i]);
        pos[i].room = (char *)rec->rooms[i].room;
        pos[i].epoch = (char *)rec->rooms[i].epoch;
        pos[i].seq = rec->rooms[i].seq;
        posp[i] = &pos[i];
    }
    rep->n_rooms = rec->nrooms;
    rep->rooms = posp;
}

json_t *ss_record_to_json(const ss_record *rec)
{
    json_t *rooms = json_array(), *recs = json_array();
    if (!rooms || !recs)
        goto fail;
    for (size_t i = 0; i < rec->nrooms; i++) {
        const ss_room_pos *p = &rec->rooms[i];
        json_t *o = json_pack("{s:s,s:b}", "room", p->room, "member", p->member);
        if (!o)
            goto fail;
        if (p->has_pos) {
            json_object_set_new(o, "epoch", json_string(p->epoch));
            json_object_set_new(o, "seq", json_integer((json_int_t)p->seq));
        }
        json_array_append_new(rooms, o);
    }
    for (const char *r = rec->recs; r && *r;) {
        const char *nl = strchr(r, '\n');
        size_t n = nl ? (size_t)(nl - r) : strlen(r);
        json_array_append_new(recs, json_stringn(r, n));
        r = nl ? nl + 1 : r + n;
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:{s:s,s:f,s:f,s:f,s:f,s:I,s:o}}",
                          "session", rec->session, "user", rec->user, "gateway", rec->gateway ? rec->gateway : "",
                          "incarnation", rec->incarnation ? rec->incarnation : "", "conn",
                          rec->conn ? rec->conn : "", "client", rec->client ? rec->client : "", "connected",
                          rec->connected, "disconnect_reason", rec->why, "created_ms", (json_int_t)rec->created_ms,
                          "last_seen_ms", (json_int_t)rec->last_seen_ms, "disconnected_at_ms",
                          (json_int_t)rec->disconnected_at_ms, "expires_ms", (json_int_t)rec->expires_ms,
                          "disconnects", (json_int_t)rec->disconnects, "rooms", rooms, "quality", "level",
                          rec->quality, "rtt_ms", rec->rtt_ms, "loss_pct", rec->loss_pct, "jitter_ms",
                          rec->jitter_ms, "bandwidth_kbps", rec->bandwidth_kbps, "at_ms",
                          (json_int_t)rec->quality_at_ms, "recommendations", recs);
    return o;
fail:
    json_decref(rooms);
    json_decref(recs);
    return NULL;
}
