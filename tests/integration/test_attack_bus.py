"""test_attack_bus.py -- the bus is authenticated and encrypted (CURVE + ZAP).

Real daemons with TETHER_BUS_SECRET, and strangers on loopback:
- a SUB without keys, or with keys derived from another secret, connected to
  busd's XPUB receives nothing while a room has traffic (a SUB with the
  right keys, the control, receives it);
- a PUB without keys (or with wrong keys) into busd's XSUB injects nothing:
  an authenticated observer sees none of its frames, busd's counters do not
  move, a subscribed client sees nothing and the room's history is unchanged
  (the same frames from a PUB with the right keys do reach the observer);
- a DEALER without keys to replayd, sessiond and mediad gets no answer to a
  ping (with the keys it does) and the daemon keeps serving;
- an authenticated peer sending garbage to each bus port leaves the daemons
  serving: a normal client connects, publishes and receives, nothing lost;
- a daemon with a non-loopback bus address and no secret exits 2 naming
  the variable;
- a rotation to a new secret by three rolling restarts, one daemon at a
  time, with the bus working after every single restart.
"""

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import time

import pytest

import tether_client as tc
import tether_harness as th

zmq = pytest.importorskip("zmq")
z85 = pytest.importorskip("zmq.utils.z85")

PING = b"\x28\x07\x82\x01\x00"          # Envelope {req_id: 7, ping_req: {}}
PONG_TAG = b"\x8a\x01"                  # Envelope.ping_rep (field 17)


def keypair(secret, label):
    """(public, secret) Z85 keys as the daemons derive them."""
    sk = hmac.new(secret.encode(), label.encode(), hashlib.sha256).digest()
    sk_z85 = z85.encode(sk)
    return zmq.curve_public(sk_z85), sk_z85


def curve_client(sock, secret):
    """Makes sock a CURVE client with the keys derived from secret."""
    spk, _ = keypair(secret, "tether-bus-server-v1")
    cpk, csk = keypair(secret, "tether-bus-client-v1")
    sock.curve_serverkey = spk
    sock.curve_publickey = cpk
    sock.curve_secretkey = csk


def stranger_keys(sock, secret):
    """CURVE with the right server key but a client key the ZAP handler does
    not know (what a leaked server public key would allow)."""
    spk, _ = keypair(secret, "tether-bus-server-v1")
    cpk, csk = zmq.curve_keypair()
    sock.curve_serverkey = spk
    sock.curve_publickey = cpk
    sock.curve_secretkey = csk


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def ep(suite, port_name):
    return "tcp://127.0.0.1:%d" % suite.ports[port_name]


def roundtrip(suite, n=3):
    """A new subscriber and a new publisher on a new room: n messages
    published, acknowledged and received in order, and stored."""
    room = tc.uid("bus")

    async def t():
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="sub")
        await sub.subscribe(room)
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="pub")
        for i in range(1, n + 1):
            ack = await pub.publish(room, "m%d" % i, {"n": i})
            assert ack["seq"] == i and not ack["duplicate"], ack
        msgs = await sub.wait_messages(room, n)
        assert [m["data"]["n"] for m in msgs] == list(range(1, n + 1))
        await sub.close()
        await pub.close()

    tc.run(t())
    assert suite.redis.command("LLEN", "tether:{%s}:log" % room) == n
    return room


def recv_all(sock, seconds):
    """Every message sock receives within `seconds`."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        if sock.poll(int(left * 1000) + 1):
            out.append(sock.recv_multipart())


def traffic(suite, room, n):
    """Publishes n messages to room through the gateway (acknowledged)."""
    async def t():
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="traffic")
        await pub.publish_many(room, n, prefix="t")
        await pub.close()
    tc.run(t())


def test_sub_without_or_with_wrong_keys_sees_nothing(suite, zctx):
    room = tc.uid("sniff")
    subs = {}
    for kind in ("none", "wrong_secret", "unknown_client", "control"):
        s = zctx.socket(zmq.SUB)
        s.linger = 0
        if kind == "wrong_secret":
            curve_client(s, secrets.token_urlsafe(32))
        elif kind == "unknown_client":
            stranger_keys(s, suite.bus_secret)
        elif kind == "control":
            curve_client(s, suite.bus_secret)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(ep(suite, "bus_out"))
        subs[kind] = s
    time.sleep(0.5)  # let every handshake finish or fail
    refused0 = suite["busd"].metrics().get("tether_bus_auth_refused_total", 0)
    traffic(suite, room, 20)
    got = {k: recv_all(s, 1.0) for k, s in subs.items()}
    topic = ("room." + room).encode()
    assert sum(1 for m in got["control"] if m[0] == topic) >= 20, "the control SUB must see the room"
    for kind in ("none", "wrong_secret", "unknown_client"):
        assert got[kind] == [], "%s: %d messages leaked" % (kind, len(got[kind]))
    # The stranger with the right server key reached the ZAP handler and was
    # refused there: counted.
    assert suite["busd"].metrics()["tether_bus_auth_refused_total"] >= refused0
    assert suite["busd"].metrics()["tether_bus_auth_refused_total"] >= 1
    m = suite["busd"].metrics()
    assert m["tether_bus_curve"] == 1
    # The ones without the server key never reach ZAP: failed handshakes.
    assert m['tether_bus_handshake_failures_total{socket="bus_out"}'] >= 2


def test_pub_without_keys_injects_nothing(suite, zctx):
    room = tc.uid("inject")
    roundtrip(suite)   # the suite works; the room below is fresh
    observer = zctx.socket(zmq.SUB)
    observer.linger = 0
    curve_client(observer, suite.bus_secret)
    observer.setsockopt(zmq.SUBSCRIBE, b"forged.")
    observer.setsockopt(zmq.SUBSCRIBE, ("room." + room).encode())
    observer.connect(ep(suite, "bus_out"))

    attackers = []
    for kind in ("none", "wrong_secret", "unknown_client"):
        p = zctx.socket(zmq.PUB)
        p.linger = 0
        if kind == "wrong_secret":
            curve_client(p, secrets.token_urlsafe(32))
        elif kind == "unknown_client":
            stranger_keys(p, suite.bus_secret)
        p.connect(ep(suite, "bus_in"))
        attackers.append(p)
    good = zctx.socket(zmq.PUB)
    good.linger = 0
    curve_client(good, suite.bus_secret)

    async def t():
        victim = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="victim")
        await victim.subscribe(room)
        await asyncio.sleep(0.5)
        before = suite["busd"].metrics()['tether_busd_forwarded_messages_total{direction="publish"}']
        for p in attackers:
            for i in range(100):
                p.send_multipart([b"forged.x", b"payload %d" % i])
                p.send_multipart([("room." + room).encode(), b"\x0a\x01x"])
        # The room's own traffic (the gateway's subscription notices) may
        # reach the observer; none of the forged frames may.
        forged = {b"\x0a\x01x"} | {b"payload %d" % i for i in range(100)}
        assert [m for m in recv_all(observer, 1.5) if m[-1] in forged] == []
        await asyncio.sleep(1.1)  # busd refreshes its counters every second
        after = suite["busd"].metrics()['tether_busd_forwarded_messages_total{direction="publish"}']
        # Legitimate traffic (heartbeats, probes) is a few per second, never 600.
        assert after - before < 100, (before, after)
        assert victim.messages(room) == []
        assert suite.redis.command("LLEN", "tether:{%s}:log" % room) == 0
        # Control: the same frames from a PUB with the keys reach the observer.
        good.connect(ep(suite, "bus_in"))
        await asyncio.sleep(0.5)
        for i in range(10):
            good.send_multipart([b"forged.x", b"payload %d" % i])
        assert len([m for m in recv_all(observer, 1.5) if m[0] == b"forged.x"]) == 10
        await victim.close()

    tc.run(t())
    roundtrip(suite)


def ping(zctx, endpoint, secret=None, stranger=None, timeout=2.0):
    """A DEALER's PingReq: the reply frames, or None without an answer."""
    d = zctx.socket(zmq.DEALER)
    d.linger = 0
    if secret:
        curve_client(d, secret)
    if stranger:
        stranger_keys(d, stranger)
    d.connect(endpoint)
    try:
        d.send_multipart([b"", PING])
        if d.poll(int(timeout * 1000)):
            return d.recv_multipart()
        return None
    finally:
        d.close()


ROUTERS = ("replayd", "sessiond", "mediad")


@pytest.mark.parametrize("name", ROUTERS)
def test_dealer_without_keys_gets_no_answer(suite, zctx, name):
    if name not in suite.daemons:
        pytest.skip("%s not built" % name)
    endpoint = ep(suite, name)
    rep = ping(zctx, endpoint, secret=suite.bus_secret)
    assert rep is not None and rep[0] == b"" and PONG_TAG in rep[1], rep
    assert ping(zctx, endpoint) is None
    assert ping(zctx, endpoint, secret=secrets.token_urlsafe(32)) is None
    assert ping(zctx, endpoint, stranger=suite.bus_secret) is None
    m = suite[name].metrics()
    assert m["tether_bus_auth_refused_total"] >= 1, "the stranger's handshake is refused by %s's ZAP handler" % name
    assert m['tether_bus_handshake_failures_total{socket="%s"}' % name] >= 2
    assert ping(zctx, endpoint, secret=suite.bus_secret) is not None
    suite[name].wait_ready()
    roundtrip(suite)


GARBAGE = [
    [b""],
    [b"\x00"],
    [b"\xff" * 64],
    [os.urandom(1000)],
    [b"", b""],
    [b"", os.urandom(200)],
    [b"", b"\x0a\xff\xff\xff\xff\x0f"],           # a length past the end
    [b"", PING[:3]],                               # truncated
    [b"", b"\x82\x01\x05\x0a\x03abc"],             # ping_req with an unknown field
    [b"room.x", b"\x0a\x06room.x"],                # topic only, no source
    [b"room.", os.urandom(3000)],
    [b"presence.y", b"\x12\x00"],
    [b"", b"x", b"y", b"z", b"w", b"v", b"u", b"t", b"s", b"r"],  # more parts than kept
    [os.urandom(70000)],
]


def test_authenticated_garbage_to_every_port(suite, zctx):
    s = suite.bus_secret
    targets = [("bus_in", zmq.PUB), ("bus_out", zmq.XSUB)]
    targets += [(n, zmq.DEALER) for n in ROUTERS if n in suite.daemons]
    for port, kind in targets:
        sock = zctx.socket(kind)
        sock.linger = 0
        curve_client(sock, s)
        sock.connect(ep(suite, port))
        time.sleep(0.3)
        for _ in range(20):
            for frames in GARBAGE:
                if kind == zmq.XSUB:
                    # Subscription messages with odd first bytes, and noise.
                    frames = [b"\x01" + frames[0]] + frames[1:] if frames[0][:1] != b"\x00" else frames
                sock.send_multipart(frames)
        time.sleep(0.5)
        sock.close()
        for d in suite.daemons.values():
            assert d.alive(), "%s died after garbage to %s" % (d.name, port)
        roundtrip(suite, n=5)
        if port in ROUTERS:
            assert ping(zctx, ep(suite, port), secret=s) is not None, port
    for d in suite.daemons.values():
        d.wait_ready()


@pytest.mark.parametrize("daemon,var,value", [
    ("busd", "TETHER_BUS_IN", "tcp://0.0.0.0:%d"),
    ("busd", "TETHER_BUS_OUT", "tcp://*:%d"),
    ("replayd", "TETHER_REPLAYD", "tcp://0.0.0.0:%d"),
    ("gateway", "TETHER_BUS_IN", "tcp://bus.example:%d"),
    ("gateway", "TETHER_REPLAYD", "tcp://127.0.0.1:%d,tcp://10.1.2.3:%d"),
])
def test_no_secret_off_loopback_refuses_to_start(tmp_path, daemon, var, value):
    if not th.have(daemon):
        pytest.skip("%s not built" % daemon)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update({"TETHER_HTTP": "127.0.0.1:%d" % th.free_port(), "TETHER_JWT_SECRET": "x" * 32,
                "TETHER_REDIS": "redis://127.0.0.1:%d/0" % th.free_port(),
                var: value.replace("%d", str(th.free_port()))})
    p = subprocess.run([str(th.binary(daemon))], env=env, capture_output=True, timeout=10)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    errors = [json.loads(line) for line in p.stdout.splitlines() + p.stderr.splitlines()
              if line.startswith(b"{") and b"refusing a non-loopback" in line]
    assert errors and errors[0]["variable"] == var, p.stdout[-2000:] + p.stderr[-2000:]
    assert errors[0]["secret_variable"] == "TETHER_BUS_SECRET"


def test_no_secret_on_loopback_runs_in_the_clear(tether, zctx):
    os.environ["TETHER_TEST_BUS_CLEAR"] = "1"
    try:
        s = tether()
    finally:
        del os.environ["TETHER_TEST_BUS_CLEAR"]
    assert s.bus_secret is None
    assert s["busd"].metrics()["tether_bus_curve"] == 0
    assert ping(zctx, ep(s, "replayd")) is not None
    roundtrip(s)
    lines = s["busd"].log.read_bytes().splitlines() + s["busd"].err.read_bytes().splitlines()
    warned = [json.loads(line) for line in lines if b"runs unauthenticated" in line]
    assert len(warned) == 1


def test_rotation_by_rolling_restarts(suite, zctx):
    old, new = suite.bus_secret, secrets.token_urlsafe(32)
    phases = [
        {"TETHER_BUS_SECRET": old, "TETHER_BUS_SECRET_PREVIOUS": new},   # 1. accept the new one
        {"TETHER_BUS_SECRET": new, "TETHER_BUS_SECRET_PREVIOUS": old},   # 2. serve with the new one
        {"TETHER_BUS_SECRET": new, "TETHER_BUS_SECRET_PREVIOUS": None},  # 3. drop the old one
    ]
    order = [n for n in ("busd", "replayd", "sessiond", "mediad", "gateway") if n in suite.daemons]
    for step, env in enumerate(phases, 1):
        for name in order:
            th.apply_env(suite[name].env, env)
            suite.restart(name)
            for d in suite.daemons.values():
                d.wait_ready()
            roundtrip(suite, n=2)
        if "replayd" in suite.daemons:
            cur = env["TETHER_BUS_SECRET"]
            assert ping(zctx, ep(suite, "replayd"), secret=cur) is not None, step
    # The old secret is no longer accepted anywhere.
    assert ping(zctx, ep(suite, "replayd"), secret=old) is None
    sub = zctx.socket(zmq.SUB)
    sub.linger = 0
    curve_client(sub, old)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(ep(suite, "bus_out"))
    time.sleep(0.3)
    roundtrip(suite, n=2)
    assert recv_all(sub, 0.5) == []


def test_skipping_a_rotation_step_is_visible(suite):
    """Control for the rotation test: a gateway that knows only the new
    secret cannot use a bus that knows only the old one (it never gets
    ready), which is why the procedure has three steps."""
    d = suite["gateway"]
    th.apply_env(d.env, {"TETHER_BUS_SECRET": secrets.token_urlsafe(32)})
    d.kill9()
    d.start()
    d.wait_healthy()
    time.sleep(4)
    status, _ = d.readyz()
    assert status == 503
