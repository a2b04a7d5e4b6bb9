"""test_resume.py -- docs/protocol.md resume, sessions and presence.

The resume path: after a network cut, hello {session, rooms: {r: {epoch,
seq}}} delivers exactly the missed messages of every room and then the live
ones, with no hole and no duplicate, while traffic continues (the history/live
merge). Session continuity (resumed, disconnected_ms, takeover 4006, bye) and
presence need sessiond; those tests are skipped until it is built.
"""

import asyncio
import time

import pytest

import tether_client as tc
from tether_client import run


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="1000")
def test_resume_500_missed_across_3_rooms(suite):
    counts = {0: 200, 1: 150, 2: 150}          # 500 missed in all
    live_n = 30

    async def t():
        rooms = [tc.uid("resume") for _ in range(3)]
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="pub")
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="a1")
        for r in rooms:
            await a.subscribe(r)
        seq_to_id = {r: {} for r in rooms}

        def record(r, acks):
            for ack in acks:
                assert seq_to_id[r].setdefault(ack["seq"], ack["id"]) == ack["id"], "two ids for one seq"

        for r in rooms:
            record(r, await pub.publish_many(r, 10, prefix="pre"))
        for r in rooms:
            await a.wait_messages(r, 10)
        positions = {r: {"epoch": a.messages(r)[-1]["epoch"], "seq": a.messages(r)[-1]["seq"]} for r in rooms}
        assert all(p["seq"] == 10 for p in positions.values())
        session = a.session
        a.abort()                                         # network cut, no close frame

        res = await asyncio.gather(*(pub.publish_many(r, counts[i], prefix="missed") for i, r in enumerate(rooms)))
        for r, acks in zip(rooms, res):
            record(r, acks)

        # Live traffic keeps flowing from another connection during the resume.
        live = await tc.connect(suite.ws_url(), token=suite.token("carol"), name="live")

        async def live_traffic():
            for i in range(live_n):
                acks = await asyncio.gather(*(live.publish(r, "live-%d" % i, i) for r in rooms))
                for r, ack in zip(rooms, acks):
                    record(r, [ack])
        live_task = asyncio.get_running_loop().create_task(live_traffic())

        b = tc.Client(suite.ws_url(), name="a2")
        await b.connect()
        w = await b.hello(token=suite.token("alice"), session=session, rooms=positions)
        subs = {}
        for _ in rooms:
            f = await b.recv_until(lambda x: x.get("type") in ("subscribed", "error"), 10, "subscribed")
            assert f["type"] == "subscribed", f
            subs[f["room"]] = f
        await live_task
        problems = []
        for i, r in enumerate(rooms):
            top = 10 + counts[i] + live_n
            s = subs[r]
            if s["recovered"] is not True:
                problems.append("%s not recovered: %s" % (r, s))
            if s["missed"] != s["seq"] - 10:
                problems.append("%s: missed %s but top %s after position 10" % (r, s["missed"], s["seq"]))
            await b.wait_seq(r, top, timeout=20)
            got = b.seqs(r)
            if got != list(range(11, top + 1)):
                dup = sorted({x for x in got if got.count(x) > 1})
                hole = sorted(set(range(11, top + 1)) - set(got))
                problems.append("%s: %d messages, duplicates %s, holes %s, first %s" % (r, len(got), dup[:10], hole[:10], got[:5]))
            wrong_ids = [m["seq"] for m in b.messages(r) if seq_to_id[r].get(m["seq"]) != m["id"]]
            if wrong_ids:
                problems.append("%s: seqs delivered with another id than acked: %s" % (r, wrong_ids[:10]))
        assert not problems, "\n".join(problems)
        return w
    run(t(), timeout=120)


@pytest.mark.requires("sessiond")
def test_resume_keeps_session(suite):
    async def t():
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        room = tc.uid()
        await a.subscribe(room)
        s1 = a.session
        t_cut = time.monotonic()
        a.abort()
        b = tc.Client(suite.ws_url())
        await b.connect()
        w = await b.hello(token=suite.token("alice"), session=s1)
        gone_ms = (time.monotonic() - t_cut) * 1000
        assert w["session"] == s1, w
        assert w["resumed"] is True, w
        assert isinstance(w.get("disconnected_ms"), int) and 0 <= w["disconnected_ms"] <= gone_ms + 1000, (w, gone_ms)
    run(t())


@pytest.mark.requires("sessiond")
def test_resume_of_another_users_session_is_refused(suite):
    async def t():
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        s1 = a.session
        a.abort()
        m = tc.Client(suite.ws_url())
        await m.connect()
        try:
            w = await m.hello(token=suite.token("mallory"), session=s1)
        except (tc.Closed, tc.FrameError):
            return
        assert not (w["session"] == s1 and w["resumed"]), "mallory resumed alice's session: %s" % w
    run(t())


@pytest.mark.requires("sessiond")
@pytest.mark.suite_env(TETHER_SESSION_TTL_S="2")
def test_session_expires_after_ttl(suite):
    async def t():
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        assert a.welcome["session_ttl_ms"] == 2000
        s1 = a.session
        a.abort()
        # The TTL itself is what is tested, so this one waits out the time.
        await asyncio.sleep(3.5)
        b = tc.Client(suite.ws_url())
        await b.connect()
        w = await b.hello(token=suite.token("alice"), session=s1)
        assert w["resumed"] is False, w
    run(t())


@pytest.mark.requires("sessiond")
def test_session_takeover_closes_old_connection_4006(suite):
    async def t():
        a1 = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="old")
        a2 = tc.Client(suite.ws_url(), name="new")
        await a2.connect()
        w = await a2.hello(token=suite.token("alice"), session=a1.session)
        assert w["session"] == a1.session and w["resumed"] is True, w
        code, _ = await a1.wait_closed(5)
        assert code == 4006
        await a2.ping()
    run(t())


@pytest.mark.requires("sessiond")
def test_bye_ends_session(suite):
    async def t():
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        s1 = a.session
        await a.send({"type": "bye"})
        assert (await a.wait_closed(5))[0] == 1000
        b = tc.Client(suite.ws_url())
        await b.connect()
        w = await b.hello(token=suite.token("alice"), session=s1)
        assert w["resumed"] is False, w
    run(t())


def _states(c, room, user):
    return [f.get("state") for f in c.find("presence", room=room, user=user)]


@pytest.mark.requires("sessiond")
def test_presence_members_online_reconnecting_offline(suite):
    async def t():
        room = tc.uid()
        alice = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="alice")
        await alice.subscribe(room)
        members = await alice.recv_until(lambda f: f.get("type") == "presence" and f.get("room") == room
                                         and "members" in f, 5, "presence members")
        assert {"user": "alice", "state": "online"} in members["members"], members
        bob = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="bob")
        await bob.subscribe(room)
        bm = await bob.recv_until(lambda f: f.get("type") == "presence" and "members" in f, 5, "members")
        assert {m["user"] for m in bm["members"]} >= {"alice", "bob"}, bm
        await alice.wait_for(lambda: "online" in _states(alice, room, "bob"), 5, "bob online")
        session = bob.session
        bob.abort()
        await alice.wait_for(lambda: "reconnecting" in _states(alice, room, "bob"), 5, "bob reconnecting")
        assert "offline" not in _states(alice, room, "bob")
        n_online = _states(alice, room, "bob").count("online")
        bob2 = tc.Client(suite.ws_url(), name="bob2")
        await bob2.connect()
        await bob2.hello(token=suite.token("bob"), session=session, rooms={room: {}})
        await alice.wait_for(lambda: _states(alice, room, "bob").count("online") > n_online, 5, "bob online again")
        assert "offline" not in _states(alice, room, "bob")
        await bob2.send({"type": "bye"})
        await alice.wait_for(lambda: "offline" in _states(alice, room, "bob"), 5, "bob offline after bye")
    run(t())
