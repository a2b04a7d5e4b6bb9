"""servers.py -- the three server sets of bench/compare, each fresh per workload.

Every set runs on loopback only, on free ports below 32768 (the harness's
free_port), pinned to CPU 0 with everything it needs (Redis included), and
tells which processes to measure:

kill_front() SIGKILLs the process that holds the client connections and
brings it back (the reconnect storm with --drop server).

  TetherSet  Redis + busd, replayd, sessiond, mediad, gateway through the
             integration harness (tests/integration/tether_harness.py), the
             daemons on their defaults (log level warn).
  NchanSet   Redis + nginx (master + 1 worker, not a daemon) from a temporary
             prefix with nchan.conf.in filled in.
  SioSet     Redis + node sio_server.js (Socket.IO 4.8, connection state
             recovery, Redis streams adapter).
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DAEMONS = ("busd", "replayd", "sessiond", "mediad", "gateway")


def _snapshot_build():
    """Copies the built daemons to a private directory and points the
    harness at it (TETHER_BUILD): other people rebuild build/bin on this
    machine while a run lasts, and a restart in the middle of one must start
    the same binary. Returns the directory, or None when TETHER_BUILD is set."""
    if os.environ.get("TETHER_BUILD"):
        return None
    dst = Path(tempfile.mkdtemp(prefix="tether-compare-bin-"))
    (dst / "bin").mkdir()
    for name in DAEMONS:
        src = REPO / "build" / "bin" / name
        if not src.exists():
            continue
        for _ in range(20):  # a binary being linked right now is not ELF yet
            shutil.copy2(src, dst / "bin" / name)
            with open(dst / "bin" / name, "rb") as f:
                if f.read(4) == b"\x7fELF" and os.access(dst / "bin" / name, os.X_OK):
                    break
            time.sleep(0.5)
    os.environ["TETHER_BUILD"] = str(dst)
    atexit.register(shutil.rmtree, dst, True)
    return dst


SNAPSHOT = _snapshot_build()
sys.path.insert(0, str(REPO / "tests" / "integration"))
import tether_harness as th  # noqa: E402

SERVER_CPUS = "0"


def pin(pid, cpus=(0,)):
    """Pins every thread of pid (threads started later inherit it)."""
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            os.sched_setaffinity(int(t), set(cpus))
    except (OSError, ValueError):
        pass


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d))
    return sorted(out)


def _stop_proc(p, sig=signal.SIGTERM, timeout=10):
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


class ServerSet:
    name = "?"

    def __init__(self, tag):
        self.dir = Path(tempfile.mkdtemp(prefix="tether-compare-%s-%s-" % (self.name, tag)))
        self.redis = None

    def start_redis(self):
        self.redis = th.Redis(self.dir / "redis")
        self.redis.start()
        pin(self.redis.proc.pid)

    def pids(self):
        """[(name, pid)] of every server-side process, Redis included."""
        raise NotImplementedError

    def stop(self):
        if self.redis:
            self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return ""


class TetherSet(ServerSet):
    name = "tether"

    def __init__(self, tag):
        super().__init__(tag)
        self.suite = th.Suite(self.dir / "suite", env={"TETHER_LOG_LEVEL": "warn"})
        self.suite.start()
        pin(self.suite.redis.proc.pid)
        for d in self.suite.daemons.values():
            if d.alive():
                pin(d.pid)
        self.port = int(self.suite.gateway.http.rsplit(":", 1)[1])
        self.secret = self.suite.secret

    def pids(self):
        out = [(n, d.pid) for n, d in self.suite.daemons.items() if d.alive()]
        out.append(("redis", self.suite.redis.proc.pid))
        return out

    def gen_args(self):
        return ["--dialect", "tether", "--port", str(self.port), "--secret", self.secret]

    def kill_front(self):
        """SIGKILL the gateway (it holds every client connection) and start
        it again on the same port; returns once it answers /healthz."""
        self.suite.kill9("gateway")
        d = self.suite.restart("gateway", wait_ready=False)
        pin(d.pid)
        return "gateway"

    def stop(self):
        self.suite.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return self.suite.log_tails(20)


class NchanSet(ServerSet):
    name = "nchan"

    def __init__(self, tag):
        super().__init__(tag)
        self.start_redis()
        self.port = th.free_port()
        prefix = self.dir / "nginx"
        for sub in ("", "logs", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        # The worker runs as nobody: let it into its temp directories.
        os.chmod(self.dir, 0o755)
        for p in prefix.rglob("*"):
            os.chmod(p, 0o777)
        os.chmod(prefix, 0o777)
        conf = (HERE / "nchan.conf.in").read_text()
        conf = conf.replace("@PREFIX@", str(prefix)).replace("@REDIS_PORT@", str(self.redis.port))
        conf = conf.replace("@PORT@", str(self.port))
        (prefix / "nginx.conf").write_text(conf)
        self.prefix = prefix
        self.log = open(self.dir / "nginx.out", "wb")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPUS, "nginx", "-p", str(prefix), "-c",
                                      str(prefix / "nginx.conf")], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            return th.http_get("127.0.0.1:%d" % self.port, "/healthz", timeout=1.0)[0] == 200 and \
                children_of(self.proc.pid)
        th.wait_until(up, 15, "nginx on port %d" % self.port)

    def pids(self):
        out = [("nginx-master", self.proc.pid)]
        out += [("nginx-worker", p) for p in children_of(self.proc.pid)]
        out.append(("redis", self.redis.proc.pid))
        return out

    def gen_args(self):
        return ["--dialect", "nchan", "--port", str(self.port)]

    def kill_front(self):
        """SIGKILL the worker (it holds every client connection); the master
        starts a new one at once, as nginx does; returns once it serves."""
        old = children_of(self.proc.pid)
        for p in old:
            os.kill(p, signal.SIGKILL)

        def back():
            kids = [p for p in children_of(self.proc.pid) if p not in old]
            return kids and th.http_get("127.0.0.1:%d" % self.port, "/healthz", timeout=1.0)[0] == 200
        th.wait_until(back, 15, "a new nginx worker")
        for p in children_of(self.proc.pid):
            pin(p)
        return "nginx worker (the master starts a new one)"

    def stop(self):
        _stop_proc(self.proc, signal.SIGTERM)
        self.log.close()
        super().stop()

    def logs(self):
        return th.tail(self.dir / "nginx.out", 20) + "\n" + th.tail(self.prefix / "error.log", 20)


class SioSet(ServerSet):
    name = "sio"

    def __init__(self, tag):
        super().__init__(tag)
        self.start_redis()
        self.port = th.free_port()
        self.log = open(self.dir / "node.out", "wb")
        self._start()

    def _start(self):
        env = dict(os.environ, PORT=str(self.port), REDIS_URL=self.redis.url, NODE_ENV="production")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPUS, "node", str(HERE / "sio_server.js")], env=env,
                                     cwd=str(HERE), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("node exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            return th.http_get("127.0.0.1:%d" % self.port, "/healthz", timeout=1.0)[0] == 200
        th.wait_until(up, 20, "sio_server.js on port %d" % self.port)

    def kill_front(self):
        """SIGKILL node (it holds every client connection; sessions are kept
        in Redis by the adapter) and start it again on the same port."""
        self.proc.kill()
        self.proc.wait(10)
        self._start()
        return "node"

    def pids(self):
        return [("node", self.proc.pid), ("redis", self.redis.proc.pid)]

    def gen_args(self):
        return ["--dialect", "sio", "--port", str(self.port)]

    def stop(self):
        _stop_proc(self.proc, signal.SIGTERM)
        self.log.close()
        super().stop()

    def logs(self):
        return th.tail(self.dir / "node.out", 20)


SETS = {"tether": TetherSet, "nchan": NchanSet, "sio": SioSet}

