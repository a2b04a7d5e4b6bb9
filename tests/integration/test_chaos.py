"""test_chaos.py -- docs/architecture.md "Failure behaviour", one row per test.

Processes are killed (SIGKILL) or drained (SIGTERM) under traffic and what
must hold is checked end to end through real clients: every publish id gets
exactly one seq, every acknowledged message is delivered once and in order,
gaps are repaired or reported (never silent), clients resume elsewhere.
Run by `tests/run_all.sh chaos` (marker `chaos`).
"""

import asyncio
import time

import pytest

import tether_client as tc
from tether_client import run

pytestmark = pytest.mark.chaos


class RetryingPublisher:
    """Publishes ids 0..n-1 with at most `window` unacknowledged, re-sending
    the same id after an error (4500/4429) or `retry_s` without an answer: the
    client side of "retrying an unacknowledged publish is always safe"."""

    def __init__(self, client, room, n, prefix="c", window=16, retry_s=2.0):
        self.c, self.room, self.n = client, room, n
        self.ids = ["%s-%d" % (prefix, i) for i in range(n)]
        self.window, self.retry_s = window, retry_s
        self.acked = {}            # id -> first acked seq
        self.sends = 0
        self.retries = 0

    async def _send(self, id_):
        self.sends += 1
        await self.c.send({"type": "publish", "room": self.room, "id": id_, "data": {"id": id_}})

    async def run(self, deadline_s=60.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        inflight = {}              # id -> (last send time, errors seen)
        nxt = 0
        while len(self.acked) < self.n:
            if loop.time() > end:
                raise AssertionError("%d of %d publishes acked after %.0fs (%d retries)"
                                     % (len(self.acked), self.n, deadline_s, self.retries))
            if self.c.closed.is_set():
                raise tc.Closed(self.c.close_code, self.c.close_reason, "acks")
            now = loop.time()
            for id_ in list(inflight):
                seqs = self.c.acked_seqs(self.room, id_)
                if seqs:
                    self.acked[id_] = seqs[0]
                    del inflight[id_]
                    continue
                sent, errs = inflight[id_]
                n_err = len(self.c.id_errors.get(id_, []))
                if n_err > errs or now - sent > self.retry_s:
                    for _, e in self.c.id_errors.get(id_, [])[errs:]:
                        assert e.get("code") in (4500, 4429), "publish %s refused: %s" % (id_, e)
                    self.retries += 1
                    inflight[id_] = (now, n_err)
                    await self._send(id_)
            while nxt < self.n and len(inflight) < self.window:
                if self.ids[nxt] not in self.acked:      # pre-acked ids are not sent again
                    inflight[self.ids[nxt]] = (now, len(self.c.id_errors.get(self.ids[nxt], [])))
                    await self._send(self.ids[nxt])
                nxt += 1
            await self.c.wait_change(0.1)

    def check_one_seq_per_id(self):
        problems = []
        for id_ in self.ids:
            seqs = set(self.c.acked_seqs(self.room, id_))
            if len(seqs) != 1:
                problems.append("%s acked with seqs %s" % (id_, sorted(seqs)))
        got = sorted(self.acked.values())
        if got != list(range(1, self.n + 1)):
            problems.append("acked seqs are not 1..%d: missing %s, duplicates %s" % (
                self.n, sorted(set(range(1, self.n + 1)) - set(got))[:10],
                sorted({s for s in got if got.count(s) > 1})[:10]))
        return problems


def check_delivery(sub, room, seq_to_id, top):
    """sub got exactly seqs 1..top of room, once each, in order, with the
    acked ids, and no `gap` frame."""
    got = [(m["seq"], m["id"]) for m in sub.messages(room)]
    want = [(s, seq_to_id.get(s)) for s in range(1, top + 1)]
    problems = []
    if got != want:
        seqs = [s for s, _ in got]
        problems.append("%s: %d messages; holes %s; duplicates %s; out of order at %s; wrong ids at %s" % (
            sub.name, len(got), sorted(set(range(1, top + 1)) - set(seqs))[:10],
            sorted({s for s in seqs if seqs.count(s) > 1})[:10],
            [seqs[i + 1] for i in range(len(seqs) - 1) if seqs[i + 1] <= seqs[i]][:5],
            [s for s, i in got if seq_to_id.get(s) != i][:10]))
    if sub.find("gap"):
        problems.append("%s: gap frames %s" % (sub.name, sub.find("gap")[:3]))
    return problems


async def subscribers(suite, room, n, gateway=None):
    out = []
    for i in range(n):
        c = await tc.connect(suite.ws_url(gateway), token=suite.token("sub%d" % i), name="sub%d" % i)
        await c.subscribe(room)
        out.append(c)
    return out


def test_replayd_kill9_mid_stream_each_id_one_seq(suite):
    n = 300

    async def t():
        room = tc.uid("chaos")
        subs = await subscribers(suite, room, 2)
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"), name="pub")
        rp = RetryingPublisher(pub, room, n)
        task = asyncio.get_running_loop().create_task(rp.run(90))
        await pub.wait_for(lambda: len(rp.acked) >= 100 or task.done(), 30, "100 acks")
        suite.kill9("replayd")
        killed_at = len(rp.acked)
        await asyncio.to_thread(suite.restart, "replayd")
        await task
        problems = rp.check_one_seq_per_id()
        seq_to_id = {s: i for i, s in rp.acked.items()}
        for s in subs:
            try:
                await s.wait_seq(room, n, timeout=20)
            except TimeoutError:
                pass
            await s.ping()
            problems += check_delivery(s, room, seq_to_id, n)
        assert not problems, "killed after %d acks, %d retries:\n%s" % (killed_at, rp.retries, "\n".join(problems))
    run(t(), timeout=150)


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="1000")
def test_busd_kill9_under_traffic_subscribers_lose_nothing(suite):
    # History holds every message of the test, so any gap is repairable: what
    # the bus lost (its queues at the kill, the time it is down) must come
    # back from replayd. With the default 100 a gap can outgrow the history
    # and is then (rightly) reported with a `gap` frame instead.
    n = 300

    async def t():
        g2 = suite.add_gateway()
        room = tc.uid("chaos")
        subs = await subscribers(suite, room, 2) + await subscribers(suite, room, 1, g2.name)
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"), name="pub")
        rp = RetryingPublisher(pub, room, n, window=4)
        task = asyncio.get_running_loop().create_task(rp.run(90))
        await pub.wait_for(lambda: len(rp.acked) >= 100 or task.done(), 30, "100 acks")
        suite.kill9("busd")
        # Traffic goes on (publishes reach replayd directly) while the bus is down.
        await pub.wait_for(lambda: len(rp.acked) >= 150 or task.done(), 30, "150 acks")
        await asyncio.to_thread(suite.restart, "busd")
        await task
        problems = rp.check_one_seq_per_id()
        seq_to_id = {s: i for i, s in rp.acked.items()}
        for s in subs:
            try:
                await s.wait_seq(room, n, timeout=20)
            except TimeoutError:
                pass
            await s.ping()
            problems += check_delivery(s, room, seq_to_id, n)
        assert not problems, "\n".join(problems)
    run(t(), timeout=150)


def test_busd_kill9_last_message_is_found(suite):
    # The message published while the bus is down is the last one: only the
    # room-head announcements let gateways notice it.
    async def t():
        room = tc.uid("chaos")
        (sub,) = await subscribers(suite, room, 1)
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        await pub.publish(room, "before", 1)
        await sub.wait_seq(room, 1)
        suite.kill9("busd")
        await pub.publish(room, "during", 2)
        await asyncio.to_thread(suite.restart, "busd")
        await sub.wait_seq(room, 2, timeout=15)
        assert [(m["seq"], m["id"]) for m in sub.messages(room)] == [(1, "before"), (2, "during")]
    run(t())


async def bus_is_back(suite, sub, pub, timeout=10.0):
    """Publishes to a probe room `sub` listens to until one arrives live."""
    probe = tc.uid("probe")
    await sub.subscribe(probe)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    i = 0
    while loop.time() < end:
        await pub.publish(probe, "p%d" % i, i)
        i += 1
        try:
            await sub.wait_seq(probe, i, timeout=0.2)
            return
        except TimeoutError:
            pass
    raise TimeoutError("bus not delivering %.0fs after busd restart" % timeout)


@pytest.mark.parametrize("found_by", ["room_heads", "live_message"])
def test_busd_kill9_first_messages_of_a_new_room_are_repaired(suite, found_by):
    # The subscriber joined while the room was empty (no epoch yet), then the
    # bus lost the room's first messages: they are in replayd's history, so
    # the gateway must repair them, not report a gap -- whether it learns of
    # them from replayd's room-head announcements or from the next live
    # message (seen once in test_replayd_kill9_mid_stream: "unrepairable gap
    # 1..29" at the start of a room while replayd's PUB was still joining).
    async def t():
        room = tc.uid("chaos")
        (sub,) = await subscribers(suite, room, 1)
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        suite.kill9("busd")
        for i in range(3):
            await pub.publish(room, "early-%d" % i, i)
        await asyncio.to_thread(suite.restart, "busd")
        if found_by == "live_message":
            await bus_is_back(suite, sub, pub)
        else:
            await sub.wait_seq(room, 3, timeout=15)
        await pub.publish(room, "after", 3)
        await sub.wait_seq(room, 4, timeout=15)
        await sub.ping()
        assert not sub.find("gap"), sub.find("gap")
        assert [(m["seq"], m["id"]) for m in sub.messages(room)] == \
            [(1, "early-0"), (2, "early-1"), (3, "early-2"), (4, "after")]
    run(t())


@pytest.mark.suite_env(TETHER_DRAIN_MS="1000")
def test_gateway_sigterm_reconnect_hint_close_4000_resume_elsewhere(suite):
    n_clients = 5

    async def t():
        g2 = suite.add_gateway()
        room = tc.uid("drain")
        clients = await subscribers(suite, room, n_clients)
        pub = await tc.connect(suite.ws_url(g2.name), token=suite.token("pub"), name="pub")
        seq_to_id = {}
        for a in await pub.publish_many(room, 20, prefix="pre"):
            seq_to_id[a["seq"]] = a["id"]
        for c in clients:
            await c.wait_seq(room, 20)
        t_term = time.monotonic()
        suite.term("gateway")
        problems = []
        for c in clients:
            try:
                code, _ = await c.wait_closed(10)
            except asyncio.TimeoutError:
                problems.append("%s still open 10 s after SIGTERM" % c.name)
                continue
            hints = c.find("reconnect")
            if code != 4000:
                problems.append("%s closed with %s, want 4000" % (c.name, code))
            if not hints:
                problems.append("%s got no reconnect frame before the close" % c.name)
            elif not (isinstance(hints[0].get("after_ms"), int) and 0 <= hints[0]["after_ms"] <= 60000):
                problems.append("%s: bad after_ms in %s" % (c.name, hints[0]))
        assert not problems, "\n".join(problems)
        status = await asyncio.to_thread(suite.gateway.wait_exit, 10)
        assert status == 0, "gateway exit status %s after SIGTERM" % status
        assert time.monotonic() - t_term < 1.0 + 5.0, "drain took longer than TETHER_DRAIN_MS + 5 s"
        # Messages published during the drain and after.
        for a in await pub.publish_many(room, 20, prefix="post"):
            seq_to_id[a["seq"]] = a["id"]
        # Every client comes back on the other gateway and resumes.
        for c in clients:
            hint = c.find("reconnect")[0]
            await asyncio.sleep(min(hint["after_ms"], 2000) / 1000)   # honouring the hint is the point
            last = c.messages(room)[-1]
            nc = tc.Client(suite.ws_url(g2.name), name=c.name + "-resumed")
            await nc.connect()
            await nc.hello(token=suite.token(c.name), session=c.session,
                           rooms={room: {"epoch": last["epoch"], "seq": last["seq"]}})
            await nc.wait_seq(room, 40, timeout=10)
            whole = c.messages(room) + nc.messages(room)
            got = [(m["seq"], m["id"]) for m in whole]
            if got != [(s, seq_to_id[s]) for s in range(1, 41)]:
                problems.append("%s: across the drain got %s" % (c.name, [s for s, _ in got]))
        assert not problems, "\n".join(problems)
    run(t(), timeout=120)


def test_gateway_kill9_clients_resume_on_another_gateway(suite):
    async def t():
        g2 = suite.add_gateway()
        room = tc.uid("gwkill")
        (a,) = await subscribers(suite, room, 1)
        pub = await tc.connect(suite.ws_url(g2.name), token=suite.token("pub"), name="pub")
        seq_to_id = {x["seq"]: x["id"] for x in await pub.publish_many(room, 30, prefix="pre")}
        await a.wait_seq(room, 30)
        suite.kill9("gateway")
        await a.wait_closed(5)            # the socket drops (1006: no close frame)
        seq_to_id.update({x["seq"]: x["id"] for x in await pub.publish_many(room, 30, prefix="post")})
        last = a.messages(room)[-1]
        b = tc.Client(suite.ws_url(g2.name), name="resumed")
        await b.connect()
        await b.hello(token=suite.token("sub0"), session=a.session,
                      rooms={room: {"epoch": last["epoch"], "seq": last["seq"]}})
        await b.wait_seq(room, 60)
        got = [(m["seq"], m["id"]) for m in a.messages(room) + b.messages(room)]
        assert got == [(s, seq_to_id[s]) for s in range(1, 61)]
    run(t())


def test_redis_flushed_new_epoch_never_a_silent_hole(suite):
    async def t():
        room = tc.uid("flush")
        (live,) = await subscribers(suite, room, 1)
        s0 = live.find("subscribed", room=room)[0]
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        await pub.publish_many(room, 5, prefix="old")
        await live.wait_seq(room, 5)
        old_epoch = live.messages(room)[-1]["epoch"]
        assert old_epoch and s0["epoch"] in ("", old_epoch)
        suite.redis.command("FLUSHALL")
        ack = await pub.publish(room, "new-1", "after flush")
        assert ack["seq"] == 1 and ack["duplicate"] is False, ack
        # The live subscriber is told, before the new message, that the epoch changed.
        await live.wait_for(lambda: len(live.messages(room)) >= 6, 10, "message after the flush")
        resub = [f for f in live.find("subscribed", room=room) if f is not s0]
        assert resub, "epoch changed under a subscriber without a new `subscribed`"
        assert resub[0]["recovered"] is False and resub[0]["epoch"] != old_epoch, resub[0]
        new_msg = live.messages(room)[5]
        assert (new_msg["seq"], new_msg["epoch"], new_msg["id"]) == (1, resub[0]["epoch"], "new-1")
        assert live.frames.index(resub[0]) < live.frames.index(new_msg)
        # A client resuming from the old epoch hears recovered:false.
        c = await tc.connect(suite.ws_url(), token=suite.token("late"))
        s = await c.subscribe(room, epoch=old_epoch, seq=5)
        assert s["recovered"] is False and s["epoch"] == resub[0]["epoch"] and "gap" in s, s
        await c.wait_messages(room, s["missed"])
        assert [m["id"] for m in c.messages(room)] == ["new-1"]
    run(t())


def test_redis_rolled_back_new_epoch_never_a_second_message_at_a_seq(suite):
    """Redis comes back older than it acknowledged (a restored backup, AOF
    everysec after an OS crash): the room keeps its epoch, its top goes back.
    replayd restarts with it (so only the gateway, which delivered up to 10,
    remembers a floor): the next publish must start a new epoch, and the
    live subscriber must hear `recovered: false` and get the message; handing
    seq 6 out again would give it a second message at a seq it already has,
    which it would drop: a silent hole."""
    async def t():
        room = tc.uid("rollback")
        (live,) = await subscribers(suite, room, 1)
        s0 = live.find("subscribed", room=room)[0]
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        await pub.publish_many(room, 10, prefix="old")
        await live.wait_seq(room, 10)
        old_epoch = live.messages(room)[-1]["epoch"]
        suite.kill9("replayd")
        suite.redis.command("HSET", "tether:{%s}:meta" % room, "top", "5")
        suite.redis.command("LTRIM", "tether:{%s}:log" % room, "0", "4")
        await asyncio.to_thread(suite.restart, "replayd")
        ack = await pub.publish(room, "new-1", "after the rollback")
        assert ack["duplicate"] is False and ack["seq"] == 1, ack
        await live.wait_for(lambda: len(live.messages(room)) >= 11, 10, "message after the rollback")
        resub = [f for f in live.find("subscribed", room=room) if f is not s0]
        assert resub and resub[0]["recovered"] is False and resub[0]["epoch"] != old_epoch, resub
        new_msg = live.messages(room)[10]
        assert (new_msg["seq"], new_msg["epoch"], new_msg["id"]) == (1, resub[0]["epoch"], "new-1")
        assert live.frames.index(resub[0]) < live.frames.index(new_msg)
    run(t())


@pytest.mark.suite_opts(aof=True)
def test_redis_aof_kill9_nothing_acknowledged_is_lost(suite):
    async def t():
        room = tc.uid("aof")
        pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        acks = await pub.publish_many(room, 50, prefix="d")
        probe = await tc.connect(suite.ws_url(), token=suite.token("probe"))
        epoch = (await probe.subscribe(room))["epoch"]
        suite.redis.kill9()
        # A publish while Redis is down stalls (or fails with 4500, safe to retry).
        await pub.send({"type": "publish", "room": room, "id": "d-50", "data": {"i": 50}})
        await asyncio.to_thread(suite.redis.start)
        rp = RetryingPublisher(pub, room, 51, prefix="d", window=1, retry_s=3)
        rp.acked = {a["id"]: a["seq"] for a in acks}
        await rp.run(30)
        assert rp.acked["d-50"] == 51
        seq_to_id = {seq: id_ for id_, seq in rp.acked.items()}
        c = await tc.connect(suite.ws_url(), token=suite.token("reader"))
        s = await c.subscribe(room, epoch=epoch, seq=0)
        assert s["recovered"] is True and s["epoch"] == epoch and s["seq"] == 51, s
        await c.wait_messages(room, 51)
        assert [(m["seq"], m["id"]) for m in c.messages(room)] == [(q, seq_to_id[q]) for q in range(1, 52)]
    run(t())


@pytest.mark.requires("sessiond")
def test_sessiond_kill9_sessions_survive(suite):
    async def t():
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        session = a.session
        a.abort()
        suite.kill9("sessiond")
        await asyncio.to_thread(suite.restart, "sessiond")
        b = tc.Client(suite.ws_url())
        await b.connect()
        w = await b.hello(token=suite.token("alice"), session=session)
        assert w["session"] == session and w["resumed"] is True, w
    run(t())


@pytest.mark.requires("sessiond")
def test_gateway_kill9_presence_shows_reconnecting_not_offline(suite):
    async def t():
        g2 = suite.add_gateway()
        room = tc.uid("pres")
        watcher = await tc.connect(suite.ws_url(g2.name), token=suite.token("watcher"), name="watcher")
        await watcher.subscribe(room)
        bob = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="bob")
        await bob.subscribe(room)
        states = lambda: [f.get("state") for f in watcher.find("presence", room=room, user="bob")]
        await watcher.wait_for(lambda: "online" in states(), 5, "bob online")
        t0 = time.monotonic()
        suite.kill9("gateway")
        await watcher.wait_for(lambda: "reconnecting" in states(), 6, "bob reconnecting within 5 s")
        assert time.monotonic() - t0 <= 5.5
        assert "offline" not in states()
    run(t())
