"""test_pubsub.py -- docs/protocol.md subscribe / publish / ack / message.

Seq starts at 1 and grows by 1 per message; the ack carries the seq; messages
carry room, seq, epoch, id, from, ts and data, and data round-trips any JSON
value; a retried publish (same user, room, id) gets the first seq with
duplicate:true and is delivered once; every subscriber sees the same order;
ping/pong both ways; bye closes 1000; heartbeat timeout closes 4001.
"""

import asyncio
import json
import time

import pytest

import tether_client as tc
from tether_client import run

JSON_VALUES = [
    None, True, False, 0, -1, 42, 9007199254740993, -9223372036854775808, 9223372036854775807,
    1.5, -0.25, 3.141592653589793, 1e300, 2.5e-300,
    "", "plain", "quote \" backslash \\ slash / tab \t newline \n", "h\u00e9llo \u2713 \U0001F600",
    "\u2028\u2029", [], {}, [1, "two", None, [3, [4, {}]]],
    {"a": 1, "b": {"c": [True, False, None]}, "emoji \U0001F680": "k\u00e9y"},
    {"": "empty key", "dup-like": [{"x": 1}, {"x": 1}]},
    [[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]],
    "x" * 20000,
]


def test_subscribe_publish_ack_and_message_fields(suite):
    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="sub")
        s = await sub.subscribe(room)
        assert s["type"] == "subscribed" and s["room"] == room
        # A room with no message yet may have no epoch yet ("").
        assert isinstance(s.get("epoch"), str), s
        assert s.get("seq") == 0, s
        assert s.get("missed") == 0, s
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="pub")
        t0 = int(time.time() * 1000)
        for i in range(1, 4):
            ack = await pub.publish(room, "id-%d" % i, {"n": i})
            assert ack == {"type": "ack", "id": "id-%d" % i, "room": room, "seq": i, "duplicate": False}
        t1 = int(time.time() * 1000)
        msgs = await sub.wait_messages(room, 3)
        assert [m["seq"] for m in msgs] == [1, 2, 3]
        for i, m in enumerate(msgs, 1):
            assert m["room"] == room
            assert isinstance(m["epoch"], str) and m["epoch"], m
            assert m["epoch"] == msgs[0]["epoch"]
            if s["epoch"]:
                assert m["epoch"] == s["epoch"]
            assert m["id"] == "id-%d" % i
            assert m["from"] == "bob"
            assert m["data"] == {"n": i}
            assert isinstance(m["ts"], int) and t0 - 2000 <= m["ts"] <= t1 + 2000, (m["ts"], t0, t1)
        assert msgs[0]["ts"] <= msgs[1]["ts"] <= msgs[2]["ts"]
        # The publisher was not subscribed: it gets acks, not messages.
        assert not pub.messages(room)
    run(t())


def test_publisher_subscribed_gets_its_own_message(suite):
    async def t():
        room = tc.uid()
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.subscribe(room)
        ack = await c.publish(room, "self-1", "echo")
        m = (await c.wait_messages(room, 1))[0]
        assert (m["seq"], m["id"], m["from"], m["data"]) == (ack["seq"], "self-1", "alice", "echo")
    run(t())


def test_data_round_trips_any_json_value(suite):
    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await sub.subscribe(room)
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"))
        for i, v in enumerate(JSON_VALUES):
            await pub.publish(room, "v%d" % i, v)
        # Also sent as raw UTF-8 rather than \\u escapes.
        raw_value = {"txt": "gr\u00fc\u00df \u4e16\u754c \U0001F600"}
        await pub.send_raw(json.dumps({"type": "publish", "room": room, "id": "raw-utf8", "data": raw_value},
                                      ensure_ascii=False))
        await pub.wait_ack(room, "raw-utf8")
        msgs = await sub.wait_messages(room, len(JSON_VALUES) + 1)
        wrong = {}
        for i, v in enumerate(JSON_VALUES):
            got = msgs[i]["data"]
            if got != v or type(got) is not type(v) and not (isinstance(v, float) and isinstance(got, (int, float))):
                wrong["v%d" % i] = (v if len(repr(v)) < 80 else repr(v)[:80], got if len(repr(got)) < 80 else repr(got)[:80])
        assert not wrong, "data changed in transit: %s" % wrong
        assert msgs[-1]["data"] == raw_value
    run(t())


def test_data_with_nul_character_round_trips(suite):
    # "\u0000" is a valid JSON string escape (RFC 8259); jansson refuses it
    # unless decoded with JSON_ALLOW_NUL.
    async def t():
        room = tc.uid()
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.subscribe(room)
        await c.publish(room, "nul", {"s": "a\u0000b"})
        assert (await c.wait_messages(room, 1))[0]["data"] == {"s": "a\u0000b"}
    run(t())


def test_retried_publish_gets_same_seq_and_is_delivered_once(suite):
    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await sub.subscribe(room)
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"))
        a1 = await pub.publish(room, "once", {"v": 1})
        a2 = await pub.publish(room, "once", {"v": 1})
        a3 = await pub.publish(room, "once", {"v": "different data, same id"})
        assert (a1["seq"], a1["duplicate"]) == (1, False)
        assert (a2["seq"], a2["duplicate"]) == (1, True)
        assert (a3["seq"], a3["duplicate"]) == (1, True)
        # The duplicate consumed no seq.
        a4 = await pub.publish(room, "twice", 2)
        assert (a4["seq"], a4["duplicate"]) == (2, False)
        # A retry from a new connection of the same user is still a duplicate.
        pub2 = await tc.connect(suite.ws_url(), token=suite.token("bob"))
        a5 = await pub2.publish(room, "once", {"v": 1})
        assert (a5["seq"], a5["duplicate"]) == (1, True)
        await sub.wait_seq(room, 2)
        await sub.ping()          # anything queued behind seq 2 has arrived
        assert [(m["seq"], m["id"], m["data"]) for m in sub.messages(room)] == [(1, "once", {"v": 1}), (2, "twice", 2)]
    run(t())


def test_dedup_key_is_user_room_id(suite):
    async def t():
        r1, r2 = tc.uid(), tc.uid()
        bob = await tc.connect(suite.ws_url(), token=suite.token("bob"))
        eve = await tc.connect(suite.ws_url(), token=suite.token("eve"))
        assert (await bob.publish(r1, "same", 1))["seq"] == 1
        other_user = await eve.publish(r1, "same", 2)
        assert (other_user["seq"], other_user["duplicate"]) == (2, False)
        other_room = await bob.publish(r2, "same", 3)
        assert (other_room["seq"], other_room["duplicate"]) == (1, False)
    run(t())


def test_concurrent_retries_of_one_id_get_one_seq(suite):
    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await sub.subscribe(room)
        pubs = [await tc.connect(suite.ws_url(), token=suite.token("bob")) for _ in range(4)]
        for p in pubs:
            await p.send({"type": "publish", "room": room, "id": "race", "data": "r"})
        acks = [await p.wait_ack(room, "race") for p in pubs]
        assert {a["seq"] for a in acks} == {1}, acks
        assert sorted(a["duplicate"] for a in acks) == [False, True, True, True], acks
        await pubs[0].publish(room, "after", 1)
        await sub.wait_seq(room, 2)
        assert sub.seqs(room) == [1, 2]
    run(t())


def test_two_subscribers_see_the_same_order(suite):
    n = 100

    async def t():
        room = tc.uid()
        s1 = await tc.connect(suite.ws_url(), token=suite.token("s1"), name="s1")
        s2 = await tc.connect(suite.ws_url(), token=suite.token("s2"), name="s2")
        await s1.subscribe(room)
        await s2.subscribe(room)
        p1 = await tc.connect(suite.ws_url(), token=suite.token("p1"))
        p2 = await tc.connect(suite.ws_url(), token=suite.token("p2"))
        acks1, acks2 = await asyncio.gather(p1.publish_many(room, n, prefix="a"),
                                            p2.publish_many(room, n, prefix="b"))
        seq_of = {a["id"]: a["seq"] for a in acks1 + acks2}
        assert sorted(seq_of.values()) == list(range(1, 2 * n + 1)), "acked seqs are not 1..%d" % (2 * n)
        m1 = await s1.wait_messages(room, 2 * n)
        m2 = await s2.wait_messages(room, 2 * n)
        o1 = [(m["seq"], m["id"]) for m in m1]
        o2 = [(m["seq"], m["id"]) for m in m2]
        assert [s for s, _ in o1] == list(range(1, 2 * n + 1))
        assert o1 == o2
        assert all(seq_of[i] == s for s, i in o1), "delivered seq differs from acked seq"
    run(t(), timeout=90)


@pytest.mark.xfail(strict=False, reason="docs/protocol.md promises no order among one connection's "
                   "publishes; drop this mark if the team decides to guarantee it")
def test_pipelined_publishes_of_one_connection_keep_their_order(suite):
    async def t():
        room = tc.uid()
        p = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        acks = await p.publish_many(room, 50, window=50)
        seqs = [a["seq"] for a in acks]
        assert seqs == list(range(1, 51)), "send order 0..49 got seqs %s" % seqs
    run(t())


def test_fanout_across_gateways(suite):
    async def t():
        g2 = suite.add_gateway()
        room = tc.uid()
        s1 = await tc.connect(suite.ws_url(), token=suite.token("s1"))
        s2 = await tc.connect(suite.ws_url(g2.name), token=suite.token("s2"))
        await s1.subscribe(room)
        await s2.subscribe(room)
        p = await tc.connect(suite.ws_url(g2.name), token=suite.token("p"))
        acks = await p.publish_many(room, 50)
        assert [a["seq"] for a in acks] == list(range(1, 51))
        await s1.wait_messages(room, 50)
        await s2.wait_messages(room, 50)
        assert s1.seqs(room) == s2.seqs(room) == list(range(1, 51))
    run(t())


def test_unsubscribe_stops_delivery(suite):
    async def t():
        r1, r2 = tc.uid(), tc.uid()
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.subscribe(r1)
        await c.subscribe(r2)
        p = await tc.connect(suite.ws_url(), token=suite.token("bob"))
        await p.publish(r1, "before", 1)
        await c.wait_messages(r1, 1)
        await c.send({"type": "unsubscribe", "room": r1})
        await c.ping()                 # the unsubscribe has been processed
        await p.publish(r1, "after", 2)
        await p.publish(r2, "marker", 3)
        await c.wait_messages(r2, 1)
        # Give a stray r1 message the same chance to arrive as the marker had.
        await c.ping()
        assert [m["id"] for m in c.messages(r1)] == ["before"]
    run(t())


def test_client_ping_gets_pong(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        rtts = [await c.ping() for _ in range(5)]
        assert len(c.find("pong")) == 5
        assert max(rtts) < 1.0
    run(t())


@pytest.mark.suite_env(TETHER_HEARTBEAT_MS="1000")
def test_server_pings_every_heartbeat(suite):
    async def t():
        t0 = time.monotonic()
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        assert c.welcome["heartbeat_ms"] == 1000
        await c.wait_for(lambda: c.pings >= 3, 8, "3 server pings")
        elapsed = time.monotonic() - t0
        assert elapsed >= 1.5, "3 pings in %.2fs with heartbeat_ms 1000" % elapsed
        assert not c.closed.is_set()
    run(t())


@pytest.mark.suite_env(TETHER_HEARTBEAT_MS="1000")
def test_silent_client_closed_4001_after_heartbeat_plus_10s(suite):
    async def t():
        silent = tc.Client(suite.ws_url(), auto_pong=False, name="silent")
        await silent.connect()
        await silent.hello(token=suite.token("alice"))
        alive = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="alive")
        t0 = time.monotonic()
        code, _ = await silent.wait_closed(25)
        elapsed = time.monotonic() - t0
        assert code == 4001
        assert elapsed >= 9.0, "closed after %.1fs of silence, before heartbeat + 10 s" % elapsed
        # The client that answers pings is still connected.
        await alive.ping()
    run(t(), timeout=60)


def test_bye_closes_1000(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.send({"type": "bye"})
        code, _ = await c.wait_closed(5)
        assert code == 1000
    run(t())
