/* tc_session.c -- what a client does on a live link: rooms, the outbox, the
 * push-to-talk floor, the audio FIFO, and every server frame but `welcome`.
 *
 * The pure modules hold the rules (tc_rooms: exactly once and in order;
 * tc_outbox: what is owed; tc_floor: the floor; tc_audio: voice that must not
 * be lost); this file connects them to the link and to the application's
 * callbacks. Callbacks may call back into the client, even close it, so after
 * each one the code re-checks that the link is still usable before going on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_internal.h"

static const char *const g_floor_names[] = { "idle",   "requesting", "granted",   "taken",
                                             "denied", "revoked",    "suspended", "expired" };

const char *tc_floor_state_name(tc_floor_state s)
{
    return (unsigned)s < sizeof(g_floor_names) / sizeof(g_floor_names[0]) ? g_floor_names[s] : "unknown";
}

static int live(const tc_client *c)
{
    return c->welcomed && !c->local_code;
}

/* Nothing will ever send what is queued now: the client was never started,
 * was closed by the application, or failed (until tc_connect again). */
static int stopped(const tc_client *c)
{
    return c->state == TC_DISCONNECTED || c->state == TC_FAILED;
}

static void emit_floor(tc_client *c, const char *room, tc_floor_state st, uint32_t max_ms, const char *reason)
{
    if (!c->o.cb || !c->o.cb->floor)
        return;
    tc_floor_info fi = { room, st, tc_floor_holder(c->floor, room), max_ms, reason };
    if (fi.holder && !*fi.holder)
        fi.holder = NULL;
    c->o.cb->floor(c, &fi, c->o.arg);
}

static void emit_gap(tc_client *c, const char *room, uint64_t from, uint64_t to, int by_client)
{
    c->st.gaps++;
    if (c->o.cb && c->o.cb->gap) {
        tc_gap g = { room, from, to, by_client };
        c->o.cb->gap(c, &g, c->o.arg);
    }
}

/* ---- the outbox on the link ---------------------------------------------------------- */

static void pump_cb(lws_sorted_usec_list_t *s)
{
    tc_session__pump(lws_container_of(s, tc_client, sul_pump));
}

void tc_session__pump(tc_client *c)
{
    uint64_t now = tc_now_ms(), wait = 0;
    tc_ob_entry *e;
    while (live(c) && (e = tc_outbox_next(c->ob, now, &wait))) {
        char *frame;
        if (e->kind == TC_OB_PUBLISH) {
            frame = tc_frame_publish(e->room, e->id, e->data);
        } else {
            frame = tc_frame_ptt(e->room, e->kind == TC_OB_PTT_REQUEST ? "request" : "release");
            if (e->kind == TC_OB_PTT_REQUEST)
                tc_floor_sent(c->floor, e->room);
        }
        if (tc_link__send(c, frame) < 0)
            return;
        tc_outbox_sent(c->ob, e);
    }
    if (live(c) && wait)
        lws_sul_schedule(tc_loop__ctx(c->loop), 0, &c->sul_pump, pump_cb, (lws_usec_t)wait * 1000);
}

static void ptt_dropped(void *arg, const char *room)
{
    tc_client *c = arg;
    tc_floor_expired(c->floor, room);
    emit_floor(c, room, tc_floor_get(c->floor, room), 0, "request went stale while offline");
}

/* ---- audio ----------------------------------------------------------------------------- */

static void audio_cb(lws_sorted_usec_list_t *s);

static void audio_schedule(tc_client *c, uint64_t ms)
{
    if (lws_dll2_is_detached(&c->sul_audio.list))
        lws_sul_schedule(tc_loop__ctx(c->loop), 0, &c->sul_audio, audio_cb, (lws_usec_t)ms * 1000);
}

static int next_id(tc_client *c, char *out, size_t n)
{
    return snprintf(out, n, "%s-%llu", c->id_prefix, (unsigned long long)++c->id_counter) < (int)n ? 0 : -EINVAL;
}

/* Publishes the oldest chunk; then the next one after the pacing gap. */
static void audio_cb(lws_sorted_usec_list_t *s)
{
    tc_client *c = lws_container_of(s, tc_client, sul_audio);
    const tc_audio_chunk *ch = tc_audio_peek(c->audio);
    char id[TC_MAX_ID + 1];
    if (!ch || !live(c))
        return;
    if (!tc_outbox_has_room(c->ob)) {
        audio_schedule(c, c->o.publish_retry_ms); /* acks will make room */
        return;
    }
    size_t b64len = (ch->len + 2) / 3 * 4 + 1;
    size_t n = b64len + 64;
    char *data = malloc(n);
    if (!data)
        return;
    int off = snprintf(data, n, "{\"n\":%llu,\"audio\":\"", (unsigned long long)ch->n);
    int m = lws_b64_encode_string((const char *)ch->data, (int)ch->len, data + off, (int)(n - (size_t)off - 3));
    if (m < 0 || next_id(c, id, sizeof(id)) < 0) {
        free(data);
        return;
    }
    strcpy(data + off + m, "\"}");
    if (tc_outbox_publish(c->ob, ch->room, id, data, tc_now_ms(), tc_now_us()) == 0) {
        tc_audio_pop(c->audio);
        c->st.audio_sent++;
        tc_session__pump(c);
    }
    free(data);
    if (tc_audio_len(c->audio) && live(c))
        audio_schedule(c, c->o.audio_pacing_ms);
}

int tc_audio_send(tc_client *c, const char *room, const void *chunk, size_t len)
{
    if (!room || !tc_valid_room(room) || !chunk || !len)
        return -EINVAL;
    if (stopped(c))
        return -ENOTCONN;
    int r = tc_audio_push(c->audio, room, chunk, len);
    if (r < 0)
        return r;
    if (live(c))
        audio_schedule(c, 0);
    return 0;
}

/* ---- link events ------------------------------------------------------------------------ */

static void floor_restore(tc_client *c, const char *room)
{
    tc_floor_state st, before = tc_floor_get(c->floor, room);
    if (tc_floor_resumed(c->floor, room, tc_now_ms(), &st) == TC_FA_SEND_REQUEST)
        tc_outbox_ptt(c->ob, room, 1, tc_now_ms());
    if (st != before)
        emit_floor(c, room, st, 0, st == TC_FLOOR_REQUESTING ? "restoring the floor after reconnect" : NULL);
}

void tc_session__welcomed(tc_client *c)
{
    tc_outbox_expire(c->ob, tc_now_ms(), ptt_dropped, c);
    /* Floors of rooms we do not subscribe have no `subscribed` to wait for. */
    for (unsigned i = 0; live(c) && i < tc_floor_count(c->floor); i++) {
        const char *room = tc_floor_room_at(c->floor, i);
        if (!tc_rooms_get(c->rooms, room))
            floor_restore(c, room);
    }
    tc_session__pump(c);
    if (live(c) && tc_audio_len(c->audio))
        audio_schedule(c, 0);
}

static void floor_changed(void *arg, const char *room, tc_floor_state st)
{
    emit_floor(arg, room, st, 0, "link lost while holding the floor");
}

void tc_session__link_down(tc_client *c)
{
    lws_sul_cancel(&c->sul_pump);
    lws_sul_cancel(&c->sul_audio);
    tc_rooms_link_down(c->rooms);
    tc_outbox_link_down(c->ob);
    tc_floor_link_down(c->floor, floor_changed, c);
}

/* ---- frames ------------------------------------------------------------------------------- */

static void on_subscribed(tc_client *c, tc_sframe *f)
{
    tc_sub_result r;
    if (tc_rooms_on_subscribed(c->rooms, f->room, f->epoch, f->seq, f->missed, f->recovered, &r) < 0)
        return;
    if (c->o.cb && c->o.cb->subscribed) {
        tc_subscribed s = { f->room, f->epoch, f->seq, f->missed, f->recovered, f->has_gap,
                            f->gap_from, f->gap_first_available, r.resubscribe, r.epoch_changed };
        c->o.cb->subscribed(c, &s, c->o.arg);
    }
    if (r.gap_by_client)
        emit_gap(c, f->room, r.gap_from, r.gap_to, 1);
    if (live(c) && r.resubscribe) {
        floor_restore(c, f->room);
        tc_session__pump(c);
    }
}

static void on_message(tc_client *c, tc_sframe *f)
{
    uint64_t gf, gt;
    switch (tc_rooms_on_message(c->rooms, f->room, f->epoch, f->seq, &gf, &gt)) {
    case TC_MSG_DELIVER:
        break;
    case TC_MSG_DUPLICATE:
        c->st.duplicates_dropped++;
        return;
    default:
        return;
    }
    if (gf)
        emit_gap(c, f->room, gf, gt, 1);
    c->st.messages++;
    if (c->o.cb && c->o.cb->message) {
        tc_message m = { f->room, f->epoch ? f->epoch : "", f->id ? f->id : "", f->from ? f->from : "",
                         f->seq, f->ts, f->data, f->data_len };
        c->o.cb->message(c, &m, c->o.arg);
    }
}

static void on_ack(tc_client *c, tc_sframe *f)
{
    tc_ob_entry *e = tc_outbox_find(c->ob, f->id);
    if (!e)
        return; /* an ack for a copy we re-sent after its first ack: already reported */
    tc_ack a = { f->id, f->room ? f->room : e->room, f->seq, f->duplicate, 0, NULL, tc_now_us() - e->created_us };
    tc_outbox_remove(c->ob, e);
    c->st.publishes_acked++;
    if (c->o.cb && c->o.cb->ack)
        c->o.cb->ack(c, &a, c->o.arg);
    if (live(c) && tc_audio_len(c->audio))
        audio_schedule(c, 0);
}

static void on_error(tc_client *c, tc_sframe *f)
{
    tc_ob_entry *e = f->id ? tc_outbox_find(c->ob, f->id) : NULL;
    if (e && e->inflight) {
        if (f->code == 4500 || f->code == 4429) {
            /* docs/protocol.md: retrying with the same id is safe. */
            tc_outbox_retry(c->ob, e, tc_now_ms() + c->o.publish_retry_ms);
            tc_session__pump(c);
            return;
        }
        char room[TC_MAX_ROOM + 1], id[TC_MAX_ID + 1];
        snprintf(room, sizeof(room), "%s", e->room);
        snprintf(id, sizeof(id), "%s", e->id);
        tc_ack a = { id, room, 0, 0, f->code ? f->code : 4500, f->reason ? f->reason : "publish failed",
                     tc_now_us() - e->created_us };
        tc_outbox_remove(c->ob, e);
        if (c->o.cb && c->o.cb->ack)
            c->o.cb->ack(c, &a, c->o.arg);
        return;
    }
    if (c->o.cb && c->o.cb->error)
        c->o.cb->error(c, f->code, f->reason ? f->reason : "", c->o.arg);
}

static void on_ptt(tc_client *c, tc_sframe *f)
{
    int st = tc_floor_on_server(c->floor, f->room, f->state, f->holder);
    if (st >= 0)
        emit_floor(c, f->room, (tc_floor_state)st, (uint32_t)f->max_ms, f->reason);
}

static void pass_frame(tc_client *c, tc_sframe *f, const char *buf, size_t len)
{
    if (!c->o.cb || !c->o.cb->frame)
        return;
    char *text = strndup(buf, len);
    if (text) {
        c->o.cb->frame(c, f->type_name, text, c->o.arg);
        free(text);
    }
}

void tc_session__frame(tc_client *c, tc_sframe *f, const char *buf, size_t len)
{
    switch (f->type) {
    case TC_S_MESSAGE:
        on_message(c, f);
        break;
    case TC_S_SUBSCRIBED:
        on_subscribed(c, f);
        break;
    case TC_S_ACK:
        on_ack(c, f);
        break;
    case TC_S_GAP:
        if (tc_rooms_on_gap(c->rooms, f->room, f->gap_from, f->gap_to) == 0)
            emit_gap(c, f->room, f->gap_from, f->gap_to, 0);
        break;
    case TC_S_ERROR:
        on_error(c, f);
        break;
    case TC_S_PING:
        if (live(c))
            tc_link__send(c, tc_frame_simple("pong"));
        break;
    case TC_S_RECONNECT:
        c->hint_valid = 1;
        c->hint_after_ms = f->after_ms > 600000 ? 600000 : (uint32_t)f->after_ms;
        pass_frame(c, f, buf, len);
        break;
    case TC_S_PTT:
        on_ptt(c, f);
        break;
    default:
        pass_frame(c, f, buf, len);
        break;
    }
}

/* ---- rooms ------------------------------------------------------------------------------ */

int tc_subscribe(tc_client *c, const char *room, const char *epoch, int has_seq, uint64_t seq)
{
    int rc = tc_rooms_add(c->rooms, room, epoch, has_seq, seq);
    if (rc < 0 || !live(c))
        return rc;
    tc_room *r = tc_rooms_get(c->rooms, room);
    tc_pos p;
    tc_room_position(r, &p);
    r->link = TC_LINK_SENT;
    tc_link__send(c, tc_frame_subscribe(room, &p));
    return 0;
}

int tc_unsubscribe(tc_client *c, const char *room)
{
    int rc = room ? tc_rooms_remove(c->rooms, room) : -EINVAL;
    if (rc == 0 && live(c))
        tc_link__send(c, tc_frame_unsubscribe(room));
    return rc;
}

int tc_position(tc_client *c, const char *room, char *epoch_buf, size_t epoch_len, uint64_t *seq)
{
    tc_room *r = room ? tc_rooms_get(c->rooms, room) : NULL;
    if (!r)
        return -ENOENT;
    if (epoch_buf && epoch_len)
        snprintf(epoch_buf, epoch_len, "%s", r->epoch);
    if (seq)
        *seq = r->last;
    return 0;
}

/* ---- publish, floor, quality -------------------------------------------------------------- */

int tc_publish(tc_client *c, const char *room, const char *data, const char *id, char *id_out, size_t id_len)
{
    char gen[TC_MAX_ID + 1];
    int rc;
    if (!room || !tc_valid_room(room) || !data || (id && !tc_valid_id(id)))
        return -EINVAL;
    if (!id) {
        if (next_id(c, gen, sizeof(gen)) < 0)
            return -EINVAL;
        id = gen;
    }
    char *compact = tc_json_compact(data);
    if (!compact)
        return -EINVAL;
    if (stopped(c)) {
        free(compact);
        return -ENOTCONN;
    }
    rc = tc_outbox_publish(c->ob, room, id, compact, tc_now_ms(), tc_now_us());
    free(compact);
    if (rc < 0)
        return rc;
    if (id_out && id_len)
        snprintf(id_out, id_len, "%s", id);
    tc_session__pump(c);
    return 0;
}

int tc_ptt_request(tc_client *c, const char *room)
{
    tc_floor_action act;
    if (!room || !tc_valid_room(room))
        return -EINVAL;
    if (stopped(c))
        return -ENOTCONN;
    int rc = tc_floor_request(c->floor, room, tc_now_ms(), &act);
    if (rc < 0)
        return rc == -EALREADY ? 0 : rc;
    if (act == TC_FA_SEND_REQUEST && tc_outbox_ptt(c->ob, room, 1, tc_now_ms()) < 0) {
        tc_floor_expired(c->floor, room);
        emit_floor(c, room, TC_FLOOR_EXPIRED, 0, "outbox full");
        return -ENOBUFS;
    }
    emit_floor(c, room, TC_FLOOR_REQUESTING, 0, NULL);
    tc_session__pump(c);
    return 0;
}

int tc_ptt_release(tc_client *c, const char *room)
{
    tc_floor_action act;
    if (!room || !tc_valid_room(room))
        return -EINVAL;
    if (stopped(c))
        return -ENOTCONN;
    int rc = tc_floor_release(c->floor, room, &act);
    if (rc < 0)
        return rc == -EALREADY ? 0 : rc;
    if (act == TC_FA_SEND_RELEASE)
        tc_outbox_ptt(c->ob, room, 0, tc_now_ms());
    emit_floor(c, room, TC_FLOOR_IDLE, 0, "released");
    tc_session__pump(c);
    return 0;
}

tc_floor_state tc_floor_state_of(tc_client *c, const char *room)
{
    return room ? tc_floor_get(c->floor, room) : TC_FLOOR_IDLE;
}

int tc_send_quality(tc_client *c, uint32_t rtt_ms, double loss_pct, uint32_t jitter_ms, uint32_t bandwidth_kbps)
{
    if (!live(c))
        return -ENOTCONN;
    return tc_link__send(c, tc_frame_quality(rtt_ms, loss_pct, jitter_ms, bandwidth_kbps));
}
