"""conftest.py -- pytest fixtures for the Tether integration tests.

Fixtures:
  redis        a fresh redis-server (no persistence) on a free port
  redis_aof    the same with appendonly yes + appendfsync always
  tether       factory: tether(env={...}, aof=False, components=None) -> a
               started Suite (redis + every built daemon on free ports)
  suite        tether() with the overrides of @pytest.mark.suite_env(...) and
               the options of @pytest.mark.suite_opts(aof=...)

Markers:
  requires("sessiond", ...)  skip (with the reason) when a binary is not built
  chaos                      kills daemons; run_all.sh runs these as "chaos"

When a test fails, the tail of every daemon's log is attached to its report.
Under `tests/run_all.sh san`, a test also fails (in its teardown) when a
daemon it started printed a sanitizer report on stderr, or a process it ran
wrote one into $TETHER_SAN_DIR, even if the test itself passed.
The tests are plain functions that drive asyncio through tether_client.run()
(no pytest-asyncio in Debian 12's default install).
"""

import os
import shutil

import pytest

import tether_harness as th


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*binaries): skip unless these build/bin binaries exist")
    config.addinivalue_line("markers", "chaos: kills or stops daemons under traffic")
    config.addinivalue_line("markers", "suite_env(**env): TETHER_* overrides for the suite fixture")
    config.addinivalue_line("markers", "suite_opts(**opts): Suite options (aof=True) for the suite fixture")


def pytest_runtest_setup(item):
    for mark in item.iter_markers(name="requires"):
        absent = th.missing(mark.args)
        if absent:
            pytest.skip("not built: %s (in %s)" % (", ".join(absent), th.BIN))


def pytest_terminal_summary(terminalreporter):
    if not th.STOP_KILLED:
        return
    counts = {}
    for name, _ in th.STOP_KILLED:
        counts[name] = counts.get(name, 0) + 1
    terminalreporter.write_sep("-", "daemons that ignored SIGTERM at teardown")
    terminalreporter.write_line(
        "not exited %.0f s after SIGTERM, then SIGKILLed: %s (e.g. %s)" % (
            th.STOP_TIMEOUT, ", ".join("%s x%d" % kv for kv in sorted(counts.items())), th.STOP_KILLED[0][1]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for i, suite in enumerate(getattr(item, "_tether_suites", [])):
            rep.sections.append(("tether daemon logs (suite %d, %s)" % (i, suite.dir), suite.log_tails()))


@pytest.fixture(autouse=True)
def _sanitizer_reports():
    """Fails the test if a sanitizer reported during it (part san)."""
    if not th.SAN_DIR:
        yield
        return
    first = len(th.DAEMONS)
    before = set(os.listdir(th.SAN_DIR))
    yield
    found = []
    for d in th.DAEMONS[first:]:
        rep = th.sanitizer_report(d.err)
        if rep:
            found.append("%s (%s):\n%s" % (d.name, d.err, rep))
    for name in sorted(set(os.listdir(th.SAN_DIR)) - before):
        path = os.path.join(th.SAN_DIR, name)
        found.append("%s:\n%s" % (path, th.sanitizer_report(path) or open(path, errors="replace").read(4000)))
    if found:
        pytest.fail("sanitizer report(s):\n" + "\n\n".join(found), pytrace=False)


def _need_core():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    absent = th.missing(th.CORE)
    if absent:
        pytest.skip("not built: %s (in %s)" % (", ".join(absent), th.BIN))


@pytest.fixture
def redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = th.Redis(tmp_path / "redis").start()
    yield r
    r.stop()


@pytest.fixture
def redis_aof(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = th.Redis(tmp_path / "redis-aof", aof=True).start()
    yield r
    r.stop()


@pytest.fixture
def tether(request, tmp_path):
    suites = []
    request.node._tether_suites = suites

    def make(env=None, aof=False, components=None):
        _need_core()
        s = th.Suite(tmp_path / ("suite%d" % len(suites)), env=env, aof=aof, components=components)
        suites.append(s)
        s.start()
        return s

    yield make
    for s in suites:
        s.stop()


@pytest.fixture
def suite(request, tether):
    env = {}
    for mark in reversed(list(request.node.iter_markers(name="suite_env"))):
        env.update(mark.kwargs)
    opts = {}
    for mark in reversed(list(request.node.iter_markers(name="suite_opts"))):
        opts.update(mark.kwargs)
    return tether(env=env, **opts)


