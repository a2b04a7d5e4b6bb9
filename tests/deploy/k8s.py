"""k8s.py -- Tether's Kubernetes manifests as Python data, for tests/deploy.

Variants: the base loaded straight from the files its kustomization lists (no
tool needed), and, when `kubectl kustomize` or `kustomize` is installed, every
overlay and the base with each component, rendered exactly as `kubectl apply -k`
would. Helpers answer the questions the tests ask: which containers run which
daemon, with which environment (as the kubelet computes it), which ports,
which Services lead where.

    python3 tests/deploy/k8s.py dump <out.json>    every object of every
                                                   variant, for validate.js
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BUILD = Path(os.environ.get("TETHER_BUILD", "build"))
BUILD = BUILD if BUILD.is_absolute() else REPO / BUILD
BIN = BUILD / "bin"

# Secrets the base references but never ships (an overlay or the operator
# creates them; docs/operations.md says how).
OPERATOR_SECRETS = {"tether-jwt", "tether-bus", "tether-mediad-dtls"}
DAEMONS = ("gateway", "replayd", "sessiond", "busd", "mediad")
# Which daemon binds each endpoint variable (docs/operations.md configuration table).
BINDS = {"TETHER_BUS_IN": "busd", "TETHER_BUS_OUT": "busd", "TETHER_REPLAYD": "replayd",
         "TETHER_SESSIOND": "sessiond", "TETHER_MEDIAD": "mediad"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# ---- loading ---------------------------------------------------------------------------

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomize_tool():
    """The command that renders a kustomization, or None."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render(kdir):
    tool = kustomize_tool()
    if tool is None:
        raise RuntimeError("neither kubectl nor kustomize is installed")
    p = subprocess.run(tool + [str(kdir)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s %s failed:\n%s" % (" ".join(tool), kdir, p.stderr))
    return [d for d in yaml.safe_load_all(p.stdout) if d is not None]


def resource_files(kdir):
    """The manifest files a kustomization lists as resources (directories
    followed), relative to the repository, in order."""
    k = load_docs(Path(kdir) / "kustomization.yaml")[0]
    out = []
    for r in k.get("resources", []):
        p = (Path(kdir) / r).resolve()
        if p.is_dir():
            out += resource_files(p)
        else:
            out.append(p)
    return out


def base_objects():
    objs = []
    for f in resource_files(K8S / "base"):
        objs += load_docs(f)
    return objs


def component_dirs():
    return sorted(p.parent for p in (K8S / "components").glob("*/kustomization.yaml"))


def overlay_dirs():
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def variants():
    """{name: (objects, rendered?)}. Rendered variants need a kustomize tool;
    without one only "base" (read from the files) is returned."""
    out = {"base": (base_objects(), False)}
    if kustomize_tool() is None:
        return out
    out["base-rendered"] = (render(K8S / "base"), True)
    for o in overlay_dirs():
        out["overlay/" + o.name] = (render(o), True)
    for c in component_dirs():
        with tempfile.TemporaryDirectory(dir=BUILD if BUILD.is_dir() else None) as tmp:
            kfile = Path(tmp) / "kustomization.yaml"
            kfile.write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "base", tmp)],
                "components": [os.path.relpath(c, tmp)]}))
            out["base+" + c.name] = (render(tmp), True)
    return out


# ---- questions about a set of objects ----------------------------------------------

def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def find(objs, kind, name):
    for o in objs:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    return None


def workloads(objs):
    return [o for o in objs if o.get("kind") in WORKLOAD_KINDS]


def pod_spec(w):
    return w["spec"]["template"]["spec"]


def pod_labels(w):
    return w["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    """A Service selector (plain map) or a LabelSelector (matchLabels /
    matchExpressions) against labels."""
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
        for e in selector.get("matchExpressions", []):
            v = labels.get(e["key"])
            op = e["operator"]
            ok = ok and {"In": v in e.get("values", []), "NotIn": v not in e.get("values", []),
                         "Exists": e["key"] in labels, "DoesNotExist": e["key"] not in labels}[op]
        return ok
    return all(labels.get(k) == v for k, v in selector.items())


def binary_of(container):
    """The program a container runs: basename of command[0], or None."""
    cmd = container.get("command") or []
    return os.path.basename(cmd[0]) if cmd else None


def is_tether_image(container):
    return container.get("image", "").split("/")[-1].split(":")[0] == "tether"


def tether_containers(objs):
    """[(workload, container, program)] for every container of the tether image."""
    out = []
    for w in workloads(objs):
        for c in pod_spec(w).get("containers", []):
            if is_tether_image(c):
                out.append((w, c, binary_of(c)))
    return out


def container_port(container, ref):
    """The containerPort a probe/Service port refers to (name or number), or None."""
    for p in container.get("ports", []):
        if ref == p.get("name") or ref == p["containerPort"]:
            return p
    return None


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_env(objs, container, pod_ip="127.0.0.1", pod_name="pod"):
    """The environment the kubelet gives the container: envFrom (in order),
    then env with $(VAR) expansion; fieldRef status.podIP / metadata.name
    resolved to pod_ip / pod_name. Returns {name: value}; a missing ConfigMap
    or Secret raises KeyError naming it."""
    env = {}
    for ef in container.get("envFrom", []):
        if "configMapRef" in ef:
            cm = find(objs, "ConfigMap", ef["configMapRef"]["name"])
            if cm is None:
                raise KeyError("ConfigMap " + ef["configMapRef"]["name"])
            env.update({ef.get("prefix", "") + k: str(v) for k, v in cm.get("data", {}).items()})
        if "secretRef" in ef:
            s = find(objs, "Secret", ef["secretRef"]["name"])
            if s is None:
                raise KeyError("Secret " + ef["secretRef"]["name"])
            env.update({ef.get("prefix", "") + k: v for k, v in secret_data(s).items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = {"status.podIP": pod_ip, "metadata.name": pod_name,
                                  "status.hostIP": pod_ip}.get(vf["fieldRef"]["fieldPath"], "")
            elif "configMapKeyRef" in vf:
                cm = find(objs, "ConfigMap", vf["configMapKeyRef"]["name"])
                env[e["name"]] = str(cm["data"][vf["configMapKeyRef"]["key"]])
            elif "secretKeyRef" in vf:
                s = find(objs, "Secret", vf["secretKeyRef"]["name"])
                env[e["name"]] = secret_data(s)[vf["secretKeyRef"]["key"]]
        else:
            env[e["name"]] = ""
    return env


def secret_data(s):
    import base64
    out = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
    out.update(s.get("stringData") or {})
    return out


def endpoint(value):
    """'tcp://host:port' or 'host:port' -> (host, port) or None."""
    m = re.match(r"^(?:tcp://|redis://)?\[?([^\]/]*?)\]?:(\d+)(?:/.*)?$", value or "")
    return (m.group(1), int(m.group(2))) if m else None


def service_target(objs, host, port):
    """For a client address host:port, the (workload, container, containerPort)
    behind the Service `host`, or None."""
    svc = find(objs, "Service", host.split(".")[0])
    if svc is None:
        return None
    for sp in svc["spec"].get("ports", []):
        if sp["port"] != port:
            continue
        target = sp.get("targetPort", sp["port"])
        for w in workloads(objs):
            if not selects(svc["spec"].get("selector"), pod_labels(w)):
                continue
            for c in pod_spec(w).get("containers", []):
                cp = container_port(c, target)
                if cp and cp.get("protocol", "TCP") == sp.get("protocol", "TCP"):
                    return w, c, cp
    return None


# ---- dump for validate.js ------------------------------------------------------------

def dump(out_path):
    """Every object: the raw files (base, component and overlay resources) and
    every rendered variant. Patches are not whole objects and are left out."""
    items = []
    seen_files = set()
    for kdir in [K8S / "base"] + component_dirs() + overlay_dirs():
        for f in resource_files(kdir):
            if f in seen_files or f.is_dir():
                continue
            seen_files.add(f)
            for i, d in enumerate(load_docs(f)):
                items.append({"source": "%s#%d" % (f.relative_to(REPO), i), "object": d})
    for name, (objs, rendered) in variants().items():
        if rendered:
            for i, d in enumerate(objs):
                items.append({"source": "rendered %s #%d" % (name, i), "object": d})
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(items))
    return len(items)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        n = dump(sys.argv[2])
        print("%d objects written to %s%s" % (n, sys.argv[2],
              "" if kustomize_tool() else " (no kubectl/kustomize: overlays not rendered)"))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
