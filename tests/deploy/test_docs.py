"""test_docs.py -- docs/operations.md and docs/extending.md against the code.

Every TETHER_* variable a program reads is in the configuration table; every
metric the alert table names is served by a running daemon; the documented
"Redis came back older" procedure, run as written against a real suite,
starts a new epoch; every file and symbol extending.md points readers to
exists.
"""

import re
import subprocess
import sys

import pytest

import k8s

sys.path.insert(0, str(k8s.REPO / "tests" / "integration"))
import tether_client as tc        # noqa: E402
import tether_harness as th       # noqa: E402

OPS = k8s.REPO / "docs" / "operations.md"
EXT = k8s.REPO / "docs" / "extending.md"


def test_every_variable_is_documented(daemon_vars):
    text = OPS.read_text()
    missing = {}
    for prog, (names, how) in daemon_vars.items():
        for v in names:
            if "`%s`" % v not in text:
                missing.setdefault(v, []).append(prog)
    assert not missing, "not in docs/operations.md: %s" % missing


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    if th.missing(th.CORE) or not __import__("shutil").which("redis-server"):
        pytest.skip("daemons or redis-server missing")
    s = th.Suite(tmp_path_factory.mktemp("docs")).start()
    yield s
    s.stop()


def test_documented_metrics_exist(suite):
    served = set()
    for d in suite.daemons.values():
        for line in d.metrics_text().splitlines():
            m = re.match(r"^# TYPE (\S+)", line)
            if m:
                served.add(m.group(1))
    named = set(re.findall(r"\b(tether_[a-z0-9_]+)", OPS.read_text()))
    named = {re.sub(r"_(bucket|sum|count)$", "", n) for n in named}
    unknown = {n for n in named if n not in served and not n.startswith("tether_subscriber_")}
    assert not unknown, "docs/operations.md names metrics no daemon serves: %s" % sorted(unknown)


def test_redis_epoch_bump_procedure_starts_new_epochs(suite):
    m = re.search(r"`(redis-cli --scan --pattern '([^']+)' \\\| xargs -r -n 500 redis-cli del)`", OPS.read_text())
    assert m, "procedure not found in docs/operations.md"
    command = m.group(1).replace("\\|", "|").replace("redis-cli", "redis-cli -p %d" % suite.redis.port)
    room = tc.uid("ops")

    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("ops"))
        first = [await c.publish(room, "a%d" % i, {"i": i}) for i in (1, 2)]
        sub = await c.subscribe(room)
        assert [a["seq"] for a in first] == [1, 2]
        r = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        ack = await c.publish(room, "a3", {"i": 3})
        assert ack["seq"] == 1, ack                     # a new epoch starts at 1
        msgs = await c.wait_messages(room, 1)
        assert msgs[-1]["epoch"] > sub["epoch"], (msgs[-1], sub)
    tc.run(t())
    # Session keys (tether:{sess}:...) are untouched by the pattern.
    assert suite.redis.command("EXISTS", "tether:{%s}:meta" % room) == 1


def test_extending_points_at_real_things():
    text = EXT.read_text()
    for path in re.findall(r"`((?:examples|deploy|tests|protos|lib)/[\w./-]+)`", text):
        assert (k8s.REPO / path.split(" ")[0]).exists(), path
    src = (k8s.REPO / "examples" / "subscriber" / "subscriber.c").read_text()
    for fn in ("room_message_in", "room_head_in", "start_repair", "on_range"):
        assert re.search(r"^static \w+ \*?%s\(" % fn, src, re.M), fn
    bus_h = (k8s.REPO / "lib" / "bus.h").read_text()
    for fn in ("bus_new", "bus_subscribe", "bus_on_event", "bus_decode"):
        assert fn + "(" in bus_h, fn
    proto = (k8s.REPO / "protos" / "bus.proto").read_text()
    for msg in ("RoomMessage", "RoomHead", "PresenceEvent", "Heartbeat", "RangeReq", "RangeRoom"):
        assert "message %s" % msg in proto, msg
