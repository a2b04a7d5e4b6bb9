/* test_gw_order.c -- scenario tables for the gateway's ordering core
 * (gateway/gw_order.c): in-order delivery, duplicates, held messages before
 * the first read, the first-message race, gaps repaired and unrepairable,
 * head announcements, epoch changes in the middle of a read, repair failures,
 * the pending list's bound and the ring that late joiners catch up from.
 *
 * Each step feeds the core one event and compares the actions it emitted,
 * written as a string ("D3" delivered live, "d3" delivered by a repair read,
 * "G3-7" declared lost, "E8/10" new epoch with first_available 8 and top 10,
 * "R20" repair wanted in 20 ms), with what the step expects, then the head.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/gw_order.c"

enum { LIVE = 1, HEAD, LEARN, TIMER, REPLY, FAIL };

typedef struct step {
    const char *epoch;
    uint64_t seq;      /* LIVE, HEAD: the seq; LEARN, REPLY: top */
    uint64_t fa;       /* LEARN, REPLY: first_available */
    const char *msgs;  /* LEARN, REPLY: the seqs in the reply, "3 4 5" */
    const char *want;  /* the actions; TIMER: the read ("oldest/1", "E>4/500") or "-" */
    uint64_t head;     /* after the step */
    int ev;
    int learn;         /* LEARN: the expected result */
    int more;          /* REPLY: replayd has more */
} step;

/* One step: event, epoch, seq or top, first_available, the reply's seqs,
 * the actions expected, the learn result expected, head after, more. */
#define S(ev_, ep_, seq_, fa_, msgs_, want_, learn_, head_, more_)                                                \
    { .ev = (ev_), .epoch = (ep_), .seq = (seq_), .fa = (fa_), .msgs = (msgs_), .want = (want_), .learn = (learn_), \
      .head = (head_), .more = (more_) }

typedef struct rec {
    char log[512];
} rec;

static void emit(void *arg, const gw_order_act *a)
{
    rec *r = arg;
    char one[64];
    switch (a->kind) {
    case GW_OA_DELIVER:
        snprintf(one, sizeof(one), "%c%llu", a->repaired ? 'd' : 'D', (unsigned long long)a->msg->seq);
        break;
    case GW_OA_GAP:
        snprintf(one, sizeof(one), "G%llu-%llu", (unsigned long long)a->from, (unsigned long long)a->to);
        break;
    case GW_OA_EPOCH:
        snprintf(one, sizeof(one), "E%llu/%llu", (unsigned long long)a->from, (unsigned long long)a->to);
        break;
    default:
        snprintf(one, sizeof(one), "R%llu", (unsigned long long)a->delay_ms);
        break;
    }
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof(r->log) - n, "%s%s", n ? " " : "", one);
}

static size_t parse_msgs(const char *s, gw_order_in *out, size_t cap)
{
    size_t n = 0;
    char *end;
    while (s && *s && n < cap) {
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s)
            break;
        out[n++] = (gw_order_in){ v, (int64_t)v * 10, "id", "u", "{}" };
        s = end;
    }
    return n;
}

static void run(const step *steps, size_t nsteps, uint32_t ring, uint32_t pend_max)
{
    rec r = { "" };
    gw_order *o = gw_order_new(ring, pend_max, 500, NULL, emit, &r);
    assert_non_null(o);
    for (size_t i = 0; i < nsteps; i++) {
        const step *s = &steps[i];
        gw_order_in msgs[16];
        gw_order_range rr = { s->epoch, s->seq, s->fa, s->more, 0, msgs };
        gw_order_read rd = { 0 };
        char got[512];
        r.log[0] = 0;
        switch (s->ev) {
        case LIVE: {
            gw_order_in m = { s->seq, 1, "id", "u", "{}" };
            gw_order_on_live(o, s->epoch, &m);
            break;
        }
        case HEAD:
            gw_order_on_head(o, s->epoch, s->seq);
            break;
        case LEARN:
            rr.n = parse_msgs(s->msgs, msgs, 16);
            assert_int_equal(gw_order_learn(o, &rr), s->learn);
            break;
        case TIMER:
            if (!gw_order_repair_next(o, &rd))
                snprintf(r.log, sizeof(r.log), "-");
            else if (rd.from_oldest)
                snprintf(r.log, sizeof(r.log), "oldest/%u", rd.limit);
            else
                snprintf(r.log, sizeof(r.log), "%s>%llu/%u", rd.epoch, (unsigned long long)rd.after_seq, rd.limit);
            break;
        case REPLY:
            rr.n = parse_msgs(s->msgs, msgs, 16);
            gw_order_on_repair(o, &rr);
            break;
        case FAIL:
            gw_order_on_repair(o, NULL);
            break;
        }
        snprintf(got, sizeof(got), "%s", r.log);
        if (strcmp(got, s->want ? s->want : "") != 0)
            fail_msg("step %zu: actions '%s', expected '%s'", i, got, s->want ? s->want : "");
        if (gw_order_head(o) != s->head)
            fail_msg("step %zu: head %llu, expected %llu", i, (unsigned long long)gw_order_head(o),
                     (unsigned long long)s->head);
    }
    gw_order_free(o);
}

#define RUN(t, ring, pend) run((t), sizeof(t) / sizeof((t)[0]), (ring), (pend))

/* Epochs as replayd makes them: a fixed-width hex time first. */
#define E1 "0000000a-x"
#define E2 "0000000b-y"
#define E0 "00000009-w"

static void test_in_order_and_duplicates(void **state)
{
    (void)state;
    static const step t[] = {
        S(LEARN, E1, 0, 0, NULL, "", GW_LEARN_OK, 0, 0),
        S(LIVE, E1, 1, 0, NULL, "D1", 0, 1, 0),
        S(LIVE, E1, 2, 0, NULL, "D2", 0, 2, 0),
        S(LIVE, E1, 2, 0, NULL, "", 0, 2, 0),  /* duplicate */
        S(LIVE, E1, 1, 0, NULL, "", 0, 2, 0),  /* old */
        S(LIVE, E0, 3, 0, NULL, "", 0, 2, 0),  /* an older epoch's late message */
        S(LIVE, E1, 3, 0, NULL, "D3", 0, 3, 0),
        S(TIMER, NULL, 0, 0, NULL, "-", 0, 3, 0), /* nothing missing: no read */
    };
    RUN(t, 16, 8);
}

static void test_gap_repaired_in_order(void **state)
{
    (void)state;
    static const step t[] = {
        S(LEARN, E1, 2, 1, NULL, "", GW_LEARN_OK, 2, 0),
        S(LIVE, E1, 5, 0, NULL, "R20", 0, 2, 0), /* early: held, repair */
        S(LIVE, E1, 5, 0, NULL, "R20", 0, 2, 0), /* a duplicate of a held one */
        S(LIVE, E1, 6, 0, NULL, "R20", 0, 2, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">2/500", 0, 2, 0),
        S(LIVE, E1, 7, 0, NULL, "", 0, 2, 0),    /* repairing: no second read */
        /* The reply brings 3..4; 5..7 come from the held ones, in order. */
        S(REPLY, E1, 7, 1, "3 4", "d3 d4 D5 D6 D7", 0, 7, 0),
        S(TIMER, NULL, 0, 0, NULL, "-", 0, 7, 0),
    };
    RUN(t, 16, 8);
}

static void test_gap_unrepairable(void **state)
{
    (void)state;
    static const step t[] = {
        S(LEARN, E1, 2, 1, NULL, "", GW_LEARN_OK, 2, 0),
        S(LIVE, E1, 10, 0, NULL, "R20", 0, 2, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">2/500", 0, 2, 0),
        /* 3..7 were trimmed: a gap, never silence, then 8..10. */
        S(REPLY, E1, 10, 8, "8 9", "G3-7 d8 d9 D10", 0, 10, 0),
        S(LIVE, E1, 14, 0, NULL, "R20", 0, 10, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">10/500", 0, 10, 0),
        /* Nothing left of 11..14 at all. */
        S(REPLY, E1, 14, 15, "", "G11-14", 0, 14, 0),
    };
    RUN(t, 16, 8);
}

static void test_held_before_first_read(void **state)
{
    (void)state;
    /* A late joiner's room: live messages arrive before the first read
     * says where the room is; they wait, then follow the read's top. */
    static const step t[] = {
        S(LIVE, E1, 5, 0, NULL, "", 0, 0, 0),
        S(LIVE, E1, 4, 0, NULL, "", 0, 0, 0),
        S(TIMER, NULL, 0, 0, NULL, "oldest/1", 0, 0, 0), /* unknown: learn the epoch */
        S(FAIL, NULL, 0, 0, NULL, "R500", 0, 0, 0),
        S(LEARN, E1, 3, 1, NULL, "D4 D5", GW_LEARN_OK, 5, 0),
        S(LIVE, E1, 6, 0, NULL, "D6", 0, 6, 0),
    };
    RUN(t, 16, 8);
    /* The read already covers the held ones: they are dropped, not resent. */
    static const step u[] = {
        S(LIVE, E1, 2, 0, NULL, "", 0, 0, 0),
        S(LIVE, E1, 3, 0, NULL, "", 0, 0, 0),
        S(LEARN, E1, 3, 1, NULL, "", GW_LEARN_OK, 3, 0),
        S(LIVE, E1, 3, 0, NULL, "", 0, 3, 0),
        S(LIVE, E1, 4, 0, NULL, "D4", 0, 4, 0),
    };
    RUN(u, 16, 8);
    /* Held messages beyond the read's top are repaired, not waited for. */
    static const step v[] = {
        S(LIVE, E1, 7, 0, NULL, "", 0, 0, 0),
        S(LEARN, E1, 4, 1, NULL, "R20", GW_LEARN_OK, 4, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">4/500", 0, 4, 0),
        S(REPLY, E1, 7, 1, "5 6 7", "d5 d6 d7", 0, 7, 0),
    };
    RUN(v, 16, 8);
}

static void test_first_message_race(void **state)
{
    (void)state;
    /* The first read ran before the first append (no history yet) while
     * the message came by bus: the read is stale, the held copy goes, the
     * read again names the epoch; no epoch change for a room that lost
     * nothing. */
    static const step t[] = {
        S(LIVE, E1, 1, 0, NULL, "", 0, 0, 0),
        S(LEARN, "", 0, 0, NULL, "", GW_LEARN_STALE, 0, 0),
        S(LEARN, E1, 1, 1, NULL, "", GW_LEARN_OK, 1, 0),
        S(LIVE, E1, 2, 0, NULL, "D2", 0, 2, 0),
    };
    RUN(t, 16, 8);
    /* Learned "no history" first: the first epoch is not a change. */
    static const step u[] = {
        S(LEARN, "", 0, 0, NULL, "", GW_LEARN_OK, 0, 0),
        S(LIVE, E1, 1, 0, NULL, "D1", 0, 1, 0),
        S(LIVE, E1, 2, 0, NULL, "D2", 0, 2, 0),
    };
    RUN(u, 16, 8);
    static const step v[] = {
        S(LEARN, "", 0, 0, NULL, "", GW_LEARN_OK, 0, 0),
        S(LEARN, E1, 3, 1, NULL, "R0", GW_LEARN_OK, 0, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">0/500", 0, 0, 0),
        S(REPLY, E1, 3, 1, "1 2 3", "d1 d2 d3", 0, 3, 0),
    };
    RUN(v, 16, 8);
    /* Held messages of an older epoch are never delivered as the new one's. */
    static const step w[] = {
        S(LIVE, E0, 7, 0, NULL, "", 0, 0, 0),
        S(LEARN, E1, 2, 1, NULL, "", GW_LEARN_OK, 2, 0),
        S(LIVE, E1, 3, 0, NULL, "D3", 0, 3, 0),
    };
    RUN(w, 16, 8);
    /* While unknown, a newer epoch's message replaces older held ones. */
    static const step x[] = {
        S(LIVE, E1, 5, 0, NULL, "", 0, 0, 0),
        S(LIVE, E2, 1, 0, NULL, "", 0, 0, 0),
        S(LIVE, E1, 6, 0, NULL, "", 0, 0, 0),
        S(LEARN, E2, 0, 0, NULL, "D1", GW_LEARN_OK, 1, 0),
    };
    RUN(x, 16, 8);
}

static void test_epoch_change_mid_read(void **state)
{
    (void)state;
    static const step t[] = {
        S(LEARN, E1, 3, 1, NULL, "", GW_LEARN_OK, 3, 0),
        S(LIVE, E1, 5, 0, NULL, "R20", 0, 3, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">3/500", 0, 3, 0),
        /* Redis lost the room meanwhile: its new epoch comes by bus. */
        S(LIVE, E2, 1, 0, NULL, "", 0, 3, 0),
        /* The repair reply is already the new epoch's: adopt it, all void. */
        S(REPLY, E2, 1, 1, "1", "E1/1", 0, 1, 0),
        S(LIVE, E2, 2, 0, NULL, "D2", 0, 2, 0),
        /* A subscriber's page read before the change is stale. */
        S(LEARN, E1, 9, 1, NULL, "", GW_LEARN_STALE, 2, 0),
        S(LEARN, "", 0, 0, NULL, "", GW_LEARN_STALE, 2, 0),
    };
    RUN(t, 16, 8);
    /* Seen on the bus first: re-read the room's head, then adopt. */
    static const step u[] = {
        S(LEARN, E1, 3, 1, NULL, "", GW_LEARN_OK, 3, 0),
        S(LIVE, E2, 1, 0, NULL, "R0", 0, 3, 0),
        S(TIMER, NULL, 0, 0, NULL, "oldest/1", 0, 3, 0),
        S(REPLY, E2, 4, 2, "2", "E2/4", 0, 4, 0),
        S(LIVE, E2, 5, 0, NULL, "D5", 0, 5, 0),
        /* A stale repair reply (the old epoch) is read again. */
        S(LIVE, E2, 7, 0, NULL, "R20", 0, 5, 0),
        S(TIMER, NULL, 0, 0, NULL, E2 ">5/500", 0, 5, 0),
        S(REPLY, E1, 9, 1, "", "R100", 0, 5, 0),
    };
    RUN(u, 16, 8);
    /* A subscriber's read is the first to see the new epoch. */
    static const step v[] = {
        S(LEARN, E1, 3, 1, NULL, "", GW_LEARN_OK, 3, 0),
        S(LEARN, E2, 6, 4, NULL, "E4/6", GW_LEARN_RESET, 6, 0),
        S(LIVE, E2, 7, 0, NULL, "D7", 0, 7, 0),
    };
    RUN(v, 16, 8);
}

static void test_head_announcements(void **state)
{
    (void)state;
    static const step t[] = {
        S(HEAD, E1, 9, 0, NULL, "", 0, 0, 0), /* unknown: ignored */
        S(LEARN, E1, 2, 1, NULL, "", GW_LEARN_OK, 2, 0),
        S(HEAD, E1, 2, 0, NULL, "", 0, 2, 0),
        S(HEAD, E0, 9, 0, NULL, "", 0, 2, 0), /* older epoch */
        S(HEAD, E1, 5, 0, NULL, "R20", 0, 2, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">2/500", 0, 2, 0),
        /* replayd has less than was announced (writes lost), and no more. */
        S(REPLY, E1, 2, 1, "", "", 0, 2, 0),
        S(TIMER, NULL, 0, 0, NULL, "-", 0, 2, 0),
        S(HEAD, E2, 1, 0, NULL, "R0", 0, 2, 0), /* newer epoch: re-read */
        S(TIMER, NULL, 0, 0, NULL, "oldest/1", 0, 2, 0),
    };
    RUN(t, 16, 8);
    /* A page that says there is more keeps the repair going. */
    static const step u[] = {
        S(LEARN, E1, 0, 0, NULL, "", GW_LEARN_OK, 0, 0),
        S(HEAD, E1, 4, 0, NULL, "R20", 0, 0, 0),
        S(TIMER, NULL, 0, 0, NULL, E1 ">0/500", 0, 0, 0),
        S(REPLY, E1, 4, 1, "1 2", "d1 d2 R0", 0, 2, 1),
        S(TIMER, NULL, 0, 0, NULL, E1 ">2/500", 0, 2, 0),
        S(REPLY, E1, 4, 1, "3 4", "d3 d4", 0, 4, 0),
    };
    RUN(u, 16, 8);
}

/* The ring keeps the last ring_size messages for subscribers catching up;
 * the pending list is bounded and a message it forgot is repaired. */
static void test_ring_and_pending_bound(void **state)
{
    (void)state;
    rec r = { "" };
    gw_order *o = gw_order_new(4, 3, 500, NULL, emit, &r);
    gw_order_range rr = { E1, 0, 0, 0, 0, NULL };
    assert_int_equal(gw_order_learn(o, &rr), GW_LEARN_OK);
    for (uint64_t s = 1; s <= 6; s++) {
        gw_order_in m = { s, 1, "id", "u", NULL };
        gw_order_on_live(o, E1, &m);
    }
    assert_null(gw_order_ring(o, 1));
    assert_null(gw_order_ring(o, 2));
    for (uint64_t s = 3; s <= 6; s++) {
        assert_non_null(gw_order_ring(o, s));
        assert_int_equal(gw_order_ring(o, s)->seq, s);
    }
    assert_string_equal(gw_order_ring(o, 6)->data, "null"); /* no data: JSON null */
    for (uint64_t s = 12; s >= 8; s--) {
        gw_order_in m = { s, 1, "id", "u", "{}" };
        gw_order_on_live(o, E1, &m);
    }
    assert_int_equal(gw_order_npend(o), 3); /* 8 9 10 kept, 11 12 forgotten */
    assert_int_equal(gw_order_max_seen(o), 12);
    gw_order_read rd = { 0 };
    assert_true(gw_order_repair_next(o, &rd));
    assert_int_equal(rd.after_seq, 6);
    gw_order_in seven = { 7, 1, "id", "u", "{}" };
    gw_order_range rep = { E1, 12, 1, 0, 1, &seven };
    r.log[0] = 0;
    gw_order_on_repair(o, &rep);
    assert_string_equal(r.log, "d7 D8 D9 D10 R0");
    assert_int_equal(gw_order_head(o), 10);
    assert_true(gw_order_repair_next(o, &rd)); /* 11 12 read back */
    assert_int_equal(rd.after_seq, 10);
    gw_order_free(o);
}

/* A message held twice is held once. */
static void test_pending_duplicates(void **state)
{
    (void)state;
    rec r = { "" };
    gw_order *o = gw_order_new(4, 8, 500, NULL, emit, &r);
    gw_order_in m = { 3, 1, "id", "u", "{}" };
    gw_order_on_live(o, E1, &m);
    gw_order_on_live(o, E1, &m);
    m.seq = 2;
    gw_order_on_live(o, E1, &m);
    gw_order_on_live(o, E1, &m);
    assert_int_equal(gw_order_npend(o), 2);
    assert_false(gw_order_known(o));
    gw_order_range rr = { E1, 1, 1, 0, 0, NULL };
    assert_int_equal(gw_order_learn(o, &rr), GW_LEARN_OK);
    assert_string_equal(r.log, "D2 D3");
    assert_int_equal(gw_order_npend(o), 0);
    assert_string_equal(gw_order_epoch(o), E1);
    gw_order_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_duplicates),
        cmocka_unit_test(test_gap_repaired_in_order),
        cmocka_unit_test(test_gap_unrepairable),
        cmocka_unit_test(test_held_before_first_read),
        cmocka_unit_test(test_first_message_race),
        cmocka_unit_test(test_epoch_change_mid_read),
        cmocka_unit_test(test_head_announcements),
        cmocka_unit_test(test_ring_and_pending_bound),
        cmocka_unit_test(test_pending_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
