#!/usr/bin/env python3
"""redis_tls.py -- what TLS to Redis costs per publish.

Runs the same closed-loop publish load (the integration test client: 8
connections, 64 publishes in flight each, 100-byte data) through a suite on
a plain Redis and on a rediss:// Redis (certificates made with openssl), and
reports, per acknowledged publish, the CPU time of redis-server and of
replayd (utime + stime from /proc/<pid>/stat over the measurement window),
and the acks/s. The client runs in this process; its CPU is not counted.

usage: bench/redis_tls.py [--n PUBLISHES_PER_CONNECTION] [--conns N] [--only plain|tls]
Daemon binaries come from $TETHER_BUILD/bin (default build/), like the tests.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

import tether_client as tc  # noqa: E402
import tether_harness as th  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_load(suite, conns, n):
    async def t():
        pubs = [await tc.connect(suite.ws_url(), token=suite.token("u%d" % i), name="p%d" % i)
                for i in range(conns)]
        rooms = [tc.uid("bench") for _ in range(conns)]
        await asyncio.gather(*(p.publish_many(r, 50, prefix="warm") for p, r in zip(pubs, rooms)))
        pids = {"redis-server": suite.redis.proc.pid, "replayd": suite.daemons["replayd"].pid}
        c0 = {k: cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        res = await asyncio.gather(*(p.publish_many(r, n, prefix="m", data=lambda i: "x" * 100, window=64, timeout=300)
                                     for p, r in zip(pubs, rooms)))
        dt = time.monotonic() - t0
        c1 = {k: cpu_s(p) for k, p in pids.items()}
        acks = sum(len(a) for a in res)
        return {
            "acks": acks,
            "acks_per_s": round(acks / dt),
            "cpu_us_per_ack": {k: round((c1[k] - c0[k]) * 1e6 / acks, 1) for k in pids},
        }
    return tc.run(t(), timeout=600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--only", choices=("plain", "tls"), help="one of the two runs")
    a = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="tether-redis-tls-") as d:
        d = Path(d)
        certs = th.make_tls_certs(d / "tls")
        for name in ((a.only,) if a.only else ("plain", "tls")):
            r = th.Redis(d / name / "redis", tls=certs if name == "tls" else None).start()
            env = {"TETHER_REDIS_CA": certs / "ca.crt"} if name == "tls" else {}
            s = th.Suite(d / name, redis=r, env=env, components=["busd", "replayd", "gateway"])
            try:
                s.start()
                out[name] = run_load(s, a.conns, a.n)
            finally:
                s.stop()
                r.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
