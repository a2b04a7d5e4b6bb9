"""test_chaos_rounds.py -- chaos.py's rounds as one pytest test.

TETHER_CHAOS_LEVEL=short (the default; what `make test` runs, ~45 s): two
combined kills, Redis FLUSHALL, an 18 s blackhole on a 4 s heartbeat.
TETHER_CHAOS_LEVEL=full (`make test-chaos`, ~3 min): every single kill -9,
the combinations, the flush, a 40 s blackhole on the default heartbeat.
The rounds share one suite and one workload, so they are one test; the
output lists every round, and a failure names the round and what broke.
Every round's numbers go to $TETHER_BUILD/test-results/chaos-rounds-<level>.json.
"""

import json
import os
import shutil
import signal

import pytest

import chaos
import tether_harness as th

LEVEL = os.environ.get("TETHER_CHAOS_LEVEL", "short")


def test_chaos_rounds(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    missing = th.missing(("busd", "replayd", "gateway", "sessiond", "mediad", "tether"))
    if missing:
        pytest.skip("not built: %s" % ", ".join(missing))
    if LEVEL not in ("short", "full"):
        pytest.fail("TETHER_CHAOS_LEVEL is short or full, not %r" % LEVEL)
    lines = []

    def out(s):
        lines.append(s)
        print(s, flush=True)
    ch = chaos.Chaos(tmp_path / "run", LEVEL, out=out)
    stopped = None
    old = signal.signal(signal.SIGTERM, chaos.on_sigterm)   # a timeout must not leak daemons or namespaces
    try:
        ch.start()
        ch.run()
    except (chaos.RoundFailed, TimeoutError, RuntimeError) as e:
        stopped = str(e)
    finally:
        try:
            ch.close()
        finally:
            signal.signal(signal.SIGTERM, old)
    ok = ch.summary()
    # Every round's numbers, next to run_all.sh's other results.
    res = th.BUILD / "test-results"
    if res.is_dir():
        with open(res / ("chaos-rounds-%s.json" % LEVEL), "w") as f:
            json.dump({"ok": ok, "stopped": stopped, "rounds": ch.results, "leaks": ch.leak_table()}, f,
                      indent=1, default=str)
    failed = [r for r in ch.results if not r["ok"]]
    assert ok and stopped is None and not failed, "\n".join(
        (["stopped: " + stopped] if stopped else []) +
        ["%s: %s" % (r["round"], "; ".join(r["problems"][:10])) for r in failed] +
        ["", "logs: %s" % (tmp_path / "run")] + lines)
