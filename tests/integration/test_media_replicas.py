"""test_media_replicas.py -- several mediad replicas with room affinity, and
mediad going away (kill -9, SIGTERM) under a talk burst.

  - Two replicas behind one gateway (TETHER_MEDIAD lists both): a room's
    members all land on one replica (the first offer claims the room in
    Redis; offers reaching the other replica are redirected), and audio
    flows between them.
  - The hosting replica killed -9: the gateway notices (missed pings) and
    sends `media restart`; the clients offer again, the surviving replica
    takes the room over at once (the gateway saw the host die) and audio
    flows again; the floor survived in Redis.
  - SIGTERM on a replica: its sessions get `restart` at once (no waiting for
    missed pings) and renegotiate on the other replica.
  - A single mediad killed -9 and restarted: native clients renegotiate and
    the audio gap is reported.
"""

import asyncio
import time

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run
from test_media_helpers import Probe, join_audio, wait_stats

pytestmark = [pytest.mark.requires("mediad", "sessiond")]


def two_replicas(tether):
    s = tether(components=["busd", "replayd", "sessiond", "mediad"])
    d2 = s._daemon("mediad2", "mediad")
    d2.env["TETHER_MEDIAD"] = "tcp://127.0.0.1:%d" % th.free_port()
    d2.start()
    d2.wait_healthy()
    s.wait_ready(d2)
    eps = "%s,%s" % (s["mediad"].env["TETHER_MEDIAD"], d2.env["TETHER_MEDIAD"])
    gw = s.add_gateway(env={"TETHER_MEDIAD": eps})
    return s, gw.name


def sessions(s, name):
    return s[name].metrics().get("tether_mediad_sessions", 0)


async def member(s, gw, user, room):
    c = await tc.connect(s.ws_url(gw), token=s.token(user), name=user)
    await c.subscribe(room)
    return c


async def rejoin_on_restart(ws, room, probe, pid, n, timeout=20.0):
    """Waits for the n-th `media restart` for room, then offers again with a
    fresh peer named pid-n. Returns the new peer id."""
    await ws.wait_for(lambda: len(ws.find("media", room=room, action="restart")) >= n, timeout,
                      "media restart #%d" % n)
    new = "%s-%d" % (pid.split("-")[0], n)
    await join_audio(ws, room, probe, new, keying="sdes")
    return new


def test_room_affinity_across_replicas(tether):
    async def t():
        s, gw = two_replicas(tether)
        room = tc.uid("aff")
        probe = await Probe().start()
        try:
            users = ["alice", "bob", "carol", "dave"]
            ws = {u: await member(s, gw, u, room) for u in users}
            for u in users:
                await join_audio(ws[u], room, probe, u, keying="sdes")
            counts = sorted([sessions(s, "mediad"), sessions(s, "mediad2")])
            assert counts == [0, 4], counts
            redirects = sum(s[n].metrics().get("tether_mediad_redirects_total", 0) for n in ("mediad", "mediad2"))
            assert redirects >= 1, "offers reached both replicas; some were redirected"
            await ws["alice"].send({"type": "ptt", "room": room, "action": "request"})
            await ws["alice"].expect("ptt", room=room, state="granted")
            await probe.send("alice", 30, interval_ms=5)
            for u in users[1:]:
                st = await wait_stats(probe, u, lambda x: x["payload_ok"] >= 30, what="%s hears alice" % u)
                assert st["tags"] == {"alice": 30}, st
        finally:
            await probe.stop()
    run(t(), timeout=120)


@pytest.mark.chaos
def test_host_killed_survivor_takes_over(tether):
    async def t():
        s, gw = two_replicas(tether)
        room = tc.uid("aff")
        probe = await Probe().start()
        try:
            a = await member(s, gw, "alice", room)
            b = await member(s, gw, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes")
            await join_audio(b, room, probe, "bob", keying="sdes")
            host = "mediad" if sessions(s, "mediad") == 2 else "mediad2"
            other = "mediad2" if host == "mediad" else "mediad"
            await a.send({"type": "ptt", "room": room, "action": "request"})
            await a.expect("ptt", room=room, state="granted")
            await probe.send("alice", 20, interval_ms=5)
            await wait_stats(probe, "bob", lambda x: x["payload_ok"] >= 20, what="bob hears alice")
            t0 = time.monotonic()
            s.kill9(host)
            na, nb = await asyncio.gather(rejoin_on_restart(a, room, probe, "alice", 1),
                                          rejoin_on_restart(b, room, probe, "bob", 1))
            elapsed = time.monotonic() - t0
            assert sessions(s, other) == 2
            await probe.send(na, 20, interval_ms=5, tag="alice")
            st = await wait_stats(probe, nb, lambda x: x["payload_ok"] >= 20, what="bob hears alice again")
            assert st["tags"] == {"alice": 20}, st
            print("host killed: both clients renegotiated on %s within %.2f s" % (other, elapsed))
            assert elapsed < 8, elapsed
        finally:
            await probe.stop()
    run(t(), timeout=120)


@pytest.mark.chaos
def test_sigterm_sends_restart_at_once(tether):
    async def t():
        s, gw = two_replicas(tether)
        room = tc.uid("aff")
        probe = await Probe().start()
        try:
            a = await member(s, gw, "alice", room)
            b = await member(s, gw, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes")
            await join_audio(b, room, probe, "bob", keying="sdes")
            host = "mediad" if sessions(s, "mediad") == 2 else "mediad2"
            t0 = time.monotonic()
            s.term(host)
            await b.wait_for(lambda: b.find("media", room=room, action="restart"), 5, "restart")
            took = time.monotonic() - t0
            assert took < 0.8, "a draining mediad says so at once (%.2f s)" % took
            assert "shutting down" in b.find("media", room=room, action="restart")[0].get("reason", "")
            assert s[host].wait_exit(5) == 0
            na, nb = await asyncio.gather(rejoin_on_restart(a, room, probe, "alice", 1),
                                          rejoin_on_restart(b, room, probe, "bob", 1))
            await a.send({"type": "ptt", "room": room, "action": "request"})
            await a.expect("ptt", room=room, state="granted")
            await probe.send(na, 20, interval_ms=5, tag="alice")
            await wait_stats(probe, nb, lambda x: x["payload_ok"] >= 20, what="audio after the drain")
        finally:
            await probe.stop()
    run(t(), timeout=120)


@pytest.mark.chaos
def test_single_mediad_kill9_native_gap(suite):
    async def t():
        room = tc.uid("kill")
        probe = await Probe().start()
        try:
            a = await member(suite, None, "alice", room)
            b = await member(suite, None, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes")
            await join_audio(b, room, probe, "bob", keying="sdes")
            await a.send({"type": "ptt", "room": room, "action": "request"})
            await a.expect("ptt", room=room, state="granted")
            # alice talks continuously (20 ms packets) through the kill.
            talk = asyncio.ensure_future(probe.send("alice", 400, interval_ms=20, tag="alice"))
            await wait_stats(probe, "bob", lambda x: x["payload_ok"] >= 25, what="bob hears alice")
            last_before = (await probe.stats("bob"))["last_rx_ms"]
            suite.kill9("mediad")
            suite["mediad"].start()
            na, nb = await asyncio.gather(rejoin_on_restart(a, room, probe, "alice", 1),
                                          rejoin_on_restart(b, room, probe, "bob", 1))
            # The old peer's session is gone with the old mediad: it stops,
            # the new one talks on.
            talk.cancel()
            await probe.close_peer("alice")
            await probe.send(na, 100, interval_ms=20, tag="alice")
            st = await wait_stats(probe, nb, lambda x: x["payload_ok"] >= 50, what="bob hears alice again")
            gap = st["first_rx_ms"] - last_before
            print("native audio gap across mediad kill -9 + immediate restart: %d ms" % gap)
            assert 0 < gap < 10000, gap
            # The floor is still alice's (Redis).
            await b.send({"type": "ptt", "room": room, "action": "request"})
            f = await b.expect("ptt", room=room, state="denied")
            assert f["holder"] == "alice"
        finally:
            await probe.stop()
    run(t(), timeout=120)
