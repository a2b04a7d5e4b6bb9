#!/usr/bin/env python3
"""media_bench.py -- mediad's forwarding cost: SRTP packets forwarded per
second per core, with one talker and N listeners (SDES clients), and the CPU
each listener costs; compared with libsrtp2's own protect/unprotect ceiling
measured in the same run on the same core.

Setup: a real suite (Redis, busd, replayd, sessiond, mediad, gateway) from the
integration harness. mediad is pinned alone to CPU 0; everything else,
including the load (one `mediad probe` process holding the talker and every
listener, full ICE + SDES-SRTP), to CPU 1. Each listener joins the room's
audio over its own authenticated WebSocket; the talker takes the floor and
sends RTP (100-byte packets: 12-byte header + 88-byte payload, about a 20 ms
Opus frame) at a fixed rate for a fixed time.

For every run:
  offered     talker packets/s x listeners (what mediad must forward)
  forwarded   mediad's tether_mediad_rtp_packets_total{dir="out"} delta over the
              sending time
  received    what the listeners' probe counted (loss = forwarded - received)
  cpu         mediad's utime+stime delta over the run (/proc/<pid>/stat)
  per_core    forwarded packets per CPU-second of mediad
  us_per_pkt  mediad CPU microseconds per forwarded packet
  listener_cpu_pct   mediad CPU % per listener of a 50 packets/s talker
                     (us_per_pkt x 50 / 10^4)
The ceiling: `mediad probe`'s srtp_bench on CPU 0 (protect and unprotect of
the same 100-byte packets in a tight loop, the same libsrtp2 build), counted
per CPU-second of its thread like mediad's rate, so that whatever else runs
on the machine does not skew the comparison.

usage: bench/media_bench.py [--quick] [--suite AES_CM_128_HMAC_SHA1_80]
                            [--runs 1@1000,10@1000,50@1000,100@1000,200@50] [--seconds 5]
(a run N@R: N listeners, the talker sending R packets per second)
Results: bench/media_results/<stamp>.json and a table on stdout.
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import tether_client as tc  # noqa: E402
import tether_harness as th  # noqa: E402
from test_media_helpers import Probe, join_audio  # noqa: E402

MEDIAD_CPU = {0}
OTHER_CPU = {1}
SIZE = 100


def pin(pid, cpus):
    try:
        os.sched_setaffinity(pid, cpus)
        for t in os.listdir("/proc/%d/task" % pid):
            os.sched_setaffinity(int(t), cpus)
    except (OSError, ValueError):
        pass


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def metric(d, name):
    return d.metrics().get(name, 0)


async def run_one(suite, probe, room, n, rate, seconds, srtp_suite):
    """One talker, n listeners, rate packets/s for seconds."""
    gw = suite.ws_url()
    talker = await tc.connect(gw, token=suite.token("talker"), name="talker")
    await talker.subscribe(room)
    await join_audio(talker, room, probe, "t", keying="sdes", suite=srtp_suite)
    listeners = []
    for i in range(n):
        ws = await tc.connect(gw, token=suite.token("l%d" % i), name="l%d" % i)
        await ws.subscribe(room)
        # Listeners decrypt one packet in 25 (checked payloads) and count the
        # rest: the load generator must not be the bottleneck.
        await join_audio(ws, room, probe, "l%d" % i, keying="sdes", suite=srtp_suite, decrypt_every=25)
        listeners.append(ws)
    await talker.send({"type": "ptt", "room": room, "action": "request"})
    await talker.expect("ptt", room=room, state="granted")
    md = suite["mediad"]
    pid = md.proc.pid
    # Warm-up: 0.5 s of audio, then measure.
    await probe.send("t", max(1, rate // 2), pps=rate, size=SIZE)
    await asyncio.sleep(0.3)   # let the warm-up drain through mediad
    for i in range(n):
        await probe.reset("l%d" % i)
    out0 = metric(md, 'tether_mediad_rtp_packets_total{dir="out"}')
    in0 = metric(md, 'tether_mediad_rtp_packets_total{dir="in"}')
    c0, t0 = cpu_seconds(pid), time.monotonic()
    count = int(rate * seconds)
    await probe.send("t", count, pps=rate, size=SIZE, timeout=seconds * 4 + 30)
    await asyncio.sleep(0.3)   # the last packets through mediad
    c1, t1 = cpu_seconds(pid), time.monotonic()
    out1 = metric(md, 'tether_mediad_rtp_packets_total{dir="out"}')
    in1 = metric(md, 'tether_mediad_rtp_packets_total{dir="in"}')
    received = 0
    for i in range(n):
        received += (await probe.stats("l%d" % i))["rx"]
    wall = t1 - t0
    cpu = c1 - c0
    forwarded = out1 - out0
    r = {
        "listeners": n, "talker_pps": rate, "seconds": round(wall, 2), "sent": count,
        "mediad_in": int(in1 - in0), "forwarded": int(forwarded), "received": int(received),
        "offered_pps": round(rate * n), "forwarded_pps": round(forwarded / seconds),
        "mediad_cpu_s": round(cpu, 3), "mediad_cpu_pct": round(100 * cpu / wall, 1),
        "per_core_pps": round(forwarded / cpu) if cpu > 0 else None,
        "us_per_pkt": round(cpu * 1e6 / forwarded, 2) if forwarded else None,
    }
    if r["us_per_pkt"]:
        r["listener_cpu_pct_at_50pps"] = round(r["us_per_pkt"] * 50 / 1e4, 4)
    r["loss_pct"] = round(100.0 * (forwarded - received) / forwarded, 2) if forwarded else None
    # Leave the room (the next run starts clean).
    await talker.send({"type": "ptt", "room": room, "action": "release"})
    for ws in [talker] + listeners:
        await ws.send({"type": "media", "room": room, "action": "leave"})
    for pid_ in ["t"] + ["l%d" % i for i in range(n)]:
        await probe.close_peer(pid_)
    for ws in [talker] + listeners:
        ws.abort()
    return r


async def ceiling(probe_env, srtp_suite, seconds):
    """libsrtp2's protect/unprotect rate on mediad's core (mediad idle)."""
    p = await Probe(env=probe_env).start()
    try:
        pin(p.proc.pid, MEDIAD_CPU)
        return await p.request("srtp_bench", timeout=seconds * 4 + 20, cmd="srtp_bench", seconds=seconds,
                               size=SIZE, suite=srtp_suite)
    finally:
        await p.stop()


async def main(args):
    workdir = Path(tempfile.mkdtemp(prefix="tether-media-bench-"))
    suite = th.Suite(workdir, env={"TETHER_LOG_LEVEL": "warn", "TETHER_MEDIA_PORTS": "10000-14999"})
    suite.start()
    results = {"suite": args.suite, "size": SIZE, "runs": []}
    try:
        for d in suite.daemons.values():
            pin(d.proc.pid, MEDIAD_CPU if d.kind == "mediad" else OTHER_CPU)
        pin(suite.redis.proc.pid, OTHER_CPU)
        pin(os.getpid(), OTHER_CPU)
        probe = await Probe().start()
        pin(probe.proc.pid, OTHER_CPU)
        try:
            for n, rate in args.runs:
                room = tc.uid("bench")
                r = await run_one(suite, probe, room, n, rate, args.seconds, args.suite)
                results["runs"].append(r)
                print("listeners %4d x %5d pps  offered %7d pps  forwarded %7d pps  mediad %5.1f%% cpu  "
                      "%8s pkts/core-s  %6s us/pkt  listener@50pps %s%% cpu  loss %s%%"
                      % (n, rate, r["offered_pps"], r["forwarded_pps"], r["mediad_cpu_pct"], r["per_core_pps"],
                         r["us_per_pkt"], r.get("listener_cpu_pct_at_50pps"), r["loss_pct"]), flush=True)
        finally:
            await probe.stop()
        results["ceiling"] = await ceiling({}, args.suite, 2.0 if args.quick else 3.0)
    finally:
        suite.stop()
    c = results["ceiling"]
    print("libsrtp2 ceiling on the same core (%s, %d bytes): protect %d pps, unprotect %d pps"
          % (c["suite"], c["size"], c["protect_pps"], c["unprotect_pps"]))
    best = max((r for r in results["runs"] if r["per_core_pps"]), key=lambda r: r["per_core_pps"], default=None)
    if best:
        share = 100.0 * best["per_core_pps"] / c["protect_pps"]
        print("best forwarding rate: %d packets per core-second = %.0f%% of the protect-only ceiling "
              "(each forwarded packet is a protect + a UDP send; the talker's unprotect is shared by all)"
              % (best["per_core_pps"], share))
        results["forwarding_vs_protect_pct"] = round(share, 1)
    results["machine"] = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    out = REPO / "bench" / "media_results"
    out.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / ("%s-%s.json" % (stamp, args.suite))
    path.write_text(json.dumps(results, indent=2) + "\n")
    print("results: %s" % path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="runs 1@1000,10@1000, 2 s each")
    ap.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80")
    ap.add_argument("--runs", default="1@1000,10@1000,50@1000,100@1000,200@50",
                    help="listeners@talker-packets-per-second, comma separated")
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    a.runs = [tuple(int(v) for v in x.split("@")) for x in ("1@1000,10@1000" if a.quick else a.runs).split(",")]
    if a.quick:
        a.seconds = 2.0
    asyncio.run(main(a))
