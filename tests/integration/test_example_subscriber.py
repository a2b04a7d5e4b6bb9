"""test_example_subscriber.py -- examples/subscriber (docs/extending.md) against the suite.

build/bin/example-subscriber connects to busd's XPUB side like any new
consumer would, with nothing changed in the suite. It must print room
messages and presence events as JSON lines on stdout (logs on stderr), honour
its topic prefixes, and, when busd loses events (chaos test), report the hole
both ways (source_seq and room seq) and read the missing messages back from
replayd so that every seq is printed exactly once.
"""

import asyncio
import json
import os
import time
import signal
import subprocess

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run

pytestmark = pytest.mark.requires("example-subscriber")


class Subscriber:
    """example-subscriber as a process; stdout and stderr in files."""

    def __init__(self, suite, name, prefixes=(), env=None):
        self.dir = suite.dir
        self.out = suite.dir / ("%s.out" % name)
        self.err = suite.dir / ("%s.err" % name)
        self.http = "127.0.0.1:%d" % th.free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        base = suite.base_env()
        e.update({"TETHER_BUS_OUT": base["TETHER_BUS_OUT"], "TETHER_REPLAYD": base["TETHER_REPLAYD"],
                  "TETHER_HTTP": self.http, "TETHER_LOG_LEVEL": "info"})
        if "TETHER_BUS_SECRET" in base:
            e["TETHER_BUS_SECRET"] = base["TETHER_BUS_SECRET"]
        e.update(env or {})
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([str(th.binary("example-subscriber"))] + list(prefixes), env=e,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        th.wait_until(self._healthy, th.START_TIMEOUT, "example-subscriber /healthz on %s" % self.http)

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError("example-subscriber exited with %s:\n%s" % (self.proc.returncode, th.tail(self.err)))
        return th.http_get(self.http, "/healthz", timeout=1.0)[0] == 200

    def lines(self):
        """Every complete stdout line, parsed (a line that is not JSON fails the test)."""
        text = self.out.read_text()
        done = text[:text.rfind("\n") + 1]
        out = []
        for line in done.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError("stdout line is not JSON: %r" % line)
        return out

    def events(self, event=None, topic=None):
        return [l for l in self.lines() if "event" in l and (event is None or l["event"] == event)
                and (topic is None or l.get("topic") == topic)]

    def gaps(self, kind):
        return [l for l in self.lines() if l.get("gap") == kind]

    def room_seqs(self, room):
        return [l["room_message"]["seq"] for l in self.events("room_message", "room." + room)]

    def wait(self, pred, what, timeout=10.0):
        return th.wait_until(pred, timeout, what)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def subscribers():
    subs = []
    yield subs
    for s in subs:
        s.stop()


async def until(pred, timeout):
    """Polls pred() without blocking the client's event loop; True if it held
    before the deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def warm_up(suite, subs):
    """Publishes into a fresh room until every subscriber printed a message of
    it: their subscriptions have reached busd (SUB subscriptions propagate
    asynchronously, so there is no other signal to wait for)."""
    room = tc.uid("warm")
    pub = await tc.connect(suite.ws_url(), token=suite.token("warmer"), name="warm")
    n = 0
    while True:
        n += 1
        await pub.publish(room, "w%d" % n, {"n": n})
        if await until(lambda: all(s.room_seqs(room) for s in subs), 0.3):
            return
        assert n < 40, "the subscribers printed nothing of %s" % room


@pytest.mark.requires("sessiond")
def test_prints_room_messages_and_presence_events(suite, subscribers):
    everything = Subscriber(suite, "sub-all")
    presence_only = Subscriber(suite, "sub-presence", ["presence."])
    subscribers += [everything, presence_only]

    async def t():
        await warm_up(suite, [everything])
        room = tc.uid("ext")
        alice = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="alice")
        await alice.subscribe(room)
        bob = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="bob")
        for i in range(1, 4):
            ack = await bob.publish(room, "m%d" % i, {"n": i, "text": "h\u00e9llo"})
            assert ack["seq"] == i
        await alice.send({"type": "bye"})
        await alice.wait_closed()
        return room

    room = run(t())

    everything.wait(lambda: len(everything.room_seqs(room)) >= 3, "3 room messages")
    msgs = everything.events("room_message", "room." + room)
    assert [m["room_message"]["seq"] for m in msgs] == [1, 2, 3]
    for i, m in enumerate(msgs, 1):
        rm = m["room_message"]
        assert rm["room"] == room and rm["id"] == "m%d" % i and rm["from"] == "bob"
        assert rm["data"] == {"n": i, "text": "h\u00e9llo"}          # data embedded as JSON
        assert rm["epoch"] == msgs[0]["room_message"]["epoch"] != ""
        assert m["source"]["service"] == "replayd" and m["source"]["instance"]
        assert m["source_seq"] >= 1 and m["ts"] > 0
    seqs = [m["source_seq"] for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3

    def presence(sub, state):
        return [e["presence_event"] for e in sub.events("presence_event", "presence." + room)
                if e["presence_event"]["user"] == "alice" and e["presence_event"]["state"] == state]

    for sub in (everything, presence_only):
        sub.wait(lambda: presence(sub, "online") and presence(sub, "offline"), "alice online then offline")
        ev = sub.events("presence_event", "presence." + room)
        assert ev[0]["source"]["service"] == "sessiond"
        states = [e["presence_event"]["state"] for e in ev if e["presence_event"]["user"] == "alice"]
        assert states.index("online") < states.index("offline"), states
    # The prefix filter: the presence-only subscriber printed no room event.
    assert presence_only.events("room_message") == []
    assert all(l["topic"].startswith("presence.") for l in presence_only.events())
    # Heads and heartbeats are not printed without -a; no gap on a healthy bus.
    assert everything.events("room_head") == [] and everything.events("heartbeat") == []
    assert [l for l in everything.lines() if "gap" in l] == []
    # Logs went to stderr (the effective config among them), not stdout.
    err = [json.loads(l) for l in everything.err.read_text().splitlines() if l.startswith("{")]
    cfg = [l for l in err if l.get("msg") == "effective config"]
    assert cfg and "TETHER_BUS_OUT" in cfg[0]["config"], err[:3]
    assert all("msg" not in l for l in everything.lines())
    assert everything.stop() == 0 and presence_only.stop() == 0


def test_metrics_and_probes(suite, subscribers):
    sub = Subscriber(suite, "sub-metrics")
    subscribers.append(sub)
    run(warm_up(suite, [sub]))
    assert th.http_get(sub.http, "/readyz")[0] == 200
    m = th.parse_metrics(th.http_get(sub.http, "/metrics")[2].decode())
    assert m["tether_subscriber_events_total"] >= 1
    assert m['tether_subscriber_gaps_total{kind="room"}'] == 0


def test_bad_endpoint_fails_fast():
    p = subprocess.run([str(th.binary("example-subscriber"))], env={"TETHER_BUS_OUT": "nonsense"},
                       capture_output=True, timeout=10)
    assert p.returncode == 2 and b"TETHER_BUS_OUT" in p.stderr and p.stdout == b""


@pytest.mark.chaos
def test_events_lost_in_busd_are_reported_and_repaired(suite, subscribers):
    """busd dies, publishes go on (acked by replayd), busd comes back: the
    subscriber sees the seq jump on the next live message, reports it, reads
    the missing ones from replayd and ends with every seq exactly once."""
    sub = Subscriber(suite, "sub-chaos")
    subscribers.append(sub)
    room = tc.uid("gap")

    async def t():
        await warm_up(suite, [sub])
        pub = await tc.connect(suite.ws_url(), token=suite.token("carol"), name="carol")
        for i in range(1, 4):
            await pub.publish(room, "a%d" % i, {"i": i})
        assert await until(lambda: sub.room_seqs(room) == [1, 2, 3], 10), sub.room_seqs(room)
        suite.kill9("busd")
        for i in range(4, 9):                        # lost on the bus, acked all the same
            assert (await pub.publish(room, "b%d" % i, {"i": i}))["seq"] == i
        suite.restart("busd")
        # Publish until one arrives live again (the SUB reconnects on its own).
        n = 8
        while not [s for s in sub.room_seqs(room) if s > 8]:
            n += 1
            assert n < 60, "no live message after busd came back"
            assert (await pub.publish(room, "c%d" % n, {"i": n}))["seq"] == n
            await until(lambda: [s for s in sub.room_seqs(room) if s > 8], 0.3)
        return n

    top = run(t(), timeout=90)
    sub.wait(lambda: sorted(sub.room_seqs(room)) == list(range(1, top + 1)), "every seq 1..%d once" % top)
    assert sorted(sub.room_seqs(room)) == list(range(1, top + 1))     # none twice
    repaired = [m["room_message"]["seq"] for m in sub.events("room_message", "room." + room) if m.get("repaired")]
    assert set(range(4, 9)) <= set(repaired), repaired
    gaps = [g for g in sub.gaps("room") if g["room"] == room]
    assert gaps and gaps[0]["from"] == 4, gaps
    assert any(g["topic"] == "room." + room and g["source"]["service"] == "replayd" for g in sub.gaps("source"))
    assert sub.gaps("lost") == []
