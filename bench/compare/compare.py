#!/usr/bin/env python3
"""compare.py -- Tether against nginx + nchan and Socket.IO, same machine, same run.

For each workload and each system: a fresh server set (servers.py) pinned to
CPU 0, the one load generator (build/bench/peerbench) pinned to CPU 1, the
generator's JSON summary kept, the CPU that other processes of the machine
used meanwhile recorded. At the end: bench/results/<stamp>-compare.json
(everything) and <stamp>-compare.md (machine, table with Tether/peer ratios,
what each peer cannot do), and the table on stdout.

usage: compare.py [--quick] [--only fanout,sweep,rooms,idle,storm] [--systems tether,nchan,sio]
                  [--out DIR] [--label TEXT]
Run it through bench/compare/run.sh (installs the peers, builds, takes the
machine's benchmark lock).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import servers  # noqa: E402
import report  # noqa: E402

REPO = servers.REPO
PEERBENCH = REPO / "build" / "bench" / "peerbench"
GEN_CPUS = "1"
WORKLOADS = ("fanout", "sweep", "rooms", "idle", "storm", "kill")
SYSTEMS = ("tether", "nchan", "sio")


def n(v):
    return "{:,}".format(v)


def workload_args(name, quick):
    """(peerbench mode, arguments, short label, description) of a workload."""
    if name == "fanout":
        subs = 200 if quick else 1000
        return "fanout", ["--subs", subs, "--rooms", 1, "--rate", 100, "--warmup", 1 if quick else 3,
                          "--duration", 2 if quick else 15, "--drain", 10], \
            "1 room x %s subs, 100 msg/s" % n(subs), \
            ("1 room, %s subscribers, 1 publisher at 100 msg/s of 100 bytes; %d s window after %d s of warm-up"
             % (n(subs), 2 if quick else 15, 1 if quick else 3))
    if name == "sweep":
        subs = 200 if quick else 1000
        return "sweep", ["--subs", subs, "--rooms", 1, "--sweep-start", 200 if quick else 100,
                         "--sweep-max", 400 if quick else 20000, "--sweep-step", 1 if quick else 5,
                         "--warmup", 0.5 if quick else 2, "--drain", 10], \
            "1 room x %s subs, max rate" % n(subs), \
            ("1 room, %s subscribers; %d s windows at rising rates from %d msg/s, doubled while sustained, "
             "then bisected; sustained = at least 95 %% of the offered deliveries arrive within the window, "
             "the backlog drains within 10 s, nothing missing, p99 under 1 s, and the publisher kept the rate"
             % (n(subs), 1 if quick else 5, 200 if quick else 100))
    if name == "rooms":
        rooms = 500 if quick else 5000
        rate = 500 if quick else 2000
        return "rooms", ["--subs", 2 * rooms, "--rooms", rooms, "--rate", rate, "--warmup", 0.5 if quick else 3,
                         "--duration", 2 if quick else 15, "--drain", 10], \
            "%s rooms x 2 subs, %s msg/s" % (n(rooms), n(rate)), \
            ("%s rooms, 2 subscribers each (%s connections), %s msg/s in total round robin over the rooms "
             "(one message per room every %.1f s), 4 publisher connections" % (n(rooms), n(2 * rooms), n(rate),
                                                                             rooms / rate))
    if name == "idle":
        conns = 1000 if quick else 10000
        return "idle", ["--subs", conns, "--rooms", conns // 10, "--hold", 1 if quick else 10], \
            "%s idle connections" % n(conns), \
            ("%s subscribers (10 per room), no traffic, held %d s; memory of every server process (Redis "
             "included) before any connection and after" % (n(conns), 1 if quick else 10))
    if name == "storm":
        subs = 500 if quick else 5000
        rooms = subs // 10
        rate = 200 if quick else 1000
        return "storm", ["--subs", subs, "--rooms", rooms, "--rate", rate, "--warmup", 1 if quick else 5,
                         "--duration", 1 if quick else 3, "--jitter-ms", 1000, "--timeout", 120, "--drain", 15], \
            "%s subs dropped at once" % n(subs), \
            ("%s subscribers in %s rooms, %s msg/s keep flowing; every subscriber socket is reset at once "
             "(TCP RST, the server stays up); each comes back after uniform [0, 1 s] (then full-jitter "
             "backoff) and resumes from its last message" % (n(subs), n(rooms), n(rate)))
    if name == "kill":
        mode, a, _, _ = workload_args("storm", quick)
        subs = 500 if quick else 5000
        return mode, a + ["--drop", "server"], \
            "%s subs, server killed" % n(subs), \
            ("the same, but the server process that holds the connections is killed (SIGKILL) and restarted "
             "at once: Tether's gateway, nginx's worker (its master starts a new one), node; publishers "
             "reconnect and resend what was unanswered (Tether with the same id, nchan as a new POST)")
    raise ValueError(name)


# ---- CPU accounting (the machine is shared) ------------------------------------------------

def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def pid_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def own_cpu_s():
    """This process and its reaped children (the generator)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# ---- one run ----------------------------------------------------------------------------------

def run_one(system, workload, quick, log):
    mode, wargs, short, desc = workload_args(workload, quick)
    t0 = time.time()
    rec = {"system": system, "workload": workload, "label": short, "description": desc}
    try:
        sset = servers.SETS[system](workload)
    except Exception as e:  # a peer that cannot start is a result too
        rec["error"] = "server set did not start: %r" % (e,)
        return rec
    try:
        pids = sset.pids()
        rec["server_processes"] = [{"name": n, "pid": p} for n, p in pids]
        cmd = ["taskset", "-c", GEN_CPUS, str(PEERBENCH)] + sset.gen_args() + \
              ["--mode", mode, "--server-pid", ",".join("%s=%d" % (n, p) for n, p in pids)] + [str(a) for a in wargs]
        rec["command"] = " ".join(cmd)
        busy0, mine0 = machine_busy_s(), sum(pid_cpu_s(p) for _, p in pids) + own_cpu_s()
        w0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = []

        outage = {}
        killer = []

        def kill():
            try:
                outage["kill_s"] = round(time.time() - w0, 3)
                outage["process"] = sset.kill_front()
                outage["back_s"] = round(time.time() - w0, 3)
            except Exception as e:  # recorded; the run goes on and shows what happened
                outage["error"] = repr(e)

        def pump_err():
            for line in proc.stderr:
                events.append(line.rstrip("\n"))
                if '"drop_now"' in line:
                    killer.append(threading.Thread(target=kill, daemon=True))
                    killer[-1].start()
                log("    %s %s: %s" % (system, workload, line.rstrip()))
        out_lines = []

        def pump_out():
            for line in proc.stdout:
                out_lines.append(line)
        # Two readers and a wait, not communicate(): communicate() would also
        # read stderr and race pump_err for the drop_now line.
        readers = [threading.Thread(target=pump_err, daemon=True), threading.Thread(target=pump_out, daemon=True)]
        for t in readers:
            t.start()
        try:
            proc.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in readers + killer:
            t.join(30)
        out = "".join(out_lines)
        mine = sum(pid_cpu_s(p) for _, p in pids) + own_cpu_s() - mine0
        busy = machine_busy_s() - busy0
        wall = time.time() - w0
        summary = None
        for line in out.splitlines():
            if line.startswith("{"):
                summary = json.loads(line)
        rec["exit_code"] = proc.returncode
        rec["summary"] = summary
        rec["events"] = [e for e in events if '"gap"' in e or '"step_done"' in e][:40]
        if outage:
            rec["outage"] = outage
        if summary is None:
            rec["error"] = "peerbench printed no summary (exit %s); server logs:\n%s" % (proc.returncode, sset.logs())
        elif not summary.get("ok"):
            rec["error"] = summary.get("error", "run failed")
            rec["server_logs"] = sset.logs()
        rec["foreign_cpu_s"] = round(max(0.0, busy - mine), 2)
        rec["foreign_cpu_pct_of_machine"] = round(100.0 * max(0.0, busy - mine) / (wall * (os.cpu_count() or 1)), 1)
    finally:
        sset.stop()
    rec["wall_s"] = round(time.time() - t0, 1)
    return rec


# ---- the machine -----------------------------------------------------------------------------

def sh(cmd):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except Exception:
        return ""


def npm_version(pkg):
    try:
        return json.loads((HERE / "node_modules" / pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    dirty = sh("git -C %s status --porcelain -- lib gateway replayd sessiond mediad busd protos" % REPO)
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "nofile_hard": sh("ulimit -Hn"),
        "tether_commit": sh("git -C %s rev-parse --short HEAD" % REPO),
        "tether_binaries": "copied from build/bin at the start of the run" if servers.SNAPSHOT
        else "from %s" % os.environ.get("TETHER_BUILD"),
        "tether_daemon_sources_modified": bool(dirty),
        "nginx": sh("nginx -v 2>&1").replace("nginx version: nginx/", ""),
        "nchan": sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan"),
        "node": sh("node --version"),
        "socket.io": npm_version("socket.io"),
        "@socket.io/redis-streams-adapter": npm_version("@socket.io/redis-streams-adapter"),
        "redis_client_node": npm_version("redis"),
        "redis": sh("redis-server --version").split(" sha=")[0],
        "server_cpus": servers.SERVER_CPUS,
        "generator_cpus": GEN_CPUS,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run of a minute or two")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if os.cpu_count() < 2:
        servers.SERVER_CPUS = "0"
        globals()["GEN_CPUS"] = "0"
    if not PEERBENCH.exists():
        sys.exit("compare.py: %s is not built (make -C bench/compare)" % PEERBENCH)
    missing = servers.th.missing(servers.th.CORE)
    if missing:
        sys.exit("compare.py: Tether not built: %s (make -j2)" % ", ".join(missing))
    workloads = [w for w in args.only.split(",") if w]
    systems = [s for s in args.systems.split(",") if s]
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit("compare.py: unknown workload %s" % w)
    for s in systems:
        if s not in SYSTEMS:
            sys.exit("compare.py: unknown system %s" % s)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    m = machine()
    records = []
    started = time.time()
    for w in workloads:
        for s in systems:
            log("== %s / %s" % (w, s))
            rec = run_one(s, w, args.quick, log)
            if rec.get("error"):
                log("   error: %s" % rec["error"].splitlines()[0])
            log("   %s" % report.one_line(rec))
            records.append(rec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = ("-" + args.label if args.label else "") + ("-quick" if args.quick else "")
    base = out / ("%s%s-compare" % (stamp, tag))
    doc = {"stamp": stamp, "label": args.label, "quick": args.quick, "machine": m,
           "command": "bench/compare/run.sh " + " ".join(sys.argv[1:]),
           "total_wall_s": round(time.time() - started, 1), "runs": records}
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    md = report.markdown(doc)
    base.with_suffix(".md").write_text(md)
    print(md)
    print("results: %s.json, %s.md" % (base, base))


if __name__ == "__main__":
    main()
