/* subscriber.c -- example-subscriber: a new consumer of Tether's bus events.
 *
 * This is the extension story of docs/extending.md in one file. A process that
 * wants Tether's events (an audit log, analytics, a bot) connects a SUB socket
 * to busd's XPUB side, subscribes to topic prefixes and decodes each message's
 * protobuf Envelope. Nothing else in the suite changes. It prints every event
 * as one JSON object per line on stdout:
 *
 *   example-subscriber [-a] [prefix ...]     (default prefixes: room. presence.)
 *
 *   {"topic":"room.lobby","event":"room_message","source":{...},"source_seq":7,
 *    "ts":...,"room_message":{"room":"lobby","epoch":"...","seq":3,...,"data":{...}}}
 *
 * Room heads and heartbeats are used but not printed unless -a is given.
 * Diagnostics (the effective config, errors) go to stderr, so stdout carries
 * events only and can be piped straight into a consumer.
 *
 * Loss is detected, never assumed away (docs/architecture.md, "The bus"):
 *   - lib/bus.c checks source_seq per (source, topic) and reports a hole as
 *     {"gap":"source",...}: events of that topic from that process were lost.
 *   - Room messages also carry a per-room (epoch, seq). A jump in seq, or a
 *     room head (replayd announces every active room's top each second) ahead
 *     of what arrived, is a {"gap":"room",...}; the missing messages are read
 *     back from replayd (RangeReq over TETHER_REPLAYD) and printed with
 *     "repaired":true, or reported as {"gap":"lost",...} when history no
 *     longer holds them. A newer epoch (Redis lost the room) is {"gap":"epoch"}.
 *   - A message seen twice (replayd re-publishes a retried publish) is
 *     printed once: consumers see each (room, epoch, seq) once.
 *
 * Configuration, like every daemon (TETHER_* variables, logged at start):
 *   TETHER_BUS_OUT  busd's XPUB side              [tcp://127.0.0.1:5551]
 *   TETHER_REPLAYD  replayd, for repairs ("off")  [tcp://127.0.0.1:5560]
 *   TETHER_HTTP     /healthz /readyz /metrics, "off" for none          [off]
 *   TETHER_LOG_LEVEL
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "hmap.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "rpc.h"
#include "zauth.h"
#include "zsock.h"

#define ROOM_IDLE_MS (10 * 60 * 1000) /* forget a room's position after this */
#define HEAD_GRACE_MS 900             /* a head must stay ahead this long to be a gap */
#define REPAIR_TIMEOUT_MS 1000
#define REPAIR_ATTEMPTS 5
#define REPAIR_PAGE 500

/* What we know of one room: the last (epoch, seq) printed. */
typedef struct room_pos {
    char epoch[64];
    uint64_t seq;
    uint64_t head;      /* a head above seq, waiting for its grace period */
    uint64_t head_ms;
    uint64_t seen_ms;
} room_pos;

/* One range read of a gap, [from, to] of a room in an epoch. */
typedef struct repair {
    char room[160];
    char epoch[64];
    uint64_t from, to;
} repair;

static struct {
    loop *l;
    bus *b;
    rpc_client *replayd;
    hmap *rooms;
    FILE *out;
    int all;
    loop_timer sweep;
    metrics_series *m_events, *m_dups, *m_repaired, *m_lost;
    metrics_series *m_gap_source, *m_gap_room, *m_gap_epoch;
} S;

/* ---- JSON output ------------------------------------------------------------------- */

static json_t *json_u64(uint64_t v)
{
    /* jansson integers are signed 64-bit; larger values stay exact as text. */
    if (v > (uint64_t)INT64_MAX) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        return json_string(buf);
    }
    return json_integer((json_int_t)v);
}

static json_t *field_json(const ProtobufCFieldDescriptor *f, const void *p);

/* Any protobuf-c message as a JSON object, by walking its descriptor, so the
 * example keeps working when bus.proto grows new payloads. */
static json_t *pb_json(const ProtobufCMessage *m)
{
    json_t *o = json_object();
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)(base + f->offset);
            size_t sz = f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING
                            ? sizeof(void *)
                        : f->type == PROTOBUF_C_TYPE_BYTES ? sizeof(ProtobufCBinaryData)
                        : f->type == PROTOBUF_C_TYPE_DOUBLE || f->type == PROTOBUF_C_TYPE_INT64 ||
                                f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_SINT64 ||
                                f->type == PROTOBUF_C_TYPE_FIXED64 || f->type == PROTOBUF_C_TYPE_SFIXED64
                            ? 8
                            : 4;
            json_t *a = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(a, field_json(f, arr + k * sz));
            json_object_set_new(o, f->name, a);
        } else {
            json_object_set_new(o, f->name, field_json(f, base + f->offset));
        }
    }
    return o;
}

static json_t *field_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_u64(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return json_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return json_stringn((const char *)b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
        return m ? pb_json(m) : json_null();
    }
    }
    return json_null();
}

static void emit(json_t *o)
{
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (line) {
        fputs(line, S.out);
        fputc('\n', S.out);
        free(line);
    }
    json_decref(o);
}

/* A room message as printed: its data is JSON text, embedded as JSON. */
static json_t *message_json(const Tether__Bus__RoomMessage *m)
{
    json_t *o = pb_json(&m->base);
    json_t *data = m->data ? json_loads(m->data, JSON_DECODE_ANY, NULL) : NULL;
    if (data)
        json_object_set_new(o, "data", data);
    return o;
}

/* The payload's field in bus.proto (its name: "room_message", "presence_event"...). */
static const ProtobufCFieldDescriptor *payload_field(const bus_env *env)
{
    return protobuf_c_message_descriptor_get_field(env->base.descriptor, (unsigned)env->payload_case);
}

static void print_event(const bus_env *env)
{
    const ProtobufCFieldDescriptor *f = payload_field(env);
    const char *name = f ? f->name : "none";
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:I}", "topic", env->topic, "event", name, "source",
                          pb_json(&env->source->base), "source_seq", json_u64(env->source_seq), "ts",
                          (json_int_t)env->ts);
    if (!o)
        return;
    if (env->payload_case == TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE)
        json_object_set_new(o, name, message_json(env->room_message));
    else if (f)
        json_object_set_new(o, name, field_json(f, (const char *)env + f->offset));
    metrics_inc(S.m_events);
    emit(o);
}

/* ---- repair: read a room's missing messages back from replayd ---------------------- */

static void start_repair(const char *room, const char *epoch, uint64_t from, uint64_t to);

static void report_lost(const repair *r, uint64_t from, uint64_t to, const char *why)
{
    metrics_add(S.m_lost, (double)(to - from + 1));
    emit(json_pack("{s:s,s:s,s:s,s:o,s:o,s:s}", "gap", "lost", "room", r->room, "epoch", r->epoch, "from",
                   json_u64(from), "to", json_u64(to), "reason", why));
}

static void on_range(rpc_client *c, int status, const bus_env *rep, void *arg)
{
    (void)c;
    repair *r = arg;
    if (status == -ECANCELED)
        goto out; /* shutting down */
    if (status < 0 || !rep || rep->payload_case != TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REP ||
        rep->range_rep->n_rooms != 1) {
        report_lost(r, r->from, r->to, status < 0 ? "replayd did not answer" : "unexpected reply");
        goto out;
    }
    const Tether__Bus__RangeRoom *rr = rep->range_rep->rooms[0];
    if (strcmp(rr->epoch, r->epoch) != 0) {
        /* History was lost meanwhile: the next live message shows the new epoch. */
        report_lost(r, r->from, r->to, "epoch changed");
        goto out;
    }
    uint64_t next = r->from;
    if (rr->first_available > next) {
        uint64_t end = rr->first_available - 1 < r->to ? rr->first_available - 1 : r->to;
        report_lost(r, next, end, "trimmed from history");
        next = end + 1;
    }
    for (size_t i = 0; i < rr->n_messages; i++) {
        const Tether__Bus__RoomMessage *m = rr->messages[i];
        if (m->seq < next || m->seq > r->to)
            continue;
        char topic[sizeof(r->room) + 8];
        snprintf(topic, sizeof(topic), "room.%s", r->room);
        json_t *o = json_pack("{s:s,s:s,s:b,s:o}", "topic", topic, "event", "room_message", "repaired", 1,
                              "room_message", message_json(m));
        metrics_inc(S.m_repaired);
        emit(o);
        next = m->seq + 1;
    }
    if (next <= r->to) {
        if (rr->more)
            start_repair(r->room, r->epoch, next, r->to); /* one page at a time */
        else
            report_lost(r, next, r->to, "not in history");
    }
out:
    free(r);
}

static void start_repair(const char *room, const char *epoch, uint64_t from, uint64_t to)
{
    repair *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    snprintf(r->room, sizeof(r->room), "%s", room);
    snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
    r->from = from;
    r->to = to;
    if (!S.replayd) {
        report_lost(r, from, to, "TETHER_REPLAYD is off");
        free(r);
        return;
    }
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    Tether__Bus__RangeReq rq = TETHER__BUS__RANGE_REQ__INIT;
    Tether__Bus__RangeItem it = TETHER__BUS__RANGE_ITEM__INIT;
    Tether__Bus__RangeItem *items[1] = { &it };
    it.room = r->room;
    it.epoch = r->epoch;
    it.after_seq = from - 1;
    it.limit = to - from + 1 < REPAIR_PAGE ? (uint32_t)(to - from + 1) : REPAIR_PAGE;
    rq.n_items = 1;
    rq.items = items;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_RANGE_REQ;
    req.range_req = &rq;
    if (rpc_call(S.replayd, &req, REPAIR_TIMEOUT_MS, REPAIR_ATTEMPTS, on_range, r) == 0) {
        report_lost(r, from, to, "out of memory");
        free(r);
    }
}

/* ---- per-room order ---------------------------------------------------------------- */

static room_pos *room_of(const char *room)
{
    room_pos *p = hmap_get(S.rooms, room);
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p || hmap_put(S.rooms, room, p) < 0) {
            free(p);
            return NULL;
        }
    }
    p->seen_ms = loop_now_ms(S.l);
    return p;
}

/* Epochs start with a fixed-width hex time, so a newer one sorts after. */
static int epoch_newer(const char *a, const char *b)
{
    return strlen(a) != strlen(b) || strcmp(a, b) > 0;
}

static void room_gap(const char *room, room_pos *p, uint64_t to)
{
    metrics_inc(S.m_gap_room);
    emit(json_pack("{s:s,s:s,s:s,s:o,s:o}", "gap", "room", "room", room, "epoch", p->epoch, "from",
                   json_u64(p->seq + 1), "to", json_u64(to)));
    start_repair(room, p->epoch, p->seq + 1, to);
}

/* Returns 1 if the message is new and in order now (print it), 0 to drop it. */
static int room_message_in(const Tether__Bus__RoomMessage *m)
{
    room_pos *p = room_of(m->room);
    if (!p)
        return 1;
    if (!p->epoch[0] || strcmp(p->epoch, m->epoch) != 0) {
        if (p->epoch[0] && !epoch_newer(m->epoch, p->epoch))
            return 0; /* a late message of an older epoch */
        if (p->epoch[0]) {
            metrics_inc(S.m_gap_epoch);
            emit(json_pack("{s:s,s:s,s:s,s:s}", "gap", "epoch", "room", m->room, "old_epoch", p->epoch,
                           "epoch", m->epoch));
        }
        snprintf(p->epoch, sizeof(p->epoch), "%s", m->epoch);
        p->seq = m->seq;
        p->head = 0;
        return 1;
    }
    if (m->seq <= p->seq) {
        metrics_inc(S.m_dups);
        return 0;
    }
    if (m->seq > p->seq + 1)
        room_gap(m->room, p, m->seq - 1);
    p->seq = m->seq;
    if (p->head && p->head <= p->seq)
        p->head = 0;
    return 1;
}

/* A head above what arrived may just be ahead of its message (another replayd
 * replica published it): it is a gap only if it is still ahead of us one
 * grace period later. Heads come every second while a room is active. */
static void room_head_in(const Tether__Bus__RoomHead *h)
{
    room_pos *p = room_of(h->room);
    if (!p || !p->epoch[0] || strcmp(p->epoch, h->epoch) != 0)
        return;
    if (h->seq <= p->seq) {
        p->head = 0; /* caught up */
        return;
    }
    uint64_t now = loop_now_ms(S.l);
    if (p->head && now - p->head_ms < HEAD_GRACE_MS)
        return; /* the older claim is still young */
    if (p->head > p->seq) {
        uint64_t to = p->head;
        room_gap(h->room, p, to);
        p->seq = to;
    }
    p->head = h->seq > p->seq ? h->seq : 0;
    p->head_ms = now;
}

static void sweep_rooms(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    uint64_t now = loop_now_ms(l);
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(S.rooms, &it, &k, &v)) {
        room_pos *p = v;
        if (now - p->seen_ms > ROOM_IDLE_MS) {
            hmap_del(S.rooms, k);
            free(p);
        }
    }
}

/* ---- bus callbacks ----------------------------------------------------------------- */

static void on_event(bus *b, const bus_env *env, void *arg)
{
    (void)b;
    (void)arg;
    int print = 1;
    switch (env->payload_case) {
    case TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE:
        print = room_message_in(env->room_message);
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_HEAD:
        room_head_in(env->room_head);
        print = S.all;
        break;
    case TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT:
        print = S.all;
        break;
    default:
        break;
    }
    if (print)
        print_event(env);
}

static void on_gap(bus *b, const char *topic, const Tether__Bus__Source *src, uint64_t expected, uint64_t got,
                   void *arg)
{
    (void)b;
    (void)arg;
    metrics_inc(S.m_gap_source);
    emit(json_pack("{s:s,s:s,s:o,s:o,s:o}", "gap", "source", "topic", topic, "source", pb_json(&src->base),
                   "expected", json_u64(expected), "got", json_u64(got)));
}

static void on_signal(loop *l, int signo, void *arg)
{
    (void)signo;
    (void)arg;
    loop_stop(l);
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: example-subscriber [-a] [topic-prefix ...]\n"
               "  Prints Tether bus events as JSON lines (default prefixes: room. presence.).\n"
               "  -a  also print room heads and heartbeats\n"
               "  env: TETHER_BUS_OUT, TETHER_REPLAYD (or off), TETHER_HTTP (or off), TETHER_LOG_LEVEL\n");
}

int main(int argc, char **argv)
{
    int rc = 1, opt;
    http_server *hs = NULL;
    http_std std = { NULL, NULL };
    /* Events own stdout; the log module writes to stdout too, so its lines
     * are sent to stderr by giving it a stdout that is stderr. */
    int evfd = dup(STDOUT_FILENO);
    S.out = evfd >= 0 ? fdopen(evfd, "w") : NULL;
    if (!S.out || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        perror("example-subscriber: stdout");
        return 1;
    }
    setvbuf(S.out, NULL, _IOLBF, 0);
    log_init("example-subscriber");
    while ((opt = getopt(argc, argv, "ah")) != -1) {
        if (opt == 'a') {
            S.all = 1;
        } else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    const char *bus_out = cfg_str("TETHER_BUS_OUT", "tcp://127.0.0.1:5551");
    const char *replayd = cfg_str("TETHER_REPLAYD", "tcp://127.0.0.1:5560");
    const char *http = cfg_str("TETHER_HTTP", "off");
    cfg_str("TETHER_LOG_LEVEL", "info");
    zauth_require("TETHER_BUS_OUT", bus_out);
    zauth_require("TETHER_REPLAYD", replayd);
    cfg_print();
    signal(SIGPIPE, SIG_IGN);

    S.m_events = metrics_counter("tether_subscriber_events_total", "Events printed.", NULL);
    S.m_dups = metrics_counter("tether_subscriber_duplicates_total", "Room messages seen again and dropped.", NULL);
    S.m_repaired = metrics_counter("tether_subscriber_repaired_total", "Room messages read back from replayd.", NULL);
    S.m_lost = metrics_counter("tether_subscriber_lost_total", "Room messages neither received nor repairable.", NULL);
    S.m_gap_source = metrics_counter("tether_subscriber_gaps_total", "Holes detected.", "kind=\"source\"");
    S.m_gap_room = metrics_counter("tether_subscriber_gaps_total", "Holes detected.", "kind=\"room\"");
    S.m_gap_epoch = metrics_counter("tether_subscriber_gaps_total", "Holes detected.", "kind=\"epoch\"");
    metrics_process_enable(1);

    S.l = loop_new();
    S.rooms = hmap_new();
    if (!S.l || !S.rooms) {
        LOG_ERROR("out of memory", NULL);
        goto out;
    }
    if (loop_signal(S.l, SIGTERM, on_signal, NULL) < 0 || loop_signal(S.l, SIGINT, on_signal, NULL) < 0) {
        LOG_ERROR("cannot watch signals", "{s:s}", "error", strerror(errno));
        goto out;
    }
    if (zauth_start(S.l, zsock_ctx()) < 0) {
        LOG_ERROR("cannot start the bus authentication handler", "{s:s}", "error", zmq_strerror(errno));
        goto out;
    }
    S.b = bus_new(S.l, "example-subscriber", NULL, bus_out);
    if (!S.b) {
        fprintf(stderr, "TETHER_BUS_OUT: cannot connect to '%s': %s\n", bus_out, strerror(errno));
        rc = 2;
        goto out;
    }
    bus_on_event(S.b, on_event, on_gap, NULL);
    const char *defaults[] = { "room.", "presence." };
    int nprefix = optind < argc ? argc - optind : 2;
    for (int i = 0; i < nprefix; i++) {
        const char *p = optind < argc ? argv[optind + i] : defaults[i];
        if (bus_subscribe(S.b, p) < 0) {
            fprintf(stderr, "cannot subscribe to '%s'\n", p);
            goto out;
        }
        LOG_INFO("subscribed", "{s:s}", "prefix", p);
    }
    if (strcmp(replayd, "off") != 0) {
        S.replayd = rpc_client_new(S.l, replayd, "example-subscriber");
        if (!S.replayd) {
            fprintf(stderr, "TETHER_REPLAYD: '%s' is not a usable endpoint list\n", replayd);
            rc = 2;
            goto out;
        }
    }
    if (strcmp(http, "off") != 0) {
        hs = http_server_new(S.l, http, http_std_handler, &std);
        if (!hs) {
            fprintf(stderr, "TETHER_HTTP: cannot listen on '%s': %s\n", http, strerror(errno));
            goto out;
        }
    }
    loop_timer_start(S.l, &S.sweep, 60000, 60000, sweep_rooms, NULL);
    loop_run(S.l);
    rc = 0;
out:
    if (S.l)
        loop_timer_stop(S.l, &S.sweep);
    http_server_free(hs);
    rpc_client_free(S.replayd);
    bus_free(S.b);
    zauth_stop();
    zsock_ctx_term();
    if (S.rooms) {
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(S.rooms, &it, &k, &v)) {
            hmap_del(S.rooms, k);
            free(v);
        }
        hmap_free(S.rooms);
    }
    loop_free(S.l);
    fclose(S.out);
    return rc;
}
