#!/usr/bin/env python3
"""bench.py -- run Tether's load workloads against a real suite and record them.

Starts Redis and the daemons on free loopback ports with the integration
harness (tests/integration/tether_harness.py), pins the server side (Redis and
every daemon) to CPU 0 and the load generator (`tether bench`) to CPU 1, the
way the peer baselines (bench/compare/README.md) were measured, runs the workloads and writes each
result to bench/results/<stamp>-<workload>.json plus a Markdown summary.

Workloads (each on a fresh suite):
  publish    50 connections, closed loop (8 in flight each), 10 s (the C SDK as
             the client; servers on CPU 0, client on CPU 1)
  publish20k the issue's number: 20,000 publishes/s offered (open loop) by 50
             connections into 50 rooms for 10 s, nothing pinned: the servers and
             the generator (peerbench, bench/compare/gen/, which costs ~3 us per
             publish against the SDK's ~20) share the machine's two cores.
             Reports acks/s, publish-to-ack latency and server CPU per ack
  fanout     1,000 subscribers of one room, 100 msg/s, 100-byte messages, 15 s
  fanout50, fanout25   the same at 50 and 25 msg/s (where it is sustainable)
  idle       20,000 authenticated idle connections over two gateways (the fd
             hard limit is 20,000 per process on this machine, on both ends),
             two bench worker processes; gateway VmRSS before/after
  reconnect  1,000 subscribers; the gateway is killed with SIGKILL and
             restarted; time from "gateway back" to all resumed, histograms

usage: bench/bench.py [--only publish,publish20k,fanout25,fanout50,fanout,idle,reconnect] [--quick]
                      [--tether PATH] [--out DIR]
Daemon binaries come from $TETHER_BUILD/bin (default build/), like the tests.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import tether_harness as th  # noqa: E402

SERVER_CPU = {0}
CLIENT_CPU = {1}


def pin(pid, cpus):
    try:
        os.sched_setaffinity(pid, cpus)
        for t in os.listdir("/proc/%d/task" % pid):
            os.sched_setaffinity(int(t), cpus)
    except (OSError, ValueError):
        pass


def machine_busy_s():
    """CPU seconds all processes of the machine have used (every core)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def pid_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children_cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Run:
    """One suite plus helpers to run `tether bench` against it."""

    def __init__(self, args, name, gateways=1, env=None, pinned=True):
        self.args = args
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="tether-bench-%s-" % name))
        # All the load comes from one address: the gateway's per-address
        # limits (docs/operations.md, "Security") would refuse most of it.
        base = {"TETHER_LOG_LEVEL": "warn", "TETHER_PER_IP_CONNS": "10000000", "TETHER_PER_IP_RATE": "1000000"}
        base.update(env or {})
        self.suite = th.Suite(self.dir, env=base)
        self.suite.start()
        self.gateways = [self.suite.gateway]
        for _ in range(gateways - 1):
            self.gateways.append(self.suite.add_gateway())
        if pinned:
            self.pin_server()

    def pin_server(self):
        pin(self.suite.redis.proc.pid, SERVER_CPU)
        for d in self.suite.daemons.values():
            if d.alive():
                pin(d.pid, SERVER_CPU)

    def server_pids(self):
        pids = [g.pid for g in self.gateways]
        pids += [d.pid for n, d in self.suite.daemons.items() if d.kind != "gateway" and d.alive()]
        pids.append(self.suite.redis.proc.pid)
        return pids

    def urls(self):
        return ",".join(self.suite.ws_url(g.name) for g in self.gateways)

    def command(self, extra, server_pids=None):
        cmd = ["taskset", "-c", ",".join(str(c) for c in sorted(CLIENT_CPU)), str(self.args.tether), "bench",
               "--url", self.urls(), "--secret", self.suite.secret,
               "--server-pid", ",".join(str(p) for p in (server_pids or self.server_pids()))]
        return cmd + extra

    def bench(self, extra, server_pids=None, on_ready=None, timeout=600):
        """Runs tether bench; on_ready() is called (in a thread) when it prints
        the ready event. Returns (summary dict, command list, stderr text)."""
        cmd = self.command(extra, server_pids)
        ours = self.server_pids()
        busy0, ours0, kids0, t0 = machine_busy_s(), sum(pid_cpu_s(x) for x in ours), children_cpu_s(), time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err_lines, out_lines = [], []

        # Two readers (not communicate(), which would also consume stderr
        # and race the watcher for the ready line).
        def read_err():
            for line in p.stderr:
                err_lines.append(line)
                if on_ready and '"event":"ready"' in line:
                    threading.Thread(target=on_ready, daemon=True).start()

        def read_out():
            for line in p.stdout:
                out_lines.append(line)
        readers = [threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)]
        for t in readers:
            t.start()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for t in readers:
            t.join(5)
        out = "".join(out_lines)
        summary = None
        for line in out.splitlines():
            if line.startswith("{"):
                summary = json.loads(line)
        if summary is None:
            raise RuntimeError("tether bench printed no summary (exit %s):\n%s\n%s"
                               % (p.returncode, "".join(err_lines[-20:]), self.suite.log_tails(20)))
        summary["exit_code"] = p.returncode
        # Other processes on the machine (other people's tests) skew every
        # number here: say how much CPU they took during the run.
        ours_now = sum(pid_cpu_s(x) for x in self.server_pids())
        busy = machine_busy_s() - busy0
        mine = (ours_now - ours0) + (children_cpu_s() - kids0)
        wall = time.time() - t0
        summary["foreign_cpu_s"] = round(max(0.0, busy - mine), 2)
        summary["foreign_cpu_pct_of_machine"] = round(100.0 * max(0.0, busy - mine) / (wall * os.cpu_count()), 1)
        return summary, cmd, "".join(err_lines)

    def stop(self):
        self.suite.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- workloads -------------------------------------------------------------------------

def w_publish(args):
    r = Run(args, "publish")
    try:
        conns = 10 if args.quick else 50
        dur = 3 if args.quick else 10
        s, cmd, _ = r.bench(["--mode", "publish", "--conns", str(conns), "--window", "8", "--duration", str(dur),
                             "--warmup", "2", "--size", "100"])
        return s, cmd, {}
    finally:
        r.stop()


PEERBENCH = REPO / "build" / "bench" / "peerbench"


def w_publish20k(args):
    """Open loop at a fixed rate: every publish is timed from the moment it
    is written to its ack, so a server that falls behind shows as latency
    and as acks/s below the rate, never as a slower offer."""
    if not PEERBENCH.exists():
        raise RuntimeError("%s is not built (make -C bench/compare)" % PEERBENCH)
    r = Run(args, "publish20k", pinned=False)
    try:
        rate = 5000 if args.quick else 20000
        dur = 3 if args.quick else 10
        names = ["gateway"] + [n for n, d in r.suite.daemons.items() if d.kind != "gateway" and d.alive()]
        pids = [r.gateways[0].pid] + [d.pid for n, d in r.suite.daemons.items()
                                      if d.kind != "gateway" and d.alive()]
        names.append("redis")
        pids.append(r.suite.redis.proc.pid)
        port = int(r.suite.ws_url(r.gateways[0].name).rsplit(":", 1)[1].split("/")[0])
        cmd = [str(PEERBENCH), "--dialect", "tether", "--mode", "rooms", "--subs", "0", "--rooms", "50",
               "--pubs", "50", "--rate", str(rate), "--size", "100", "--warmup", "3", "--duration", str(dur),
               "--drain", "10", "--port", str(port), "--secret", r.suite.secret,
               "--server-pid", ",".join("%s=%d" % (n, p) for n, p in zip(names, pids))]
        busy0, t0 = machine_busy_s(), time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        busy, wall = machine_busy_s() - busy0, time.time() - t0
        full = None
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                full = json.loads(line)
        if full is None:
            raise RuntimeError("peerbench printed no summary (exit %s):\n%s\n%s"
                               % (p.returncode, p.stderr[-2000:], r.suite.log_tails(20)))
        w = full["window"]
        s = {"rate_target": rate, "conns": 50, "rooms": 50, "seconds": w["seconds"],
             "published_per_s": w["published_per_s"], "acks_per_s": w["answered_per_s"],
             "ack_latency_us": w["answer_latency_us"], "server_cpu_us_per_ack": w["server_cpu_us_per_answer"],
             "server_cpu_pct_of_core": w["server_cpu_pct_of_core"],
             "server_cpu_s_by_process": w["server_cpu_s_by_process"],
             "generator_cpu_pct_of_core": w["generator_cpu_pct_of_core"],
             "published": full["published"], "acked": full["publish_answered_ok"],
             "failed": full["publish_failed"], "unanswered_at_close": full["publish_unanswered_at_close"],
             "unanswered_at_end": full.get("publish_unanswered_at_end"),
             "machine_busy_pct": round(100.0 * busy / (wall * os.cpu_count()), 1),
             "exit_code": p.returncode, "ok": full["ok"]}
        return s, cmd, {"peerbench": full}
    finally:
        r.stop()


def w_fanout(args, rate=100):
    r = Run(args, "fanout")
    try:
        subs = 100 if args.quick else 1000
        dur = 5 if args.quick else 15
        s, cmd, _ = r.bench(["--mode", "fanout", "--conns", str(subs), "--rate", str(rate), "--duration", str(dur),
                             "--warmup", "3", "--size", "100", "--room", "fan%d" % rate])
        return s, cmd, {}
    finally:
        r.stop()


def w_idle(args):
    conns = 2000 if args.quick else 20000
    gws = 1 if args.quick else 2
    r = Run(args, "idle", gateways=gws)
    try:
        gpids = [g.pid for g in r.gateways]
        before = {p: rss_kb(p) for p in gpids}
        hold = 5 if args.quick else 15
        s, cmd, _ = r.bench(["--mode", "idle", "--conns", str(conns), "--procs", str(gws), "--duration", str(hold),
                             "--warmup", "2", "--ramp", "2000", "--timeout", "180"], server_pids=gpids)
        extra = {"rss_kb_before_runner": before,
                 "note": "%d connections over %d gateway(s) and %d client process(es): the fd hard limit is "
                         "20,000 per process on this machine" % (conns, gws, gws)}
        return s, cmd, extra
    finally:
        r.stop()


def w_reconnect(args):
    r = Run(args, "reconnect")
    try:
        subs = 200 if args.quick else 1000
        events = {}

        def outage():
            try:
                time.sleep(1.0)
                events["kill_mono_ms"] = time.monotonic() * 1000
                r.suite.kill9("gateway")
                time.sleep(args.down_s)
                events["start_mono_ms"] = time.monotonic() * 1000
                d = r.suite.restart("gateway", wait_ready=False)
                events["healthy_mono_ms"] = time.monotonic() * 1000
                pin(d.pid, SERVER_CPU)
            except Exception as e:  # recorded in the result, and shown
                events["error"] = repr(e)
                events["logs"] = r.suite.log_tails(30)
                print("outage failed: %r\n%s" % (e, events["logs"]), file=sys.stderr)
        s, cmd, _ = r.bench(["--mode", "reconnect", "--conns", str(subs), "--room", "bench", "--timeout", "120"],
                            on_ready=outage)
        events["down_s_requested"] = args.down_s
        return s, cmd, {"outage": events}
    finally:
        r.stop()


WORKLOADS = {"publish": w_publish, "publish20k": w_publish20k, "fanout": w_fanout, "fanout50": lambda a: w_fanout(a, 50),
             "fanout25": lambda a: w_fanout(a, 25), "idle": w_idle, "reconnect": w_reconnect}


# ---- reporting ---------------------------------------------------------------------------

def machine():
    def sh(c):
        try:
            return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=5).stdout.strip()
        except Exception:
            return ""
    return {"commit": sh("git -C %s rev-parse --short HEAD" % REPO), "kernel": platform.release(),
            "cpus": os.cpu_count(), "nofile": sh("ulimit -Hn"), "redis": sh("redis-server --version"),
            "build": str(th.BUILD)}


def md_line(name, s):
    if name == "publish":
        lat = s["ack_latency_us"]
        return ("| publish | %d conns, window %d | %.0f acks/s | ack p50 %.2f ms, p99 %.2f ms, max %.1f ms | "
                "server %.1f us CPU/ack | client CPU %.0f%% |"
                % (s["conns"], s["window"], s["acks_per_s"], lat["p50"] / 1e3, lat["p99"] / 1e3, lat["max"] / 1e3,
                   s["server_cpu_us_per_ack"], s["client_cpu_pct"]))
    if name == "publish20k":
        lat = s["ack_latency_us"]
        return ("| publish20k | %d conns, %d rooms, %d/s offered (open loop), unpinned | %.0f acks/s, %d of %d acked |"
                " ack p50 %.2f ms, p99 %.2f ms, max %.1f ms | server %.1f us CPU/ack (%.0f%% of a core) |"
                " generator %.0f%% of a core; machine %.0f%% busy |"
                % (s["conns"], s["rooms"], s["rate_target"], s["acks_per_s"], s["acked"], s["published"],
                   lat["p50"] / 1e3, lat["p99"] / 1e3, lat["max"] / 1e3, s["server_cpu_us_per_ack"],
                   s["server_cpu_pct_of_core"], s["generator_cpu_pct_of_core"], s["machine_busy_pct"]))
    if name.startswith("fanout"):
        lat = s["latency_us"]
        return ("| fanout | %d subs x %d msg/s | %.0f deliveries/s, missing %d | p50 %.2f ms, p99 %.2f ms, max %.1f ms"
                " | server %.2f us CPU/delivery | client CPU %.1f s |"
                % (s["subscribers"], s["rate_target"], s["delivered_per_s"], s["missing"], lat["p50"] / 1e3,
                   lat["p99"] / 1e3, lat["max"] / 1e3, s["server_cpu_us_per_delivery"], s["client_cpu_s"]))
    if name == "idle":
        per = ", ".join("%.1f KiB" % (x.get("rss_per_conn_bytes", 0) / 1024) for x in s["servers"])
        return ("| idle | %d conns (%d ready, %d failed) | opened in %.1f s | gateway RSS per conn: %s | | |"
                % (s["conns"], s["ready"], s["failed"], s["ready_after_s"], per))
    if name == "reconnect":
        h = s["resume_after_back_us"]
        return ("| reconnect | %d subs, gateway SIGKILL + restart | all resumed %.0f ms after gateway back "
                "(%d/%d) | resume after back p50 %.0f ms, p90 %.0f ms, p99 %.0f ms | peak %d attempts / 100 ms,"
                " %d resumes / 100 ms | max %d attempts per client |"
                % (s["conns"], s["back_to_all_resumed_ms"], s["resumed"], s["ready"], h["p50"] / 1e3,
                   h["p90"] / 1e3, h["p99"] / 1e3, s["peak_attempts_per_100ms"], s["peak_resumes_per_100ms"],
                   s["max_attempts_one_client"]))
    return "| %s | %s |" % (name, json.dumps(s))


def histogram_text(pairs, width=50):
    if not pairs:
        return "(empty)"
    top = max(n for _, n in pairs) or 1
    lines = []
    for ms, n in pairs:
        lines.append("%6d ms %6d %s" % (ms, n, "#" * max(1 if n else 0, int(n * width / top))))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="publish,publish20k,fanout25,fanout50,fanout,idle,reconnect")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--tether", default=str(REPO / "build" / "bin" / "tether"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--down-s", type=float, default=1.0, help="reconnect: seconds the gateway stays dead")
    ap.add_argument("--label", default="", help="what was measured (recorded, and part of the file names)")
    args = ap.parse_args()
    if os.cpu_count() < 2:
        SERVER_CPU.clear(); SERVER_CPU.add(0)
        CLIENT_CPU.clear(); CLIENT_CPU.add(0)
    missing = th.missing(th.CORE) + ([] if Path(args.tether).exists() else ["tether"])
    if missing:
        sys.exit("bench.py: not built: %s (run make -j2)" % ", ".join(missing))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = []
    for name in args.only.split(","):
        print("== %s" % name, flush=True)
        t0 = time.time()
        s, cmd, extra = WORKLOADS[name](args)
        rec = {"workload": name, "stamp": stamp, "label": args.label, "quick": args.quick, "machine": machine(),
               "command": " ".join(cmd), "summary": s, "wall_s": round(time.time() - t0, 1)}
        rec.update(extra)
        tag = "-" + args.label if args.label else ""
        path = out / ("%s%s-%s%s.json" % (stamp, tag, name, "-quick" if args.quick else ""))
        path.write_text(json.dumps(rec, indent=2) + "\n")
        line = md_line(name, s)
        if s.get("foreign_cpu_pct_of_machine", 0) > 5:
            line += " other processes used %.0f%% of the machine |" % s["foreign_cpu_pct_of_machine"]
        lines.append(line)
        print(line, flush=True)
        if name == "reconnect":
            print("resumed, by time since the gateway was back (250 ms buckets):")
            print(histogram_text(s["resumed_hist_250ms_since_back"]))
            print("reconnection attempts, by time since the first drop (250 ms buckets):")
            print(histogram_text(s["attempts_hist_250ms_since_down"]))
        print("   -> %s" % path, flush=True)
    tag = "-" + args.label if args.label else ""
    md = out / ("%s%s-summary%s.md" % (stamp, tag, "-quick" if args.quick else ""))
    md.write_text("# tether bench %s %s (commit %s, daemons from %s)\n\n| workload | shape | result | latency | server |"
                  " client |\n|---|---|---|---|---|---|\n%s\n"
                  % (stamp, args.label, machine()["commit"], th.BUILD, "\n".join(lines)))
    print("summary: %s" % md)


if __name__ == "__main__":
    main()
