"""test_media_floor.py -- push-to-talk floor control end to end (docs/protocol.md `ptt`).

Real processes (Redis, busd, replayd, sessiond, mediad, gateways) driven by
WebSocket clients:
  - request -> granted to the requester, taken (with the holder) to the others;
    a second requester is denied with the holder; release -> idle for all;
    someone else takes the floor next;
  - the max talk time (TETHER_PTT_MAX_MS) revokes: revoked to the holder,
    then idle to everyone;
  - a holder whose connection drops keeps the floor for the grace period
    (TETHER_PTT_GRACE_MS) and gets it back by requesting again in time; a
    holder that does not come back loses it (idle, "holder disconnected");
  - floor events cross gateways (bus ptt.<room>);
  - the floor lives in Redis: it survives a mediad kill -9 and its max talk
    time is still enforced by the restarted mediad;
  - a holder whose gateway dies (kill -9, no heartbeat) gets the same grace
    period, and keeps the floor by requesting it again through another
    gateway in time;
  - rights: a room not in the token is 4503, a room not subscribed is 4404;
  - mediad's /metrics count grants and denials.
"""

import asyncio
import time

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run

pytestmark = pytest.mark.requires("mediad")


async def join(suite, user, room, gateway=None, **claims):
    c = await tc.connect(suite.ws_url(gateway), token=suite.token(user, **claims), name=user)
    await c.subscribe(room)
    return c


async def ptt(c, room, action):
    await c.send({"type": "ptt", "room": room, "action": action})


async def floor(c, room, state, timeout=5.0, **fields):
    """The next ptt frame for room with this state (and fields)."""
    return await c.expect("ptt", timeout=timeout, room=room, state=state, **fields)


def test_grant_taken_deny_release_idle_next_talker(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        c = await join(suite, "carol", room)
        await ptt(a, room, "request")
        g = await floor(a, room, "granted")
        assert g["holder"] == "alice" and g["max_ms"] > 55000, g
        for other in (b, c):
            tk = await floor(other, room, "taken")
            assert tk["holder"] == "alice", tk
        # The holder is told `granted`, never `taken` about itself.
        assert not a.find("ptt", room=room, state="taken")
        await ptt(b, room, "request")
        d = await floor(b, room, "denied")
        assert d["holder"] == "alice", d
        await ptt(a, room, "release")
        for x in (a, b, c):
            await floor(x, room, "idle")
        await ptt(b, room, "request")
        g2 = await floor(b, room, "granted")
        assert g2["holder"] == "bob"
        for other in (a, c):
            assert (await floor(other, room, "taken"))["holder"] == "bob"
        # A release by someone who does not hold the floor changes nothing.
        await ptt(c, room, "release")
        await ptt(c, room, "request")
        assert (await floor(c, room, "denied"))["holder"] == "bob"
        assert not a.find("ptt", room=room, state="idle")[1:], "no idle while bob holds"
    run(t())


def test_holder_request_again_is_granted_again(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await ptt(a, room, "request")
        g = await floor(a, room, "granted")
        assert g["holder"] == "alice"
    run(t())


@pytest.mark.suite_env(TETHER_PTT_MAX_MS=1500)
def test_max_talk_time_revokes(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        await ptt(a, room, "request")
        g = await floor(a, room, "granted")
        assert g["max_ms"] <= 1500
        t0 = time.monotonic()
        await floor(b, room, "taken")
        r = await floor(a, room, "revoked", timeout=5)
        elapsed = time.monotonic() - t0
        assert 1.0 <= elapsed <= 3.0, elapsed
        assert r["holder"] == "alice" and "max talk time" in r.get("reason", ""), r
        await floor(a, room, "idle")
        i = await floor(b, room, "idle")
        assert "max talk time" in i.get("reason", ""), i
        assert not b.find("ptt", room=room, state="revoked"), "only the holder is revoked"
        await ptt(b, room, "request")
        await floor(b, room, "granted")
    run(t())


@pytest.mark.suite_env(TETHER_PTT_GRACE_MS=2500)
def test_holder_disconnect_keeps_floor_through_grace_and_resumes(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await floor(b, room, "taken")
        a.abort()
        # Meanwhile the floor is still alice's.
        await asyncio.sleep(0.3)   # let the gateway see the drop (then poll below)
        await ptt(b, room, "request")
        assert (await floor(b, room, "denied"))["holder"] == "alice"
        a2 = await join(suite, "alice", room)
        await ptt(a2, room, "request")
        g = await floor(a2, room, "granted")
        assert g["holder"] == "alice"
        # Past the grace period the floor is still held: it was resumed.
        await asyncio.sleep(3.0)
        assert not b.find("ptt", room=room, state="idle"), b.find("ptt", room=room)
        await ptt(b, room, "request")
        assert (await floor(b, room, "denied"))["holder"] == "alice"
    run(t())


@pytest.mark.suite_env(TETHER_PTT_GRACE_MS=1000)
def test_holder_that_does_not_return_loses_floor_after_grace(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await floor(b, room, "taken")
        t0 = time.monotonic()
        a.abort()
        i = await floor(b, room, "idle", timeout=6)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed <= 4.0, elapsed
        assert "disconnected" in i.get("reason", ""), i
        await ptt(b, room, "request")
        await floor(b, room, "granted")
    run(t())


def test_floor_events_cross_gateways(suite):
    async def t():
        gw2 = suite.add_gateway()
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room, gateway=gw2.name)
        await ptt(b, room, "request")
        await floor(b, room, "granted")
        assert (await floor(a, room, "taken"))["holder"] == "bob"
        await ptt(a, room, "request")
        assert (await floor(a, room, "denied"))["holder"] == "bob"
        await ptt(b, room, "release")
        await floor(a, room, "idle")
        await floor(b, room, "idle")
    run(t())


def test_rights_and_subscription_required(suite):
    async def t():
        room = tc.uid("ptt")
        c = await tc.connect(suite.ws_url(), token=suite.token("dave", rooms=["allowed-*"]), name="dave")
        await ptt(c, room, "request")
        e = await c.error()
        assert e["code"] == 4503, e
        ok_room = "allowed-" + tc.uid()
        await ptt(c, ok_room, "request")
        e = await c.error()
        assert e["code"] == 4404, e
        await c.send({"type": "ptt", "room": ok_room, "action": "grab"})
        e = await c.error()
        assert e["code"] == 4400, e
        await c.subscribe(ok_room)
        await ptt(c, ok_room, "request")
        await floor(c, ok_room, "granted")
    run(t())


def test_metrics_count_grants_and_denials(suite):
    async def t():
        m0 = suite["mediad"].metrics()
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await ptt(b, room, "request")
        await floor(b, room, "denied")
        await ptt(a, room, "release")
        await floor(b, room, "idle")
        m1 = suite["mediad"].metrics()
        assert m1["tether_mediad_floor_grants_total"] - m0.get("tether_mediad_floor_grants_total", 0) == 1
        assert m1["tether_mediad_floor_denials_total"] - m0.get("tether_mediad_floor_denials_total", 0) == 1
        assert m1["tether_mediad_floor_releases_total"] - m0.get("tether_mediad_floor_releases_total", 0) == 1
    run(t())


@pytest.mark.chaos
@pytest.mark.suite_env(TETHER_PTT_MAX_MS=4000)
def test_floor_survives_mediad_kill_and_is_still_revoked(suite):
    async def t():
        room = tc.uid("ptt")
        a = await join(suite, "alice", room)
        b = await join(suite, "bob", room)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await floor(b, room, "taken")
        suite.kill9("mediad")
        suite.restart("mediad")
        # Still alice's: the new mediad reads it from Redis.
        for _ in range(50):
            await ptt(b, room, "request")
            f = await b.recv_until(lambda x: x.get("type") in ("ptt", "error"), 5, "ptt answer")
            if f["type"] == "ptt":
                break
            await asyncio.sleep(0.1)   # 4500 while the gateway reconnects: retry as a client would
        assert f["state"] == "denied" and f["holder"] == "alice", f
        # The restarted mediad's sweep revokes at the max talk time.
        await floor(a, room, "revoked", timeout=8)
        await floor(b, room, "idle", timeout=3)
    run(t())


@pytest.mark.chaos
@pytest.mark.suite_env(TETHER_PTT_GRACE_MS=2500, TETHER_MEDIA_GW_DEAD_MS=1500)
def test_holder_gateway_killed_grace_then_idle_or_resume(suite):
    async def t():
        gw2 = suite.add_gateway()
        room = tc.uid("ptt")
        b = await join(suite, "bob", room)
        a = await join(suite, "alice", room, gateway=gw2.name)
        await ptt(a, room, "request")
        await floor(a, room, "granted")
        await floor(b, room, "taken")
        t0 = time.monotonic()
        suite.kill9(gw2.name)
        # Not free at once: the grace period runs once the gateway is seen dead.
        await asyncio.sleep(1.0)
        await ptt(b, room, "request")
        assert (await floor(b, room, "denied"))["holder"] == "alice"
        i = await floor(b, room, "idle", timeout=10)
        elapsed = time.monotonic() - t0
        assert "disconnected" in i.get("reason", ""), i
        assert 2.5 <= elapsed <= 8.0, elapsed
        # Second round: the holder comes back through the surviving gateway.
        gw3 = suite.add_gateway()
        c = await join(suite, "carol", room, gateway=gw3.name)
        await ptt(c, room, "request")
        await floor(c, room, "granted")
        suite.kill9(gw3.name)
        await asyncio.sleep(2.0)   # the gateway is seen dead; carol's grace runs
        c2 = await join(suite, "carol", room)
        await ptt(c2, room, "request")
        assert (await floor(c2, room, "granted"))["holder"] == "carol"
        await asyncio.sleep(3.0)   # past the grace: still carol's
        await ptt(b, room, "request")
        assert (await floor(b, room, "denied"))["holder"] == "carol"
    run(t())
