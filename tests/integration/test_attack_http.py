"""test_attack_http.py -- lib/http (libmicrohttpd) under hostile clients, on a
real daemon (replayd, through the harness).

What docs/operations.md "Security" promises for the operational port:
  * 1,000 slow sockets from one address (127.0.0.2: all of 127/8 is
    loopback) cannot starve /healthz from another address (127.0.0.1): it
    still answers within 1 s (the per-address limit turns the extra ones away
    with 503);
  * a duplicate Content-Length (even an equal one), Content-Length with
    Transfer-Encoding, and junk after a body are answered 400 and the
    connection is closed;
  * two pipelined POSTs with bodies are answered in order, once each, and the
    process is idle (0 % CPU, from /proc/<pid>/stat) with the keep-alive
    connection still open;
  * the daemon is healthy after each.
"""

import os
import resource
import socket
import time

import pytest

import tether_harness as th

pytestmark = pytest.mark.requires("busd", "replayd")

SLOW = 1000


def hostport(d):
    host, port = d.http.rsplit(":", 1)
    return host, int(port)


def cpu_ticks(pid):
    """utime + stime of pid in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def read_until_closed(s, timeout=3.0):
    """Everything the server sends until it closes; raises if it does not."""
    s.settimeout(timeout)
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            return data, True
        data += b
    return data, False


def responses(data):
    """The status codes and bodies of consecutive responses in data."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "truncated response head: %r" % data[:200]
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        clen = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v.strip())
        out.append((status, rest[:clen]))
        data = rest[clen:]
    return out


def send_and_close(d, raw):
    s = socket.create_connection(hostport(d), timeout=3)
    try:
        s.sendall(raw)
        return read_until_closed(s)
    finally:
        s.close()


@pytest.fixture
def replayd(tether):
    return tether(components=["busd", "replayd"])["replayd"]


def test_slow_sockets_do_not_starve_healthz(replayd):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW + 200), hard))
    host, port = hostport(replayd)
    slow = []
    try:
        for _ in range(SLOW):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            slow.append(s)
        time.sleep(0.3)
        # Each says a little and never finishes its request.
        for s in slow:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass  # already turned away
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            assert th.http_get(replayd.http, "/healthz", timeout=1.0)[0] == 200
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.1)
        assert worst < 1.0, "/healthz took %.3f s with %d slow sockets" % (worst, SLOW)
        # Most of them were turned away at once, with 503.
        turned = 0
        for s in slow[-50:]:
            s.setblocking(True)
            s.settimeout(2)
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 503 "):
                    turned += 1
            except OSError:
                pass
        assert turned >= 45, "only %d of the last 50 slow sockets got 503" % turned
    finally:
        for s in slow:
            s.close()
    assert replayd.healthz() == 200


@pytest.mark.parametrize("raw", [
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nbody!",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nbody\r\n0\r\n\r\n",
], ids=["dup-cl-equal", "dup-cl-different", "cl-te"])
def test_bad_framing_is_400_and_close(replayd, raw):
    data, closed = send_and_close(replayd, raw)
    assert closed, "connection left open after %r" % raw
    got = responses(data)
    assert [st for st, _ in got] == [400], got
    assert replayd.healthz() == 200


def test_junk_after_body_is_400_and_close(replayd):
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
           b"JUNK JUNK JUNK\r\n\r\n")
    data, closed = send_and_close(replayd, raw)
    assert closed
    assert [st for st, _ in responses(data)] == [200, 400]
    # A line that is not even three words, and binary junk.
    for junk in (b"JUNK\r\n\r\n", b"\x16\x03\x01\x00\r\n"):
        data, closed = send_and_close(replayd, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
                                               b"abc" + junk)
        assert closed
        assert [st for st, _ in responses(data)] == [200, 400], data
    assert replayd.healthz() == 200


def test_pipelined_posts_in_order_and_idle(replayd):
    s = socket.create_connection(hostport(replayd), timeout=3)
    try:
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                  b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        end = time.monotonic() + 3
        while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"ok\n"):
            assert time.monotonic() < end, "pipelined answers: %r" % data
            data += s.recv(65536)
        got = responses(data)
        assert [st for st, _ in got] == [405, 405, 200], got
        assert got[2][1] == b"ok\n"
        # Keep-alive connection open, nothing to do: the process is idle.
        time.sleep(0.2)
        t0 = cpu_ticks(replayd.pid)
        time.sleep(2.0)
        used = (cpu_ticks(replayd.pid) - t0) / os.sysconf("SC_CLK_TCK")
        assert used < 0.1, "replayd used %.2f s of CPU in 2 s, idle with a keep-alive connection" % used
        # And the connection still works.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"ok\n"):
            data += s.recv(65536)
        assert responses(data)[0][0] == 200
    finally:
        s.close()
    assert replayd.healthz() == 200
