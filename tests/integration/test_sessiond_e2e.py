"""test_sessiond_e2e.py -- issue 3 end to end: sessions, presence and
connection quality through real WebSocket clients, the real gateway, the
real sessiond and a real Redis.

What a user sees: `welcome.resumed` with a plausible `disconnected_ms` when
coming back within TETHER_SESSION_TTL_S (on whichever gateway), a fresh
session after the TTL or after `bye`; presence per room (`members` right
after `subscribed`, then online / reconnecting / offline changes, a second
tab keeping a user online); `quality` frames classified and stored; the
gateway's per-user HTTP endpoints (401 bad token, 403 another user); the
operators' view on sessiond (GET /v1/sessions/{id}, /metrics).
"""

import asyncio
import json
import time

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run

pytestmark = pytest.mark.requires("sessiond")


def states(c, room, user):
    return [f.get("state") for f in c.find("presence", room=room, user=user)]


async def members_of(c, room, timeout=5):
    f = await c.recv_until(lambda x: x.get("type") == "presence" and x.get("room") == room and "members" in x,
                           timeout, "presence members of %s" % room)
    return {m["user"]: m["state"] for m in f["members"]}


async def client(suite, user, gateway=None, session=None, rooms=None, name=None):
    c = tc.Client(suite.ws_url(gateway), name=name or user)
    await c.connect()
    await c.hello(token=suite.token(user), session=session, rooms=rooms)
    return c


def sessiond_get(suite, path):
    status, _, body = suite.operator_get(path)
    return status, (json.loads(body) if body else None)


def test_resume_within_ttl_on_another_gateway(suite):
    g2 = suite.add_gateway()

    async def t():
        room = tc.uid("res")
        a = await client(suite, "alice")
        assert a.welcome["resumed"] is False
        await a.subscribe(room)
        s1 = a.session
        a.abort()
        t_cut = time.monotonic()
        await asyncio.sleep(0.8)             # the time away is what is measured
        b = await client(suite, "alice", gateway=g2.name, session=s1, rooms={room: {}})
        away_ms = (time.monotonic() - t_cut) * 1000
        w = b.welcome
        assert w["session"] == s1 and w["resumed"] is True, w
        # Measured from when the first gateway noticed the drop (right after
        # the abort on loopback) to the hello on the second one.
        assert 600 <= w["disconnected_ms"] <= away_ms + 300, (w, away_ms)
    run(t())


@pytest.mark.suite_env(TETHER_SESSION_TTL_S="2")
def test_after_ttl_fresh_session_and_offline(suite):
    async def t():
        room = tc.uid("ttl")
        watcher = await client(suite, "watcher")
        await watcher.subscribe(room)
        a = await client(suite, "alice")
        await a.subscribe(room)
        await watcher.wait_for(lambda: "online" in states(watcher, room, "alice"), 5, "alice online")
        s1 = a.session
        a.abort()
        t0 = time.monotonic()
        await watcher.wait_for(lambda: "reconnecting" in states(watcher, room, "alice"), 5, "reconnecting")
        await watcher.wait_for(lambda: "offline" in states(watcher, room, "alice"), 6, "offline after the TTL")
        gone = time.monotonic() - t0
        assert 1.5 <= gone <= 4.0, gone
        assert states(watcher, room, "alice") == ["online", "reconnecting", "offline"]
        # The same id gives a fresh session, never an error; that new session
        # is then resumable like any other.
        b = await client(suite, "alice", session=s1)
        assert b.welcome["session"] == s1 and b.welcome["resumed"] is False, b.welcome
        b.abort()
        c = await client(suite, "alice", session=s1)
        assert c.welcome["resumed"] is True, c.welcome
    run(t())


def test_bye_then_same_id_is_fresh(suite):
    async def t():
        room = tc.uid("bye")
        watcher = await client(suite, "watcher")
        await watcher.subscribe(room)
        a = await client(suite, "bob")
        await a.subscribe(room)
        await watcher.wait_for(lambda: "online" in states(watcher, room, "bob"), 5, "bob online")
        s1 = a.session
        await a.send({"type": "bye"})
        assert (await a.wait_closed(5))[0] == 1000
        await watcher.wait_for(lambda: "offline" in states(watcher, room, "bob"), 3, "offline at once")
        assert "reconnecting" not in states(watcher, room, "bob")
        b = await client(suite, "bob", session=s1)
        assert b.welcome["resumed"] is False
    run(t())


def test_presence_members_then_changes(suite):
    async def t():
        room = tc.uid("pres")
        a = await client(suite, "alice")
        await a.subscribe(room)
        m = await members_of(a, room)
        assert m.get("alice") == "online", m
        b = await client(suite, "bob")
        await b.subscribe(room)
        await a.wait_for(lambda: states(a, room, "bob") == ["online"], 5, "bob online")
        sb = b.session
        b.abort()
        await a.wait_for(lambda: states(a, room, "bob") == ["online", "reconnecting"], 5, "bob reconnecting")
        # A newcomer's members list shows bob as reconnecting.
        c = await client(suite, "carol")
        await c.subscribe(room)
        m = await members_of(c, room)
        assert m.get("bob") == "reconnecting" and m.get("alice") == "online", m
        # bob resumes (hello with the room): online again, never offline.
        b2 = await client(suite, "bob", session=sb, rooms={room: {}})
        assert b2.welcome["resumed"] is True
        await a.wait_for(lambda: states(a, room, "bob") == ["online", "reconnecting", "online"], 5, "online again")
        await asyncio.sleep(0.3)
        assert "offline" not in states(a, room, "bob")
    run(t())


def test_two_tabs_stay_online(suite):
    async def t():
        room = tc.uid("tabs")
        w = await client(suite, "watcher")
        await w.subscribe(room)
        t1 = await client(suite, "dana", name="tab1")
        await t1.subscribe(room)
        t2 = await client(suite, "dana", name="tab2")
        await t2.subscribe(room)
        await w.wait_for(lambda: "online" in states(w, room, "dana"), 5, "dana online")
        t1.abort()
        # The other tab is still there: nothing changes for observers.
        c = await client(suite, "carol")
        await c.subscribe(room)
        m = await members_of(c, room)
        assert m.get("dana") == "online", m
        assert states(w, room, "dana") == ["online"]
        t2.abort()
        await w.wait_for(lambda: states(w, room, "dana") == ["online", "reconnecting"], 5, "reconnecting")
    run(t())


def test_quality_frame_stored_and_http(suite):
    async def t():
        room = tc.uid("q")
        a = await client(suite, "erin")
        await a.subscribe(room)
        await a.send({"type": "quality", "rtt_ms": 220, "loss_pct": 0.2, "jitter_ms": 5, "bandwidth_kbps": 800})
        q = await a.expect("quality", 5)
        assert q["quality"] == "fair" and q["recommendations"], q
        auth = {"Authorization": "Bearer " + suite.token("erin")}
        gw = suite.gateway.http

        def state():
            st, _, body = th.http_request(gw, "GET", "/v1/rooms/%s/reconnection-state" % room, headers=auth)
            return st, json.loads(body)
        st, body = await asyncio.to_thread(th.wait_until, lambda: (lambda r: r if r[1]["state"].get(
            "connection_quality") == "fair" else None)(state()), 5, "quality stored")
        assert st == 200 and body["user_id"] == "erin" and body["state"]["is_connected"] is True, body
        # The HTTP report: classified, stored, visible.
        st, _, raw = await asyncio.to_thread(
            th.http_request, gw, "POST", "/v1/rooms/%s/connection-quality" % room,
            json_body={"rtt_ms": 30, "loss_pct": 8, "jitter_ms": 2, "bandwidth_kbps": 5000}, headers=auth)
        r = json.loads(raw)
        assert st == 200 and r["quality"] == "poor" and r["recommendations"], r
        st, body = await asyncio.to_thread(state)
        assert body["state"]["connection_quality"] == "poor", body
        # Someone else's state: 403. A bad token: 401.
        st, _, _ = await asyncio.to_thread(
            th.http_request, gw, "GET", "/v1/rooms/%s/reconnection-state?user_id=mallory" % room, headers=auth)
        assert st == 403
        st, _, _ = await asyncio.to_thread(
            th.http_request, gw, "POST", "/v1/rooms/%s/connection-quality?user_id=mallory" % room,
            json_body={"rtt_ms": 1}, headers=auth)
        assert st == 403
        for path, method in (("reconnection-state", "GET"), ("connection-quality", "POST")):
            st, _, _ = await asyncio.to_thread(
                th.http_request, gw, method, "/v1/rooms/%s/%s" % (room, path),
                json_body={} if method == "POST" else None, headers={"Authorization": "Bearer not.a.jwt"})
            assert st == 401, (path, st)
    run(t())


def test_operator_session_record_and_metrics(suite):
    async def t():
        room = tc.uid("op")
        a = await client(suite, "frank")
        await a.subscribe(room)
        pub = await client(suite, "pub")
        await pub.publish(room, "m1", {"x": 1})
        await a.wait_messages(room, 1)
        await a.send({"type": "quality", "rtt_ms": 20, "loss_pct": 0, "jitter_ms": 1, "bandwidth_kbps": 9000})
        await a.expect("quality", 5)
        sid = a.session
        a.abort()

        def record():
            st, rec = sessiond_get(suite, "/v1/sessions/%s" % sid)
            return rec if st == 200 and not rec["connected"] and rec["quality"]["level"] == "good" else None
        rec = await asyncio.to_thread(th.wait_until, record, 5, "session record after the drop")
        assert rec["user"] == "frank" and rec["session"] == sid
        assert rec["gateway"] and rec["disconnects"] == 1 and rec["last_seen_ms"] > 0 and rec["expires_ms"] > 0
        pos = {r["room"]: r for r in rec["rooms"]}
        assert pos[room]["seq"] == 1 and pos[room]["epoch"], rec
        st, by_user = sessiond_get(suite, "/v1/sessions?user=frank")
        assert st == 200 and by_user["session"] == sid
        assert sessiond_get(suite, "/v1/sessions/nosuchsession")[0] == 404
        # Gauges are read from Redis once a second (all replicas agree).
        m = await asyncio.to_thread(th.wait_until, lambda: (lambda m: m if m[
            'tether_sessiond_sessions{state="disconnected"}'] >= 1 else None)(suite["sessiond"].metrics()), 5,
            "session gauges")
        assert m['tether_sessiond_sessions{state="connected"}'] >= 1
        assert m["tether_sessiond_opens_total"] >= 2
        assert m["tether_sessiond_gateways_alive"] >= 1
        assert m['tether_sessiond_presence_events_total{state="reconnecting"}'] >= 0
    run(t())
