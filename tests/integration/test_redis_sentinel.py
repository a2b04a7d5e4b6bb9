"""test_redis_sentinel.py -- redis+sentinel:// through a real failover.

One master (AOF always), one replica, three `redis-server --sentinel`; every
daemon on TETHER_REDIS=redis+sentinel://s1,s2,s3/<name>. Publishers (one
retrying client per room) and subscribers run under load while the master
is killed with SIGKILL; the sentinels promote the replica, the daemons follow
+switch-master and re-discover. Everything keeps working on the new master,
and whatever replication had not carried over is never lost silently: each
subscriber either got every acknowledged message of a room, or was told
`recovered: false` with a new epoch. Prints the failover time (kill to the
first acknowledged publish sent after it).
"""

import asyncio
import os
import shutil
import signal
import time

import pytest

import tether_client as tc
import tether_harness as th
from test_chaos import RetryingPublisher
from tether_client import run

NAME = "tmaster"


def _need():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    absent = th.missing(th.CORE)
    if absent:
        pytest.skip("not built: %s" % ", ".join(absent))


def _group(tmp_path, password=None, sentinel_requirepass=True):
    auth = ["--masterauth", password] if password else []
    master = th.Redis(tmp_path / "master", aof=True, password=password, extra=auth).start()
    replica = th.Redis(tmp_path / "replica", password=password,
                       extra=["--replicaof", "127.0.0.1", str(master.port)] + auth).start()
    th.wait_until(lambda: b"master_link_status:up" in replica.command("INFO", "replication"), 10,
                  "replica in sync")
    sentinels = [th.Sentinel(tmp_path / ("sentinel%d" % i), NAME, master.port, password=password,
                             requirepass=sentinel_requirepass).start()
                 for i in range(3)]

    def settled():
        m = sentinels[0].master()
        return m["num-slaves"] == "1" and m["num-other-sentinels"] == "2"
    th.wait_until(lambda: all(settled() for _ in [0]) and all(
        s.master()["num-other-sentinels"] == "2" for s in sentinels), 20, "sentinels see each other")
    return master, replica, sentinels


def _url(sentinels, password=None):
    auth = ":%s@" % password if password else ""
    return "redis+sentinel://%s%s/%s/0" % (auth, ",".join("127.0.0.1:%d" % s.port for s in sentinels), NAME)


# With a password: the master, the replica and the sentinels all require it
# (the sentinels get the URL's userinfo, as TETHER_SENTINEL_PASSWORD is unset).
# lag: the replica is frozen (SIGSTOP) and its link cut for 600 ms under
# load just before the kill, so acknowledged appends that never reached it
# are lost in the failover (live subscribers have them from the bus, the new
# master's history does not); each such room must move to a new epoch that
# its subscribers hear as recovered: false.
@pytest.mark.chaos
@pytest.mark.parametrize("password,lag", [(None, False), ("grp-pw", False), (None, True)])
def test_master_kill9_under_load_fails_over_and_never_loses_silently(tmp_path, password, lag):
    _need()
    master, replica, sentinels = _group(tmp_path, password)
    s = th.Suite(tmp_path / "suite", redis=master, env={"TETHER_REDIS": _url(sentinels, password)})
    procs = [master, replica] + sentinels
    try:
        s.start()
        report = {}

        async def t():
            rooms = [tc.uid("sent") for _ in range(6)]
            subs = []
            for i in range(2):
                c = await tc.connect(s.ws_url(), token=s.token("sub%d" % i), name="sub%d" % i)
                for r in rooms:
                    await c.subscribe(r)
                subs.append(c)
            pubs = []
            for i, r in enumerate(rooms):
                c = await tc.connect(s.ws_url(), token=s.token("pub%d" % i), name="pub%d" % i)
                pubs.append(RetryingPublisher(c, r, 400, prefix="p%d" % i, window=8, retry_s=2))
            tasks = [asyncio.get_running_loop().create_task(p.run(120)) for p in pubs]
            while sum(len(p.acked) for p in pubs) < 800:
                await asyncio.sleep(0.05)
            old = sentinels[0].master_addr()
            if lag:
                # Frozen, and its replication link cut by the master: what
                # is appended from now on never reaches it.
                os.kill(replica.proc.pid, signal.SIGSTOP)
                master.command("CLIENT", "KILL", "TYPE", "replica")
                await asyncio.sleep(0.6)
            t_kill = time.monotonic()
            master.kill9()
            if lag:
                os.kill(replica.proc.pid, signal.SIGCONT)
            # Failover time: a probe publish sent after the kill, retried
            # every 250 ms, until one is acknowledged.
            probe = await tc.connect(s.ws_url(), token=s.token("probe"), name="probe")
            proom = tc.uid("probe")
            k = 0
            while True:
                k += 1
                try:
                    await probe.publish(proom, "probe-%d" % k, k, timeout=0.25)
                    break
                except (tc.FrameError, TimeoutError, asyncio.TimeoutError):
                    assert time.monotonic() - t_kill < 60, "no publish acknowledged 60 s after the kill"
            report["failover_s"] = round(time.monotonic() - t_kill, 2)
            await asyncio.gather(*tasks)
            # Every room gets publishes on the new master too (the load may
            # have finished during the failover): a room whose history did
            # not replicate must start a new epoch now.
            after = [RetryingPublisher(p.c, p.room, 5, prefix="after%d" % i, window=1, retry_s=2)
                     for i, p in enumerate(pubs)]
            await asyncio.gather(*(a.run(30) for a in after))
            for p, a in zip(pubs, after):
                p.acked.update(a.acked)
            new = sentinels[0].master_addr()
            assert new != old and new[1] == replica.port, (old, new)
            report["acked"] = sum(len(p.acked) for p in pubs)
            # Delivery: every acknowledged message, or recovered:false.
            await asyncio.sleep(2)
            lost_total, told, new_epoch = 0, 0, set()
            for p in pubs:
                acked_ids = set(p.acked)
                for sub in subs:
                    msgs = sub.messages(p.room)
                    per_epoch = {}
                    for m in msgs:
                        per_epoch.setdefault(m["epoch"], []).append(m["seq"])
                    for ep, seqs in per_epoch.items():
                        assert seqs == sorted(set(seqs)), "%s %s: duplicates or disorder in epoch %s" % (
                            sub.name, p.room, ep)
                    lost = acked_ids - {m["id"] for m in msgs}
                    resub = [f for f in sub.find("subscribed", room=p.room)][1:]
                    epochs = list(dict.fromkeys(m["epoch"] for m in msgs))
                    if len(epochs) > 1:
                        # History was lost in the failover: the room moved to
                        # a new epoch, announced before its first message.
                        new_epoch.add(p.room)
                        first_new = next(m for m in msgs if m["epoch"] == epochs[-1])
                        told_frames = [f for f in resub if f.get("recovered") is False and f["epoch"] == epochs[-1]]
                        assert told_frames and sub.frames.index(told_frames[0]) < sub.frames.index(first_new), \
                            "%s: %s changed epoch without recovered:false first" % (sub.name, p.room)
                    if lost:
                        lost_total += len(lost)
                        assert any(f.get("recovered") is False for f in resub), \
                            "%s lost %d acked messages of %s silently" % (sub.name, len(lost), p.room)
                        told += 1
            report["lost"] = lost_total
            report["subscriptions_told_recovered_false"] = told
            report["rooms_new_epoch"] = len(new_epoch)
            if lag:
                assert new_epoch, "the frozen replica lost nothing: the test proved nothing"
        run(t(), timeout=240)
        # The daemons are on the new master and ready.
        for d in s.daemons.values():
            d.wait_ready(15)
        logs = b"".join(p.read_bytes() for d in s.daemons.values() for p in (d.log,) if p.exists())
        assert b"redis: sentinels switched the master" in logs
        assert b'"port":%d' % replica.port in logs
        if password:
            assert password.encode() not in logs
        print("\nsentinel failover (auth %s, lag %s): %s" % (bool(password), lag, report))
    finally:
        s.stop()
        for p in procs:
            p.stop()


def test_sentinel_url_fails_fast_on_unreadable_sentinel_password_file(tmp_path):
    _need()
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env["TETHER_REDIS"] = "redis+sentinel://127.0.0.1:%d/%s" % (th.free_port(), NAME)
    env["TETHER_SENTINEL_PASSWORD_FILE"] = str(tmp_path / "absent")
    p = th.subprocess.run([str(th.binary("replayd"))], env=env, capture_output=True, timeout=10, cwd=str(tmp_path))
    assert p.returncode == 2 and b"TETHER_SENTINEL_PASSWORD_FILE" in p.stderr, p.stderr


class FakeSentinel:
    """A RESP server on loopback that answers like a sentinel: PING, AUTH,
    SENTINEL get-master-addr-by-name (with whatever address `answer` holds)
    and SUBSCRIBE (confirmed, never a message). It names nodes the real
    Redis processes disagree with, which a real sentinel group cannot be
    made to do on purpose."""

    def __init__(self, answer):
        import socketserver
        import threading
        self.answer = answer
        self.queries = 0
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    try:
                        args = th._resp_read(self.rfile)
                    except (ConnectionError, OSError, th.RedisError):
                        return
                    if not isinstance(args, list) or not args:
                        return
                    cmd = args[0].upper() if isinstance(args[0], bytes) else b""
                    if cmd == b"PING":
                        out = b"+PONG\r\n"
                    elif cmd == b"AUTH":
                        out = b"+OK\r\n"
                    elif cmd == b"SENTINEL":
                        fake.queries += 1
                        h, p = fake.answer
                        out = th._resp_encode([h, str(p)])
                    elif cmd == b"SUBSCRIBE":
                        out = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(args[1]), args[1])
                    else:
                        out = b"-ERR unknown command\r\n"
                    try:
                        self.wfile.write(out)
                        self.wfile.flush()
                    except OSError:
                        return

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_replica_named_as_master_is_never_written_to(tmp_path):
    """The sentinels' answer is stale (it names a replica): ROLE after the
    handshake refuses it, /readyz says why, nothing is written there; once
    the answer names the real master, the daemon gets in by itself."""
    _need()
    master = th.Redis(tmp_path / "master").start()
    replica = th.Redis(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(master.port)]).start()
    fake = FakeSentinel(("127.0.0.1", replica.port))
    s = th.Suite(tmp_path / "suite", redis=master,
                 env={"TETHER_REDIS": "redis+sentinel://127.0.0.1:%d/%s" % (fake.port, NAME)})
    try:
        d = s._daemon("replayd", "replayd")
        d.start()
        d.wait_healthy()

        def refused():
            status, body = d.readyz()
            return status == 503 and b"is not the master" in body and b"slave" in body
        th.wait_until(refused, 10, "replayd /readyz 503: the named node is a replica")
        assert d.healthz() == 200
        q0 = fake.queries
        th.wait_until(lambda: fake.queries > q0 + 1, 10, "the sentinels asked again on every attempt")
        # No command of replayd's ran there (only the pipelined handshake).
        assert replica.command("DBSIZE") == 0
        fake.answer = ("127.0.0.1", master.port)
        d.wait_ready(15)
        assert b"redis: sentinels name the master" in d.log.read_bytes()
    finally:
        s.stop()
        fake.stop()
        replica.stop()
        master.stop()


def test_password_on_the_nodes_only_sentinels_without_one(tmp_path):
    """The usual set-up: the Redis nodes require a password, the sentinels
    do not. The URL's password, tried on the sentinels, is not an error."""
    _need()
    master, replica, sentinels = _group(tmp_path, "nodes-pw", sentinel_requirepass=False)
    s = th.Suite(tmp_path / "suite", redis=master, env={"TETHER_REDIS": _url(sentinels, "nodes-pw")})
    try:
        s.start()

        async def t():
            room = tc.uid("nopw")
            a = await tc.connect(s.ws_url(), token=s.token("a"))
            await a.subscribe(room)
            pub = await tc.connect(s.ws_url(), token=s.token("p"))
            await pub.publish_many(room, 10)
            await a.wait_seq(room, 10)
        run(t())
        assert b"AUTH refused" not in b"".join(d.log.read_bytes() for d in s.daemons.values())
    finally:
        s.stop()
        for p in [master, replica] + sentinels:
            p.stop()
