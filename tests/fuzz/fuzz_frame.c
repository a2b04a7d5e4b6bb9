/* fuzz_frame.c -- libFuzzer target for the gateway's client frame decoders.
 *
 * Every input goes through both gw_decode_json and gw_decode_proto: the two
 * formats fail on each other's first byte, so running both costs little and
 * lets a mutation cross from one to the other. Beyond "no crash, no leak"
 * (ASan/UBSan/LeakSanitizer), the target checks what the rest of the gateway
 * relies on, and abort()s when it does not hold:
 *
 *  - a rejected frame leaves no heap field behind, a known error code, a
 *    reason, and an id short enough for the error frame (which must encode);
 *  - an accepted frame has every field within the protocol's limits and
 *    charsets (room, id, session, epoch, positions, rooms, quality ranges);
 *  - an accepted publish round-trips: its data is compact JSON; the `message`
 *    frame built from it by gw_enc_message is valid JSON carrying exactly the
 *    same room/id/from/data (JSON), and unpacks to the same fields (protobuf);
 *  - a JSON frame the JSON decoder accepted, re-sent as the equivalent
 *    protobuf ClientFrame, is accepted by gw_decode_proto with the same fields;
 *  - the publish fast path (gw_frame_fast.c) agrees byte for byte with the
 *    jansson path whenever it does not decline.
 *
 * JSON allows "\u0000" in strings and the decoders may accept it, so the
 * checks parse with JSON_ALLOW_NUL too.
 *
 * The `from` of the round-trip message is the decoded string when the data is
 * a JSON string (so quotes, backslashes and control characters reach the
 * encoder's hand-written escaping), otherwise a fixed name that has them too.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "gw_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const gw_limits lim = { .max_frame = 65536, .max_rooms = 256 };

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_frame: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static int valid_epoch_chars(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GW_MAX_EPOCH)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void check_pos(const gw_pos *p)
{
    CHECK(memchr(p->epoch, 0, sizeof(p->epoch)) != NULL);
    switch (p->kind) {
    case GW_POS_LIVE:
        CHECK(p->seq == 0 && p->epoch[0] == 0);
        break;
    case GW_POS_EXACT:
        CHECK(valid_epoch_chars(p->epoch));
        break;
    case GW_POS_OLDEST:
        CHECK(p->seq == 0 && p->epoch[0] == 0);
        break;
    default:
        CHECK(0);
    }
}

/* What a rejected frame must look like. */
static void check_rejected(int code, const char *why, const gw_cframe *f)
{
    CHECK(code == GW_E_INVALID || code == GW_E_MALFORMED || code == GW_E_TOO_LARGE || code == GW_E_INTERNAL);
    CHECK(why && *why);
    CHECK(!f->rooms && !f->token && !f->data && !f->sdp && !f->candidate && f->nrooms == 0);
    CHECK(strnlen(f->id, sizeof(f->id)) <= GW_MAX_ID);
    /* The error frame that answers it must be encodable in both formats. */
    gw_buf *b = gw_enc_error(1, code, why, f->id);
    CHECK(b);
    Tether__V1__ServerFrame *sf = tether__v1__server_frame__unpack(NULL, b->len, gw_buf_payload(b));
    CHECK(sf && sf->frame_case == TETHER__V1__SERVER_FRAME__FRAME_ERROR && sf->error->code == (uint32_t)code);
    tether__v1__server_frame__free_unpacked(sf, NULL);
    gw_buf_unref(b);
    b = gw_enc_error(0, code, why, f->id);
    CHECK(b);
    json_error_t err;
    json_t *o = json_loadb((const char *)gw_buf_payload(b), b->len, JSON_REJECT_DUPLICATES, &err);
    CHECK(o && json_integer_value(json_object_get(o, "code")) == code);
    json_decref(o);
    gw_buf_unref(b);
}

/* What an accepted frame must look like. */
static void check_accepted(const gw_cframe *f)
{
    CHECK(f->type > GW_C_NONE && f->type <= GW_C_BYE);
    CHECK(strnlen(f->room, sizeof(f->room)) <= GW_MAX_ROOM);
    CHECK(strnlen(f->id, sizeof(f->id)) <= GW_MAX_ID);
    CHECK(strnlen(f->session, sizeof(f->session)) <= GW_MAX_SESSION);
    CHECK(strnlen(f->action, sizeof(f->action)) < sizeof(f->action));
    CHECK(strnlen(f->mid, sizeof(f->mid)) < sizeof(f->mid));
    CHECK(strnlen(f->client, sizeof(f->client)) < sizeof(f->client));
    switch (f->type) {
    case GW_C_HELLO:
        CHECK(f->nrooms <= lim.max_rooms);
        CHECK(!f->session[0] || gw_valid_session(f->session));
        CHECK(!f->token || (strlen(f->token) > 0 && strlen(f->token) <= 8192));
        for (size_t i = 0; i < f->nrooms; i++) {
            CHECK(gw_valid_room(f->rooms[i].room));
            check_pos(&f->rooms[i].pos);
            for (size_t j = 0; j < i; j++)
                CHECK(strcmp(f->rooms[i].room, f->rooms[j].room) != 0);
        }
        break;
    case GW_C_SUBSCRIBE:
        CHECK(gw_valid_room(f->room));
        check_pos(&f->pos);
        break;
    case GW_C_UNSUBSCRIBE:
        CHECK(gw_valid_room(f->room));
        break;
    case GW_C_PUBLISH:
        CHECK(gw_valid_room(f->room) && gw_valid_id(f->id));
        CHECK(f->data && f->data_len == strlen(f->data) && f->data_len > 0);
        break;
    case GW_C_REFRESH:
        CHECK(f->token && strlen(f->token) > 0 && strlen(f->token) <= 8192);
        break;
    case GW_C_QUALITY:
        CHECK(isfinite(f->rtt_ms) && f->rtt_ms >= 0);
        CHECK(isfinite(f->loss_pct) && f->loss_pct >= 0 && f->loss_pct <= 100);
        CHECK(isfinite(f->jitter_ms) && f->jitter_ms >= 0);
        CHECK(isfinite(f->bandwidth_kbps) && f->bandwidth_kbps >= 0);
        break;
    case GW_C_PTT:
        CHECK(gw_valid_room(f->room));
        CHECK(!strcmp(f->action, "request") || !strcmp(f->action, "release"));
        break;
    case GW_C_MEDIA:
        CHECK(gw_valid_room(f->room));
        if (!strcmp(f->action, "offer"))
            CHECK(f->sdp && strlen(f->sdp) > 0 && strlen(f->sdp) <= 32768);
        else if (!strcmp(f->action, "candidate"))
            CHECK(!f->candidate || strlen(f->candidate) <= 1024);
        else
            CHECK(!strcmp(f->action, "leave"));
        break;
    default:
        break;
    }
}

/* The data of an accepted publish is compact JSON (dumping it again changes
 * nothing); the message frames built from it carry it unchanged. */
static void check_publish_roundtrip(const gw_cframe *f)
{
    json_error_t err;
    json_t *dv = json_loads(f->data, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    CHECK(dv);
    char *again = json_dumps(dv, JSON_COMPACT | JSON_ENCODE_ANY);
    CHECK(again && strcmp(again, f->data) == 0);
    free(again);

    const char *from = json_is_string(dv) ? json_string_value(dv) : "u\"s\\e\x01r\x1f/\xc3\xa9";
    gw_msgv m = {
        .room = f->room, .epoch = "ep-1_x", .id = f->id, .from = from, .data = f->data,
        .seq = (uint64_t)INT64_MAX, .ts = INT64_MIN,
    };

    gw_buf *b = gw_enc_message(0, &m);
    CHECK(b && !b->binary);
    json_t *o = json_loadb((const char *)gw_buf_payload(b), b->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!o) {
        fprintf(stderr, "fuzz_frame: gw_enc_message wrote invalid JSON (%s): %.*s\n", err.text, (int)b->len,
                (const char *)gw_buf_payload(b));
        abort();
    }
    CHECK(json_object_size(o) == 8);
    CHECK(!strcmp(json_string_value(json_object_get(o, "type")), "message"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "room")), f->room));
    CHECK(!strcmp(json_string_value(json_object_get(o, "id")), f->id));
    CHECK(!strcmp(json_string_value(json_object_get(o, "epoch")), "ep-1_x"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "from")), from));
    CHECK(json_integer_value(json_object_get(o, "seq")) == INT64_MAX);
    CHECK(json_integer_value(json_object_get(o, "ts")) == INT64_MIN);
    CHECK(json_equal(json_object_get(o, "data"), dv));
    json_decref(o);
    gw_buf_unref(b);

    b = gw_enc_message(1, &m);
    CHECK(b && b->binary);
    Tether__V1__ServerFrame *sf = tether__v1__server_frame__unpack(NULL, b->len, gw_buf_payload(b));
    CHECK(sf && sf->frame_case == TETHER__V1__SERVER_FRAME__FRAME_MESSAGE);
    const Tether__V1__Message *pm = sf->message;
    CHECK(!strcmp(pm->room, f->room) && !strcmp(pm->id, f->id) && !strcmp(pm->from, from));
    CHECK(!strcmp(pm->data, f->data) && !strcmp(pm->epoch, "ep-1_x"));
    CHECK(pm->seq == (uint64_t)INT64_MAX && pm->ts == INT64_MIN);
    tether__v1__server_frame__free_unpacked(sf, NULL);
    gw_buf_unref(b);
    json_decref(dv);
}

static void pos_to_pb(const gw_pos *p, Tether__V1__Position *pp)
{
    tether__v1__position__init(pp);
    if (p->kind == GW_POS_LIVE)
        return;
    pp->has_seq = 1;
    pp->seq = p->seq;
    pp->epoch = (char *)p->epoch;
}

static int pos_eq(const gw_pos *a, const gw_pos *b)
{
    return a->kind == b->kind && a->seq == b->seq && !strcmp(a->epoch, b->epoch);
}

/* A frame the JSON decoder accepted means the same thing as protobuf. */
static void check_proto_twin(const gw_cframe *j)
{
    Tether__V1__ClientFrame cf = TETHER__V1__CLIENT_FRAME__INIT;
    Tether__V1__Publish pub = TETHER__V1__PUBLISH__INIT;
    Tether__V1__Subscribe sub = TETHER__V1__SUBSCRIBE__INIT;
    Tether__V1__Unsubscribe uns = TETHER__V1__UNSUBSCRIBE__INIT;
    Tether__V1__Ptt ptt = TETHER__V1__PTT__INIT;
    Tether__V1__Hello hello = TETHER__V1__HELLO__INIT;
    Tether__V1__Position spos;
    Tether__V1__Hello__RoomsEntry *ents = NULL, **entp = NULL;
    Tether__V1__Position *rpos = NULL;

    switch (j->type) {
    case GW_C_PUBLISH:
        cf.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_PUBLISH;
        pub.room = (char *)j->room;
        pub.id = (char *)j->id;
        pub.data = j->data;
        cf.publish = &pub;
        break;
    case GW_C_SUBSCRIBE:
        cf.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_SUBSCRIBE;
        sub.room = (char *)j->room;
        pos_to_pb(&j->pos, &spos);
        sub.position = &spos;
        cf.subscribe = &sub;
        break;
    case GW_C_UNSUBSCRIBE:
        cf.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_UNSUBSCRIBE;
        uns.room = (char *)j->room;
        cf.unsubscribe = &uns;
        break;
    case GW_C_PTT:
        cf.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_PTT;
        ptt.room = (char *)j->room;
        ptt.action = (char *)j->action;
        cf.ptt = &ptt;
        break;
    case GW_C_HELLO:
        cf.frame_case = TETHER__V1__CLIENT_FRAME__FRAME_HELLO;
        hello.session = (char *)j->session;
        if (j->nrooms) {
            ents = calloc(j->nrooms, sizeof(*ents));
            entp = calloc(j->nrooms, sizeof(*entp));
            rpos = calloc(j->nrooms, sizeof(*rpos));
            CHECK(ents && entp && rpos);
            for (size_t i = 0; i < j->nrooms; i++) {
                tether__v1__hello__rooms_entry__init(&ents[i]);
                ents[i].key = (char *)j->rooms[i].room;
                pos_to_pb(&j->rooms[i].pos, &rpos[i]);
                ents[i].value = &rpos[i];
                entp[i] = &ents[i];
            }
            hello.n_rooms = j->nrooms;
            hello.rooms = entp;
        }
        cf.hello = &hello;
        break;
    default:
        return;
    }

    size_t n = tether__v1__client_frame__get_packed_size(&cf);
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(buf);
    tether__v1__client_frame__pack(&cf, buf);
    gw_cframe p;
    const char *why = NULL;
    int rc = gw_decode_proto(buf, n, &lim, &p, &why);
    /* Compact data can be longer than its source ("1e-7" is dumped as
     * "9.9999999999999995e-08"), so the twin may be over the frame limit. */
    if (rc == GW_E_TOO_LARGE && n > lim.max_frame)
        goto out;
    if (rc != 0) {
        fprintf(stderr, "fuzz_frame: JSON frame accepted, its protobuf twin rejected: %d %s\n", rc, why);
        abort();
    }
    CHECK(p.type == j->type);
    CHECK(!strcmp(p.room, j->room));
    switch (j->type) {
    case GW_C_PUBLISH:
        CHECK(!strcmp(p.id, j->id) && !strcmp(p.data, j->data) && p.data_len == j->data_len);
        break;
    case GW_C_SUBSCRIBE:
        CHECK(pos_eq(&p.pos, &j->pos));
        break;
    case GW_C_PTT:
        CHECK(!strcmp(p.action, j->action));
        break;
    case GW_C_HELLO:
        CHECK(!strcmp(p.session, j->session) && p.nrooms == j->nrooms);
        for (size_t i = 0; i < j->nrooms; i++)
            CHECK(!strcmp(p.rooms[i].room, j->rooms[i].room) && pos_eq(&p.rooms[i].pos, &j->rooms[i].pos));
        break;
    default:
        break;
    }
    gw_cframe_clear(&p);
out:
    free(buf);
    free(ents);
    free(entp);
    free(rpos);
}

/* The publish fast path (gw_frame_fast.c) either declines or decodes
 * exactly what the jansson path decodes; its compactor either declines or
 * writes exactly what jansson dumps. */
static void check_fast_path(const uint8_t *data, size_t size)
{
    gw_cframe fa, sl;
    const char *why = NULL;
    if (size <= lim.max_frame && gw_decode_json_fast((const char *)data, size, &fa)) {
        int rc = gw_decode_json_slow((const char *)data, size, &lim, &sl, &why);
        if (rc != 0) {
            fprintf(stderr, "fuzz_frame: fast path accepted, jansson path said %d %s\n", rc, why);
            abort();
        }
        CHECK(fa.type == GW_C_PUBLISH && sl.type == GW_C_PUBLISH);
        CHECK(!strcmp(fa.room, sl.room) && !strcmp(fa.id, sl.id));
        if (fa.data_len != sl.data_len || memcmp(fa.data, sl.data, fa.data_len + 1) != 0) {
            fprintf(stderr, "fuzz_frame: fast data [%s] != jansson data [%s]\n", fa.data, sl.data);
            abort();
        }
        gw_cframe_clear(&fa);
        gw_cframe_clear(&sl);
    }
    char *c = NULL;
    size_t cl = 0;
    if (gw_json_compact_fast((const char *)data, size, &c, &cl)) {
        json_error_t err;
        json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
        CHECK(v);
        char *again = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        CHECK(again && strlen(again) == cl && !strcmp(again, c));
        free(again);
        json_decref(v);
        free(c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_cframe f;
    const char *why = NULL;

    check_fast_path(data, size);

    int rc = gw_decode_json((const char *)data, size, &lim, &f, &why);
    if (rc) {
        check_rejected(rc, why, &f);
    } else {
        check_accepted(&f);
        if (f.type == GW_C_PUBLISH)
            check_publish_roundtrip(&f);
        check_proto_twin(&f);
    }
    gw_cframe_clear(&f);

    why = NULL;
    rc = gw_decode_proto(data, size, &lim, &f, &why);
    if (rc) {
        check_rejected(rc, why, &f);
    } else {
        check_accepted(&f);
        if (f.type == GW_C_PUBLISH)
            check_publish_roundtrip(&f);
    }
    gw_cframe_clear(&f);
    return 0;
}
