/* ss_record.h -- a session record as read by the get script, for the
 * SessGetRep and the operators' JSON (GET /v1/sessions/{id}). */
#ifndef TETHER_SS_RECORD_H
#define TETHER_SS_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"
#include "ss_store.h"
#include "ss_valid.h"

typedef struct ss_room_pos {
    const char *room;            /* borrowed from the reply */
    char epoch[SS_MAX_EPOCH + 1];
    uint64_t seq;
    int member;                  /* still a member (joined, or awaiting re-join) */
    int has_pos;                 /* a last delivered position is known */
} ss_room_pos;

/* Strings are borrowed from the reply the record was parsed from. */
typedef struct ss_record {
    const char *session, *user, *gateway, *incarnation, *conn, *client, *why, *quality, *recs;
    int connected;
    int64_t created_ms, last_seen_ms, disconnected_at_ms, expires_ms, quality_at_ms;
    uint32_t disconnects;
    double rtt_ms, loss_pct, jitter_ms, bandwidth_kbps;
    size_t nrooms;
    ss_room_pos *rooms;          /* owned: ss_record_free */
} ss_record;

/* Parses the get script's data (res->code "ok"). Returns 0, -EPROTO or -ENOMEM. */
int ss_record_parse(const ss_res *res, ss_record *rec);
void ss_record_free(ss_record *rec);

/* Fills rep (and the arrays it points to, which the caller provides with
 * rec->nrooms entries each) from rec; everything stays borrowed from rec. */
void ss_record_to_pb(const ss_record *rec, Tether__Bus__SessGetRep *rep, Tether__Bus__RoomPos *pos,
                     Tether__Bus__RoomPos **posp);
/* A new JSON object describing rec (NULL on out-of-memory). */
json_t *ss_record_to_json(const ss_record *rec);

#endif
