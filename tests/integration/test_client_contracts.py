"""test_client_contracts.py -- the client reconnection contracts of the C SDK
and the `tether` CLI, end to end against the real suite, with a small TCP
relay in the test to cut or blackhole the link:

  - a token source that keeps giving expired tokens is refreshed once, then
    the client fails (4502, exit 3) instead of reconnecting for ever;
  - the attempt limit (exit 4, one plain line per attempt) and the manual
    retry after it (`tether sub --retry`);
  - plain reasons for a refused port, a DNS failure and TLS against plain
    HTTP; usage errors exit 2 before any connection; 4503 exits 3;
  - the 10 s connect timeout against a blackholed link;
  - a clean disconnect never reconnects;
  - across a real outage: the outbox cap (100), the stale push-to-talk drop
    (> 2 s), the audio FIFO overflow (oldest dropped, counted) and its 10 ms
    paced flush, measured on the server's timestamps.
"""

import os
import socket
import subprocess
import threading
import time

import pytest

import tether_harness as th
from test_client_cli import TETHER, start, wait_event  # noqa: F401  (fixture helpers)
from test_client_cli import clis  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.requires("tether")


class Relay(threading.Thread):
    """Listens on a free loopback port and forwards each connection to
    upstream (host, port). blackhole: accept, read and drop, never answer.
    cut(): close every relayed connection now. Counts accepted connections."""

    def __init__(self, upstream, blackhole=False, port=None):
        super().__init__(daemon=True)
        self.upstream, self.blackhole = upstream, blackhole
        self.port = port or th.free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.accepted = 0
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        self.start()

    def url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    def run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                c.close()
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            if self.blackhole:
                threading.Thread(target=self._drain, args=(c,), daemon=True).start()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append(u)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _drain(c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        """Stops listening (new connections are refused) and cuts the link."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        self.join(5)
        self.cut()


@pytest.fixture
def relays():
    made = []
    yield made
    for r in made:
        r.close()


def gw_addr(suite):
    host, port = suite.daemons["gateway"].http.rsplit(":", 1)
    return host, int(port)


def run(args, timeout=30, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    return subprocess.run([str(TETHER)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def plain(stderr):
    return [l for l in stderr.splitlines() if not l.startswith("{")]


def states_of(stderr):
    import json
    return [json.loads(l) for l in stderr.splitlines() if l.startswith('{"event":"state"')]


# ---- tokens -----------------------------------------------------------------------------------

def test_expired_token_file_refreshed_once_then_fails(suite, tmp_path, relays):
    """--token-file holding an expired token: one re-read after the 4502,
    then FAILED with exit 3 and a plain message; exactly two connections."""
    relay = Relay(gw_addr(suite))
    relays.append(relay)
    tf = tmp_path / "token"
    tf.write_text(suite.token("alice", ttl=-60) + "\n")
    t0 = time.monotonic()
    p = run(["sub", "room", "--url", relay.url(), "--token-file", tf], timeout=30)
    assert p.returncode == 3, p.stderr
    assert time.monotonic() - t0 < 10, p.stderr
    st = states_of(p.stderr)
    assert [s["state"] for s in st] == ["connecting", "reconnecting", "reconnecting", "failed"], p.stderr
    assert st[1]["code"] == 4502 and st[1].get("waiting_for_token") is True
    assert st[-1]["code"] == 4502 and "keeps returning expired tokens" in st[-1]["reason"]
    assert '"event":"token","t_ms"' in p.stderr and '"renewed":true' in p.stderr
    assert any("--token-file" in l and "(exit 3)" in l for l in plain(p.stderr)), p.stderr
    assert relay.accepted == 2, "connections: %d\n%s" % (relay.accepted, p.stderr)


def test_expired_token_without_source_fails_at_once(suite):
    p = run(["sub", "room", "--url", suite.ws_url(), "--token", suite.token("bob", ttl=-60)])
    assert p.returncode == 3, p.stderr
    assert [s["state"] for s in states_of(p.stderr)] == ["connecting", "reconnecting", "failed"], p.stderr
    assert any("expired" in l for l in plain(p.stderr))


# ---- attempts, plain errors, exit codes ----------------------------------------------------------

def test_refused_port_gives_up_with_a_line_per_attempt():
    port = th.free_port()
    p = run(["sub", "r", "--url", "ws://127.0.0.1:%d/ws" % port, "--token", "x", "--max-attempts", "3",
             "--backoff-initial", "50", "--backoff-max", "100"])
    assert p.returncode == 4, p.stderr
    lines = plain(p.stderr)
    for n in (1, 2, 3):
        assert any("attempt %d of 3" % n in l and "connection refused" in l for l in lines), p.stderr
    assert "gave up after 3 attempts" in lines[-1] and "(exit 4)" in lines[-1]
    assert "Unable to connect" not in p.stderr


def test_default_attempt_limit_is_finite_and_documented():
    p = run(["sub", "--help"])
    assert "--max-attempts N" in p.stdout and "default 8" in p.stdout
    port = th.free_port()
    p = run(["sub", "r", "--url", "ws://127.0.0.1:%d/ws" % port, "--token", "x", "--backoff-initial", "10",
             "--backoff-max", "20"])
    assert p.returncode == 4 and "gave up after 8 attempts" in p.stderr, p.stderr


def test_dns_failure_is_said_plainly():
    p = run(["sub", "r", "--url", "ws://no-such-host.invalid:8080/ws", "--token", "x", "--max-attempts", "1",
             "--backoff-initial", "10"])
    assert p.returncode == 4, p.stderr
    assert "cannot resolve host 'no-such-host.invalid'" in p.stderr
    assert "cannot start a connection" not in p.stderr


def test_tls_against_plain_http_is_said_plainly(suite):
    host, port = gw_addr(suite)
    p = run(["sub", "r", "--url", "wss://%s:%d/ws" % (host, port), "--token", "x", "--max-attempts", "1",
             "--backoff-initial", "10"])
    assert p.returncode == 4, p.stderr
    assert "does not speak TLS" in p.stderr and "use ws://" in p.stderr
    assert "SSL err" not in p.stderr and "error:0000" not in p.stderr


def test_usage_errors_exit_2_before_connecting(relays):
    relay = Relay(("127.0.0.1", th.free_port()), blackhole=True)
    relays.append(relay)
    for args in (["pub", "r", "{nope", "--url", relay.url(), "--token", "x"],
                 ["pub", "r", "{\"n\":{n}", "--count", "2", "--url", relay.url(), "--token", "x"],
                 ["sub", "r", "--bogus", "--url", relay.url(), "--token", "x"],
                 ["sub", "r", "--max-attempts", "many", "--url", relay.url(), "--token", "x"],
                 ["pub", "r", "{}", "--id", "bad id", "--url", relay.url(), "--token", "x"]):
        p = run(args, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
        assert '"event":"state"' not in p.stderr, (args, p.stderr)
    time.sleep(0.2)
    assert relay.accepted == 0
    p = run(["pub", "r", "{nope", "--url", relay.url(), "--token", "x"])
    assert "not valid JSON" in p.stderr


def test_forbidden_room_exits_3_in_sub_and_pub(suite):
    tok = suite.token("carol", rooms=["mine"])
    p = run(["sub", "theirs", "--url", suite.ws_url(), "--token", tok, "--timeout", "10"], timeout=20)
    assert p.returncode == 3, p.stderr
    assert "does not allow" in p.stderr
    p = run(["pub", "theirs", "{}", "--url", suite.ws_url(), "--token", tok, "--timeout", "10"], timeout=20)
    assert p.returncode == 3, p.stderr
    p = run(["pub", "mine", "{}", "--url", suite.ws_url(), "--token", tok, "--timeout", "10"], timeout=20)
    assert p.returncode == 0, p.stderr


def test_help_is_self_contained():
    for cmd in ([], ["sub"], ["pub"], ["ptt"], ["bench"], ["token"]):
        p = run(cmd + ["--help"])
        assert p.returncode == 0
        for bad in ("PROTOCOL.md", "shared/", "DESIGN.md"):
            assert bad not in p.stdout, (cmd, bad)


# ---- timeouts, clean disconnect, manual retry -----------------------------------------------------

def test_connect_timeout_10s_against_blackholed_link(relays):
    relay = Relay(("127.0.0.1", th.free_port()), blackhole=True)
    relays.append(relay)
    t0 = time.monotonic()
    p = run(["sub", "r", "--url", relay.url(), "--token", "x", "--max-attempts", "1", "--backoff-initial", "10"],
            timeout=40)
    took = time.monotonic() - t0
    assert p.returncode == 4, p.stderr
    st = states_of(p.stderr)
    assert st[1]["state"] == "reconnecting" and "no welcome within 10" in st[1]["reason"], p.stderr
    gap = st[1]["t_ms"] - st[0]["t_ms"]
    assert 10000 <= gap < 11500, gap
    assert 20 <= took < 25, took
    assert relay.accepted == 2


def test_clean_disconnect_never_reconnects(suite, tmp_path, clis, relays):
    relay = Relay(gw_addr(suite))
    relays.append(relay)
    sub = start(clis, tmp_path, "sub", ["sub", "calm", "--url", relay.url(), "--token", suite.token("dave")])
    wait_event(sub, "subscribed", room="calm")
    sub.proc.send_signal(2)
    assert sub.wait(10) == 0, sub.describe()
    assert sub.states() == ["connecting", "connected", "disconnected"], sub.describe()
    time.sleep(1.5)
    assert relay.accepted == 1


def test_manual_retry_after_the_attempt_limit(suite, tmp_path, clis, relays):
    port = th.free_port()
    sub = start(clis, tmp_path, "sub", ["sub", "again", "--retry", "--max-attempts", "2", "--backoff-initial",
                                        "50", "--count", "1", "--timeout", "60", "--url",
                                        "ws://127.0.0.1:%d/ws" % port, "--token", suite.token("erin")],
                stdin=subprocess.PIPE)
    wait_event(sub, "state", state="failed")
    th.wait_until(lambda: "press Enter" in sub.err_path.read_text(), 5, "the retry prompt\n" + sub.describe())
    assert sub.proc.poll() is None, sub.describe()
    relays.append(Relay(gw_addr(suite), port=port))
    sub.proc.stdin.write(b"\n")
    sub.proc.stdin.flush()
    wait_event(sub, "subscribed", room="again")
    p = run(["pub", "again", "{\"back\":1}", "--url", suite.ws_url(), "--token", suite.token("pubber")])
    assert p.returncode == 0, p.stderr
    assert sub.wait(20) == 0, sub.describe()
    assert sub.lines()[0]["data"] == {"back": 1}
    st = sub.states()
    assert st.count("failed") == 1 and st[st.index("failed") + 1] == "connecting", st


def test_retry_prompt_ends_with_exit_4_on_end_of_input(suite):
    port = th.free_port()
    p = run(["sub", "r", "--retry", "--max-attempts", "1", "--backoff-initial", "10", "--url",
             "ws://127.0.0.1:%d/ws" % port, "--token", "x"], input="", timeout=20)
    assert p.returncode == 4, p.stderr


# ---- the outbox and push-to-talk across a real outage ------------------------------------------------

def test_outbox_cap_100_across_outage_then_every_publish_once(suite, tmp_path, clis, relays):
    """Publishes made while the link is down wait in the outbox, at most 100
    (tc_publish says -ENOBUFS beyond, and `tether pub` holds the rest); after
    the reconnection every publish is stored once and delivered in order."""
    n_before, n_during = 10, 150
    total = n_before + n_during
    relay = Relay(gw_addr(suite))
    relays.append(relay)
    sub = start(clis, tmp_path, "sub", ["sub", "cap", "--count", total, "--timeout", "60", "--url", suite.ws_url(),
                                        "--token", suite.token("reader")])
    wait_event(sub, "subscribed", room="cap")
    pub = start(clis, tmp_path, "pub", ["pub", "cap", "-", "--timeout", "60", "--url", relay.url(), "--token",
                                        suite.token("writer"), "--backoff-initial", "200", "--backoff-max", "400",
                                        "--max-attempts", "0"], stdin=subprocess.PIPE)
    for i in range(1, n_before + 1):
        pub.proc.stdin.write(b'{"i":%d}\n' % i)
    pub.proc.stdin.flush()
    th.wait_until(lambda: len(pub.lines()) == n_before, 15, "first acks\n" + pub.describe())
    relay.close()  # cut, and refuse new connections
    wait_event(pub, "state", state="reconnecting")
    for i in range(n_before + 1, total + 1):
        pub.proc.stdin.write(b'{"i":%d}\n' % i)
    pub.proc.stdin.flush()
    time.sleep(1.5)
    relays.append(Relay(gw_addr(suite), port=relay.port))
    pub.proc.stdin.close()
    assert pub.wait(60) == 0, pub.describe()
    assert sub.wait(30) == 0, sub.describe()
    stats = pub.events("stats")
    assert stats, pub.describe()
    assert stats[0]["outbox_len"] == 100, stats[0]
    assert stats[0]["publishes_rejected"] >= 1, stats[0]
    acks = pub.lines()
    assert len(acks) == total and len({a["id"] for a in acks}) == total
    assert sorted(a["seq"] for a in acks) == list(range(1, total + 1))
    assert [m["data"]["i"] for m in sub.lines()] == list(range(1, total + 1))


@pytest.mark.requires("mediad")
def test_ptt_press_older_than_2s_offline_is_dropped(suite, tmp_path, clis, relays):
    """`tether ptt` presses the button at start; the gateway is unreachable
    for longer than ptt_stale_ms (2 s): at the reconnection the request is
    dropped (expired), never sent, and the command exits 1."""
    port = th.free_port()
    talk = start(clis, tmp_path, "talk", ["ptt", "stale-room", "--hold", "1", "--url", "ws://127.0.0.1:%d/ws" % port,
                                          "--token", suite.token("talker"), "--backoff-initial", "300",
                                          "--backoff-max", "600", "--max-attempts", "0"])
    wait_event(talk, "state", state="reconnecting")
    time.sleep(2.6)
    relays.append(Relay(gw_addr(suite), port=port))
    assert talk.wait(20) == 1, talk.describe()
    floors = talk.lines()
    assert [f["state"] for f in floors] == ["requesting", "expired"], floors
    assert "stale" in floors[-1]["reason"]
    assert "request was dropped" in talk.err_path.read_text()
    assert "connected" in talk.states()


@pytest.mark.requires("mediad")
def test_ptt_press_during_a_short_outage_is_sent(suite, tmp_path, clis, relays):
    port = th.free_port()
    talk = start(clis, tmp_path, "talk", ["ptt", "fresh-room", "--hold", "1", "--url", "ws://127.0.0.1:%d/ws" % port,
                                          "--token", suite.token("talker"), "--backoff-initial", "100",
                                          "--backoff-max", "200", "--jitter", "none", "--max-attempts", "0"])
    wait_event(talk, "state", state="reconnecting")
    relays.append(Relay(gw_addr(suite), port=port))
    assert talk.wait(20) == 0, talk.describe()
    states = [f["state"] for f in talk.lines()]
    assert states[:2] == ["requesting", "granted"] and states[-1] == "idle", states


@pytest.mark.requires("mediad")
def test_audio_fifo_overflow_and_paced_flush_across_outage(suite, tmp_path, clis, relays):
    """Audio chunks produced while the link is down wait in the FIFO (100);
    beyond that the oldest are dropped and counted; after the reconnection
    the FIFO drains one chunk per 10 ms, measured on the server's ts."""
    n, chunk_ms = 200, 20
    relay = Relay(gw_addr(suite))
    relays.append(relay)
    sub = start(clis, tmp_path, "listen", ["sub", "voice-fifo", "--url", suite.ws_url(), "--token",
                                           suite.token("listener")])
    wait_event(sub, "subscribed", room="voice-fifo")
    talk = start(clis, tmp_path, "talk", ["ptt", "voice-fifo", "--hold", "1", "--audio", n, "--chunk-ms", chunk_ms,
                                          "--url", relay.url(), "--token", suite.token("talker"),
                                          "--backoff-initial", "100", "--backoff-max", "200", "--jitter", "none",
                                          "--max-attempts", "0"])
    th.wait_until(lambda: len(sub.lines()) >= 20, 15, "first chunks\n" + sub.describe() + talk.describe())
    relay.close()
    wait_event(talk, "state", state="reconnecting")
    time.sleep(3.0)  # 150 chunks produced offline: 100 kept, the oldest 50 dropped
    relays.append(Relay(gw_addr(suite), port=relay.port))
    assert talk.wait(30) == 0, talk.describe()
    th.wait_until(lambda: sub.lines() and sub.lines()[-1]["data"]["n"] == n, 10, "the last chunk\n" + sub.describe())
    stats = talk.events("stats")[0]
    assert stats["audio_buffered"] == 100 and stats["audio_dropped"] >= 40, stats
    msgs = sub.lines()
    ns = [m["data"]["n"] for m in msgs]
    assert ns == sorted(set(ns)), "chunks out of order or twice"
    holes = [(a, b) for a, b in zip(ns, ns[1:]) if b != a + 1]
    assert len(holes) >= 1 and sum(b - a - 1 for a, b in holes) == n - len(ns), holes
    # The first hole is the oldest chunks dropped; what follows it is the FIFO
    # flushed after the reconnection: 100 chunks, paced.
    i = ns.index(holes[0][1])
    flushed = msgs[i:i + 100]
    span = flushed[-1]["ts"] - flushed[0]["ts"]
    assert span >= 99 * 10 * 0.8, "100 buffered chunks flushed in %d ms: not paced at 10 ms" % span
    assert span < 99 * 10 * 4, "flush took %d ms" % span
