/* gw_frame_enc.c -- server frame encoders for both sub-protocols.
 *
 * The `message` frame is on the fan-out hot path and `ack` on the publish
 * one, so their JSON is written by hand into one buffer (data is already
 * compact JSON validated at publish); the rarer frames go through jansson. Protobuf frames are ServerFrame
 * messages packed straight into the gw_buf.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "gw_frame.h"

gw_buf *gw_buf_new(size_t len, int binary)
{
    gw_buf *b = malloc(sizeof(*b) + GW_PRE + len + 1);
    if (!b)
        return NULL;
    b->refs = 1;
    b->binary = (unsigned)binary;
    b->len = len;
    return b;
}

gw_buf *gw_buf_ref(gw_buf *b)
{
    if (b)
        b->refs++;
    return b;
}

void gw_buf_unref(gw_buf *b)
{
    if (b && --b->refs == 0)
        free(b);
}

/* ---- JSON helpers ----------------------------------------------------------------- */

/* Length of s escaped as a JSON string body. */
static size_t esc_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            n += 2;
        else if (*p < 0x20)
            n += 6;
        else
            n++;
    }
    return n;
}

static char *esc_put(char *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            o += 6;
        } else {
            *o++ = (char)*p;
        }
    }
    return o;
}

static gw_buf *from_json(json_t *o)
{
    if (!o)
        return NULL;
    size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    gw_buf *b = n ? gw_buf_new(n, 0) : NULL;
    if (b)
        json_dumpb(o, (char *)gw_buf_payload(b), n, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return b;
}

static gw_buf *from_pb(const Tether__V1__ServerFrame *f)
{
    size_t n = tether__v1__server_frame__get_packed_size(f);
    gw_buf *b = gw_buf_new(n, 1);
    if (b)
        tether__v1__server_frame__pack(f, gw_buf_payload(b));
    return b;
}

/* NOLINTBEGIN(bugprone-macro-parentheses): var and field are names, not expressions */
#define PB_FRAME(var, kind, field, ptr)                                    \
    Tether__V1__ServerFrame var = TETHER__V1__SERVER_FRAME__INIT;          \
    var.frame_case = TETHER__V1__SERVER_FRAME__FRAME_##kind;              \
    var.field = (ptr)
/* NOLINTEND(bugprone-macro-parentheses) */

/* ---- encoders ------------------------------------------------------------------------ */

gw_buf *gw_enc_message(int proto, const gw_msgv *m)
{
    if (proto) {
        Tether__V1__Message pm = TETHER__V1__MESSAGE__INIT;
        pm.room = (char *)m->room;
        pm.seq = m->seq;
        pm.epoch = (char *)m->epoch;
        pm.id = (char *)m->id;
        pm.from = (char *)m->from;
        pm.ts = m->ts;
        pm.data = (char *)m->data;
        PB_FRAME(f, MESSAGE, message, &pm);
        return from_pb(&f);
    }
    /* {"type":"message","room":"..","seq":N,"epoch":"..","id":"..","from":"..","ts":N,"data":...} */
    size_t dl = strlen(m->data);
    size_t n = 120 + esc_len(m->room) + esc_len(m->epoch) + esc_len(m->id) + esc_len(m->from) + dl + 44;
    gw_buf *b = gw_buf_new(n, 0);
    if (!b)
        return NULL;
    char *o = (char *)gw_buf_payload(b), *start = o;
    o += sprintf(o, "{\"type\":\"message\",\"room\":\"");
    o = esc_put(o, m->room);
    o += sprintf(o, "\",\"seq\":%llu,\"epoch\":\"", (unsigned long long)m->seq);
    o = esc_put(o, m->epoch);
    o += sprintf(o, "\",\"id\":\"");
    o = esc_put(o, m->id);
    o += sprintf(o, "\",\"from\":\"");
    o = esc_put(o, m->from);
    o += sprintf(o, "\",\"ts\":%lld,\"data\":", (long long)m->ts);
    memcpy(o, m->data, dl);
    o += dl;
    *o++ = '}';
    b->len = (size_t)(o - start);
    return b;
}

gw_buf *gw_enc_welcome(int proto, const char *session, const char *user, int resumed, int64_t disconnected_ms,
                       uint32_t heartbeat_ms, uint32_t session_ttl_ms, int64_t token_expires_in_ms)
{
    if (proto) {
        Tether__V1__Welcome w = TETHER__V1__WELCOME__INIT;
        w.session = (char *)session;
        w.user = (char *)user;
        w.resumed = resumed;
        w.disconnected_ms = resumed ? disconnected_ms : 0;
        w.heartbeat_ms = heartbeat_ms;
        w.session_ttl_ms = session_ttl_ms;
        w.token_expires_in_ms = token_expires_in_ms;
        PB_FRAME(f, WELCOME, welcome, &w);
        return from_pb(&f);
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "type", "welcome", "session", session, "user", user, "resumed",
                          resumed);
    if (o && resumed)
        json_object_set_new(o, "disconnected_ms", json_integer(disconnected_ms));
    if (o) {
        json_object_set_new(o, "heartbeat_ms", json_integer(heartbeat_ms));
        json_object_set_new(o, "session_ttl_ms", json_integer(session_ttl_ms));
        json_object_set_new(o, "token_expires_in_ms", json_integer(token_expires_in_ms));
    }
    return from_json(o);
}

gw_buf *gw_enc_subscribed(int proto, const char *room, const char *epoch, uint64_t seq, int recovered,
                          uint32_t missed, const gw_gapv *gap)
{
    if (proto) {
        Tether__V1__Subscribed s = TETHER__V1__SUBSCRIBED__INIT;
        Tether__V1__Gap g = TETHER__V1__GAP__INIT;
        s.room = (char *)room;
        s.epoch = (char *)epoch;
        s.seq = seq;
        s.recovered = recovered;
        s.missed = missed;
        if (gap) {
            g.from = gap->from;
            g.first_available = gap->first_available;
            s.gap = &g;
        }
        PB_FRAME(f, SUBSCRIBED, subscribed, &s);
        return from_pb(&f);
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:b,s:I}", "type", "subscribed", "room", room, "epoch", epoch, "seq",
                          (json_int_t)seq, "recovered", recovered, "missed", (json_int_t)missed);
    if (o && gap)
        json_object_set_new(o, "gap", json_pack("{s:I,s:I}", "from", (json_int_t)gap->from, "first_available",
                                                (json_int_t)gap->first_available));
    return from_json(o);
}

gw_buf *gw_enc_ack(int proto, const char *id, const char *room, uint64_t seq, int duplicate)
{
    if (proto) {
        Tether__V1__Ack a = TETHER__V1__ACK__INIT;
        a.id = (char *)id;
        a.room = (char *)room;
        a.seq = seq;
        a.duplicate = duplicate;
        PB_FRAME(f, ACK, ack, &a);
        return from_pb(&f);
    }
    /* One per publish: written by hand like `message`. */
    gw_buf *b = gw_buf_new(80 + esc_len(id) + esc_len(room), 0);
    if (!b)
        return NULL;
    char *o = (char *)gw_buf_payload(b), *start = o;
    o += sprintf(o, "{\"type\":\"ack\",\"id\":\"");
    o = esc_put(o, id);
    o += sprintf(o, "\",\"room\":\"");
    o = esc_put(o, room);
    o += sprintf(o, "\",\"seq\":%llu,\"duplicate\":%s}", (unsigned long long)seq, duplicate ? "true" : "false");
    b->len = (size_t)(o - start);
    return b;
}

gw_buf *gw_enc_gap(int proto, const char *room, uint64_t from, uint64_t to)
{
    if (proto) {
        Tether__V1__LiveGap g = TETHER__V1__LIVE_GAP__INIT;
        g.room = (char *)room;
        g.from = from;
        g.to = to;
        PB_FRAME(f, GAP, gap, &g);
        return from_pb(&f);
    }
    return from_json(json_pack("{s:s,s:s,s:I,s:I}", "type", "gap", "room", room, "from", (json_int_t)from, "to",
                               (json_int_t)to));
}

gw_buf *gw_enc_error(int proto, int code, const char *reason, const char *id)
{
    if (proto) {
        Tether__V1__Error e = TETHER__V1__ERROR__INIT;
        e.code = (uint32_t)code;
        e.reason = (char *)reason;
        e.id = (char *)(id ? id : "");
        PB_FRAME(f, ERROR, error, &e);
        return from_pb(&f);
    }
    json_t *o = json_pack("{s:s,s:i,s:s}", "type", "error", "code", code, "reason", reason);
    if (o && id && *id)
        json_object_set_new(o, "id", json_string(id));
    return from_json(o);
}

gw_buf *gw_enc_simple(int proto, gw_ctype type)
{
    const char *name = type == GW_C_PING ? "ping" : "pong";
    if (proto) {
        Tether__V1__Empty e = TETHER__V1__EMPTY__INIT;
        Tether__V1__ServerFrame f = TETHER__V1__SERVER_FRAME__INIT;
        if (type == GW_C_PING) {
            f.frame_case = TETHER__V1__SERVER_FRAME__FRAME_PING;
            f.ping = &e;
        } else {
            f.frame_case = TETHER__V1__SERVER_FRAME__FRAME_PONG;
            f.pong = &e;
        }
        return from_pb(&f);
    }
    return from_json(json_pack("{s:s}", "type", name));
}

gw_buf *gw_enc_reconnect(int proto, uint32_t after_ms, const char *reason)
{
    if (proto) {
        Tether__V1__Reconnect r = TETHER__V1__RECONNECT__INIT;
        r.after_ms = after_ms;
        r.reason = (char *)reason;
        PB_FRAME(f, RECONNECT, reconnect, &r);
        return from_pb(&f);
    }
    return from_json(json_pack("{s:s,s:I,s:s}", "type", "reconnect", "after_ms", (json_int_t)after_ms, "reason",
                               reason));
}

gw_buf *gw_enc_quality(int proto, const char *quality, const char *const *recs, size_t nrecs)
{
    if (proto) {
        Tether__V1__QualityEvent q = TETHER__V1__QUALITY_EVENT__INIT;
        q.quality = (char *)quality;
        q.n_recommendations = nrecs;
        q.recommendations = (char **)recs;
        PB_FRAME(f, QUALITY, quality, &q);
        return from_pb(&f);
    }
    json_t *a = json_array();
    for (size_t i = 0; i < nrecs; i++)
        json_array_append_new(a, json_string(recs[i]));
    return from_json(json_pack("{s:s,s:s,s:o}", "type", "quality", "quality", quality, "recommendations", a));
}

gw_buf *gw_enc_presence(int proto, const char *room, const char *user, const char *state,
                        const gw_member *members, size_t nmembers)
{
    if (proto) {
        Tether__V1__Presence p = TETHER__V1__PRESENCE__INIT;
        p.room = (char *)room;
        Tether__V1__Member *mv = NULL, **mp = NULL;
        if (members) {
            mv = calloc(nmembers ? nmembers : 1, sizeof(*mv));
            mp = calloc(nmembers ? nmembers : 1, sizeof(*mp));
            if (!mv || !mp) {
                free(mv);
                free(mp);
                return NULL;
            }
            for (size_t i = 0; i < nmembers; i++) {
                tether__v1__member__init(&mv[i]);
                mv[i].user = (char *)members[i].user;
                mv[i].state = (char *)members[i].state;
                mp[i] = &mv[i];
            }
            p.n_members = nmembers;
            p.members = mp;
        } else {
            p.user = (char *)user;
            p.state = (char *)state;
        }
        PB_FRAME(f, PRESENCE, presence, &p);
        gw_buf *b = from_pb(&f);
        free(mv);
        free(mp);
        return b;
    }
    json_t *o = json_pack("{s:s,s:s}", "type", "presence", "room", room);
    if (!o)
        return NULL;
    if (members) {
        json_t *a = json_array();
        for (size_t i = 0; i < nmembers; i++)
            json_array_append_new(a, json_pack("{s:s,s:s}", "user", members[i].user, "state", members[i].state));
        json_object_set_new(o, "members", a);
    } else {
        json_object_set_new(o, "user", json_string(user));
        json_object_set_new(o, "state", json_string(state));
    }
    return from_json(o);
}

gw_buf *gw_enc_ptt(int proto, const char *room, const char *state, const char *holder, uint32_t max_ms,
                   const char *reason)
{
    if (proto) {
        Tether__V1__PttState p = TETHER__V1__PTT_STATE__INIT;
        p.room = (char *)room;
        p.state = (char *)state;
        p.holder = (char *)(holder ? holder : "");
        p.max_ms = max_ms;
        p.reason = (char *)(reason ? reason : "");
        PB_FRAME(f, PTT, ptt, &p);
        return from_pb(&f);
    }
    json_t *o = json_pack("{s:s,s:s,s:s}", "type", "ptt", "room", room, "state", state);
    if (o && holder && *holder)
        json_object_set_new(o, "holder", json_string(holder));
    if (o && max_ms)
        json_object_set_new(o, "max_ms", json_integer(max_ms));
    if (o && reason && *reason)
        json_object_set_new(o, "reason", json_string(reason));
    return from_json(o);
}

gw_buf *gw_enc_media(int proto, const char *room, const char *action, const char *sdp, const char *candidate,
                     const char *mid, const char *reason)
{
    if (proto) {
        Tether__V1__MediaEvent m = TETHER__V1__MEDIA_EVENT__INIT;
        m.room = (char *)room;
        m.action = (char *)action;
        m.sdp = (char *)(sdp ? sdp : "");
        m.candidate = (char *)(candidate ? candidate : "");
        m.mid = (char *)(mid ? mid : "");
        m.reason = (char *)(reason ? reason : "");
        PB_FRAME(f, MEDIA, media, &m);
        return from_pb(&f);
    }
    json_t *o = json_pack("{s:s,s:s,s:s}", "type", "media", "room", room, "action", action);
    if (o && sdp)
        json_object_set_new(o, "sdp", json_string(sdp));
    if (o && candidate)
        json_object_set_new(o, "candidate", json_string(candidate));
    if (o && mid)
        json_object_set_new(o, "mid", json_string(mid));
    if (o && reason)
        json_object_set_new(o, "reason", json_string(reason));
    return from_json(o);
}
