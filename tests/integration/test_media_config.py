"""test_media_config.py -- mediad's configuration contract and operations.

  - TETHER_MEDIA_IFACES and TETHER_MEDIA_PORTS: answers carry candidates on
    the named interfaces' addresses only, on ports inside the range;
  - TETHER_MEDIA_CERT: the DTLS certificate is created once (mode 0600) and
    its fingerprint is the same after a kill -9 and restart;
  - bad values fail fast with the variable's name (exit status 2);
  - /readyz follows Redis; /healthz and /metrics are served.
"""

import os
import re
import stat
import subprocess

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run
from test_media_helpers import Probe, join_audio

pytestmark = pytest.mark.requires("mediad")


@pytest.mark.suite_env(TETHER_MEDIA_PORTS="12000-12009")
def test_candidates_on_configured_interfaces_and_ports(suite):
    async def t():
        room = tc.uid("cfg")
        probe = await Probe().start()
        try:
            ws = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="alice")
            await ws.subscribe(room)
            ans = await join_audio(ws, room, probe, "alice", keying="sdes")
            cands = re.findall(r"a=candidate:\S+ 1 UDP \d+ (\S+) (\d+) typ host", ans)
            assert cands, ans
            for addr, port in cands:
                assert addr in ("127.0.0.1", "::1"), addr
                assert 12000 <= int(port) <= 12009, port
            assert "a=ice-lite" in ans and "a=end-of-candidates" in ans
        finally:
            await probe.stop()
    run(t())


@pytest.mark.chaos
def test_dtls_certificate_persisted_and_stable(suite):
    async def t():
        room = tc.uid("cfg")
        pem = suite.dir / "run" / "mediad-dtls.pem"
        assert pem.is_file(), "the default TETHER_MEDIA_CERT is run/mediad-dtls.pem in the working directory"
        assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
        before = pem.read_bytes()
        probe = await Probe().start()
        try:
            ws = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="alice")
            await ws.subscribe(room)
            a1 = await join_audio(ws, room, probe, "alice", keying="dtls")
            fp1 = re.search(r"a=fingerprint:sha-256 (\S+)", a1).group(1)
            suite.kill9("mediad")
            suite.restart("mediad")
            await ws.wait_for(lambda: ws.find("media", room=room, action="restart"), 10, "restart")
            a2 = await join_audio(ws, room, probe, "alice2", keying="dtls")
            fp2 = re.search(r"a=fingerprint:sha-256 (\S+)", a2).group(1)
            assert fp1 == fp2
            assert pem.read_bytes() == before, "loaded, not regenerated"
        finally:
            await probe.stop()
    run(t())


@pytest.mark.parametrize("var,value", [
    ("TETHER_MEDIA_PORTS", "10-20"),
    ("TETHER_MEDIA_PORTS", "20000"),
    ("TETHER_MEDIA_IFACES", "no-such-interface0"),
    ("TETHER_MEDIAD", "tcp://127.0.0.1:1,tcp://127.0.0.1:2"),
    ("TETHER_PTT_MAX_MS", "soon"),
    ("TETHER_REDIS", "redis://user:secret@127.0.0.1:99999/0"),
    ("TETHER_REDIS", "redis://user@127.0.0.1/0"),
])
def test_bad_config_fails_fast_naming_the_variable(tmp_path, var, value):
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env[var] = value
    p = subprocess.run([str(th.binary("mediad"))], env=env, capture_output=True, timeout=10, cwd=str(tmp_path))
    assert p.returncode != 0
    assert var.encode() in p.stdout + p.stderr, (p.stdout, p.stderr)
    assert b"secret" not in p.stdout + p.stderr, "a password in the URL is never printed"


def test_unreadable_certificate_fails_fast(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env["TETHER_MEDIA_CERT"] = str(bad)
    p = subprocess.run([str(th.binary("mediad"))], env=env, capture_output=True, timeout=10, cwd=str(tmp_path))
    assert p.returncode == 2
    assert b"TETHER_MEDIA_CERT" in p.stderr


@pytest.mark.chaos
def test_readyz_follows_redis(suite):
    md = suite["mediad"]
    assert md.readyz()[0] == 200
    suite.redis.kill9()
    th.wait_until(lambda: md.readyz()[0] == 503, 10, "mediad /readyz 503 without Redis")
    status, body = md.readyz()
    assert b'"redis"' in body
    suite.redis.start()
    th.wait_until(lambda: md.readyz()[0] == 200, 15, "mediad /readyz 200 with Redis back")
    assert md.healthz() == 200
    m = md.metrics()
    for name in ("tether_mediad_sessions", "tether_mediad_floor_grants_total", "tether_mediad_redis_up"):
        assert name in m, name
