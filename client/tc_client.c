/* tc_client.c -- a client's life: options, connect and disconnect, the state
 * machine, reconnection decisions, tokens and the per-second sweep.
 *
 * Every link ends in tc_client__link_down() with a close code, and that code
 * alone decides what happens next (docs/protocol.md, close codes):
 *   1000 after our own close or `bye`      -> DISCONNECTED
 *   1000 from the server, 4006, 45xx, 1008 -> FAILED, no retry
 *   4502                                    -> ask the app for a token once,
 *                                              then reconnect at once; a
 *                                              second 4502 before a welcome
 *                                              -> FAILED (no refresh loop)
 *   4003                                    -> forget the session, retry
 *   anything else (1001, 1006, 1012, 1013,
 *   4000, 4001, 4002, connect failures)     -> retry after the backoff
 *                                              delay, or exactly after the
 *                                              `reconnect` hint if one came
 * Frames are handled in tc_session.c; the socket is tc_link.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc_internal.h"

static const char *const g_state_names[] = { "connecting", "connected", "reconnecting", "disconnected", "failed" };

const char *tc_state_name(tc_state s)
{
    return (unsigned)s < sizeof(g_state_names) / sizeof(g_state_names[0]) ? g_state_names[s] : "unknown";
}

void tc_options_init(tc_options *o)
{
    memset(o, 0, sizeof(*o));
    o->url = "ws://127.0.0.1:8080/ws";
    o->client_name = "tether-c/1";
    tc_backoff_defaults(&o->backoff);
    o->outbox_max = 100;
    o->ptt_stale_ms = 2000;
    o->audio_max_chunks = 100;
    o->audio_pacing_ms = 10;
    o->watchdog_grace_ms = 10000;
    o->connect_timeout_ms = 10000;
    o->publish_retry_ms = 1000;
}

tc_state tc_get_state(const tc_client *c) { return c->state; }
const char *tc_session(const tc_client *c) { return c->session; }
uint32_t tc_heartbeat_ms(const tc_client *c) { return c->heartbeat_ms; }
void *tc_client_arg(const tc_client *c) { return c->o.arg; }

void tc_client__set_state(tc_client *c, tc_state s, int code, const char *reason, uint32_t delay_ms, int hinted,
                          int resumed, uint64_t disconnected_ms)
{
    tc_state_info si;
    memset(&si, 0, sizeof(si));
    si.prev = c->state;
    si.state = s;
    si.code = code;
    si.reason = reason ? reason : "";
    si.attempt = c->bo.attempt;
    si.next_delay_ms = delay_ms;
    si.hinted = hinted;
    si.gave_up = s == TC_FAILED && c->gave_up;
    si.resumed = resumed;
    si.disconnected_ms = disconnected_ms;
    si.session = c->session;
    c->state = s;
    if (c->o.cb && c->o.cb->state)
        c->o.cb->state(c, &si, c->o.arg);
}

/* ---- attempts ------------------------------------------------------------------------ */

static void start_attempt(tc_client *c)
{
    c->st.attempts++;
    c->attempt_started_ms = tc_now_ms();
    c->hint_valid = 0;
    c->welcomed = 0;
    tc_link__connect(c);
}

static void retry_cb(lws_sorted_usec_list_t *s)
{
    tc_client *c = lws_container_of(s, tc_client, sul_retry);
    if (c->state == TC_RECONNECTING && !c->awaiting_token && !c->link_active)
        start_attempt(c);
}

static void schedule_attempt(tc_client *c, uint32_t delay_ms)
{
    lws_sul_schedule(tc_loop__ctx(c->loop), 0, &c->sul_retry, retry_cb, (lws_usec_t)delay_ms * 1000);
}

static void fail(tc_client *c, int code, const char *reason)
{
    lws_sul_cancel(&c->sul_retry);
    c->awaiting_token = 0;
    tc_client__set_state(c, TC_FAILED, code, reason, 0, 0, 0, 0);
}

static void retry(tc_client *c, int code, const char *reason)
{
    uint32_t delay = 0;
    int hinted = 0;
    char why[400];
    if (tc_backoff_next(&c->bo, tc_rng_next(&c->rng), &delay) < 0) {
        snprintf(why, sizeof(why), "gave up after %u attempt%s (last: %s)", c->bo.cfg.max_attempts,
                 c->bo.cfg.max_attempts == 1 ? "" : "s", reason);
        c->gave_up = 1;
        fail(c, code, why);
        c->gave_up = 0;
        return;
    }
    if (c->hint_valid) {
        /* The server said when to come back (drain): that beats our guess. */
        delay = c->hint_after_ms;
        hinted = 1;
        c->hint_valid = 0;
    }
    schedule_attempt(c, delay);
    tc_client__set_state(c, TC_RECONNECTING, code, reason, delay, hinted, 0, 0);
}

static void token_expired(tc_client *c, const char *reason)
{
    c->token_streak++;
    if (!c->o.cb || !c->o.cb->token) {
        fail(c, 4502, "token expired (4502) and no token callback to get a new one");
        return;
    }
    if (c->token_streak > 1) {
        /* The token the callback gave us was refused as expired too: asking
         * again would loop for ever on a source that has nothing fresher. */
        fail(c, 4502, "token expired (4502) again with the token the refresh gave: the token source keeps "
                      "returning expired tokens; not reconnecting");
        return;
    }
    c->awaiting_token = 1;
    tc_client__set_state(c, TC_RECONNECTING, 4502, reason, UINT32_MAX, 0, 0, 0);
    int r = c->o.cb->token(c, TC_TOKEN_EXPIRED, c->o.arg);
    if (r < 0 && c->awaiting_token)
        fail(c, 4502, "token expired (4502) and the application has no new token");
}

void tc_client__link_down(tc_client *c, int code, const char *reason)
{
    uint64_t now = tc_now_ms();
    int was_welcomed = c->welcomed;
    char why[200];
    c->welcomed = 0;
    c->refresh_at_ms = 0;
    if (was_welcomed)
        c->down_since_ms = now;
    tc_backoff_down(&c->bo, now);
    tc_session__link_down(c);
    if (c->app_closing) {
        c->app_closing = 0;
        tc_client__set_state(c, TC_DISCONNECTED, code, c->bye_sent ? "left (bye)" : "closed by the application",
                             0, 0, 0, 0);
        return;
    }
    if (c->state == TC_DISCONNECTED || c->state == TC_FAILED)
        return;
    switch (code) {
    case 1000:
        fail(c, code, "the server ended the session (1000): not reconnecting");
        return;
    case 4006:
        fail(c, code, "session taken over by a newer connection (4006): not reconnecting");
        return;
    case 4502:
        token_expired(c, "token expired (4502): waiting for a fresh token");
        return;
    case 4501:
        fail(c, code, "authentication failed (4501): not reconnecting; check the token (tether token)");
        return;
    case 4503:
        fail(c, code, "forbidden (4503): not reconnecting; the token does not allow this");
        return;
    case 4504:
        fail(c, code, "too many connections (4504): not reconnecting");
        return;
    case 4003:
        c->session[0] = 0; /* the server lost it: resubscribe from positions */
        break;
    default:
        if ((code >= 4500 && code <= 4599) || code == 1008) {
            snprintf(why, sizeof(why), "%s: not reconnecting (code %d)", reason, code);
            fail(c, code, why);
            return;
        }
        break;
    }
    retry(c, code, reason);
}

/* ---- tokens ---------------------------------------------------------------------------- */

/* exp (Unix seconds) from a JWT's payload, or -1. The client does not verify
 * the token (the server does); it only needs to know when to refresh. */
static int64_t jwt_exp(const char *tok)
{
    const char *a = tok ? strchr(tok, '.') : NULL;
    const char *b = a ? strchr(a + 1, '.') : NULL;
    int64_t exp = -1;
    if (!a || !b || b - a - 1 > 8192)
        return -1;
    size_t n = (size_t)(b - a - 1);
    char *in = malloc(n + 4), *out = malloc(n + 4);
    if (!in || !out)
        goto out;
    for (size_t i = 0; i < n; i++)
        in[i] = a[1 + i] == '-' ? '+' : a[1 + i] == '_' ? '/' : a[1 + i];
    while (n % 4)
        in[n++] = '=';
    in[n] = 0;
    int m = lws_b64_decode_string(in, out, (int)n + 1);
    if (m <= 0)
        goto out;
    out[m] = 0;
    json_t *o = json_loads(out, 0, NULL);
    json_t *e = json_object_get(o, "exp");
    if (json_is_integer(e))
        exp = (int64_t)json_integer_value(e);
    json_decref(o);
out:
    free(in);
    free(out);
    return exp;
}

void tc_client__plan_refresh(tc_client *c, int64_t exp_in_ms)
{
    c->refresh_at_ms = 0;
    if (c->o.no_refresh || !c->o.cb || !c->o.cb->token || exp_in_ms < 0)
        return;
    /* Ask a fifth of the lifetime ahead, at least 2 s and at most 60 s
     * ahead, so that the sweep's 1 s granularity never makes it late. */
    int64_t lead = exp_in_ms / 5;
    if (lead < 2000)
        lead = 2000;
    if (lead > 60000)
        lead = 60000;
    int64_t at = exp_in_ms > lead ? exp_in_ms - lead : 0;
    c->refresh_at_ms = tc_now_ms() + (uint64_t)at;
    if (!c->refresh_at_ms)
        c->refresh_at_ms = 1;
}

int tc_set_token(tc_client *c, const char *token)
{
    char *t;
    if (!token || !*token)
        return -EINVAL;
    if (!(t = strdup(token)))
        return -ENOMEM;
    free(c->token);
    c->token = t;
    if (c->welcomed) {
        int64_t exp = jwt_exp(t);
        tc_link__send(c, tc_frame_refresh(t));
        if (exp > 0)
            tc_client__plan_refresh(c, exp * 1000 - (int64_t)time(NULL) * 1000);
        return 0;
    }
    if (c->awaiting_token) {
        /* One refresh per expiry: reconnect at once; a second 4502 in a row
         * fails for good (token_expired). */
        c->awaiting_token = 0;
        schedule_attempt(c, 0);
        tc_client__set_state(c, TC_RECONNECTING, 4502, "got a fresh token: reconnecting", 0, 0, 0, 0);
    }
    return 0;
}

/* ---- the link reports -------------------------------------------------------------- */

void tc_client__on_open(tc_client *c)
{
    size_t n = tc_rooms_count(c->rooms);
    tc_hello_room *hr = n ? calloc(n, sizeof(*hr)) : NULL;
    c->last_rx_ms = tc_now_ms();
    if (n && !hr) {
        tc_link__close(c, 1011, "out of memory", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tc_room *r = tc_rooms_at(c->rooms, i);
        hr[i].room = r->name;
        tc_room_position(r, &hr[i].pos);
        r->link = TC_LINK_SENT;
    }
    tc_link__send(c, tc_frame_hello(c->token, c->session, c->client_name, hr, n));
    free(hr);
}

static void on_welcome(tc_client *c, tc_sframe *f)
{
    uint64_t now = tc_now_ms();
    uint64_t down = c->down_since_ms ? now - c->down_since_ms : 0;
    snprintf(c->session, sizeof(c->session), "%s", f->session);
    c->heartbeat_ms = f->heartbeat_ms ? (uint32_t)f->heartbeat_ms : 25000;
    c->welcomed = 1;
    c->down_since_ms = 0;
    c->st.connects++;
    tc_backoff_up(&c->bo, now);
    c->token_streak = 0; /* the token was accepted */
    tc_client__plan_refresh(c, f->token_expires_in_ms);
    tc_client__set_state(c, TC_CONNECTED, 0, f->resumed ? "connected, session resumed" : "connected", 0, 0,
                         f->resumed, down);
    if (c->welcomed && !c->local_code)
        tc_session__welcomed(c);
}

void tc_client__on_frame(tc_client *c, const char *buf, size_t len)
{
    tc_sframe f;
    c->last_rx_ms = tc_now_ms();
    if (tc_sframe_parse(buf, len, &f) < 0)
        return;
    if (f.type == TC_S_WELCOME) {
        if (!c->welcomed)
            on_welcome(c, &f);
    } else {
        tc_session__frame(c, &f, buf, len);
    }
    tc_sframe_clear(&f);
}

void tc_client__sweep(tc_client *c, uint64_t now)
{
    char why[96];
    if (c->link_active && c->wsi && !c->welcomed && !c->local_code &&
        now - c->attempt_started_ms >= c->o.connect_timeout_ms) {
        snprintf(why, sizeof(why), "no welcome within %u ms", c->o.connect_timeout_ms);
        tc_link__close(c, 1006, why, 1);
        return;
    }
    if (!c->welcomed || c->local_code)
        return;
    uint64_t limit = (uint64_t)c->heartbeat_ms + c->o.watchdog_grace_ms;
    if (now - c->last_rx_ms >= limit) {
        snprintf(why, sizeof(why), "nothing received for %llu ms: dead connection", (unsigned long long)limit);
        tc_link__close(c, 1006, why, 1);
        return;
    }
    if (c->refresh_at_ms && now >= c->refresh_at_ms) {
        c->refresh_at_ms = 0;
        if (c->o.cb && c->o.cb->token)
            c->o.cb->token(c, TC_TOKEN_REFRESH, c->o.arg);
    }
}

/* ---- public life cycle ---------------------------------------------------------------- */

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s && *s ? s : dflt);
}

tc_client *tc_client_new(tc_loop *l, const tc_options *o)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    tc_options dflt;
    tc_client *c = NULL;
    if (!l)
        return NULL;
    if (!o) {
        tc_options_init(&dflt);
        o = &dflt;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = l;
    c->o = *o;
    c->url = dup_or(o->url, "ws://127.0.0.1:8080/ws");
    c->client_name = dup_or(o->client_name, "tether-c/1");
    c->token = o->token && *o->token ? strdup(o->token) : NULL;
    c->rooms = tc_rooms_new();
    c->ob = tc_outbox_new(o->outbox_max, o->ptt_stale_ms);
    c->floor = tc_floor_new(o->ptt_stale_ms);
    c->audio = tc_audio_new(o->audio_max_chunks);
    if (!c->url || !c->client_name || (o->token && *o->token && !c->token) || !c->rooms || !c->ob || !c->floor ||
        !c->audio || tc_link__parse_url(c) < 0)
        goto fail;
    if (!c->o.connect_timeout_ms)
        c->o.connect_timeout_ms = 10000;
    if (!c->o.audio_pacing_ms)
        c->o.audio_pacing_ms = 10;
    if (!c->o.publish_retry_ms)
        c->o.publish_retry_ms = 1000;
    if (!c->o.backoff.initial_ms || !c->o.backoff.max_ms)
        tc_backoff_defaults(&c->o.backoff);
    tc_backoff_init(&c->bo, &c->o.backoff);
    tc_rng_seed(&c->rng);
    for (int i = 0; i < 8; i++)
        c->id_prefix[i] = alnum[tc_rng_next(&c->rng) % (sizeof(alnum) - 1)];
    c->heartbeat_ms = 25000;
    c->state = TC_DISCONNECTED;
    tc_loop__add(l, c);
    return c;
fail:
    c->loop = NULL;
    free(c->url);
    free(c->client_name);
    free(c->token);
    tc_rooms_free(c->rooms);
    tc_outbox_free(c->ob);
    tc_floor_free(c->floor);
    tc_audio_free(c->audio);
    free(c);
    return NULL;
}

void tc_client_free(tc_client *c)
{
    if (!c)
        return;
    lws_sul_cancel(&c->sul_retry);
    lws_sul_cancel(&c->sul_pump);
    lws_sul_cancel(&c->sul_audio);
    tc_link__abandon(c);
    tc_loop__remove(c->loop, c);
    free(c->url);
    free(c->client_name);
    free(c->token);
    tc_rooms_free(c->rooms);
    tc_outbox_free(c->ob);
    tc_floor_free(c->floor);
    tc_audio_free(c->audio);
    free(c);
}

int tc_connect(tc_client *c)
{
    if (c->state != TC_DISCONNECTED && c->state != TC_FAILED)
        return 0;
    c->app_closing = 0;
    c->bye_sent = 0;
    c->awaiting_token = 0;
    c->token_streak = 0;
    tc_backoff_reset(&c->bo);
    tc_client__set_state(c, TC_CONNECTING, 0, "connecting", 0, 0, 0, 0);
    if (c->state == TC_CONNECTING)
        start_attempt(c);
    return 0;
}

int tc_disconnect(tc_client *c, int bye)
{
    if (c->state == TC_DISCONNECTED)
        return 0;
    lws_sul_cancel(&c->sul_retry);
    c->awaiting_token = 0;
    if (c->link_active && c->wsi) {
        c->app_closing = 1;
        if (bye && c->welcomed) {
            tc_link__send(c, tc_frame_simple("bye"));
            c->bye_sent = 1;
            c->session[0] = 0;
        }
        tc_link__close(c, 1000, bye ? "bye" : "client disconnect", 0);
        return 0;
    }
    tc_client__set_state(c, TC_DISCONNECTED, 1000, "closed by the application", 0, 0, 0, 0);
    return 0;
}

void tc_get_stats(const tc_client *c, tc_stats *st)
{
    tc_outbox_stats ob;
    *st = c->st;
    tc_outbox_stats_get(c->ob, &ob);
    st->outbox_len = ob.len;
    st->outbox_inflight = ob.inflight;
    st->publishes_resent = ob.resent;
    st->publishes_rejected = ob.publish_rejected;
    st->ptt_stale_dropped = ob.ptt_stale_dropped;
    st->ptt_full_dropped = ob.ptt_full_dropped;
    st->audio_buffered = tc_audio_len(c->audio);
    st->audio_dropped = tc_audio_dropped(c->audio);
}
