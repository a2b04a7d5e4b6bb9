"""conftest.py -- fixtures for the deploy tests (tests/deploy/).

  variant        parametrized over every manifest variant k8s.variants() gives:
                 "base" (the files), and when kubectl/kustomize is installed
                 "base-rendered", "overlay/<name>", "base+<component>"
  objs           the objects of that variant
  daemon_vars    {program: set of TETHER_* it reads}, learned by starting each
                 built binary once on free loopback ports and reading its
                 "effective config" log line (plus the variables lib/ reads
                 with getenv); mediad, while it is not built, by the contract
                 of docs/operations.md ("Configuration")
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import k8s

_VARIANTS = None


def all_variants():
    global _VARIANTS
    if _VARIANTS is None:
        _VARIANTS = k8s.variants()
    return _VARIANTS


def pytest_generate_tests(metafunc):
    if "variant" in metafunc.fixturenames:
        names = sorted(all_variants())
        metafunc.parametrize("variant", names, ids=names)


@pytest.fixture
def objs(variant):
    return all_variants()[variant][0]


# ---- the variables each program reads ----------------------------------------------

# mediad is being written in parallel: until build/bin/mediad exists, its
# variables are the contract (docs/operations.md configuration table, with TETHER_MEDIA_CERT).
MEDIAD_CONTRACT = {"TETHER_REDIS", "TETHER_BUS_IN", "TETHER_BUS_OUT", "TETHER_MEDIAD", "TETHER_HTTP",
                   "TETHER_MEDIA_IFACES", "TETHER_MEDIA_PORTS", "TETHER_MEDIA_CERT", "TETHER_LOG_LEVEL"}
PROGRAMS = ("busd", "replayd", "sessiond", "mediad", "gateway", "example-subscriber")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lib_getenv_vars():
    """TETHER_* read with getenv() in lib/ (linked into every program)."""
    out = set()
    for f in (k8s.REPO / "lib").glob("*.c"):
        out |= set(re.findall(r'getenv\("(TETHER_[A-Z0-9_]+)"\)', f.read_text()))
    return out


def effective_config(program, timeout=10.0):
    """Starts build/bin/<program> on free loopback ports and returns the keys
    of its "effective config" log line (stdout, or stderr for programs whose
    stdout carries data), or None if it never printed one."""
    ports = {k: free_port() for k in ("http", "in", "out", "rd", "ss", "md", "redis")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update({
        "TETHER_HTTP": "127.0.0.1:%d" % ports["http"],
        "TETHER_BUS_IN": "tcp://127.0.0.1:%d" % ports["in"],
        "TETHER_BUS_OUT": "tcp://127.0.0.1:%d" % ports["out"],
        "TETHER_REPLAYD": "tcp://127.0.0.1:%d" % ports["rd"],
        "TETHER_SESSIOND": "tcp://127.0.0.1:%d" % ports["ss"],
        "TETHER_MEDIAD": "tcp://127.0.0.1:%d" % ports["md"],
        "TETHER_REDIS": "redis://127.0.0.1:%d/0" % ports["redis"],
        "TETHER_JWT_SECRET": "deploy-test-secret-0123456789abcdef",
        "TETHER_MEDIA_IFACES": "lo",
    })
    # A scratch directory: programs may write state relative to it (mediad's
    # default certificate path is run/mediad-dtls.pem).
    scratch = tempfile.TemporaryDirectory(prefix="tether-vars-")
    env["TETHER_MEDIA_CERT"] = os.path.join(scratch.name, "dtls.pem")
    p = subprocess.Popen([str(k8s.BIN / program)], env=env, stdin=subprocess.DEVNULL, cwd=scratch.name,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    os.set_blocking(p.stdout.fileno(), False)
    buf = b""
    found = None
    deadline = time.monotonic() + timeout
    try:
        while found is None and time.monotonic() < deadline and p.poll() is None:
            chunk = p.stdout.read() or b""
            buf += chunk
            for line in buf.splitlines():
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("msg") == "effective config":
                    found = set(j.get("config", {}))
            if not chunk:
                time.sleep(0.02)
        if found is None:   # it may have exited after printing
            buf += p.stdout.read() or b""
            for line in buf.splitlines():
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("msg") == "effective config":
                    found = set(j.get("config", {}))
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        scratch.cleanup()
    return found


_VARS = None


@pytest.fixture(scope="session")
def daemon_vars():
    """{program: (set of variables, how we know)}."""
    global _VARS
    if _VARS is None:
        lib = lib_getenv_vars()
        _VARS = {}
        for prog in PROGRAMS:
            if (k8s.BIN / prog).is_file():
                cfg = effective_config(prog)
                if cfg is None:
                    raise AssertionError("%s printed no effective config line" % prog)
                _VARS[prog] = (cfg | lib, "effective config of build/bin/%s" % prog)
            elif prog == "mediad":
                _VARS[prog] = (MEDIAD_CONTRACT, "contract (build/bin/mediad not built)")
    return _VARS


def need(path):
    if not Path(path).exists():
        pytest.skip("%s not built" % path)
