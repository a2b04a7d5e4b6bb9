"""test_manifests.py -- deploy/k8s is internally consistent and consistent with the code.

Per variant (the base files, the rendered base, every overlay, the base with
each component): selectors select, references resolve, every probe names a
declared port and a path the daemons serve, every Tether container is
hardened and sized, every client endpoint in the environment leads through a
Service to the port the right daemon binds, the bind forms match the
declared container ports, every TETHER_* variable given to a container is one
its program reads (and every ConfigMap key one some consumer reads), the
gateway's grace period covers its drain, Redis is configured for Tether's
durability promise, and the NetworkPolicies allow exactly the traffic the
environment implies (only the gateway from outside, Redis only from the
daemons).
"""

import re

import pytest

import k8s
from conftest import all_variants

PROBE_PATHS = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}


def tether(objs):
    return k8s.tether_containers(objs)


# ---- structure ---------------------------------------------------------------------------

def test_every_manifest_file_parses():
    files = sorted(k8s.K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        docs = k8s.load_docs(f)
        assert docs, "%s is empty" % f


def test_base_lists_every_base_file():
    listed = {p.name for p in k8s.resource_files(k8s.K8S / "base")}
    present = {p.name for p in (k8s.K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_every_daemon_has_a_workload(objs):
    progs = {p for _, _, p in tether(objs)}
    assert set(k8s.DAEMONS) <= progs, progs
    assert k8s.find(objs, "StatefulSet", "redis") or k8s.find(objs, "ConfigMap", "tether-config")["data"][
        "TETHER_REDIS"] != "redis://redis:6379/0"


def test_workload_selectors_select_their_pods(objs):
    for w in k8s.workloads(objs):
        assert k8s.selects(w["spec"]["selector"], k8s.pod_labels(w)), w["metadata"]["name"]


def test_services_select_one_workload_and_declared_ports(objs):
    for svc in k8s.by_kind(objs, "Service"):
        name = svc["metadata"]["name"]
        ws = [w for w in k8s.workloads(objs) if k8s.selects(svc["spec"]["selector"], k8s.pod_labels(w))]
        assert len(ws) == 1, "Service %s selects %s" % (name, [w["metadata"]["name"] for w in ws])
        containers = k8s.pod_spec(ws[0])["containers"]
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            cps = [k8s.container_port(c, target) for c in containers]
            cps = [p for p in cps if p]
            assert cps, "Service %s port %s: no container port %r" % (name, sp["port"], target)
            # Clients use the same number as the daemon binds: one address book.
            assert cps[0]["containerPort"] == sp["port"], (name, sp)


def test_pdbs_and_hpa_point_at_workloads(objs):
    for pdb in k8s.by_kind(objs, "PodDisruptionBudget"):
        ws = [w for w in k8s.workloads(objs) if k8s.selects(pdb["spec"]["selector"], k8s.pod_labels(w))]
        assert len(ws) == 1, pdb["metadata"]["name"]
        # A PDB that forbids every eviction blocks node drains forever.
        assert pdb["spec"].get("maxUnavailable", 1) != 0
    for hpa in k8s.by_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        w = k8s.find(objs, ref["kind"], ref["name"])
        assert w is not None, ref
        assert "replicas" not in w["spec"], "%s: the HPA owns replicas" % ref["name"]
        names = {m.get("pods", {}).get("metric", {}).get("name") for m in hpa["spec"]["metrics"]}
        kinds = {m.get("resource", {}).get("name") for m in hpa["spec"]["metrics"]}
        assert "cpu" in kinds and "tether_gateway_connections" in names


def test_config_and_secret_references_resolve(objs, variant):
    """Every ConfigMap/Secret a pod uses exists in the variant, except the
    Secrets the operator creates (the base ships none)."""
    for w in k8s.workloads(objs):
        spec = k8s.pod_spec(w)
        refs = []
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    refs.append(("ConfigMap", ef["configMapRef"]["name"]))
                if "secretRef" in ef:
                    refs.append(("Secret", ef["secretRef"]["name"]))
        for v in spec.get("volumes", []):
            if "configMap" in v:
                refs.append(("ConfigMap", v["configMap"]["name"]))
            if "secret" in v:
                refs.append(("Secret", v["secret"]["secretName"]))
        for kind, name in refs:
            if k8s.find(objs, kind, name):
                continue
            assert kind == "Secret" and name in k8s.OPERATOR_SECRETS, \
                "%s uses %s %s, which %s does not define" % (w["metadata"]["name"], kind, name, variant)
            assert not variant.startswith("overlay/") or name == "tether-mediad-dtls", \
                "overlay %s must create Secret %s" % (variant, name)


def test_operator_secrets_are_documented():
    ops = (k8s.REPO / "docs" / "operations.md").read_text()
    for s in k8s.OPERATOR_SECRETS:
        assert "kubectl create secret generic %s" % s in ops, s


# ---- containers ------------------------------------------------------------------------------

def test_containers_are_hardened_and_sized(objs):
    for w, c, prog in tether(objs) + [(w, c, None) for w in k8s.workloads(objs)
                                       for c in k8s.pod_spec(w)["containers"] if not k8s.is_tether_image(c)]:
        where = "%s/%s" % (w["metadata"]["name"], c["name"])
        pod_sc = k8s.pod_spec(w).get("securityContext", {})
        sc = c.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) > 0, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        r = c.get("resources", {})
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(r.get(part, {})), "%s: %s" % (where, part)
        assert k8s.pod_spec(w).get("automountServiceAccountToken") is False, where


def test_probes_name_declared_ports_and_served_paths(objs):
    for w, c, prog in tether(objs):
        where = "%s/%s" % (w["metadata"]["name"], c["name"])
        assert "livenessProbe" in c and "readinessProbe" in c, where
        for kind, path in PROBE_PATHS.items():
            pr = c.get(kind)
            if not pr:
                continue
            hg = pr.get("httpGet")
            assert hg, "%s %s: Tether probes are HTTP" % (where, kind)
            assert hg["path"] == path, "%s %s: %s" % (where, kind, hg["path"])
            p = k8s.container_port(c, hg["port"])
            assert p and p.get("name") == "http", "%s %s: port %r" % (where, kind, hg["port"])
            # A probe that can time out before the daemon's own deadlines
            # (readyz waits up to 1 s on its dependencies) restarts healthy pods.
            assert pr.get("timeoutSeconds", 1) >= 2, where


def test_http_listen_address_matches_the_http_port(objs):
    for w, c, prog in tether(objs):
        ep = k8s.endpoint(env_of(objs, c).get("TETHER_HTTP", ""))
        assert ep, "%s: no usable TETHER_HTTP" % prog
        assert ep[1] == k8s.container_port(c, "http")["containerPort"], prog
        # Reachable by the kubelet and Services: not loopback.
        assert ep[0] in ("0.0.0.0", "*", "10.0.0.1"), "%s binds HTTP on %s" % (prog, ep[0])


def env_of(objs, c):
    """The container's environment without operator-made Secrets."""
    c2 = dict(c)
    c2["envFrom"] = [ef for ef in c.get("envFrom", []) if "secretRef" not in ef or
                     k8s.find(objs, "Secret", ef["secretRef"]["name"])]
    return k8s.container_env(objs, c2, pod_ip="10.0.0.1")


def reads(daemon_vars, prog):
    return daemon_vars[prog][0] if prog in daemon_vars else set()


def test_endpoints_lead_to_the_daemon_that_binds_them(objs, daemon_vars):
    """Each daemon binds its own endpoint variable on the port it declares,
    and every other program that reads that variable reaches it through a
    Service. TETHER_REDIS reaches the Redis StatefulSet (or is external)."""
    checked = 0
    for w, c, prog in tether(objs):
        env = {k: v for k, v in env_of(objs, c).items() if k in reads(daemon_vars, prog)}
        ports = {p["containerPort"] for p in c.get("ports", [])}
        for var, owner in k8s.BINDS.items():
            if var not in env:
                continue
            ep = k8s.endpoint(env[var])
            assert ep, "%s %s=%r" % (prog, var, env[var])
            if prog == owner:
                assert ep[0] in ("0.0.0.0", "*", "10.0.0.1"), "%s binds %s on %s" % (prog, var, ep[0])
                assert ep[1] in ports, "%s binds %s :%d, not a container port" % (prog, var, ep[1])
            else:
                t = k8s.service_target(objs, ep[0], ep[1])
                assert t, "%s: %s=%s leads to no Service port" % (prog, var, env[var])
                tw, tc, tp = t
                assert k8s.binary_of(tc) == owner, "%s: %s reaches %s" % (prog, var, k8s.binary_of(tc))
                # ...and that daemon binds exactly that port.
                own = k8s.endpoint(env_of(objs, tc)[var])
                assert own[1] == tp["containerPort"], (var, own, tp)
                checked += 1
        if "TETHER_REDIS" in env and k8s.find(objs, "StatefulSet", "redis"):
            ep = k8s.endpoint(env["TETHER_REDIS"])
            t = k8s.service_target(objs, ep[0], ep[1])
            assert t and t[1]["name"] == "redis", "%s: TETHER_REDIS=%s" % (prog, env["TETHER_REDIS"])
    assert checked >= 6, "only %d client endpoints checked" % checked


def test_variables_are_read_by_their_program(objs, daemon_vars):
    """Every TETHER_* a container gets explicitly (env, or a Secret) is read
    by its program; a typo or a dead setting fails here."""
    for w, c, prog in tether(objs):
        if prog not in daemon_vars:
            continue
        reads, how = daemon_vars[prog]
        given = {e["name"] for e in c.get("env", []) if e["name"].startswith("TETHER_")}
        for ef in c.get("envFrom", []):
            if "secretRef" in ef and k8s.find(objs, "Secret", ef["secretRef"]["name"]):
                given |= set(k8s.secret_data(k8s.find(objs, "Secret", ef["secretRef"]["name"])))
        unknown = given - reads
        assert not unknown, "%s gets %s, which it does not read (%s)" % (prog, sorted(unknown), how)


def test_configmap_keys_are_read_by_a_consumer(objs, daemon_vars):
    for cm in k8s.by_kind(objs, "ConfigMap"):
        consumers = [prog for w, c, prog in tether(objs)
                     if any(ef.get("configMapRef", {}).get("name") == cm["metadata"]["name"]
                            for ef in c.get("envFrom", []))]
        if not consumers:
            continue
        read = set()
        for prog in consumers:
            if prog in daemon_vars:
                read |= daemon_vars[prog][0]
        unread = {k for k in cm["data"] if k.startswith("TETHER_")} - read
        assert not unread, "ConfigMap %s: %s read by none of %s" % (cm["metadata"]["name"], sorted(unread),
                                                                     consumers)


# ---- lifecycle -----------------------------------------------------------------------------

def test_gateway_drain_fits_the_grace_period(objs):
    gw = [(w, c) for w, c, p in tether(objs) if p == "gateway"][0]
    w, c = gw
    env = env_of(objs, c)
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0].endswith("sleep")
    sleep_s = int(pre[1])
    drain_s = int(env.get("TETHER_DRAIN_MS", "5000")) / 1000
    grace = k8s.pod_spec(w)["terminationGracePeriodSeconds"]
    # preStop, then the drain window, then at most 2 s to close, with margin.
    assert sleep_s + drain_s + 2 + 5 <= grace, (sleep_s, drain_s, grace)
    # The replacement is ready before an old gateway drains.
    ru = w["spec"]["strategy"]["rollingUpdate"]
    assert ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1


def test_every_tether_pod_has_a_grace_period_and_sigterm_path(objs):
    for w, c, prog in tether(objs):
        assert k8s.pod_spec(w).get("terminationGracePeriodSeconds", 30) >= 10, prog


def test_busd_is_never_split(objs):
    busd = k8s.find(objs, "Deployment", "busd")
    assert busd["spec"].get("replicas", 1) == 1 and busd["spec"]["strategy"]["type"] == "Recreate"


def test_mediad_host_network_setup(objs):
    m = k8s.find(objs, "Deployment", "mediad")
    spec = k8s.pod_spec(m)
    if spec.get("hostNetwork"):
        assert spec.get("dnsPolicy") == "ClusterFirstWithHostNet"   # Service names still resolve
        aa = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert aa[0]["topologyKey"] == "kubernetes.io/hostname"      # one per node (host ports)
        assert m["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    env = env_of(objs, spec["containers"][0])
    assert env["TETHER_MEDIA_PORTS"] == "10000-10999"
    assert env["TETHER_MEDIA_CERT"].startswith("/var/lib/tether/")
    mounts = {vm["mountPath"] for vm in spec["containers"][0]["volumeMounts"]}
    assert any(env["TETHER_MEDIA_CERT"].startswith(mp + "/") for mp in mounts), "certificate not on a volume"


def test_redis_is_durable_and_never_evicts(objs):
    sts = k8s.find(objs, "StatefulSet", "redis")
    if sts is None:
        pytest.skip("external Redis in this variant")
    conf = k8s.find(objs, "ConfigMap", "redis-config")["data"]["redis.conf"]
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"
    # maxmemory leaves room under the container limit (fork for AOF rewrite, buffers).
    limit = _bytes(k8s.pod_spec(sts)["containers"][0]["resources"]["limits"]["memory"])
    assert _bytes(settings["maxmemory"]) <= 0.8 * limit
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        vm["name"] for vm in k8s.pod_spec(sts)["containers"][0]["volumeMounts"] if vm["mountPath"] == "/data"}
    assert "startupProbe" in k8s.pod_spec(sts)["containers"][0]     # AOF replay is slow


def _bytes(q):
    m = re.match(r"^(\d+)(Ki|Mi|Gi|kb|mb|gb|k|m|g)?$", str(q).strip(), re.I)
    mult = {None: 1, "ki": 1024, "mi": 1024 ** 2, "gi": 1024 ** 3, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3,
            "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}
    return int(m.group(1)) * mult[m.group(2).lower() if m.group(2) else None]


def test_images_run_binaries_the_image_contains():
    """The programs the manifests run are the ones the Dockerfile builds."""
    df = (k8s.REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert "for d in gateway replayd sessiond busd mediad" in df and "build/bin/tether" in df
    built = set(k8s.DAEMONS) | {"tether"} | {"example-" + p.name for p in (k8s.REPO / "examples").iterdir()
                                             if p.is_dir()}
    for name, (objs, _) in all_variants().items():
        for w, c, prog in tether(objs):
            assert c["command"][0] == "/usr/local/bin/" + prog, (name, c["command"])
            assert prog in built, (name, prog)


# ---- network policy ----------------------------------------------------------------------

def allowed_sources(objs, dest_w, dest_port):
    """Who may open a TCP connection to dest_w on dest_port (a containerPort
    dict): a set of workload names, plus "world" and "ns:<name>" pseudo
    sources. Pods selected by no policy accept everything."""
    labels = k8s.pod_labels(dest_w)
    pols = [p for p in k8s.by_kind(objs, "NetworkPolicy")
            if "Ingress" in p["spec"].get("policyTypes", ["Ingress"]) and k8s.selects(p["spec"]["podSelector"], labels)]
    everyone = {w["metadata"]["name"] for w in k8s.workloads(objs)} | {"world", "ns:monitoring"}
    if not pols or k8s.pod_spec(dest_w).get("hostNetwork"):
        return everyone
    out = set()
    for p in pols:
        for rule in p["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(pp.get("port") in (dest_port.get("name"), dest_port["containerPort"])
                                 and pp.get("protocol", "TCP") == dest_port.get("protocol", "TCP") for pp in ports):
                continue
            frm = rule.get("from")
            if not frm:
                out |= everyone
                continue
            for f in frm:
                if "podSelector" in f and "namespaceSelector" not in f:
                    out |= {w["metadata"]["name"] for w in k8s.workloads(objs)
                            if not k8s.pod_spec(w).get("hostNetwork")   # host traffic is not a pod
                            and k8s.selects(f["podSelector"], k8s.pod_labels(w))}
                elif "namespaceSelector" in f:
                    ns = f["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    out.add("ns:%s" % ns)
                elif "ipBlock" in f:
                    out.add("world" if f["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0") else "ip:" + f["ipBlock"]["cidr"])
    return out


def test_only_the_gateway_is_reachable_from_outside(objs):
    for w in k8s.workloads(objs):
        for c in k8s.pod_spec(w)["containers"]:
            for p in c.get("ports", []):
                src = allowed_sources(objs, w, p)
                name = w["metadata"]["name"]
                if k8s.pod_spec(w).get("hostNetwork"):
                    continue        # documented: node firewall (mediad.yaml)
                if name == "gateway" and p["name"] == "http":
                    assert "world" in src
                else:
                    assert "world" not in src, "%s:%s open to the world" % (name, p["name"])
                    if p["name"] in ("http", "admin"):
                        assert "ns:monitoring" in src, "%s metrics not scrapable" % name


def metrics_port(c, prog):
    """The container port /metrics is served on: the gateway's admin port
    (TETHER_ADMIN_HTTP), every other daemon's http port (TETHER_HTTP)."""
    return k8s.container_port(c, "admin" if prog == "gateway" else "http")


def test_gateway_metrics_on_the_admin_port(objs):
    """TETHER_ADMIN_HTTP binds the container port `admin`, reachable by the
    kubelet and Prometheus, and is another port than the public one."""
    found = 0
    for w, c, prog in tether(objs):
        if prog != "gateway":
            continue
        found += 1
        ep = k8s.endpoint(env_of(objs, c).get("TETHER_ADMIN_HTTP", ""))
        assert ep, "gateway: no usable TETHER_ADMIN_HTTP"
        admin = k8s.container_port(c, "admin")
        assert admin and ep[1] == admin["containerPort"], (ep, admin)
        assert ep[0] in ("0.0.0.0", "*", "10.0.0.1"), "gateway binds admin on %s" % ep[0]
        assert admin["containerPort"] != k8s.container_port(c, "http")["containerPort"]
    assert found == 1


def test_prometheus_scrapes_the_metrics_port(objs):
    for w, c, prog in tether(objs):
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        where = "%s/%s" % (w["metadata"]["name"], c["name"])
        assert ann.get("prometheus.io/scrape") == "true", where
        assert ann.get("prometheus.io/path") == "/metrics", where
        p = metrics_port(c, prog)
        assert p, "%s: no metrics port" % where
        assert ann.get("prometheus.io/port") == str(p["containerPort"]), where


def test_no_service_exposes_a_metrics_port(objs):
    """The public Service does not carry the gateway's admin port, and no
    Service carries another daemon's metrics port."""
    checked = 0
    for svc in k8s.by_kind(objs, "Service"):
        ws = [w for w in k8s.workloads(objs) if k8s.selects(svc["spec"]["selector"], k8s.pod_labels(w))]
        for w in ws:
            for c in k8s.pod_spec(w)["containers"]:
                if not k8s.is_tether_image(c):
                    continue
                prog = k8s.binary_of(c)
                mp = metrics_port(c, prog)
                if not mp:
                    continue
                for sp in svc["spec"]["ports"]:
                    t = k8s.container_port(c, sp.get("targetPort", sp["port"]))
                    assert not t or t["containerPort"] != mp["containerPort"], \
                        "Service %s exposes %s's metrics port %d" % (svc["metadata"]["name"], prog, mp["containerPort"])
                    assert sp["port"] != mp["containerPort"], (svc["metadata"]["name"], sp)
                checked += 1
    assert checked >= 1


def test_redis_only_from_the_daemons(objs):
    sts = k8s.find(objs, "StatefulSet", "redis")
    if sts is None:
        pytest.skip("external Redis in this variant")
    src = allowed_sources(objs, sts, k8s.pod_spec(sts)["containers"][0]["ports"][0])
    assert {"replayd", "sessiond"} <= src <= {"replayd", "sessiond", "mediad"}, src


def test_every_connection_the_environment_implies_is_allowed(objs, daemon_vars):
    """Client -> server pairs from the environment (bus, rpc, Redis) pass the
    policies; the only exceptions are the hostNetwork pod's own connections,
    which docs/operations.md tells how to allow (node CIDR)."""
    blocked = set()
    pairs = 0
    for w, c, prog in tether(objs):
        env = {k: v for k, v in env_of(objs, c).items() if k in reads(daemon_vars, prog)}
        for var, value in env.items():
            if var not in k8s.BINDS and var != "TETHER_REDIS":
                continue
            if k8s.BINDS.get(var) == prog:
                continue
            ep = k8s.endpoint(value)
            t = ep and k8s.service_target(objs, ep[0], ep[1])
            if not t:
                continue
            tw, tc, tp = t
            pairs += 1
            if w["metadata"]["name"] not in allowed_sources(objs, tw, tp):
                blocked.add((w["metadata"]["name"], tw["metadata"]["name"], tp["name"]))
    hostnet = {w["metadata"]["name"] for w in k8s.workloads(objs) if k8s.pod_spec(w).get("hostNetwork")}
    assert pairs >= 10, pairs
    assert {b for b in blocked if b[0] not in hostnet} == set(), blocked
    if blocked:
        ops = (k8s.REPO / "docs" / "operations.md").read_text()
        assert "node CIDR" in ops


# ---- the local runner ------------------------------------------------------------------

def test_local_runner_runs_the_same_topology():
    """deploy/local/run.sh (make run) starts the daemons the manifests run,
    on the same HTTP ports, probes the same liveness path with the same
    failure threshold, and its Redis is durable (AOF)."""
    text = (k8s.REPO / "deploy" / "local" / "run.sh").read_text()
    order = re.search(r"^ORDER=\(([^)]*)\)", text, re.M).group(1).split()
    ports = dict(re.findall(r"\[(\w+)\]=127\.0\.0\.1:(\d+)", text))
    objs = k8s.base_objects()
    for w, c, prog in tether(objs):
        assert prog in order, "run.sh does not start %s" % prog
        assert int(ports[prog]) == k8s.container_port(c, "http")["containerPort"], prog
        assert c["livenessProbe"]["failureThreshold"] == int(re.search(r"^HEALTH_FAILS=(\d+)", text, re.M).group(1))
    assert "/healthz" in text and "--appendonly yes" in text
    # busd first and gateway last, as the readiness dependencies go.
    assert order[0] == "busd" and order[-1] == "gateway"
