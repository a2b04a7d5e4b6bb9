"""test_image.py -- deploy/docker/Dockerfile checked without a Docker engine.

The runtime stage is debian:12-slim, runs as a numeric non-root user, carries
no -dev package, and installs exactly one package per library the built
binaries link (readelf NEEDED -> dpkg -S), each a real Debian 12 package
(apt-cache). The libwebsockets event-loop plugins installed are exactly the
ones the sources ask for (none: only the SDK uses lws, on its own poll loop),
and a running gateway loads neither libwebsockets nor a plugin (LD_DEBUG). The build stage installs the -dev package of every pkg-config
module the Makefile uses, its context filter keeps every source directory
and nothing else, and its build script, run here on a copy of exactly that
context, builds every binary the manifests run from a clean tree.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import k8s

DOCKER = k8s.REPO / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"


# ---- a small Dockerfile reader --------------------------------------------------------

def instructions():
    """[(stage, INSTRUCTION, argument text)] with continuation lines joined."""
    out, stage, cur = [], None, ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        cur += " " + line[:-1] if line.endswith("\\") else " " + line
        if line.endswith("\\"):
            continue
        word, _, rest = cur.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            stage = m.group(2) or m.group(1)
        out.append((stage, word, rest.strip()))
        cur = ""
    return out


def arg_defaults():
    return dict(re.match(r"(\w+)=(\S+)", a).groups() for s, w, a in instructions() if w == "ARG" and "=" in a)


def stage_of_final():
    froms = [(s, a) for s, w, a in instructions() if w == "FROM"]
    return froms[-1]


def apt_packages(stage):
    pkgs = []
    for s, w, a in instructions():
        if s == stage and w == "RUN" and "apt-get install" in a:
            seg = a.split("apt-get install", 1)[1].split("&&")[0]
            pkgs += [t for t in seg.split() if not t.startswith("-")]
    return pkgs


def final_stage():
    return stage_of_final()[0]


def build_stage():
    return [s for s, w, a in instructions() if w == "RUN" and "make " in a][0]


# ---- Debian package helpers -------------------------------------------------------------

def packages_of(paths):
    """{path: owning Debian package} for the paths dpkg knows (usr-merge
    aware: /lib/x and /usr/lib/x are the same file). One dpkg call."""
    alias = {}
    for path in paths:
        for cand in {path, os.path.realpath(path)}:
            for c in (cand, cand[4:] if cand.startswith("/usr/") else "/usr" + cand):
                alias.setdefault(c, path)
    r = subprocess.run(["dpkg", "-S"] + sorted(alias), capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        pkgs, _, owned = line.partition(": ")
        if owned in alias:
            out.setdefault(alias[owned], pkgs.split(",")[0].split(":")[0].strip())
    return out


def package_of(path):
    return packages_of([path]).get(path)


def needed_libs(binary):
    r = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True)
    return re.findall(r"Shared library: \[(.+?)\]", r.stdout)


_LDCONFIG = None


def lib_path(soname):
    """Where the dynamic linker finds soname (native architecture first)."""
    global _LDCONFIG
    if _LDCONFIG is None:
        r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
        _LDCONFIG = re.findall(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", r.stdout, re.M)
    hits = [(flags, path) for name, flags, path in _LDCONFIG if name == soname]
    native = [path for flags, path in hits if "x86-64" in flags or "AArch64" in flags]
    return (native or [path for _, path in hits] or [None])[0]


def built_binaries():
    if not k8s.BIN.is_dir():
        return []
    return sorted(p for p in k8s.BIN.iterdir() if p.is_file() and os.access(p, os.X_OK)
                  and p.read_bytes()[:4] == b"\x7fELF")


def have_apt_lists():
    return subprocess.run(["apt-cache", "show", "--no-all-versions", "libc6"],
                          capture_output=True).returncode == 0


# ---- runtime stage -----------------------------------------------------------------------

def test_runtime_stage_is_debian_12_slim():
    stage, base = stage_of_final()
    base = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults()[m.group(1)], base.split()[0])
    assert base == "debian:12-slim", base


def test_runtime_user_is_numeric_and_not_root():
    users = [a for s, w, a in instructions() if s == final_stage() and w == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]     # runAsNonRoot can only verify a number
    assert not gid or (gid.isdigit() and int(gid) > 0)
    for w, c, prog in k8s.tether_containers(k8s.base_objects()):
        assert k8s.pod_spec(w)["securityContext"]["runAsUser"] == int(uid), w["metadata"]["name"]


def test_runtime_has_no_development_packages():
    pkgs = apt_packages(final_stage())
    assert pkgs
    assert not [p for p in pkgs if p.endswith("-dev") or p in ("build-essential", "pkg-config")], pkgs
    runs = [a for s, w, a in instructions() if s == final_stage() and w == "RUN" and "apt-get" in a]
    assert all("--no-install-recommends" in r and "rm -rf /var/lib/apt/lists/*" in r for r in runs)


def test_runtime_packages_are_debian_12_packages():
    if not have_apt_lists():
        pytest.skip("no apt package lists on this machine (apt-get update)")
    pkgs = sorted(set(apt_packages(final_stage()) + apt_packages(build_stage())))
    r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs, capture_output=True, text=True)
    known = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
    assert set(pkgs) <= known, "not Debian packages here: %s" % sorted(set(pkgs) - known)


def test_runtime_packages_are_exactly_the_linked_libraries():
    bins = built_binaries()
    if not bins:
        pytest.skip("nothing built in %s" % k8s.BIN)
    runtime = set(apt_packages(final_stage()))
    users = {}
    for b in bins:
        for so in needed_libs(b):
            path = lib_path(so)
            assert path, "%s needs %s, which ldconfig does not know" % (b.name, so)
            users.setdefault(path, set()).add("%s (%s)" % (so, b.name))
    owners = packages_of(list(users))
    needed = {}
    for path, who in users.items():
        assert path in owners, "no package owns %s (%s)" % (path, sorted(who))
        needed.setdefault(owners[path], set()).update(who)
    needed.pop("libc6", None)       # in every Debian image
    missing = set(needed) - runtime
    assert not missing, "runtime stage lacks %s" % {m: sorted(needed[m]) for m in missing}
    programs = {b.name for b in bins}
    if set(k8s.DAEMONS) <= programs:
        # lws event-loop plugins are loaded with dlopen, not linked: they are
        # checked by test_event_loop_plugins_match_the_sources instead.
        extra = {p for p in runtime - set(needed) if not p.startswith("libwebsockets-evlib-")}
        assert not extra, "runtime stage installs %s, which no binary links" % sorted(extra)


def test_event_loop_plugins_match_the_sources():
    """lws loads libwebsockets-evlib-<loop> plugins at run time for the
    glib/libuv/libev loops. The runtime stage installs exactly the plugins
    the sources ask for (none since the gateway owns its sockets)."""
    opt = re.compile(r"LWS_SERVER_OPTION_(GLIB|LIBUV|LIBEV|LIBEVENT)\b")
    uses = set()
    for d in ("gateway", "client", "examples", "lib", "mediad"):
        for f in (k8s.REPO / d).rglob("*.c"):
            for m in opt.finditer(f.read_text()):
                uses.add((m.group(1) or "foreign").lower())
    plugins = {p for p in apt_packages(final_stage()) if p.startswith("libwebsockets-evlib-")}
    want = {"libwebsockets-evlib-" + {"libuv": "uv", "libev": "ev", "glib": "glib"}.get(u, u) for u in uses}
    assert plugins == want, (plugins, want)


def test_running_gateway_loads_no_libwebsockets(tmp_path):
    gw = k8s.BIN / "gateway"
    if not gw.is_file():
        pytest.skip("gateway not built")
    from conftest import free_port
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update({"TETHER_HTTP": "127.0.0.1:%d" % port, "TETHER_JWT_SECRET": "x" * 32, "LD_DEBUG": "files",
                "TETHER_BUS_IN": "tcp://127.0.0.1:%d" % free_port(), "TETHER_BUS_OUT": "tcp://127.0.0.1:%d" % free_port(),
                "TETHER_REPLAYD": "tcp://127.0.0.1:%d" % free_port(), "TETHER_SESSIOND": "off"})
    err = tmp_path / "ld.txt"
    with open(err, "wb") as e:
        p = subprocess.Popen([str(gw)], env=env, stdout=subprocess.DEVNULL, stderr=e, start_new_session=True)
    try:
        import http.client
        deadline = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert p.poll() is None and time.monotonic() < deadline, "gateway did not come up"
            time.sleep(0.05)
    finally:
        p.kill()
        p.wait(5)
    loaded = set(re.findall(r"file=(\S+)", err.read_text()))
    assert not [f for f in loaded if "libwebsockets" in f or "evlib" in f or "libev." in f], loaded


# ---- build stage and context -------------------------------------------------------------

def test_build_stage_has_every_development_package_the_makefile_uses():
    mk = (k8s.REPO / "Makefile").read_text()
    mods = []
    for var in ("PKGS", "MEDIA_PKGS"):
        mods += re.search(r"^%s := (.+)$" % var, mk, re.M).group(1).split()
    build = set(apt_packages(build_stage()))
    for mod in mods:
        r = subprocess.run(["pkg-config", "--path", mod], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("pkg-config does not know %s here" % mod)
        pkg = package_of(r.stdout.strip())
        assert pkg in build, "build stage lacks %s (pkg-config %s)" % (pkg, mod)
    protoc = shutil.which("protoc-c")
    if protoc:
        assert package_of(protoc) in build


def context_includes():
    lines = [l.strip() for l in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*", "the context filter must start by excluding everything"
    return {l[1:].rstrip("/") for l in lines if l.startswith("!")}


def test_context_filter_keeps_sources_only():
    inc = context_includes()
    needed = {"Makefile", "lib", "protos", "client", "examples"} | set(k8s.DAEMONS)
    assert needed <= inc, needed - inc
    assert not inc & {"build", "run", "tests", ".git", "node_modules", "deploy", "build-san", "build-fuzz"}


@pytest.mark.skipif(os.environ.get("TETHER_DEPLOY_QUICK") == "1", reason="TETHER_DEPLOY_QUICK=1")
def test_build_script_builds_every_binary_from_a_clean_context(tmp_path):
    """The build stage's RUN script, run on a copy of exactly the context the
    filter lets through: a clean tree, as in `docker build`."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in context_includes():
        p = k8s.REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("*.o", "*.d", "node_modules"))
        elif p.is_file():
            shutil.copy2(p, src / name)
    script = [a for s, w, a in instructions() if s == build_stage() and w == "RUN" and "make " in a][0]
    script = script.replace("/out", str(out))
    r = subprocess.run(["sh", "-c", script], cwd=src, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, "build script failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
    made = {p.name for p in (out / "bin").iterdir()}
    want = {"tether"} | {d for d in k8s.DAEMONS if list((k8s.REPO / d).glob("*.c"))} | \
        {"example-" + p.name for p in (k8s.REPO / "examples").iterdir() if p.is_dir()}
    assert want <= made, want - made
    for w, c, prog in k8s.tether_containers(k8s.base_objects()) + k8s.tether_containers(
            k8s.load_docs(k8s.K8S / "components" / "subscriber" / "audit-subscriber.yaml")):
        assert prog in made or prog == "mediad" and not list((k8s.REPO / "mediad").glob("*.c")), prog
    assert (out / "web").is_dir()
