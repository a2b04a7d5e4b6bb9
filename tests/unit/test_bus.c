/* test_bus.c -- bus_decode, the gate every bus message passes (cmocka).
 *
 * A bus message is two ZeroMQ frames, [topic][packed Envelope]. bus_decode
 * must hand receivers only envelopes whose own topic is exactly the frame's
 * topic (SUB filtering is a prefix match, so "room.a" also receives
 * "room.ab") and that name their source (loss detection is per source); all
 * else is dropped. Publishing and subscribing through a real busd are the
 * integration tests' business.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bus.h"

#include <stdlib.h>
#include <string.h>

#define S(lit) ((char *)(lit)) /* protobuf-c string fields are char * */

/* A packed envelope: the caller frees *out. */
static size_t pack(const bus_env *e, uint8_t **out)
{
    size_t n = tether__bus__envelope__get_packed_size(e);
    *out = malloc(n ? n : 1);
    assert_non_null(*out);
    assert_int_equal(tether__bus__envelope__pack(e, *out), n);
    return n;
}

/* bus_decode of env packed, with frame topic t (length tl). */
static bus_env *decode(const bus_env *env, const char *t, size_t tl)
{
    uint8_t *buf;
    size_t n = pack(env, &buf);
    bus_env *e = bus_decode(t, tl, buf, n);
    free(buf);
    return e;
}

static Tether__Bus__Source src = TETHER__BUS__SOURCE__INIT;

static int setup(void **state)
{
    (void)state;
    src.service = S("replayd");
    src.instance = S("host-1/4242");
    src.incarnation = 1700000000000000ULL;
    return 0;
}

static void test_accepts_matching_topic(void **state)
{
    (void)state;
    Tether__Bus__RoomMessage m = TETHER__BUS__ROOM_MESSAGE__INIT;
    m.room = S("chat");
    m.epoch = S("e1");
    m.seq = 7;
    m.id = S("m-1");
    m.from = S("u1");
    m.ts = 1700000000123;
    m.data = S("{\"a\":1}");
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.topic = S("room.chat");
    env.source = &src;
    env.source_seq = 12;
    env.ts = 1700000000124;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE;
    env.room_message = &m;

    bus_env *e = decode(&env, "room.chat", 9);
    assert_non_null(e);
    assert_string_equal(e->topic, "room.chat");
    assert_non_null(e->source);
    assert_string_equal(e->source->service, "replayd");
    assert_string_equal(e->source->instance, "host-1/4242");
    assert_true(e->source->incarnation == 1700000000000000ULL);
    assert_int_equal(e->source_seq, 12);
    assert_int_equal(e->ts, 1700000000124);
    assert_int_equal(e->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_ROOM_MESSAGE);
    assert_string_equal(e->room_message->room, "chat");
    assert_string_equal(e->room_message->epoch, "e1");
    assert_int_equal(e->room_message->seq, 7);
    assert_string_equal(e->room_message->id, "m-1");
    assert_string_equal(e->room_message->from, "u1");
    assert_string_equal(e->room_message->data, "{\"a\":1}");
    bus_env_free(e);

    /* The frame topic need not be NUL-terminated (it is a ZeroMQ frame). */
    char frame[16];
    memcpy(frame, "room.chat#######", sizeof(frame));
    e = decode(&env, frame, 9);
    assert_non_null(e);
    bus_env_free(e);

    /* A request/reply envelope: no payload-specific checks, source still required. */
    Tether__Bus__PingReq ping = TETHER__BUS__PING_REQ__INIT;
    bus_env req = TETHER__BUS__ENVELOPE__INIT;
    req.topic = S("rpc.replayd");
    req.source = &src;
    req.req_id = 99;
    req.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ;
    req.ping_req = &ping;
    e = decode(&req, "rpc.replayd", 11);
    assert_non_null(e);
    assert_int_equal(e->req_id, 99);
    assert_int_equal(e->payload_case, TETHER__BUS__ENVELOPE__PAYLOAD_PING_REQ);
    bus_env_free(e);

    bus_env_free(NULL); /* a no-op */
}

static void test_rejects_topic_mismatch(void **state)
{
    (void)state;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.topic = S("room.ab");
    env.source = &src;
    /* What a prefix subscription to "room.a" delivers: the frame says room.ab. */
    assert_null(decode(&env, "room.a", 6));
    /* Same length, different bytes. */
    assert_null(decode(&env, "room.ac", 7));
    /* Frame longer than the envelope's topic. */
    assert_null(decode(&env, "room.abc", 8));
    /* Envelope topic missing (empty) with a frame topic. */
    env.topic = S("");
    assert_null(decode(&env, "room.ab", 7));
    /* A NUL inside the frame topic never matches. */
    env.topic = S("room.ab");
    assert_null(decode(&env, "room.ab\0", 8));
    assert_null(decode(&env, "room\0ab", 7));
}

static void test_rejects_empty_and_oversized_topic(void **state)
{
    (void)state;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.source = &src;
    env.topic = S("");
    assert_null(decode(&env, "", 0));

    char t[300];
    memset(t, 't', sizeof(t));
    t[256] = 0;
    env.topic = t; /* 256 bytes: the limit, accepted */
    bus_env *e = decode(&env, t, 256);
    assert_non_null(e);
    assert_int_equal(strlen(e->topic), 256);
    bus_env_free(e);
    t[256] = 't';
    t[257] = 0;
    env.topic = t; /* 257: refused, even though both sides agree */
    assert_null(decode(&env, t, 257));
    t[257] = 't';
    t[299] = 0;
    assert_null(decode(&env, t, 299));
}

static void test_rejects_missing_source(void **state)
{
    (void)state;
    Tether__Bus__Heartbeat hb = TETHER__BUS__HEARTBEAT__INIT;
    hb.interval_ms = 1000;
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.topic = S("gw.heartbeat");
    env.source_seq = 1;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_HEARTBEAT;
    env.heartbeat = &hb;
    assert_null(decode(&env, "gw.heartbeat", 12));
    /* The same envelope with a source passes: the source was the reason. */
    env.source = &src;
    bus_env *e = decode(&env, "gw.heartbeat", 12);
    assert_non_null(e);
    assert_int_equal(e->heartbeat->interval_ms, 1000);
    bus_env_free(e);
    /* An empty Source message is present, so accepted (its fields are ""). */
    Tether__Bus__Source empty = TETHER__BUS__SOURCE__INIT;
    env.source = &empty;
    e = decode(&env, "gw.heartbeat", 12);
    assert_non_null(e);
    assert_non_null(e->source);
    assert_string_equal(e->source->instance, "");
    bus_env_free(e);
}

static void test_rejects_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } junk[] = {
        { "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11 }, /* a varint that never ends */
        { "\x0a\x7f room.a", 9 },                              /* topic length past the end */
        { "\x0b", 1 },                                         /* start group: unsupported */
        { "\x00\x00\x00", 3 },                                 /* field number 0 */
        { "hello world", 11 },
        { "", 0 }, /* an empty envelope: no topic, no source */
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_null(bus_decode("room.a", 6, junk[i].bytes, junk[i].len));

    /* Every truncation of a valid envelope is refused. */
    Tether__Bus__AppendReq a = TETHER__BUS__APPEND_REQ__INIT;
    a.room = S("chat");
    a.user = S("u1");
    a.id = S("m-1");
    a.data = S("[1,2,3]");
    bus_env env = TETHER__BUS__ENVELOPE__INIT;
    env.topic = S("rpc.replayd");
    env.source = &src;
    env.req_id = 5;
    env.payload_case = TETHER__BUS__ENVELOPE__PAYLOAD_APPEND_REQ;
    env.append_req = &a;
    uint8_t *buf;
    size_t n = pack(&env, &buf);
    bus_env *e = bus_decode("rpc.replayd", 11, buf, n);
    assert_non_null(e);
    bus_env_free(e);
    for (size_t cut = 0; cut < n; cut++) {
        e = bus_decode("rpc.replayd", 11, buf, cut);
        if (e) {
            /* A cut on a field boundary is a valid shorter envelope; it must
             * still satisfy the contract. */
            assert_string_equal(e->topic, "rpc.replayd");
            assert_non_null(e->source);
            bus_env_free(e);
        }
    }
    /* Flipping a length byte to something huge is refused. */
    buf[1] = 0x7f;
    assert_null(bus_decode("rpc.replayd", 11, buf, n));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_matching_topic),
        cmocka_unit_test(test_rejects_topic_mismatch),
        cmocka_unit_test(test_rejects_empty_and_oversized_topic),
        cmocka_unit_test(test_rejects_missing_source),
        cmocka_unit_test(test_rejects_garbage),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
