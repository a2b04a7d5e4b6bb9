"""test_proto.py -- the tether.v1.proto sub-protocol (binary ClientFrame /
ServerFrame frames, protos/client.proto), through tether_proto's own codec.

Same semantics as tether.v1.json: hello/welcome, positions, publish/ack,
messages whose `data` is compact JSON text; a JSON client and a proto client
in one room see the same messages; undecodable binary frames get error 4505.
"""

import tether_client as tc
from tether_client import run


def test_proto_subprotocol_negotiated_and_welcome(suite):
    async def t():
        c = tc.Client(suite.ws_url(), proto="proto")
        await c.connect()
        assert c.subprotocol == "tether.v1.proto"
        w = await c.hello(token=suite.token("alice", ttl=600))
        assert w["type"] == "welcome" and w["user"] == "alice" and w["session"]
        assert w["resumed"] is False
        assert w["heartbeat_ms"] == 25000 and w["session_ttl_ms"] == 120000, w
        assert 600_000 - 15_000 <= w["token_expires_in_ms"] <= 600_000, w
        assert not c.raw, "undecodable frames: %r" % c.raw[:3]
        await c.ping()
    run(t())


def test_proto_publish_ack_message_and_json_interop(suite):
    values = [None, True, 0, -7, 2.5, "h\u00e9llo \U0001F600", [1, [2]], {"k": {"n": None}}]

    async def t():
        room = tc.uid()
        pj = await tc.connect(suite.ws_url(), token=suite.token("pj"), proto="proto", name="proto")
        js = await tc.connect(suite.ws_url(), token=suite.token("js"), name="json")
        sp = await pj.subscribe(room)
        sj = await js.subscribe(room)
        assert sp["epoch"] == sj["epoch"] and sp["seq"] == sj["seq"] == 0, (sp, sj)
        for i, v in enumerate(values):
            ack = await pj.publish(room, "p%d" % i, v)
            assert (ack["seq"], ack["duplicate"], ack["id"], ack["room"]) == (i + 1, False, "p%d" % i, room)
        ack = await js.publish(room, "j0", {"from": "json"})
        assert ack["seq"] == len(values) + 1
        dup = await pj.publish(room, "p0", None)
        assert (dup["seq"], dup["duplicate"]) == (1, True)
        n = len(values) + 1
        mp = await pj.wait_messages(room, n)
        mj = await js.wait_messages(room, n)
        strip = lambda ms: [(m["seq"], m["epoch"], m["id"], m["from"], m["data"]) for m in ms]
        assert strip(mp) == strip(mj)
        assert [m["data"] for m in mp] == values + [{"from": "json"}]
        assert all(abs(a["ts"] - b["ts"]) == 0 for a, b in zip(mp, mj))
        assert not pj.raw
    run(t())


def test_proto_positions(suite):
    async def t():
        room = tc.uid()
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        seq_to_id = {a["seq"]: a["id"] for a in await pub.publish_many(room, 8, prefix="h")}
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"), proto="proto")
        live = await c.subscribe(room)                    # Position{has_seq: false}: live only
        assert (live["seq"], live["missed"]) == (8, 0), live
        c2 = await tc.connect(suite.ws_url(), token=suite.token("bob"), proto="proto")
        s = await c2.subscribe(room, epoch=live["epoch"], seq=5)
        assert (s["recovered"], s["missed"]) == (True, 3), s
        await c2.wait_messages(room, 3)
        assert [(m["seq"], m["id"]) for m in c2.messages(room)] == [(s, seq_to_id[s]) for s in (6, 7, 8)]
        c3 = await tc.connect(suite.ws_url(), token=suite.token("carol"), proto="proto")
        s = await c3.subscribe(room, epoch=live["epoch"] + "x", seq=5)
        assert s["recovered"] is False and s.get("gap") is not None, s
        c4 = await tc.connect(suite.ws_url(), token=suite.token("dave"), proto="proto")
        s = await c4.subscribe(room, seq=0)               # oldest buffered, no epoch
        assert s["missed"] == 8, s
        await pub.publish(room, "live", 1)
        await c.wait_seq(room, 9)
        assert c.seqs(room) == [9]
    run(t())


def test_proto_garbage_frame_gets_4505(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"), proto="proto")
        await c.send_raw(b"\xff\xff\xff\xff\x0f")
        e = await c.recv_until(lambda f: f.get("type") == "error", 5, "error 4505")
        assert e["code"] == 4505, e
        await c.ping()
    run(t())


def test_proto_bad_token_closes_4501(suite):
    async def t():
        c = tc.Client(suite.ws_url(), proto="proto")
        await c.connect()
        await c.send({"type": "hello", "token": tc.make_token("wrong-secret", "mallory")})
        code, _ = await c.wait_closed(5)
        assert code == 4501
    run(t())
