"""test_redis_tls.py -- every daemon over rediss:// to a redis-server
--tls-port whose CA, server and client certificates the test makes with
openssl: the whole pub/sub and resume path; a wrong CA is a red /readyz
naming the certificate failure (liveness green), and the daemons fail fast
on TLS files they cannot use.
"""

import shutil

import pytest

import tether_harness as th
from test_redis_auth import _logs, _pubsub_and_resume

REDIS_DAEMONS = ("replayd", "sessiond", "mediad")


def _need():
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("redis-server or openssl not installed")
    absent = th.missing(th.CORE)
    if absent:
        pytest.skip("not built: %s" % ", ".join(absent))


def test_tls_with_client_certificate_carries_pubsub_and_resume(tmp_path):
    _need()
    certs = th.make_tls_certs(tmp_path / "tls")
    r = th.Redis(tmp_path / "redis", password="tls-pw", url_auth=":tls-pw", tls=certs,
                 tls_auth_clients=True).start()
    env = {"TETHER_REDIS_CA": certs / "ca.crt", "TETHER_REDIS_CERT": certs / "cli.crt",
           "TETHER_REDIS_KEY": certs / "cli.key"}
    s = th.Suite(tmp_path / "suite", redis=r, env=env)
    try:
        s.start()
        _pubsub_and_resume(s)
        # Every daemon's connection is a TLS one: the plain port serves only us.
        clients = r.command("CLIENT", "LIST").decode().splitlines()
        laddrs = [f for line in clients for f in line.split() if f.startswith("laddr=")]
        assert sum(1 for a in laddrs if a.endswith(":%d" % r.tls_port)) >= len(
            [d for d in REDIS_DAEMONS if d in s.components]), clients
        assert b"tls-pw" not in _logs(s)
    finally:
        s.stop()
        r.stop()


def test_wrong_ca_is_refused_and_reported(tmp_path):
    _need()
    certs = th.make_tls_certs(tmp_path / "tls")
    r = th.Redis(tmp_path / "redis", tls=certs).start()
    s = th.Suite(tmp_path / "suite", redis=r, env={"TETHER_REDIS_CA": certs / "other.crt"})
    try:
        d = s._daemon("replayd", "replayd")
        d.start()
        d.wait_healthy()

        def red():
            status, body = d.readyz()
            return status == 503 and b"certificate verify failed" in body
        th.wait_until(red, 10, "replayd /readyz 503 naming the certificate")
        assert d.healthz() == 200 and d.alive()
        assert b"certificate verify failed" in _logs(s)
    finally:
        s.stop()
        r.stop()


@pytest.mark.parametrize("var,value,says", [
    ("TETHER_REDIS_CA", "/nonexistent/ca.crt", b"TETHER_REDIS_CA"),
    ("TETHER_REDIS_CERT", "/nonexistent/cli.crt", b"TETHER_REDIS_CERT"),
])
def test_unusable_tls_files_fail_fast(tmp_path, var, value, says):
    _need()
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env["TETHER_REDIS"] = "rediss://127.0.0.1:%d/0" % th.free_port()
    env[var] = value
    if var == "TETHER_REDIS_CERT":
        env["TETHER_REDIS_KEY"] = value
    for d in REDIS_DAEMONS:
        if not th.have(d):
            continue
        p = th.subprocess.run([str(th.binary(d))], env=env, capture_output=True, timeout=10, cwd=str(tmp_path))
        assert p.returncode == 2, (d, p.stderr)
        assert says in p.stderr, (d, p.stderr)
