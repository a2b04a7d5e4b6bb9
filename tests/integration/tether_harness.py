"""tether_harness.py -- real processes for the integration tests.

A real redis-server and the real Tether daemons (busd, replayd, gateway, and
sessiond/mediad when built) on free loopback ports, configured only through
the TETHER_* environment contract of docs/operations.md, the way an orchestrator would
run them. Everything here waits by polling a condition with a deadline; the
only pauses are the poll intervals.

Binaries come from $TETHER_BUILD/bin (default: build/ in the repository).
"""

import http.client
import json
import os
import random
import secrets
import signal
import socket
import re
import subprocess
import time
from pathlib import Path

import tether_client

REPO = Path(__file__).resolve().parents[2]
_build = Path(os.environ.get("TETHER_BUILD", "build"))
BUILD = _build if _build.is_absolute() else REPO / _build
BIN = BUILD / "bin"

CORE = ("busd", "replayd", "gateway")
OPTIONAL = ("sessiond", "mediad")
START_ORDER = ("busd", "replayd", "sessiond", "mediad", "gateway")
START_TIMEOUT = float(os.environ.get("TETHER_TEST_START_TIMEOUT", "15"))
# A healthy daemon with no client left exits within about a second of SIGTERM.
STOP_TIMEOUT = float(os.environ.get("TETHER_TEST_STOP_TIMEOUT", "3"))
# (daemon name, suite dir) of every teardown SIGTERM that had to become a SIGKILL.
STOP_KILLED = []

# Under `tests/run_all.sh san` (TETHER_SAN_DIR set): the sanitizer options of
# the daemons started here. A report stops the daemon (halt_on_error) and is
# written to its stderr (<name>.err), where conftest.py looks for one after
# every test (SAN_MARK); leaks are reported when a daemon exits (SIGTERM at
# teardown). Processes a test starts itself inherit run_all.sh's options,
# which write reports into TETHER_SAN_DIR instead.
SAN_DIR = os.environ.get("TETHER_SAN_DIR")
SAN_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:detect_leaks=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "LSAN_OPTIONS": "suppressions=%s:print_suppressions=0" % (REPO / "tests" / "lsan.supp"),
} if SAN_DIR else {}
SAN_MARK = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer")
# Every Daemon made, in order: conftest.py reads the stderr of those a test made.
DAEMONS = []


def sanitizer_report(path):
    """The first lines of a sanitizer report in the file at path, or None."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    m = SAN_MARK.search(text)
    if not m:
        return None
    start = text.rfind("\n==", 0, m.start())
    start = text.rfind("\n", 0, m.start()) if start < 0 else start
    return "\n".join(text[start + 1:].splitlines()[:40])


def binary(name):
    return BIN / name


def have(name):
    p = binary(name)
    return p.is_file() and os.access(p, os.X_OK)


def missing(names):
    """The names among `names` whose binary is not built."""
    return [n for n in names if not have(n)]


# ---- waiting -------------------------------------------------------------------

def wait_until(pred, timeout, what="condition", interval=0.02):
    """Polls pred() until it returns a true value (returned) or the deadline
    passes (TimeoutError naming `what`)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:      # a poll that throws is just "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise TimeoutError(msg)
        time.sleep(interval)


# ---- ports ---------------------------------------------------------------------

_used_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on, never handed out twice in
    this process. Picked below the kernel's ephemeral range so that a port a
    killed daemon must re-bind is not taken meanwhile by an outgoing
    connection's local port."""
    lo, hi = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
        hi = min(hi, eph_lo)
    except (OSError, ValueError):
        pass
    for _ in range(500):
        port = random.randrange(lo, hi)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


# ---- HTTP ----------------------------------------------------------------------

def http_request(hostport, method, path, body=None, headers=None, timeout=3.0, json_body=None):
    """One HTTP/1.1 request; returns (status, headers dict lowercased, body bytes).
    body: bytes or str sent as is; json_body: any value sent as JSON."""
    host, port = hostport.rsplit(":", 1)
    headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host or "127.0.0.1", int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def http_get(hostport, path, timeout=3.0):
    return http_request(hostport, "GET", path, timeout=timeout)


# ---- Redis ---------------------------------------------------------------------

class RedisError(Exception):
    pass


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RedisError("bad RESP reply %r" % line)


def _resp_encode(args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def redis_command(port, *args, timeout=2.0, auth=None):
    """Sends one command to redis on 127.0.0.1:port (a minimal RESP client, so
    the tests need no Python redis package). auth: a password, or a (user,
    password) pair, sent as AUTH first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        pre = b""
        if auth is not None:
            pre = _resp_encode(("AUTH",) + (tuple(auth) if isinstance(auth, (tuple, list)) else (auth,)))
        s.sendall(pre + _resp_encode(args))
        with s.makefile("rb") as f:
            if pre:
                _resp_read(f)
            return _resp_read(f)


def make_tls_certs(d):
    """A CA (ca.crt), a server certificate for localhost and 127.0.0.1
    (srv.crt/srv.key) signed by it, a client certificate (cli.crt/cli.key)
    and an unrelated CA (other.crt), made with openssl in d."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "srv.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    steps = [
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=tether-test-ca",
        "req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other-ca",
        "req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost",
        "x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile srv.ext",
        "req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=tether-client",
        "x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt -days 2",
    ]
    for step in steps:
        subprocess.run(["openssl"] + step.split(), cwd=str(d), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d


class Redis:
    """A redis-server of our own in `workdir`: no persistence by default, or
    AOF with fsync on every write (aof=True) for durability tests.

    password: requirepass of the default user (the harness's own commands
    use it). users: ACL rules, one string per user ("app on >pw ~tether:*
    +@all"). url_auth: the userinfo the daemons' URL carries (already
    percent-encoded), e.g. "app:p%40ss". tls: a directory made by
    make_tls_certs; the daemons' URL is then rediss:// on tls_port (client
    certificates required when tls_auth_clients), while `port` stays plain
    for the harness's own commands."""

    def __init__(self, workdir, aof=False, password=None, users=(), url_auth=None, tls=None,
                 tls_auth_clients=False, extra=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.password = password
        self.users = list(users)
        self.url_auth = url_auth
        self.tls = Path(tls) if tls else None
        self.tls_auth_clients = tls_auth_clients
        self.extra = list(extra)
        self.tls_port = free_port() if tls else None
        self.port = free_port()
        self.proc = None
        self.log = self.dir / "redis.log"

    @property
    def url(self):
        auth = self.url_auth + "@" if self.url_auth else ""
        if self.tls:
            return "rediss://%s127.0.0.1:%d/0" % (auth, self.tls_port)
        return "redis://%s127.0.0.1:%d/0" % (auth, self.port)

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.log)]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for u in self.users:
            args += ["--user"] + u.split()
        if self.tls:
            args += ["--tls-port", str(self.tls_port), "--tls-cert-file", str(self.tls / "srv.crt"),
                     "--tls-key-file", str(self.tls / "srv.key"), "--tls-ca-cert-file", str(self.tls / "ca.crt"),
                     "--tls-auth-clients", "yes" if self.tls_auth_clients else "no"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s; log:\n%s"
                                   % (self.proc.returncode, tail(self.log)))
            return self.command("PING") == "PONG"
        _wait_or_raise(up, 10, "redis-server on port %d" % self.port, self.proc)
        return self

    def command(self, *args):
        return redis_command(self.port, *args, auth=self.password)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self):
        """Starts again on the same port and directory (AOF is replayed)."""
        self.stop()
        return self.start()


class Sentinel:
    """One `redis-server --sentinel` monitoring `master_name` at
    127.0.0.1:master_port (quorum 2, down after down_ms). password: the one
    it uses with the Redis nodes, and its own requirepass unless
    requirepass is False."""

    def __init__(self, workdir, master_name, master_port, down_ms=1000, failover_ms=3000, password=None,
                 requirepass=True):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.name = master_name
        self.conf = self.dir / "sentinel.conf"
        self.log = self.dir / "sentinel.log"
        self.conf.write_text("\n".join([
            "port %d" % self.port, "bind 127.0.0.1", "dir %s" % self.dir, "logfile %s" % self.log,
            "sentinel monitor %s 127.0.0.1 %d 2" % (master_name, master_port),
            "sentinel down-after-milliseconds %s %d" % (master_name, down_ms),
            "sentinel failover-timeout %s %d" % (master_name, failover_ms),
            "sentinel parallel-syncs %s 1" % master_name]
            + (["sentinel auth-pass %s %s" % (master_name, password)] if password else [])
            + (["requirepass %s" % password] if password and requirepass else [])
            + [""]))
        self.password = password if requirepass else None
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", str(self.conf), "--sentinel"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_or_raise(lambda: self.command("PING") == "PONG", 10, "sentinel on port %d" % self.port, self.proc)
        return self

    def command(self, *args):
        return redis_command(self.port, *args, auth=self.password)

    def master(self):
        """SENTINEL master <name> as a dict of str."""
        flat = self.command("SENTINEL", "master", self.name)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def master_addr(self):
        host, port = self.command("SENTINEL", "get-master-addr-by-name", self.name)
        return host.decode(), int(port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _wait_or_raise(pred, timeout, what, proc):
    try:
        return wait_until(pred, timeout, what)
    except RuntimeError:
        raise
    except TimeoutError:
        if proc.poll() is not None:
            raise RuntimeError("%s: process exited with %s" % (what, proc.returncode))
        raise


def tail(path, n=60):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log at %s)" % path


# ---- daemons -------------------------------------------------------------------

class Daemon:
    """One daemon process with a fixed environment: start, kill -9, SIGTERM,
    restart on the same ports, read /metrics. stdout (JSON log lines) goes to
    <name>.log and stderr to <name>.err in the suite's directory."""

    def __init__(self, name, kind, env, http_addr, logdir):
        self.name = name          # e.g. "gateway" or "gateway2"
        self.kind = kind          # which binary
        self.env = env
        self.http = http_addr     # "127.0.0.1:port"
        self.log = Path(logdir) / ("%s.log" % name)
        self.err = Path(logdir) / ("%s.err" % name)
        self.proc = None
        self.starts = 0
        DAEMONS.append(self)

    def start(self):
        self.starts += 1
        with open(self.log, "ab") as out, open(self.err, "ab") as err:
            err.write(b"--- harness: start #%d of %s\n" % (self.starts, self.name.encode()))
            err.flush()
            self.proc = subprocess.Popen([str(binary(self.kind))], env=dict(self.env, **SAN_ENV),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=str(self.log.parent), start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self):
        if not self.alive():
            raise RuntimeError("%s exited with status %s during start-up:\n%s\n%s"
                               % (self.name, self.proc.returncode if self.proc else None,
                                  tail(self.log, 30), tail(self.err, 30)))

    def healthz(self):
        return http_get(self.http, "/healthz", timeout=1.0)[0]

    def readyz(self):
        status, _, body = http_get(self.http, "/readyz", timeout=2.0)
        return status, body

    def wait_healthy(self, timeout=START_TIMEOUT):
        def ok():
            self._check_alive()
            return self.healthz() == 200
        wait_until(ok, timeout, "%s /healthz on %s" % (self.name, self.http))

    def ready(self, missing=()):
        """/readyz says ready -- or, when some daemons are not built (e.g.
        sessiond), says 503 but its JSON detail reports every other
        dependency up: {"ready": false, "replayd": true, "sessiond": false}."""
        status, body = self.readyz()
        if status not in (200, 503):
            return False
        try:
            detail = json.loads(body)
        except ValueError:
            return status == 200 and not missing
        if not isinstance(detail, dict):
            return status == 200 and not missing
        # The gateway's /readyz gates on the message path only; sessiond and
        # mediad are reported in the detail. A test suite waits for every
        # dependency it runs, so that it never starts before, e.g., the
        # gateway has found its mediad replicas.
        deps = {k: v for k, v in detail.items()
                if isinstance(v, bool) and k not in ("ready", "draining") and k not in missing}
        if status == 200:
            return all(deps.values())
        return bool(missing) and bool(deps) and all(deps.values())

    def wait_ready(self, timeout=START_TIMEOUT, missing=()):
        """Polls /readyz until ready(missing)."""
        def ok():
            self._check_alive()
            return self.ready(missing)
        wait_until(ok, timeout, "%s /readyz on %s" % (self.name, self.http))

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def term(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout):
        """Returns the exit status (negative: killed by that signal)."""
        return self.proc.wait(timeout)

    def stop(self, timeout=5.0):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def metrics_text(self):
        status, headers, body = http_get(self.http, "/metrics")
        if status != 200:
            raise AssertionError("%s /metrics answered %d" % (self.name, status))
        return body.decode()

    def metrics(self):
        """{'name{labels}': value} parsed from the Prometheus text format."""
        return parse_metrics(self.metrics_text())


def parse_metrics(text):
    """{'name{labels}': value} from the Prometheus text format (a trailing
    timestamp is ignored). Raises ValueError on a line that is not a sample."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if "{" in line:
            end = line.rindex("}")
            key, rest = line[:end + 1], line[end + 1:].split()
        else:
            key, *rest = line.split()
        if not rest or len(rest) > 2:
            raise ValueError("not a metric sample: %r" % line)
        out[key.strip()] = float(rest[0])
    return out


def apply_env(env, overrides):
    """Sets overrides in env; a value of None removes the variable."""
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)


class Suite:
    """Redis plus every built daemon on free ports, in `workdir`.

    env: extra TETHER_* overrides for every daemon. Each daemon gets the same
    environment except TETHER_HTTP. The process environment's own TETHER_*
    variables are ignored so a developer's exported settings cannot leak in.
    """

    def __init__(self, workdir, env=None, aof=False, components=None, redis=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis = redis or Redis(self.dir / "redis", aof=aof)
        self._own_redis = redis is None
        self.secret = secrets.token_hex(24)
        # The bus runs with CURVE on, a secret per suite, unless
        # TETHER_TEST_BUS_CLEAR=1 (then in the clear, loopback only).
        self.bus_secret = None if os.environ.get("TETHER_TEST_BUS_CLEAR") == "1" else secrets.token_urlsafe(32)
        # sessiond's /v1/sessions (operators only); env TETHER_OPERATOR_KEY=""
        # starts the suite without one.
        self.operator_key = secrets.token_hex(24)
        want = components or START_ORDER
        self.components = [n for n in START_ORDER if n in want and have(n)]
        self.ports = {k: free_port() for k in ("bus_in", "bus_out", "replayd", "sessiond", "mediad")}
        self.overrides = dict(env or {})
        self.daemons = {}
        self.notes = []
        self._gw_count = 0

    # ---- environment ---------------------------------------------------------
    def base_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update({
            "TETHER_REDIS": self.redis.url,
            "TETHER_BUS_IN": "tcp://127.0.0.1:%d" % self.ports["bus_in"],
            "TETHER_BUS_OUT": "tcp://127.0.0.1:%d" % self.ports["bus_out"],
            "TETHER_REPLAYD": "tcp://127.0.0.1:%d" % self.ports["replayd"],
            "TETHER_SESSIOND": "tcp://127.0.0.1:%d" % self.ports["sessiond"],
            "TETHER_MEDIAD": "tcp://127.0.0.1:%d" % self.ports["mediad"],
            "TETHER_JWT_SECRET": self.secret,
            "TETHER_OPERATOR_KEY": self.operator_key,
            "TETHER_LOG_LEVEL": os.environ.get("TETHER_TEST_LOG_LEVEL", "info"),
            "TETHER_MEDIA_IFACES": "lo",
        })
        if self.bus_secret:
            env["TETHER_BUS_SECRET"] = self.bus_secret
        apply_env(env, self.overrides)
        return env

    def _daemon(self, name, kind):
        env = self.base_env()
        env["TETHER_HTTP"] = "127.0.0.1:%d" % free_port()
        d = Daemon(name, kind, env, env["TETHER_HTTP"], self.dir)
        self.daemons[name] = d
        return d

    # ---- life cycle ----------------------------------------------------------
    def start(self):
        if self._own_redis and (self.redis.proc is None or self.redis.proc.poll() is not None):
            self.redis.start()
        started = []
        for name in self.components:
            kind = name
            d = self._daemon("gateway" if kind == "gateway" else name, kind)
            if kind == "gateway":
                self._gw_count = 1
            d.start()
            started.append(d)
        for d in started:
            d.wait_healthy()
        for d in started:
            self.wait_ready(d)
        return self

    def missing_deps(self, d):
        """The dependencies of d that this suite does not run."""
        if d.kind == "gateway":
            return tuple(x for x in ("sessiond", "mediad") if x not in self.components)
        return ()

    def wait_ready(self, d, timeout=START_TIMEOUT):
        missing = self.missing_deps(d)
        if missing:
            self.notes.append("%s not built: gateway /readyz 503 accepted when all else is up" % ", ".join(missing))
        d.wait_ready(timeout, missing=missing)

    def add_gateway(self, env=None):
        """Starts one more gateway on the same backends (another replica)."""
        self._gw_count += 1
        d = self._daemon("gateway%d" % self._gw_count, "gateway")
        if env:
            apply_env(d.env, env)
        d.start()
        d.wait_healthy()
        self.wait_ready(d)
        return d

    def __getitem__(self, name):
        return self.daemons[name]

    @property
    def gateway(self):
        return self.daemons["gateway"]

    def kill9(self, name):
        self.daemons[name].kill9()

    def term(self, name):
        self.daemons[name].term()

    def restart(self, name, wait_ready=True):
        """Starts `name` again with the same environment and ports (the old
        process is killed first if it still runs), then waits for /healthz
        and /readyz."""
        d = self.daemons[name]
        d.kill9()
        d.start()
        wait_until(lambda: _healthy_or_dead(d), START_TIMEOUT, "%s /healthz after restart" % name)
        if wait_ready:
            self.wait_ready(d)
        return d

    def stop(self, timeout=None):
        """SIGTERM to every daemon at once (as an orchestrator would), SIGKILL
        for those still running at the deadline (recorded in STOP_KILLED),
        then Redis."""
        running = [d for d in self.daemons.values() if d.alive()]
        for d in running:
            d.term()
        deadline = time.monotonic() + (STOP_TIMEOUT if timeout is None else timeout)
        for d in running:
            try:
                d.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                STOP_KILLED.append((d.name, str(self.dir)))
                d.kill9()
        if self._own_redis:
            self.redis.stop()

    # ---- clients ---------------------------------------------------------------
    def ws_url(self, gateway=None):
        d = self.daemons[gateway or "gateway"]
        return "ws://%s/ws" % d.http

    def operator_get(self, path, name="sessiond", key=None, timeout=3.0):
        """GET path on daemon name's HTTP with the operator key (or key)."""
        k = self.operator_key if key is None else key
        return http_request(self[name].http, "GET", path, headers={"Authorization": "Bearer " + k},
                            timeout=timeout)

    def token(self, user, ttl=3600, **claims):
        return tether_client.make_token(self.secret, user, ttl=ttl, **claims)

    def client(self, gateway=None, **kw):
        """An unconnected tether_client.Client for this suite's gateway."""
        return tether_client.Client(self.ws_url(gateway), **kw)

    # ---- diagnostics -----------------------------------------------------------
    def log_tails(self, n=40):
        out = []
        for d in self.daemons.values():
            state = "running" if d.alive() else "exited %s" % (d.proc.returncode if d.proc else None)
            out.append("===== %s (%s, %s, http %s) stdout tail: %s" % (d.name, d.kind, state, d.http, d.log))
            out.append(tail(d.log, n))
            err = tail(d.err, n)
            if any(not l.startswith("--- harness:") for l in err.splitlines() if l.strip()):
                out.append("----- %s stderr tail: %s" % (d.name, d.err))
                out.append(err)
        if self._own_redis:
            out.append("===== redis log tail: %s" % self.redis.log)
            out.append(tail(self.redis.log, 10))
        for note in sorted(set(self.notes)):
            out.append("note: " + note)
        return "\n".join(out)


def _healthy_or_dead(d):
    if not d.alive():
        raise RuntimeError("%s exited with %s after restart:\n%s" % (d.name, d.proc.returncode, tail(d.log, 30)))
    return d.healthz() == 200
