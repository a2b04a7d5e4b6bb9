"""test_client_cli.py -- the C client SDK through the real `tether` CLI, against
the real suite: what the client promises (issue "C client SDK and tether CLI").

  - sub/pub basics, --help and exit codes; publishes whose frames take each
    of the three length forms;
  - gateway SIGKILL and restart while a `tether sub` and a `tether pub` run:
    the subscriber prints every seq once, in order, and every publish is
    acknowledged (chaos marker: it kills a daemon);
  - authentication failure (4501): state failed at once, no retry loop;
  - token expired (4502): the token callback runs, then the client resumes
    (test_client_contracts.py: a refreshed token that has expired too fails);
  - in-band refresh before exp: no 4502 at all;
  - drain (SIGTERM of the gateway): reconnect after the hinted delay.

The CLI prints events on stderr as JSON lines with t_ms = CLOCK_MONOTONIC in
ms, the clock of Python's time.monotonic(), so the tests can time them.
"""

import json
import os
import shlex
import signal
import subprocess
import threading
import time

import pytest

import tether_harness as th

TETHER = th.binary("tether")

pytestmark = pytest.mark.requires("tether")


class Cli:
    """One `tether` process with stdout/stderr in files, read as JSON lines."""

    def __init__(self, tmp, name, args, stdin=None, env=None):
        self.out_path = tmp / ("%s.out" % name)
        self.err_path = tmp / ("%s.err" % name)
        self.args = [str(TETHER)] + [str(a) for a in args]
        e = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        e.update(env or {})
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=stdin, stdout=self._out, stderr=self._err, env=e)

    def lines(self, which="out"):
        path = self.out_path if which == "out" else self.err_path
        res = []
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    res.append(json.loads(line))
                except ValueError:
                    pass
        return res

    def events(self, name=None, **match):
        evs = [e for e in self.lines("err") if "event" in e]
        if name:
            evs = [e for e in evs if e["event"] == name]
        return [e for e in evs if all(e.get(k) == v for k, v in match.items())]

    def states(self):
        return [e["state"] for e in self.events("state")]

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()
            self._err.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def describe(self):
        return "%s\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(shlex.quote(a) for a in self.args), th.tail(self.out_path, 15), th.tail(self.err_path, 40))


@pytest.fixture
def clis():
    started = []
    yield started
    for c in started:
        c.kill()


def start(clis, tmp, name, args, **kw):
    c = Cli(tmp, name, args, **kw)
    clis.append(c)
    return c


def token_cmd(suite, user, ttl=3600):
    return "%s token %s --ttl %d --secret %s" % (shlex.quote(str(TETHER)), user, ttl, suite.secret)


def wait_event(cli, name, timeout=15, **match):
    return th.wait_until(lambda: cli.events(name, **match), timeout,
                         "%s event %s %s from %s" % (cli.args[1], name, match or "", cli.describe()))


def publish(suite, room, *datas, user="pubber"):
    """Publishes through the CLI and returns its ack lines."""
    args = ["pub", room, "-", "--url", suite.ws_url(), "--token", suite.token(user), "--timeout", "20", "--quiet"]
    p = subprocess.run([str(TETHER)] + args, input="".join(json.dumps(d) + "\n" for d in datas),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "tether pub exited %d: %s" % (p.returncode, p.stderr)
    return [json.loads(l) for l in p.stdout.splitlines()]


# ---- basics -------------------------------------------------------------------------------

def test_help_and_usage_errors():
    p = subprocess.run([str(TETHER), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "exit codes" in p.stdout and "bench" in p.stdout
    for cmd in ("sub", "pub", "token", "bench"):
        p = subprocess.run([str(TETHER), cmd, "--help"], capture_output=True, text=True)
        assert p.returncode == 0, cmd
        assert "usage: tether %s" % cmd in p.stdout
    p = subprocess.run([str(TETHER), "sub", "--token", "x"], capture_output=True, text=True)
    assert p.returncode == 2 and "name at least one room" in p.stderr
    p = subprocess.run([str(TETHER), "frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2 and "tether --help" in p.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    p = subprocess.run([str(TETHER), "sub", "room"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "TETHER_TOKEN" in p.stderr
    p = subprocess.run([str(TETHER), "token", "alice"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "TETHER_JWT_SECRET" in p.stderr
    p = subprocess.run([str(TETHER), "pub", "r", "{}", "--url", "http://x", "--token", "t"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "ws://" in p.stderr


def test_pub_sub_roundtrip(suite, tmp_path, clis):
    sub = start(clis, tmp_path, "sub", ["sub", "lobby", "--url", suite.ws_url(), "--token", suite.token("alice"),
                                        "--count", "3", "--timeout", "20"])
    wait_event(sub, "subscribed", room="lobby")
    acks = publish(suite, "lobby", {"n": 1}, {"n": 2}, {"text": "é\"x"})
    assert [a["seq"] for a in acks] == [1, 2, 3]
    assert all(not a["duplicate"] for a in acks)
    assert sub.wait(20) == 0, sub.describe()
    msgs = sub.lines()
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert [m["data"] for m in msgs] == [{"n": 1}, {"n": 2}, {"text": "é\"x"}]
    assert all(m["from"] == "pubber" and m["room"] == "lobby" and m["epoch"] for m in msgs)
    assert [m["id"] for m in msgs] == [a["id"] for a in acks]
    assert sub.states()[:2] == ["connecting", "connected"]


@pytest.mark.suite_env(TETHER_MAX_FRAME="262144")
def test_pub_frames_of_every_length_form(suite, tmp_path, clis):
    """The SDK masks and frames what it sends itself (lib/wsframe): publishes
    whose frames take the 7-bit, 16-bit and 64-bit length forms, around each
    boundary, arrive intact."""
    sizes = [1, 60, 90, 100, 65400, 65460, 65500]  # data stays within its 64 KiB
    abc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    datas = [{"s": "".join(abc[(i * 7 + n) % len(abc)] for i in range(n)) + "\u00e9\u20ac"} for n in sizes]
    sub = start(clis, tmp_path, "sub", ["sub", "frames", "--url", suite.ws_url(), "--token", suite.token("alice"),
                                        "--count", str(len(datas)), "--timeout", "30"])
    wait_event(sub, "subscribed", room="frames")
    acks = publish(suite, "frames", *datas)
    assert [a["seq"] for a in acks] == list(range(1, len(datas) + 1))
    assert sub.wait(30) == 0, sub.describe()
    assert [m["data"] for m in sub.lines()] == datas


def test_pub_invalid_json_argument_exits_2_and_bad_stdin_line_1(suite):
    p = subprocess.run([str(TETHER), "pub", "r", "{nope", "--url", suite.ws_url(), "--token", suite.token("a"),
                        "--timeout", "10"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 2, p.stderr
    assert "not valid JSON" in p.stderr and '"event":"state"' not in p.stderr
    p = subprocess.run([str(TETHER), "pub", "r", "-", "--url", suite.ws_url(), "--token", suite.token("a"),
                        "--timeout", "10"], input="{nope\n{\"ok\":1}\n", capture_output=True, text=True, timeout=20)
    assert p.returncode == 1, p.stderr
    assert "publish_error" in p.stderr and len(p.stdout.splitlines()) == 1


def test_sub_resumes_from_position_flags(suite, tmp_path, clis):
    publish(suite, "hist", *[{"i": i} for i in range(1, 6)])
    sub = start(clis, tmp_path, "old", ["sub", "hist", "--oldest", "--count", "5", "--timeout", "15", "--url",
                                        suite.ws_url(), "--token", suite.token("reader")])
    assert sub.wait(20) == 0, sub.describe()
    msgs = sub.lines()
    assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
    epoch = msgs[0]["epoch"]
    sub2 = start(clis, tmp_path, "from", ["sub", "hist", "--epoch", epoch, "--from-seq", "3", "--count", "2",
                                          "--timeout", "15", "--url", suite.ws_url(), "--token",
                                          suite.token("reader")])
    assert sub2.wait(20) == 0, sub2.describe()
    assert [m["seq"] for m in sub2.lines()] == [4, 5]
    ev = sub2.events("subscribed")[0]
    assert ev["recovered"] is True and ev["missed"] == 2


# ---- gateway SIGKILL under a running sub and pub -----------------------------------------------

class Feeder(threading.Thread):
    """Writes JSON lines {"i": 1..n} to a pipe at `rate` per second."""

    def __init__(self, pipe, n, rate):
        super().__init__(daemon=True)
        self.pipe, self.n, self.rate = pipe, n, rate
        self.written = 0

    def run(self):
        try:
            for i in range(1, self.n + 1):
                self.pipe.write(("{\"i\":%d}\n" % i).encode())
                self.pipe.flush()
                self.written = i
                time.sleep(1.0 / self.rate)
        finally:
            self.pipe.close()


@pytest.mark.chaos
def test_gateway_kill9_sub_and_pub_every_seq_once_in_order(suite, tmp_path, clis):
    n = 200
    sub = start(clis, tmp_path, "sub", ["sub", "chaos", "--count", n, "--timeout", "90", "--url", suite.ws_url(),
                                        "--token", suite.token("listener")])
    wait_event(sub, "subscribed", room="chaos")
    pub = start(clis, tmp_path, "pub", ["pub", "chaos", "-", "--timeout", "90", "--url", suite.ws_url(), "--token",
                                        suite.token("talker")], stdin=subprocess.PIPE)
    feeder = Feeder(pub.proc.stdin, n, rate=40)
    feeder.start()
    th.wait_until(lambda: len(sub.lines()) >= 40, 20, "40 messages before the kill\n" + sub.describe())
    suite.kill9("gateway")
    # Both clients notice (1006, no close frame) and start reconnecting.
    wait_event(sub, "state", state="reconnecting")
    wait_event(pub, "state", state="reconnecting")
    time.sleep(0.5)  # an outage long enough for publishes to pile up offline
    suite.restart("gateway")
    feeder.join(30)
    assert pub.wait(60) == 0, pub.describe()
    assert sub.wait(60) == 0, sub.describe()

    msgs = sub.lines()
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(1, n + 1)), "seqs not exactly 1..%d once in order: %s" % (n, seqs)
    assert [m["data"]["i"] for m in msgs] == list(range(1, n + 1))
    acks = pub.lines()
    assert len(acks) == n and len({a["id"] for a in acks}) == n
    assert sorted(a["seq"] for a in acks) == list(range(1, n + 1))
    by_id = {m["id"]: m["seq"] for m in msgs}
    assert all(by_id[a["id"]] == a["seq"] for a in acks)
    # The subscriber resumed from its position: recovered, nothing missed silently.
    resub = sub.events("subscribed", resubscribe=True)
    assert resub and all(e["recovered"] for e in resub), sub.describe()
    assert not sub.events("gap")
    for c in (sub, pub):
        st = c.states()
        assert "reconnecting" in st and st.count("connected") >= 2, c.describe()


# ---- close codes ---------------------------------------------------------------------------------

def test_auth_failure_4501_fails_without_retry(suite, tmp_path, clis):
    bad = th.tether_client.make_token("not-the-secret", "mallory")
    t0 = time.monotonic()
    sub = start(clis, tmp_path, "bad", ["sub", "room", "--url", suite.ws_url(), "--token", bad])
    rc = sub.wait(15)
    assert rc == 3, sub.describe()
    assert time.monotonic() - t0 < 10
    assert sub.states() == ["connecting", "failed"], sub.describe()
    failed = sub.events("state", state="failed")[0]
    assert failed["code"] == 4501 and "check the token" in failed["reason"]
    # The gateway saw one attempt only: no retry loop.
    m = suite.gateway.metrics()
    opened = [v for k, v in m.items() if k.startswith("tether_gateway_connections_opened_total")]
    if opened:
        assert opened[0] == 1


def test_token_expired_4502_callback_then_resume(suite, tmp_path, clis):
    short = suite.token("alice", ttl=2)
    sub = start(clis, tmp_path, "exp", ["sub", "news", "--count", "3", "--timeout", "40", "--no-refresh",
                                        "--url", suite.ws_url(), "--token", short,
                                        "--token-cmd", token_cmd(suite, "alice")])
    wait_event(sub, "subscribed", room="news")
    publish(suite, "news", {"k": 1})
    th.wait_until(lambda: len(sub.lines()) == 1, 10, "first message\n" + sub.describe())
    # exp passes: the gateway closes 4502; the client asks for a token, then resumes.
    wait_event(sub, "state", timeout=20, state="reconnecting", code=4502)
    tok = wait_event(sub, "token", why="expired")[0]
    assert tok["renewed"] is True
    wait_event(sub, "subscribed", room="news", resubscribe=True)
    publish(suite, "news", {"k": 2}, {"k": 3})
    assert sub.wait(20) == 0, sub.describe()
    assert [m["seq"] for m in sub.lines()] == [1, 2, 3]
    waiting = sub.events("state", state="reconnecting", code=4502)
    assert waiting[0].get("waiting_for_token") is True
    st = sub.states()
    assert "failed" not in st and st[-1] == "disconnected"


def test_token_refreshed_in_band_before_exp(suite, tmp_path, clis):
    sub = start(clis, tmp_path, "ref", ["sub", "live", "--timeout", "40", "--count", "1", "--url", suite.ws_url(),
                                        "--token", suite.token("bob", ttl=4),
                                        "--token-cmd", token_cmd(suite, "bob")])
    wait_event(sub, "subscribed", room="live")
    ev = wait_event(sub, "token", timeout=10, why="refresh")[0]
    assert ev["renewed"] is True
    # Past the first token's exp (4 s) plus the gateway's 1 s sweep: still up.
    time.sleep(3.5)
    publish(suite, "live", {"still": "here"})
    assert sub.wait(15) == 0, sub.describe()
    assert sub.lines()[0]["data"] == {"still": "here"}
    assert "reconnecting" not in sub.states(), sub.describe()


@pytest.mark.chaos
@pytest.mark.suite_env(TETHER_DRAIN_MS="3000")
def test_drain_reconnects_after_hinted_delay(suite, tmp_path, clis):
    sub = start(clis, tmp_path, "drain", ["sub", "d", "--count", "1", "--timeout", "60", "--url", suite.ws_url(),
                                          "--token", suite.token("carol")])
    wait_event(sub, "subscribed", room="d")
    suite.term("gateway")
    hint = wait_event(sub, "frame", type="reconnect")[0]["frame"]
    st = wait_event(sub, "state", state="reconnecting")[0]
    assert st["code"] == 4000, sub.describe()
    assert st["hinted"] is True and st["delay_ms"] == hint["after_ms"], sub.describe()
    # Nothing happens before the hinted delay has passed.
    th.wait_until(lambda: next_after(sub, st), 20, "an attempt after the hint\n" + sub.describe())
    nxt = next_after(sub, st)
    assert nxt["t_ms"] >= st["t_ms"] + hint["after_ms"] - 20, (hint, st, nxt)
    suite.gateway.wait_exit(15)
    suite.restart("gateway")
    wait_event(sub, "subscribed", timeout=40, room="d", resubscribe=True)
    publish(suite, "d", {"after": "drain"})
    assert sub.wait(20) == 0, sub.describe()
    assert sub.lines()[0]["data"] == {"after": "drain"}


def next_after(cli, ev):
    """The first state event after ev (an attempt that failed or succeeded)."""
    later = [e for e in cli.events("state") if e["t_ms"] >= ev["t_ms"] and e != ev]
    return later[0] if later else None


# ---- push-to-talk: floor restore and the audio buffer across a gateway kill ------------------

@pytest.mark.chaos
@pytest.mark.requires("mediad")
def test_floor_restored_and_audio_flushed_after_gateway_kill(suite, tmp_path, clis):
    n = 30
    sub = start(clis, tmp_path, "listen", ["sub", "ptt-room", "--count", n, "--timeout", "60", "--url", suite.ws_url(),
                                           "--token", suite.token("listener")])
    wait_event(sub, "subscribed", room="ptt-room")
    talk = start(clis, tmp_path, "talk", ["ptt", "ptt-room", "--hold", "9", "--audio", n, "--chunk-ms", "200",
                                          "--url", suite.ws_url(), "--token", suite.token("talker")])
    th.wait_until(lambda: any(l["state"] == "granted" for l in talk.lines()), 15, "floor granted\n" + talk.describe())
    th.wait_until(lambda: len(sub.lines()) >= 5, 15, "first chunks\n" + sub.describe())
    suite.kill9("gateway")
    wait_event(talk, "state", state="reconnecting")
    time.sleep(1.0)  # chunks keep coming while offline: they wait in the FIFO
    suite.restart("gateway")
    assert talk.wait(40) == 0, talk.describe()
    assert sub.wait(30) == 0, sub.describe()

    states = [l["state"] for l in talk.lines()]
    # Held, lost with the link, asked for again after the resume, held again.
    i = states.index("suspended")
    assert states[:i] == ["requesting", "granted"], states
    assert states[i + 1:i + 3] == ["requesting", "granted"], states
    assert states[-1] == "idle", states
    restored = talk.lines()[i + 1]
    assert "restoring" in restored.get("reason", ""), restored
    # Every chunk, once, in order (20 s of FIFO is far more than the outage).
    chunks = [m["data"]["n"] for m in sub.lines()]
    assert chunks == list(range(1, n + 1)), chunks
    assert all(m["from"] == "talker" for m in sub.lines())
