"""test_rehearsal.py -- the manifests' topology, run for real on one loopback.

Inside tests/deploy/netns.sh (a private network namespace whose /etc/hosts
maps the Service names to 127.0.0.1), every Tether container of the dev
overlay (or of the base, without kustomize) is started from build/bin with
exactly the environment the kubelet would give it (ConfigMap, Secret, env
with $(VAR) expansion, POD_IP), and Redis with the manifests' redis.conf.
Then, as a cluster would:

  - every startup/liveness probe answers 200 on its declared port and path,
    and every readiness probe reaches 200 (the dependencies answer);
  - each process listens on exactly its declared TCP container ports;
  - each daemon's effective config equals what the manifest gives it;
  - a client gets a token from the dev overlay's /dev/token, subscribes and
    publishes through ws://gateway:8080/ws, and the audit-subscriber
    (components/subscriber) prints the message and the presence event;
  - SIGTERM drains the gateway (readiness 503, reconnect hint, close 4000)
    and every process exits within its terminationGracePeriodSeconds.

Skipped outside netns.sh (tests/deploy/run.sh runs it there).
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import k8s

sys.path.insert(0, str(k8s.REPO / "tests" / "integration"))
import tether_client as tc        # noqa: E402  (the integration tests' client)
import tether_harness as th       # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TETHER_DEPLOY_NETNS") != "1",
                                reason="needs a private network namespace (run through tests/deploy/netns.sh)")

START_ORDER = ("busd", "replayd", "sessiond", "mediad", "gateway")


def pick_variant():
    from conftest import all_variants
    vs = all_variants()
    if "overlay/dev" in vs:
        return "overlay/dev", vs["overlay/dev"][0]
    # Without kustomize: the base, plus the Secret the operator would create.
    objs = list(vs["base"][0])
    objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tether-jwt"},
                 "stringData": {"TETHER_JWT_SECRET": "rehearsal-secret-0123456789abcdef"}})
    objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tether-bus"},
                 "stringData": {"TETHER_BUS_SECRET": "rehearsal-bus-secret-0123456789abcdef"}})
    return "base", objs


def hosts_names():
    """Service names for netns.sh's /etc/hosts (run.sh asks for them)."""
    from conftest import all_variants
    names = set()
    for name, (objs, _) in all_variants().items():
        names |= {s["metadata"]["name"] for s in k8s.by_kind(objs, "Service")}
    return sorted(names)


class Pod:
    def __init__(self, workload, container, objs, workdir):
        self.w, self.c = workload, container
        self.name = workload["metadata"]["name"]
        self.prog = k8s.binary_of(container)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env.update(k8s.container_env(objs, container, pod_ip="127.0.0.1", pod_name=self.name + "-0"))
        self.env["HOSTNAME"] = self.name + "-0"
        self.args = container.get("args", [])
        self.out = workdir / (self.name + ".out")
        self.err = workdir / (self.name + ".err")
        self.grace = k8s.pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        self.proc = None
        self.overrides = set()   # variables the rehearsal had to change

    def start(self, workdir):
        # Writable paths the image provides (mediad's certificate directory).
        cert = self.env.get("TETHER_MEDIA_CERT")
        if cert:
            self.env["TETHER_MEDIA_CERT"] = str(workdir / self.name / os.path.basename(cert))
            (workdir / self.name).mkdir(exist_ok=True)
            self.overrides.add("TETHER_MEDIA_CERT")
        # The namespace has one interface: a named node interface is "lo" here.
        if self.env.get("TETHER_MEDIA_IFACES", "all") != "all":
            self.env["TETHER_MEDIA_IFACES"] = "lo"
            self.overrides.add("TETHER_MEDIA_IFACES")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([str(k8s.BIN / self.prog)] + self.args, env=self.env, cwd=str(workdir),
                                         stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True)

    def port(self, ref):
        return k8s.container_port(self.c, ref)["containerPort"]

    def get(self, path, port_ref="http", timeout=2.0):
        return th.http_get("127.0.0.1:%d" % self.port(port_ref), path, timeout=timeout)

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        return "%s\n%s" % (th.tail(self.out, 20), th.tail(self.err, 20))

    def effective_config(self):
        for path in (self.out, self.err):
            for line in path.read_text().splitlines():
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("msg") == "effective config":
                    return j["config"]
        return None


def listening_ports(pid):
    """TCP ports the process listens on (its own sockets, from /proc)."""
    inodes = set()
    for fd in Path("/proc/%d/fd" % pid).iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    variant, objs = pick_variant()
    work = tmp_path_factory.mktemp("rehearsal")
    redis = None
    pods = []
    notes = []
    try:
        sts = k8s.find(objs, "StatefulSet", "redis")
        if sts is not None:
            conf = k8s.find(objs, "ConfigMap", "redis-config")["data"]["redis.conf"]
            conf = conf.replace("dir /data", "dir %s" % work)
            (work / "redis.conf").write_text(conf + "\nlogfile %s\n" % (work / "redis.log"))
            redis = subprocess.Popen(["redis-server", str(work / "redis.conf")], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
            th.wait_until(lambda: th.redis_command(6379, "PING") == "PONG", 10, "redis on 6379")
        order = {p: i for i, p in enumerate(START_ORDER)}
        for w, c, prog in sorted(k8s.tether_containers(objs), key=lambda t: order.get(t[2], 99)):
            if not (k8s.BIN / prog).is_file():
                notes.append("%s not built: its pod is not rehearsed" % prog)
                continue
            p = Pod(w, c, objs, work)
            p.start(work)
            pods.append(p)
        yield {"variant": variant, "objs": objs, "pods": {p.name: p for p in pods}, "notes": notes,
               "redis": redis, "work": work}
    finally:
        for p in pods:
            if p.proc and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(5)
        if redis is not None and redis.poll() is None:
            redis.terminate()
            redis.wait(10)


def test_startup_and_liveness_probes_answer(cluster):
    for p in cluster["pods"].values():
        for kind in ("startupProbe", "livenessProbe"):
            pr = p.c.get(kind)
            if not pr:
                continue
            hg = pr["httpGet"]
            budget = pr.get("periodSeconds", 10) * pr.get("failureThreshold", 3)

            def ok():
                assert p.alive(), "%s exited: %s" % (p.name, p.logs())
                return p.get(hg["path"], hg["port"])[0] == 200
            th.wait_until(ok, min(budget, 20), "%s %s %s" % (p.name, kind, hg["path"]))


def test_every_pod_becomes_ready(cluster):
    for p in cluster["pods"].values():
        hg = p.c["readinessProbe"]["httpGet"]

        def ok():
            assert p.alive(), "%s exited: %s" % (p.name, p.logs())
            return p.get(hg["path"], hg["port"])[0] == 200
        th.wait_until(ok, 20, "%s readiness %s" % (p.name, hg["path"]))


def test_metrics_answer_where_prometheus_scrapes(cluster):
    """/metrics answers on the port the pod's annotations name; the gateway's
    public port (the Service's) does not serve it."""
    for p in cluster["pods"].values():
        ann = p.w["spec"]["template"]["metadata"].get("annotations", {})
        port = int(ann["prometheus.io/port"])
        status, _, body = p.get(ann["prometheus.io/path"], port)
        assert status == 200 and b"# TYPE" in body, "%s /metrics on %d: %s" % (p.name, port, status)
        if p.prog == "gateway":
            assert p.get("/metrics", "http")[0] == 404, "gateway /metrics on the public port"


def test_processes_listen_on_exactly_their_declared_ports(cluster):
    for p in cluster["pods"].values():
        declared = {cp["containerPort"] for cp in p.c.get("ports", []) if cp.get("protocol", "TCP") == "TCP"}
        th.wait_until(lambda: listening_ports(p.proc.pid) >= declared, 10, "%s listening" % p.name)
        assert listening_ports(p.proc.pid) == declared, p.name


def test_effective_config_is_what_the_manifest_gives(cluster):
    for p in cluster["pods"].values():
        cfg = th.wait_until(p.effective_config, 5, "%s effective config" % p.name)
        for k, v in cfg.items():
            if k in p.env and k not in p.overrides and v != "***":
                assert v == p.env[k], "%s %s: %r, manifest %r" % (p.name, k, v, p.env[k])


def test_client_through_the_gateway_service_and_the_audit_subscriber(cluster):
    pods = cluster["pods"]
    gw = pods["gateway"]
    env = gw.env
    if env.get("TETHER_DEV_TOKENS") != "1":
        pytest.skip("variant %s has no /dev/token" % cluster["variant"])
    status, _, body = th.http_get("gateway:8080", "/dev/token?user=alice")
    assert status == 200, body
    token = json.loads(body)["token"]
    sub = pods.get("audit-subscriber")
    room = tc.uid("k8s")

    async def t():
        c = await tc.connect("ws://gateway:8080/ws", token=token, name="alice")
        await c.subscribe(room)
        for i in range(1, 4):
            ack = await c.publish(room, "m%d" % i, {"n": i})
            assert ack["seq"] == i
        await c.wait_messages(room, 3)
        if sub is None:
            return
        # The subscriber's SUB may still be joining: publish until it prints.
        n = 3
        while not _printed(sub, room):
            n += 1
            assert n < 60, "audit-subscriber printed nothing: %s" % sub.logs()
            await c.publish(room, "m%d" % n, {"n": n})
            await asyncio.sleep(0.2)
    tc.run(t(), timeout=60)
    if sub is not None:
        th.wait_until(lambda: any(e.get("event") == "presence_event" and
                                  e["presence_event"]["room"] == room for e in _lines(sub)) or
                      "sessiond" not in pods, 10, "presence event at the audit-subscriber")


def _lines(p):
    out = []
    for line in p.out.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _printed(sub, room):
    return [e for e in _lines(sub) if e.get("event") == "room_message" and e["room_message"]["room"] == room]


def test_sigterm_drains_the_gateway_and_everything_exits_in_time(cluster):
    pods = cluster["pods"]
    gw = pods["gateway"]
    pre = gw.c["lifecycle"]["preStop"]["exec"]["command"]
    drain_ms = int(gw.env.get("TETHER_DRAIN_MS", "5000"))

    async def t():
        c = await tc.connect("ws://gateway:8080/ws", name="drained")
        token = json.loads(th.http_get("gateway:8080", "/dev/token?user=bob")[2])["token"] \
            if gw.env.get("TETHER_DEV_TOKENS") == "1" else tc.make_token(gw.env["TETHER_JWT_SECRET"], "bob")
        await c.hello(token=token)
        # The kubelet runs preStop (a sleep), then sends SIGTERM.
        assert os.path.basename(pre[0]) == "sleep"
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        th.wait_until(lambda: gw.get("/readyz")[0] == 503, 2, "gateway readiness 503 while draining")
        await c.wait_closed(timeout=drain_ms / 1000 + 3)
        assert c.close_code == 4000, c.close_code
        assert c.find("reconnect"), "no reconnect hint before the close"
        gw.proc.wait(drain_ms / 1000 + 3)
        took = time.monotonic() - t0
        assert int(pre[1]) + took <= gw.grace, (took, gw.grace)
    tc.run(t(), timeout=60)
    assert gw.proc.returncode == 0, gw.logs()
    for p in pods.values():
        if p is gw:
            continue
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        p.proc.wait(p.grace)
        assert p.proc.returncode == 0, "%s exited %s: %s" % (p.name, p.proc.returncode, p.logs())
        assert time.monotonic() - t0 < p.grace


if __name__ == "__main__":
    # run.sh: the Service names netns.sh must map to 127.0.0.1.
    sys.path.insert(0, str(Path(__file__).parent))
    print(" ".join(hosts_names()))
