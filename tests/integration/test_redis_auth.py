"""test_redis_auth.py -- every daemon against a Redis that requires AUTH.

An ACL user limited to the tether:* keys carries the whole pub/sub, history
and resume path (and sessiond's and mediad's keys); the password, given in
the URL percent-encoded or in TETHER_REDIS_PASSWORD_FILE, never reaches a
log. A wrong password is a clear log line and a red /readyz with the reason
while /healthz stays green, and the daemons recover by themselves (no
restart) once Redis accepts their password.
"""

import asyncio
import shutil

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run

ADMIN_PW = "adm-9f2c"
APP_PW = "p@ss:w/0rd%"          # needs percent-encoding in a URL
APP_PW_URL = "p%40ss%3Aw%2F0rd%25"
# What the daemons need and no more: the tether:* keys, no channels, no
# administrative commands (FLUSHALL, CONFIG, DEBUG, KEYS...).
APP_ACL = "tether on >%s ~tether:* resetchannels +@all -@dangerous" % APP_PW
REDIS_DAEMONS = ("replayd", "sessiond", "mediad")


def _need():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    absent = th.missing(th.CORE)
    if absent:
        pytest.skip("not built: %s" % ", ".join(absent))


def _logs(suite):
    out = b""
    for d in suite.daemons.values():
        for p in (d.log, d.err):
            if p.exists():
                out += p.read_bytes()
    return out


def _no_denials(redis):
    log = redis.command("ACL", "LOG")
    assert log == [], "commands refused by the ACL: %r" % (log,)


def _pubsub_and_resume(suite):
    async def t():
        room = tc.uid("auth")
        pub = await tc.connect(suite.ws_url(), token=suite.token("bob"), name="pub")
        a = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="a1")
        await a.subscribe(room)
        await pub.publish_many(room, 20, prefix="pre")
        await a.wait_seq(room, 20)
        pos = {room: {"epoch": a.messages(room)[-1]["epoch"], "seq": 20}}
        session = a.session
        a.abort()
        await pub.publish_many(room, 30, prefix="missed")
        b = tc.Client(suite.ws_url(), name="a2")
        await b.connect()
        await b.hello(token=suite.token("alice"), session=session, rooms=pos)
        s = await b.recv_until(lambda x: x.get("type") in ("subscribed", "error"), 10, "subscribed")
        assert s["type"] == "subscribed" and s["recovered"] is True, s
        await b.wait_seq(room, 50)
        assert b.seqs(room) == list(range(21, 51))
        return room
    return run(t())


def test_acl_user_carries_pubsub_and_resume(tmp_path):
    _need()
    r = th.Redis(tmp_path / "redis", password=ADMIN_PW, users=[APP_ACL],
                 url_auth="tether:" + APP_PW_URL).start()
    s = th.Suite(tmp_path / "suite", redis=r)
    try:
        s.start()
        room = _pubsub_and_resume(s)
        keys = r.command("KEYS", "*")
        assert keys and all(k.startswith(b"tether:") for k in keys), keys
        assert any(room.encode() in k for k in keys), "the room's history is in Redis"
        # Every connection is the ACL user, none the default user.
        clients = r.command("CLIENT", "LIST").decode()
        users = {f.split("=", 1)[1] for line in clients.splitlines() for f in line.split()
                 if f.startswith("user=")}
        assert "tether" in users, clients
        _no_denials(r)
        logs = _logs(s)
        assert b"redis: connected" in logs
        for secret in (APP_PW.encode(), APP_PW_URL.encode(), b"w/0rd", b"w%2F0rd"):
            assert secret not in logs, "the password reached a log"
        assert b"tether:***@127.0.0.1" in logs, "cfg_print shows the URL redacted"
    finally:
        s.stop()
        r.stop()


def test_password_file(tmp_path):
    _need()
    pw = tmp_path / "redis-password"
    pw.write_text(APP_PW + "\n")
    r = th.Redis(tmp_path / "redis", password=ADMIN_PW, users=[APP_ACL], url_auth="tether").start()
    s = th.Suite(tmp_path / "suite", redis=r, env={"TETHER_REDIS_PASSWORD_FILE": str(pw)})
    try:
        s.start()
        _pubsub_and_resume(s)
        _no_denials(r)
        assert APP_PW.encode() not in _logs(s)
    finally:
        s.stop()
        r.stop()


def test_unreadable_password_file_fails_fast(tmp_path):
    _need()
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env["TETHER_REDIS"] = "redis://tether@127.0.0.1:%d/0" % th.free_port()
    env["TETHER_REDIS_PASSWORD_FILE"] = str(tmp_path / "absent")
    for d in REDIS_DAEMONS:
        if not th.have(d):
            continue
        p = th.subprocess.run([str(th.binary(d))], env=env, capture_output=True, timeout=10, cwd=str(tmp_path))
        assert p.returncode == 2, (d, p.stderr)
        assert b"TETHER_REDIS_PASSWORD_FILE" in p.stderr, (d, p.stderr)


def test_wrong_password_readyz_red_healthz_green_then_recovers(tmp_path):
    _need()
    # Redis still has the old password; the daemons were given the new one.
    r = th.Redis(tmp_path / "redis", password="old-password", url_auth=":new-password").start()
    s = th.Suite(tmp_path / "suite", redis=r)
    present = [d for d in REDIS_DAEMONS if d in s.components]
    try:
        daemons = []
        if "busd" in s.components:       # sessiond's and mediad's readiness needs the bus too
            busd = s._daemon("busd", "busd")
            busd.start()
            busd.wait_healthy()
        for name in present:
            d = s._daemon(name, name)
            d.start()
            daemons.append(d)
        for d in daemons:
            d.wait_healthy()

        def red_with_reason(d):
            status, body = d.readyz()
            return status == 503 and b"AUTH refused" in body and b"WRONGPASS" in body
        for d in daemons:
            th.wait_until(lambda: red_with_reason(d), 10, "%s /readyz 503 naming AUTH" % d.name)
        # Liveness does not depend on Redis: 3 s of green /healthz, no exit.
        pids = {d.name: d.pid for d in daemons}
        deadline = th.time.monotonic() + 3
        while th.time.monotonic() < deadline:
            for d in daemons:
                assert d.alive() and d.healthz() == 200, d.name
            th.time.sleep(0.2)
        logs = _logs(s)
        assert b"redis: AUTH refused" in logs and b"WRONGPASS" in logs
        assert b"new-password" not in logs and b"old-password" not in logs
        # Bounded retries (backoff to 2 s), not a storm: the refusal is logged
        # at error level once per connection, however many attempts.
        assert logs.count(b"redis: AUTH refused") <= 2 * len(daemons), "error logged on every retry"

        # Redis comes back with the password the daemons have: they get in
        # by themselves, same processes.
        r.password = "new-password"
        r.restart()
        for d in daemons:
            d.wait_ready(15)
            assert d.pid == pids[d.name], "%s was restarted" % d.name
    finally:
        s.stop()
        r.stop()
