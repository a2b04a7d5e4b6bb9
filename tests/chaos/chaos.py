#!/usr/bin/python3
"""chaos.py -- the whole suite on loopback, a workload, kill -9, and a verdict.

    tests/chaos/chaos.py short|full|soak [--workdir DIR] [--minutes M] [--json FILE]

Starts redis-server (appendonly yes, appendfsync always) and every daemon
through tests/integration/tether_harness.py (two gateways), then two
workloads that run for the whole session:

  - `tether bench --mode chaos`: the C SDK, 30 clients (C_CONNS);
  - tests/chaos/pyclient.py: 8 clients on Debian's python3-websockets,
    written from the protocol alone (the independent client).

Every client follows two of four rooms and publishes with ids into one;
both write per-event logs that checker.py judges. Meanwhile rounds run one
after the other: kill -9 of one process and a restart (each of gateway,
replayd, sessiond, busd, mediad, redis), then combinations, Redis FLUSHALL,
and a network blackhole of a client in a namespace this script creates.
After each round: the checker's violations, every client back to
`connected` within RECONNECT_BOUND_S of the last restarted process being
ready, everything acknowledged delivered everywhere within SETTLE_BOUND_S,
and RSS/fd counts of every process that lived through the round (see
README.md for the tolerances and why).

Prints one line per round and a summary; --json writes every number.
Exit status 0 when every round passed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(HERE))

import tether_harness as th   # noqa: E402
import checker as chk         # noqa: E402
import netns                  # noqa: E402

PY = "/usr/bin/python3"

# ---- the bounds every round is held to (README.md says why these values) ----
# Clients reconnect with backoff 0.5 s doubling to a 5 s cap (full jitter):
# a client whose attempt failed just before the gateway came back tries again
# within 5 s, and the hello takes at most ~1 s (the gateway waits 2 x 500 ms
# for a slow sessiond). 10 s leaves room for a loaded 2-core machine.
RECONNECT_BOUND_S = 10.0
# Everything acknowledged up to "all back" reaches every subscriber within
# this (resumes read from replayd in 500-message pages; repair of bus gaps
# waits for the next message or the 1 s head announcement).
SETTLE_BOUND_S = 20.0
# After a blackhole, an attempt started into the void first waits out its
# connect timeout (10 s in the SDK, 5 s in pyclient).
BLACKHOLE_EXTRA_S = 10.0
# Leak tolerances per round, for a process that lived through it.
FD_TOLERANCE = 2
RSS_TOLERANCE_KB = 2048
RSS_TOLERANCE_FRAC = 0.10

ENV = {
    # The history holds the whole run, so a kill round may lose nothing at
    # all: any `gap` or `recovered: false` outside the flush round is a failure.
    "TETHER_HISTORY_SIZE": "100000",
    "TETHER_HISTORY_TTL_S": "7200",
    "TETHER_DEDUP_TTL_S": "7200",
}

DAEMONS = ("busd", "replayd", "sessiond", "mediad")
ALL = ("redis", "busd", "replayd", "sessiond", "mediad", "gateway", "gateway2")

SINGLES = [("gateway", ["gateway"]), ("replayd", ["replayd"]), ("sessiond", ["sessiond"]),
           ("busd", ["busd"]), ("mediad", ["mediad"]), ("redis", ["redis"])]
COMBOS = [("gateway+replayd", ["gateway", "replayd"]), ("busd+redis", ["busd", "redis"]),
          ("sessiond+gateway", ["sessiond", "gateway"]), ("replayd+redis", ["replayd", "redis"]),
          ("everything", list(ALL))]

PROFILES = {
    # A short version for `make test` (budget ~90 s): two combinations, a
    # Redis rollback, the flush, and a blackhole on a gateway with a 4 s
    # heartbeat.
    "short": dict(c_conns=16, py_conns=4, rate=16, py_rate=3, hold_s=1.0,
                  rounds=[("gateway+replayd", ["gateway", "replayd"]), ("busd+redis", ["busd", "redis"])],
                  rollback=True, flush=True, blackhole=(18, 4000)),
    # `make test-chaos`: every single kill, the combinations, the rollback,
    # the flush, and a 40 s blackhole with the default 25 s heartbeat.
    "full": dict(c_conns=30, py_conns=8, rate=24, py_rate=6, hold_s=2.0,
                 rounds=SINGLES + COMBOS, rollback=True, flush=True, blackhole=(40, 25000)),
    # The rollback round alone: Redis comes back *older* than what it
    # acknowledged (what AOF everysec + an OS crash or a restored backup
    # produce); the rooms must start new epochs (README.md).
    "rollback": dict(c_conns=12, py_conns=4, rate=12, py_rate=3, hold_s=1.0, rounds=[], flush=False,
                     blackhole=None, rollback=True),
    # `make soak`: churn, a random kill every few minutes, checks every minute.
    "soak": dict(c_conns=40, py_conns=8, rate=24, py_rate=6, hold_s=2.0, churn_ms=20000,
                 rounds=[], flush=False, blackhole=None),
}


def now_us():
    return int(time.monotonic() * 1e6)


def tcp_local_ports():
    """socket inode -> (local port, state) for every TCP socket here."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    w = line.split()
                    out[w[9]] = (int(w[1].rsplit(":", 1)[1], 16), w[3])
        except OSError:
            continue
    return out


def proc_stats(pid, port=None, tcp=None):
    """(rss_kb, fds, fds_other) of a live process, or None. fds_other leaves
    out the connections accepted on `port` (a gateway's WebSocket clients,
    whose number follows the workload, not a leak)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = os.listdir("/proc/%d/fd" % pid)
        accepted = 0
        if port and tcp is not None:
            for fd in fds:
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    p = tcp.get(link[8:-1])
                    if p and p[0] == port and p[1] != "0A":     # 0A: LISTEN
                        accepted += 1
        return rss, len(fds), len(fds) - accepted
    except (OSError, StopIteration, ValueError):
        return None


class Workload:
    """One workload process (C or Python) with its stdin as control."""

    def __init__(self, name, argv, log, errlog, prefix=()):
        self.name, self.argv, self.log, self.errlog = name, list(prefix) + list(argv), log, errlog
        self.proc = None

    def start(self):
        with open(self.errlog, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, cmd):
        if self.alive():
            try:
                self.proc.stdin.write((cmd + "\n").encode())
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass

    def stop(self, timeout=10):
        if self.proc is None:
            return
        self.command("stop")
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class RoundFailed(Exception):
    pass


class Terminated(Exception):
    """SIGTERM (e.g. run_all.sh's timeout): raised so that the `finally`
    that stops the daemons and deletes the namespaces still runs; the
    daemons run in sessions of their own and would outlive us."""


def on_sigterm(signo, frame):
    raise Terminated("SIGTERM")


class Chaos:
    def __init__(self, workdir, profile, out=print):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.p = dict(PROFILES[profile])
        self.profile = profile
        self.out = out
        self.suite = None
        self.workloads = []
        self.checker = chk.Checker()
        self.results = []
        self.ns = None
        self.ns_gw = None
        self.room = "chaos"
        self.t0 = now_us()
        self._last_measure = None
        self._v_reported = 0         # violations already attributed to a round
        self._presence_until = 0     # presence events judged up to this time

    # ---- set-up ------------------------------------------------------------------
    def start(self):
        missing = th.missing(("busd", "replayd", "gateway", "sessiond", "mediad", "tether"))
        if missing:
            raise RuntimeError("not built: %s" % ", ".join(missing))
        self.suite = th.Suite(self.dir / "suite", env=ENV, aof=True)
        self.suite.start()
        self.suite.add_gateway()
        self.seed_rooms()
        urls = ",".join(self.suite.ws_url(g) for g in ("gateway", "gateway2"))
        p = self.p
        c_log, py_log = self.dir / "c-clients.jsonl", self.dir / "py-clients.jsonl"
        cargs = [str(th.binary("tether")), "bench", "--mode", "chaos", "--conns", str(p["c_conns"]),
                 "--rooms", "4", "--room", self.room, "--rate", str(p["rate"]), "--url", urls,
                 "--secret", self.suite.secret, "--log", str(c_log), "--user", "c",
                 "--backoff-initial", "500", "--backoff-max", "5000", "--quiet"]
        if p.get("churn_ms"):
            cargs += ["--churn", str(p["churn_ms"])]
        pargs = [PY, str(HERE / "pyclient.py"), "--url", urls, "--secret", self.suite.secret,
                 "--conns", str(p["py_conns"]), "--rooms", "4", "--room", self.room, "--room-offset", "1",
                 "--rate", str(p["py_rate"]), "--user", "py", "--log", str(py_log)]
        if p.get("churn_ms"):
            pargs += ["--churn-ms", str(p["churn_ms"])]
        self.workloads = [Workload("c", cargs, c_log, self.dir / "c-clients.err").start(),
                          Workload("py", pargs, py_log, self.dir / "py-clients.err").start()]
        for w in self.workloads:
            self.checker.add_file(w.log)
        n = p["c_conns"] + p["py_conns"]
        self.wait(lambda: len([c for c in self.checker.clients.values() if c.state == "connected"]) >= n,
                  30, "all %d clients connected" % n)
        self.settle("start")
        self.out("chaos %s: suite in %s, %d C SDK + %d Python clients, %d rooms, %d+%d msg/s"
                 % (self.profile, self.dir, p["c_conns"], p["py_conns"], 4, p["rate"], p["py_rate"]))

    def seed_rooms(self):
        """One message in each room (HTTP publish) before any client comes:
        the rounds are about faults, not about a room's first message, where
        a gateway race makes subscribers hear a false `recovered: false`
        (README.md, "Known problems"; the checker calls it spurious_gap)."""
        tok = self.suite.token("seed")
        for k in range(4):
            room = "%s-%d" % (self.room, k)
            st, _, body = th.http_request(self.suite.gateway.http, "POST", "/v1/rooms/%s/publish" % room,
                                          json_body={"seed": k},
                                          headers={"Authorization": "Bearer " + tok, "Idempotency-Key": "seed-%d" % k})
            if st != 200:
                raise RuntimeError("seeding %s: HTTP %d %r" % (room, st, body[:200]))

    def close(self):
        """Stops everything this run started, each step whatever the others did."""
        for w in self.workloads:
            try:
                w.stop()
            except Exception:
                if w.proc is not None and w.proc.poll() is None:
                    w.proc.kill()
        try:
            if self.ns is not None:
                self.ns.close()
        finally:
            if self.suite is not None:
                self.suite.stop()

    # ---- waiting ------------------------------------------------------------------------
    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            self.checker.poll()
            for w in self.workloads:
                if not w.alive():
                    raise RoundFailed("workload %s exited (%s); see %s" % (w.name, w.proc.returncode, w.errlog))
            v = pred()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
            time.sleep(0.2)

    def settle(self, what, timeout=SETTLE_BOUND_S, users=None):
        """Waits until everything acknowledged so far is delivered to every
        connected subscriber. Returns seconds taken; raises with what is
        missing at the deadline."""
        t0 = time.monotonic()
        cut = now_us()
        last = [None]

        def done():
            ok, missing = self.checker.complete(cut, users)
            last[0] = missing
            return ok
        try:
            self.wait(done, timeout, "settled (%s)" % what)
        except TimeoutError:
            raise RoundFailed("not settled %.0f s after %s: %s%s" % (
                timeout, what, "; ".join(last[0][:8]), " ... (%d more)" % (len(last[0]) - 8) if len(last[0]) > 8 else ""))
        self.checker.check_acks(cut)
        return time.monotonic() - t0

    # ---- processes ------------------------------------------------------------------------
    def processes(self):
        """name -> (pid, HTTP port) of every server process of the suite."""
        out = {}
        if self.suite.redis.proc and self.suite.redis.proc.poll() is None:
            out["redis"] = (self.suite.redis.proc.pid, self.suite.redis.port)
        for name, d in self.suite.daemons.items():
            if d.alive():
                out[name] = (d.pid, int(d.http.rsplit(":", 1)[1]))
        return out

    def measure(self, max_s=10.0):
        """{name: (pid, rss_kb, fds, fds_other)}, taken once the fd counts
        have not moved for 2.5 s: a process restarted a moment ago is still
        being reconnected to (ZeroMQ peers retry with a backoff capped at
        2 s, lib/zsock.c; Redis clients), and what is compared is the steady
        state, not a reconnection in progress. A measurement less than 3 s
        old is reused (one round's "after" is the next one's "before")."""
        if self._last_measure and time.monotonic() - self._last_measure[0] < 3.0:
            return self._last_measure[1]
        deadline = time.monotonic() + max_s
        samples = []
        while True:
            tcp = tcp_local_ports()
            cur = {name: (pid,) + (proc_stats(pid, port, tcp) or (None, None, None))
                   for name, (pid, port) in self.processes().items()}
            fds = {k: (v[0], v[3]) for k, v in cur.items()}
            samples = [x for x in samples if x == fds] + [fds]
            if len(samples) >= 3 or time.monotonic() >= deadline:
                self._last_measure = (time.monotonic(), cur)
                return cur
            time.sleep(1.25)

    def kill(self, name):
        self._last_measure = None
        if name == "redis":
            self.suite.redis.kill9()
        else:
            self.suite.daemons[name].kill9()

    def restart(self, victims):
        """Starts the killed processes again (dependencies first) and waits
        until each is healthy and ready."""
        if "redis" in victims:
            self.suite.redis.start()
        order = [n for n in ("busd", "replayd", "sessiond", "mediad", "gateway", "gateway2", "gateway-ns")
                 if n in victims]
        for n in order:
            self.suite.daemons[n].start()
        for n in order:
            d = self.suite.daemons[n]
            th.wait_until(lambda: th._healthy_or_dead(d), th.START_TIMEOUT, "%s /healthz after restart" % n)
        for n in order:
            self.suite.wait_ready(self.suite.daemons[n], timeout=30)

    @staticmethod
    def leaks(before, after):
        """Processes alive (same pid) across the round whose fds or RSS grew
        beyond the tolerance: [(name, what)], and the rows for the report."""
        bad, rows = [], []
        for name, (pid, rss0, fd0, fo0) in sorted(before.items()):
            a = after.get(name)
            if not a or a[0] != pid or rss0 is None or a[1] is None:
                continue
            rss1, fd1, fo1 = a[1], a[2], a[3]
            rows.append({"proc": name, "rss_kb": [rss0, rss1], "fds": [fd0, fd1], "fds_other": [fo0, fo1]})
            if fo1 - fo0 > FD_TOLERANCE:
                bad.append((name, "fds %d -> %d (not counting accepted client connections: %d -> %d)"
                            % (fd0, fd1, fo0, fo1)))
            if rss1 - rss0 > max(RSS_TOLERANCE_KB, RSS_TOLERANCE_FRAC * rss0):
                bad.append((name, "RSS %d -> %d KiB" % (rss0, rss1)))
        return bad, rows

    # ---- rounds ----------------------------------------------------------------------------
    def _begin(self, name):
        self.settle("before %s" % name)
        return {"round": name, "before": self.measure(), "t_begin": now_us(), "problems": []}

    def _end(self, r, t_ready_us):
        c = self.checker
        settle_s = None
        try:
            settle_s = self.settle("round %s" % r["round"])
        except RoundFailed as e:
            r["problems"].append(str(e))
        t_now = now_us()
        c.check_presence(self._presence_until, t_now)
        self._presence_until = t_now
        after = self.measure()
        bad, rows = self.leaks(r.pop("before"), after)
        r["leak_rows"] = rows
        for name, what in bad:
            r["problems"].append("leak? %s: %s" % (name, what))
        r["settle_s"] = round(settle_s, 2) if settle_s is not None else None
        # Everything found since the last report, the settle before this
        # round included: no violation goes unreported.
        r["violations"] = [repr(v) for v in c.new_violations(self._v_reported)]
        self._v_reported = len(c.violations)
        r["problems"] += r["violations"]
        stale = c.stale_presence()
        r["presence_stale"] = len(stale)
        if stale:
            r["presence_stale_examples"] = [list(x) for x in stale[:5]]
        r["counts"] = c.counts()
        lat = [l for (t, l) in c.ack_lat if t >= r["t_begin"]]
        if lat:
            r["ack_latency_ms"] = {"max": round(max(lat) / 1000, 1), "p50": round(statistics.median(lat) / 1000, 1)}
        r["ok"] = not r["problems"]
        r["duration_s"] = round((now_us() - r["t_begin"]) / 1e6, 1)
        self.results.append(r)
        self.report(r)
        return r

    def wait_back(self, r, t_kill, t_ready, bound=None, users=None):
        """Every client that lost its link after t_kill connected again:
        records the times relative to t_ready and checks the bound."""
        if bound is None:
            bound = RECONNECT_BOUND_S
        def all_back():
            rt = self.checker.reconnect_times(t_kill, t_ready, users)
            return (rt,) if all(x[2] is not None for x in rt) else None
        try:
            (rt,) = self.wait(all_back, bound + 30, "clients back")
        except TimeoutError:
            rt = self.checker.reconnect_times(t_kill, t_ready, users)
            r["problems"].append("%d client(s) not back %.0f s after the restart: %s" % (
                sum(1 for x in rt if x[2] is None), bound + 30, [x[0] for x in rt if x[2] is None][:8]))
            return
        after = sorted((x[2] - t_ready) / 1e6 for x in rt)
        r["dropped"] = len(rt)
        if after:
            r["back_after_ready_s"] = {"p50": round(statistics.median(after), 2), "max": round(after[-1], 2)}
            slow = [(x[0], round((x[2] - t_ready) / 1e6, 1)) for x in rt if (x[2] - t_ready) / 1e6 > bound]
            if slow:
                r["problems"].append("%d client(s) back later than %.0f s after ready: %s"
                                     % (len(slow), bound, slow[:8]))

    def kill_round(self, name, victims):
        r = self._begin(name)
        r["victims"] = victims
        t_kill = now_us()
        for v in victims:
            self.kill(v)
        time.sleep(self.p["hold_s"])      # the outage: the workload goes on meanwhile
        t_start = now_us()
        self.restart(victims)
        t_ready = now_us()
        r["down_s"] = round((t_start - t_kill) / 1e6, 2)
        r["restart_to_ready_s"] = round((t_ready - t_start) / 1e6, 2)
        self.wait_back(r, t_kill, t_ready)
        return self._end(r, t_ready)

    def flush_round(self):
        """FLUSHALL under the clients, while gateway2 is down: each room's next
        publish starts a new epoch. The clients still connected (gateway) must
        hear it live, those of gateway2 when they resume from their old
        position: `recovered: false` with the new epoch either way, never a
        silent hole (the checker's epoch rules), then everything of the new
        epoch."""
        r = self._begin("redis FLUSHALL")
        old = {room: self.checker.latest_epoch(room) for room in self.checker.epochs}
        n_rf = len(self.checker.recovered_false)
        self.checker.loss_ok = True
        t_kill = now_us()
        self.kill("gateway2")
        time.sleep(self.p["hold_s"])      # its clients miss messages the flush then takes away
        t = now_us()
        self.checker.flushes.append(t)
        self.suite.redis.command("FLUSHALL")
        try:
            self.wait(lambda: all(self.checker.latest_epoch(room) != e for room, e in old.items()), 20,
                      "a new epoch in every room")
        except TimeoutError as e:
            r["problems"].append(str(e))
        time.sleep(self.p["hold_s"])
        self.restart(["gateway2"])
        t_ready = now_us()
        self.wait_back(r, t_kill, t_ready)
        res = self._end(r, t_ready)
        rf = self.checker.recovered_false[n_rf:]
        res["recovered_false_live"] = sum(1 for x in rf if not x[3])
        res["recovered_false_on_resume"] = sum(1 for x in rf if x[3])
        self.checker.loss_ok = False
        moved = sum(1 for cs in self.checker.clients.values() for room, v in cs.views.items()
                    if v.epoch and v.epoch != old.get(room))
        res["client_rooms_in_new_epoch"] = moved
        res["declared_lost"] = res["counts"].get("declared_lost", 0)
        return res

    def rollback_round(self, newer_s=3.0):
        """Copies Redis's AOF, lets `newer_s` of acknowledged publishes
        happen, kills Redis and starts it on the old copy: rooms keep their
        epoch but their top goes back. The honest answer would be a `gap` or
        `recovered: false` (allowed here); what must not happen is a silent
        hole or two messages at one seq."""
        r = self._begin("redis rollback")
        d = self.suite.redis.dir
        shutil.rmtree(d / "aof-copy", ignore_errors=True)
        shutil.copytree(d / "appendonlydir", d / "aof-copy")
        t_copy = now_us()
        time.sleep(newer_s)
        self.kill("redis")
        shutil.rmtree(d / "appendonlydir")
        shutil.copytree(d / "aof-copy", d / "appendonlydir")
        self.checker.loss_ok = True
        self.restart(["redis"])
        t_ready = now_us()
        time.sleep(newer_s)               # publishes into the rolled-back rooms, before the round's cut
        self.wait_back(r, t_copy, t_ready)
        res = self._end(r, t_ready)
        self.checker.loss_ok = False
        return res

    def blackhole_round(self, seconds, heartbeat_ms):
        """A client in a network namespace of our own, its traffic dropped for
        `seconds`, then restored: the gateway closes it (4001, heartbeat), the
        others see it `reconnecting` (never `offline`), it comes back, resumes
        its session and misses nothing."""
        name = "blackhole %ds" % seconds
        if not netns.available():
            r = {"round": name, "ok": True, "problems": [],
                 "skipped": "network namespaces not available (need root, ip and tc)"}
            self.results.append(r)
            self.report(r)
            return r
        netns.remove_stale("tcx")
        self.ns = netns.Pair("tcx%d" % (os.getpid() % 100000))
        self.ns.up()
        port = th.free_port()
        env = self.suite.base_env()
        env.update({"TETHER_HTTP": "%s:%d" % (self.ns.host_ip, port), "TETHER_HEARTBEAT_MS": str(heartbeat_ms),
                    "TETHER_LOG_LEVEL": "debug"})
        gw = th.Daemon("gateway-ns", "gateway", env, "%s:%d" % (self.ns.host_ip, port), self.suite.dir)
        self.suite.daemons["gateway-ns"] = gw
        gw.start()
        self._last_measure = None
        gw.wait_healthy()
        self.suite.wait_ready(gw, timeout=30)
        url = "ws://%s:%d/ws" % (self.ns.host_ip, port)
        bh_c, bh_py = self.dir / "ns-c.jsonl", self.dir / "ns-py.jsonl"
        ws = [Workload("ns-c", [str(th.binary("tether")), "bench", "--mode", "chaos", "--conns", "1", "--rooms", "4",
                                "--room", self.room, "--rate", "1", "--url", url, "--secret", self.suite.secret,
                                "--log", str(bh_c), "--user", "nsc", "--backoff-initial", "500",
                                "--backoff-max", "5000", "--quiet"],
                       bh_c, self.dir / "ns-c.err", prefix=self.ns.exec_prefix()),
              Workload("ns-py", [PY, str(HERE / "pyclient.py"), "--url", url, "--secret", self.suite.secret,
                                 "--conns", "1", "--rooms", "4", "--room", self.room, "--rate", "1",
                                 "--user", "nspy", "--log", str(bh_py)],
                       bh_py, self.dir / "ns-py.err", prefix=self.ns.exec_prefix())]
        users = {"nsc-0", "nspy-0"}
        for w in ws:
            w.start()
            self.workloads.append(w)
            self.checker.add_file(w.log)
        self.wait(lambda: all(self.checker.clients.get(u) and self.checker.clients[u].state == "connected"
                              for u in users), 20, "namespace clients connected")
        # Somebody outside must be watching them: wait until a watcher shows them online.
        watchers = [u for u, cs in self.checker.clients.items() if u not in users and cs.state == "connected"]

        def seen_online():
            return all(any(self.checker.presence_state(w, room, u) == "online" for w in watchers
                           for room in self.checker.clients[u].rooms) for u in users)
        self.wait(seen_online, 20, "namespace clients online for the others")
        r = self._begin(name)     # after the set-up: a new gateway adds fds to everybody
        sessions = {u: self.checker.clients[u].session for u in users}
        t_cut = now_us()
        self.ns.blackhole(True)
        time.sleep(seconds)
        self.ns.blackhole(False)
        t_restore = now_us()
        r["blackhole_s"] = seconds
        r["heartbeat_ms"] = heartbeat_ms
        # Back within connect timeout (10 s for the SDK, 5 s for pyclient) + the 5 s backoff cap.
        self.wait_back(r, t_cut, t_restore, bound=RECONNECT_BOUND_S + BLACKHOLE_EXTRA_S, users=users)
        for u in users:
            cs = self.checker.clients[u]
            back = [s for s in cs.sessions if s[0] > t_cut]
            if not back:
                r["problems"].append("%s never connected again" % u)
            elif back[0][1] != sessions[u] or not back[0][2]:
                r["problems"].append("%s came back with session %s resumed=%s, want %s resumed"
                                     % (u, back[0][1], back[0][2], sessions[u]))
        # The gateway gave up on them with 4001 (heartbeat timeout): its log says so.
        closes = []
        try:
            with open(gw.log) as f:
                for line in f:
                    if '"connection closed"' in line:
                        e = json.loads(line)
                        if e.get("user") in users:
                            closes.append((e.get("user"), e.get("code")))
        except OSError:
            pass
        r["gateway_closes"] = closes
        for u in users:
            if (u, 4001) not in closes:
                r["problems"].append("gateway-ns never closed %s with 4001 (closes: %s)" % (u, closes))
        # Presence: the others saw them reconnecting, never offline.
        pe = [(w, room, u, st) for (t, w, room, u, st) in self.checker.presence_events if u in users and t >= t_cut]
        for u in users:
            if not any(x[2] == u and x[3] == "reconnecting" for x in pe):
                r["problems"].append("nobody saw %s reconnecting during the blackhole" % u)
        r["presence_seen"] = sorted({(x[2], x[3]) for x in pe})
        return self._end(r, t_restore)

    # ---- reporting ---------------------------------------------------------------------------
    def report(self, r):
        bits = ["%-18s" % r["round"], "ok  " if r["ok"] else "FAIL"]
        if r.get("skipped"):
            bits.append("skipped: " + r["skipped"])
        for k, fmt in (("down_s", "down %.1fs"), ("restart_to_ready_s", "ready +%.1fs"), ("settle_s", "settled %.1fs"),
                       ("duration_s", "round %.0fs")):
            if r.get(k) is not None:
                bits.append(fmt % r[k])
        if r.get("back_after_ready_s"):
            bits.append("%d dropped, back p50 %.1fs max %.1fs" % (r["dropped"], r["back_after_ready_s"]["p50"],
                                                                   r["back_after_ready_s"]["max"]))
        if r.get("ack_latency_ms"):
            bits.append("ack max %.1fs" % (r["ack_latency_ms"]["max"] / 1000))
        if r.get("presence_stale"):
            bits.append("presence stale %d" % r["presence_stale"])
        self.out("  ".join(bits))
        for p in r["problems"][:15]:
            self.out("    - " + p)

    def summary(self):
        ok = all(r["ok"] for r in self.results) and self._v_reported == len(self.checker.violations)
        c = self.checker.counts()
        self.out("chaos %s: %d rounds, %d failed; %d publishes acked, %d deliveries checked, %d declared lost (flush)"
                 % (self.profile, len(self.results), sum(1 for r in self.results if not r["ok"]),
                    c.get("acked", 0), c.get("delivered", 0), c.get("declared_lost", 0)))
        if c.get("churns"):
            self.out("churn: %d departures (%d with bye); %d `offline` presence frames seen, each after a bye"
                     % (c["churns"], c["byes"], c["presence_offline_seen"]))
        return ok

    def leak_table(self):
        """Per process name: [rounds lived through, RSS growth summed over
        them (KiB), fd growth summed over them, largest RSS growth in one
        round]. Sums of within-round changes: what happens between rounds
        (a process added, e.g. the blackhole's gateway) is not counted."""
        seen = {}
        for r in self.results:
            for row in r.get("leak_rows", []):
                s = seen.setdefault(row["proc"], [0, 0, 0, 0])
                d = row["rss_kb"][1] - row["rss_kb"][0]
                s[0] += 1
                s[1] += d
                s[2] += row["fds_other"][1] - row["fds_other"][0]
                s[3] = max(s[3], d)
        return seen

    # ---- the sessions ------------------------------------------------------------------------
    def finish(self):
        """Stops publishing, lets every outbox drain and checks the end state."""
        for w in self.workloads:
            w.command("quiesce")
        r = self._begin("final drain")
        for w in self.workloads:
            w.command("stats")

        def drained():
            self.checker.poll()
            return all((cs.last_stats or {}).get("outbox", 1) == 0 for cs in self.checker.clients.values()
                       if cs.state == "connected")

        def ask():
            for w in self.workloads:
                w.command("stats")
            time.sleep(0.3)
            return drained()
        try:
            self.wait(ask, 20, "every outbox empty")
        except TimeoutError:
            left = {u: (cs.last_stats or {}).get("outbox") for u, cs in self.checker.clients.items()
                    if (cs.last_stats or {}).get("outbox")}
            r["problems"].append("publishes never acknowledged: %s" % left)
        unacked = [k for k in self.checker.pubs if k not in self.checker.acks]
        r["unacked_publishes"] = len(unacked)
        if unacked:
            r["problems"].append("%d publish(es) never acknowledged, e.g. %s" % (len(unacked), unacked[:5]))
        return self._end(r, now_us())

    def run(self):
        p = self.p
        for name, victims in p["rounds"]:
            self.kill_round(name, victims)
        if p.get("rollback"):
            self.rollback_round()
        if p.get("flush"):
            self.flush_round()
        if p.get("blackhole"):
            self.blackhole_round(*p["blackhole"])
        self.finish()

    def soak(self, minutes):
        """Churn for `minutes`: a check every minute, a random kill every
        third minute; RSS/fds of long-lived processes compared first to last."""
        end = time.monotonic() + minutes * 60
        victims = [v for _, v in SINGLES]
        k = 0
        first = self.measure()
        while time.monotonic() < end:
            k += 1
            t_next = min(end, time.monotonic() + 60)
            if k % 3 == 0:
                self.kill_round("soak kill %s" % victims[(k // 3 - 1) % len(victims)][0],
                                victims[(k // 3 - 1) % len(victims)])
                time.sleep(max(0.0, t_next - time.monotonic()))
            else:
                r = self._begin("soak minute %d" % k)
                time.sleep(max(0.0, t_next - time.monotonic()))
                self._end(r, now_us())
        self.finish()
        last = self.measure()
        trend = []
        for name, (pid, rss0, fd0, fo0) in sorted(first.items()):
            a = last.get(name)
            if a and a[0] == pid:
                trend.append({"proc": name, "rss_kb": [rss0, a[1]], "fds_other": [fo0, a[3]]})
        return trend


def main():
    ap = argparse.ArgumentParser(description="Tether chaos rounds (see tests/chaos/README.md)")
    ap.add_argument("profile", choices=sorted(PROFILES))
    ap.add_argument("--workdir", help="logs and state (default: a new temporary directory, kept on failure)")
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    ap.add_argument("--json", help="write every round's numbers here")
    a = ap.parse_args()
    workdir = a.workdir or tempfile.mkdtemp(prefix="tether-chaos-")
    signal.signal(signal.SIGTERM, on_sigterm)
    ch = Chaos(workdir, a.profile, out=lambda s: print(s, flush=True))
    ok = False
    trend = None
    t0 = time.monotonic()
    try:
        ch.start()
        if a.profile == "soak":
            trend = ch.soak(a.minutes)
        else:
            ch.run()
        ok = ch.summary()
    except (RoundFailed, TimeoutError, RuntimeError, Terminated, KeyboardInterrupt) as e:
        print("chaos: stopped: %s" % (e or type(e).__name__), flush=True)
    finally:
        ch.close()
    print("chaos %s: %.0f s, logs in %s" % (a.profile, time.monotonic() - t0, workdir))
    leaks = ch.leak_table()
    for name, (n, drss, dfd, worst) in sorted(leaks.items()):
        print("  %-10s over %2d round(s) it lived through: RSS %+6d KiB (largest in one round %+5d), fds %+d"
              % (name, n, drss, worst, dfd))
    if trend:
        for t in trend:
            print("  soak %-10s RSS %6d -> %6d KiB, fds (not counting clients) %3d -> %3d (first to last check)"
                  % (t["proc"], t["rss_kb"][0], t["rss_kb"][1], t["fds_other"][0], t["fds_other"][1]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ok": ok, "rounds": ch.results, "leaks": leaks, "soak_trend": trend}, f, indent=1, default=str)
    if ok and not a.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
