"""test_errors.py -- docs/protocol.md error frames, limits and close code 4505.

A failed request gets an `error` frame and the connection stays open: 4505 for
a malformed frame (not JSON, not an object, unknown type), 4400 for an invalid
field (room name, id), 4503 for a room outside the token's `rooms` claim, 4413
for a frame over the limit (or close 4505 if it cannot be skipped). Ten
malformed frames within a minute close the connection with 4505.
"""

import json

import pytest

import tether_client as tc
from tether_client import run

ROOM_CHARS = "ABCXYZabcxyz0189._:@/-"
ID_CHARS = "ABCXYZabcxyz0189._:-"


async def still_open(c):
    """The connection still serves requests: a client ping gets its pong."""
    await c.ping()
    assert not c.closed.is_set()


async def expect_error(c, code, what):
    f = await c.recv_until(lambda x: x.get("type") == "error", 5, "error %d for %s" % (code, what))
    assert f.get("code") == code, "%s: expected error %d, got %s" % (what, code, f)
    assert isinstance(f.get("reason"), str), f
    return f


def test_malformed_json_gets_4505_and_stays_open(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.send_raw('{"type": "publish", "room": ')
        await expect_error(c, 4505, "truncated JSON")
        await still_open(c)
        room = tc.uid()
        await c.subscribe(room)
        assert (await c.publish(room, "after-error", 1))["seq"] == 1
    run(t())


def test_non_object_frames_get_4505(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        for raw in ("[1,2]", "42", '"publish"', "null", "true"):
            await c.send_raw(raw)
            await expect_error(c, 4505, raw)
        await still_open(c)
    run(t())


def test_unknown_type_gets_4505(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.send({"type": "teleport", "room": "x"})
        await expect_error(c, 4505, "unknown type")
        await still_open(c)
    run(t())


def test_ten_malformed_frames_close_4505(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        for i in range(9):
            await c.send_raw("not json %d" % i)
        for i in range(9):
            await expect_error(c, 4505, "malformed #%d" % i)
        await still_open(c)           # nine are tolerated
        await c.send_raw("not json 9")
        try:
            await c.send_raw("not json 10")
        except Exception:
            pass                      # already closed: fine
        code, _ = await c.wait_closed(5)
        assert code == 4505
    run(t())


def _publish_frame(room, id_, size):
    """A publish frame whose JSON text is exactly `size` bytes."""
    base = json.dumps({"type": "publish", "room": room, "id": id_, "data": ""}, separators=(",", ":"))
    pad = size - len(base)
    assert pad >= 0
    return json.dumps({"type": "publish", "room": room, "id": id_, "data": "x" * pad}, separators=(",", ":"))


async def _check_frame_limit(suite, limit):
    c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
    room = tc.uid()
    await c.subscribe(room)
    under = _publish_frame(room, "under", limit - 64)
    assert len(under) == limit - 64
    await c.send_raw(under)
    ack = await c.wait_ack(room, "under")
    assert ack["seq"] == 1
    over = _publish_frame(room, "over", limit + 1024)
    await c.send_raw(over)
    f = await c.wait_for(lambda: c.find("error", code=4413) or c.closed.is_set() or c.acks.get((room, "over")),
                         5, "error 4413 or close 4505 for an oversized frame")
    assert not c.acks.get((room, "over")), "an oversized publish was acknowledged"
    if c.closed.is_set():
        assert c.close_code == 4505, "oversized frame: closed with %s, want error 4413 or close 4505" % c.close_code
    else:
        assert f[0].get("code") == 4413
        await still_open(c)
        assert (await c.publish(room, "after", 1))["seq"] == 2
    # The oversized message never reached subscribers.
    other = await tc.connect(suite.ws_url(), token=suite.token("bob"))
    sub = await other.subscribe(room, seq=0)
    assert sub["seq"] in (1, 2)
    await other.wait_messages(room, sub["seq"])
    assert [m["id"] for m in other.messages(room)] == ["under", "after"][:sub["seq"]]


@pytest.mark.suite_env(TETHER_MAX_FRAME="4096")
def test_frame_limit_configurable(suite):
    run(_check_frame_limit(suite, 4096))


@pytest.mark.suite_env(TETHER_MAX_FRAME="4096")
def test_frame_far_over_the_limit_closes_4505(suite):
    # docs/protocol.md deviation 4: more than 16 times the limit is not skipped.
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.send_raw(_publish_frame(tc.uid(), "huge", 4096 * 17))
        code, _ = await c.wait_closed(5)
        assert code == 4505
    run(t())


def test_frame_limit_default_64k(suite):
    run(_check_frame_limit(suite, 65536))


def test_invalid_room_names_get_4400(suite):
    bad_rooms = ["", "has space", "x" * 129, "hash#tag", "quote\"", "uni\u00e9", "new\nline", 123, None, ["r"]]

    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        wrong = {}
        for room in bad_rooms:
            f = {"type": "subscribe", "room": room}
            await c.send(f)
            e = await c.recv_until(lambda x: x.get("type") in ("error", "subscribed"), 5, "answer for %r" % (room,))
            if e.get("type") != "error" or e.get("code") != 4400:
                wrong[repr(room)] = e
            await c.send({"type": "publish", "room": room, "id": "ok-id", "data": 1})
            e = await c.recv_until(lambda x: x.get("type") in ("error", "ack"), 5, "answer for %r" % (room,))
            if e.get("type") != "error" or e.get("code") != 4400:
                wrong["publish " + repr(room)] = e
        assert not wrong, "invalid rooms not refused with 4400: %s" % wrong
        await still_open(c)
    run(t())


def test_invalid_ids_get_4400(suite):
    bad_ids = ["", "x" * 65, "has space", "slash/not-allowed", "at@not-allowed", "uni\u00e9", 7, None]

    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        room = tc.uid()
        await c.subscribe(room)
        wrong = {}
        for id_ in bad_ids:
            await c.send({"type": "publish", "room": room, "id": id_, "data": 1})
            e = await c.recv_until(lambda x: x.get("type") in ("error", "ack"), 5, "answer for id %r" % (id_,))
            if e.get("type") != "error" or e.get("code") != 4400:
                wrong[repr(id_)] = e
        assert not wrong, "invalid ids not refused with 4400: %s" % wrong
        await still_open(c)
        assert not c.messages(room)
    run(t())


def test_longest_valid_room_and_id_accepted(suite):
    room = (ROOM_CHARS * 10)[:128]
    id_ = (ID_CHARS * 10)[:64]

    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        sub = await c.subscribe(room)
        assert sub["room"] == room
        ack = await c.publish(room, id_, "edge")
        assert ack["seq"] == 1 and ack["id"] == id_
        m = (await c.wait_messages(room, 1))[0]
        assert m["room"] == room and m["id"] == id_
    run(t())


def test_rooms_claim_limits_rooms_4503(suite):
    tok = suite.token("carol", rooms=["lobby", "team/*"])

    async def t():
        c = await tc.connect(suite.ws_url(), token=tok)
        assert (await c.subscribe("lobby"))["room"] == "lobby"
        assert (await c.subscribe("team/red"))["room"] == "team/red"
        assert (await c.publish("team/red", "ok-1", 1))["seq"] == 1
        wrong = {}
        for room in ("lobby2", "lobb", "team", "teamx/red", "other"):
            try:
                await c.subscribe(room)
                wrong[room] = "subscribed"
            except tc.FrameError as e:
                if e.code != 4503:
                    wrong[room] = e.frame
        await c.send({"type": "publish", "room": "other", "id": "nope-1", "data": 1})
        try:
            await c.wait_ack("other", "nope-1")
            wrong["publish other"] = "acked"
        except tc.FrameError as e:
            if e.code != 4503:
                wrong["publish other"] = e.frame
            elif e.frame.get("id") != "nope-1":
                wrong["publish other"] = "error without the publish id: %s" % e.frame
        assert not wrong, "rooms outside the claim not refused with 4503: %s" % wrong
        await still_open(c)
        # A token without a rooms claim may use any room.
        free = await tc.connect(suite.ws_url(), token=suite.token("dave"))
        assert (await free.subscribe("other"))["room"] == "other"
    run(t())


@pytest.mark.suite_env(TETHER_MAX_ROOMS="3")
def test_max_rooms_per_connection(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        rooms = [tc.uid() for _ in range(4)]
        for r in rooms[:3]:
            await c.subscribe(r)
        with pytest.raises(tc.FrameError) as ei:
            await c.subscribe(rooms[3])
        assert 4400 <= ei.value.code < 4600, ei.value.frame
        await still_open(c)
        # Leaving a room makes space again (frames are handled in order).
        await c.send({"type": "unsubscribe", "room": rooms[0]})
        assert (await c.subscribe(rooms[3]))["room"] == rooms[3]
    run(t())
