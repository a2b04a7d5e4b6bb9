"""report.py -- the comparison table of bench/compare (Markdown), from the
records compare.py collects: one row per workload metric, one column per
system, then Tether/peer ratios, then what each peer cannot do."""

NAMES = {"tether": "Tether", "nchan": "nginx+nchan", "sio": "Socket.IO"}
PEERS = ("nchan", "sio")
FOREIGN_WARN = 5.0


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d or d[p] is None:
            return None
        d = d[p]
    return d


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return "{:,}".format(v) + unit
    if abs(v) >= 1000:
        s = "{:,.0f}".format(v)
    elif abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.2f" % v
    return s + unit


# Each metric: (workload, label, function(summary) -> number or str or None, unit, better)
# better: "high", "low" or None (no ratio).
def _win(s, *p):
    return _get(s, "window", *p)


def _ms(v):
    return None if v is None else v / 1000.0


def _lost(s):
    if s is None:
        return None
    return "{:,} / {:,}".format(s.get("missing", 0), s.get("duplicates", 0))


def _resume_confirmed(s):
    st = _get(s, "storm")
    if st is None:
        return None
    if st.get("recovery_unreported"):
        return "not reported: no recovery flag (%s resumed)" % "{:,}".format(st["recovery_unreported"])
    extra = []
    if st.get("recovery_refused"):
        extra.append("{:,} refused".format(st["recovery_refused"]))
    if st.get("not_resumed"):
        extra.append("{:,} never back".format(st["not_resumed"]))
    return "{:,} of {:,} whole".format(st.get("recovered_confirmed", 0), st.get("subs", 0)) + \
        (" (%s)" % ", ".join(extra) if extra else "")


def _all_resumed(s):
    st = _get(s, "storm")
    if st is None:
        return None
    if st.get("all_resumed_s") is None:
        return "not all: {:,} of {:,} resumed within {:.0f} s".format(
            st.get("resumed", 0), st.get("subs", 0), _get(s, "config", "timeout_s") or 120)
    return st["all_resumed_s"]


def _all_caught(s):
    st = _get(s, "storm")
    if st is None:
        return None
    if st.get("all_caught_up_s") is None:
        return "not all: {:,} of {:,}".format(st.get("caught_up", 0), st.get("subs", 0))
    return st["all_caught_up_s"]


def _max_rate(s):
    return _get(s, "max_sustained", "rate_target")


def _first_fail(s):
    for step in s.get("steps", []) if s else []:
        if not step.get("sustained"):
            return "%.0f msg/s: %s (server CPU %.0f %% of its core, generator %.0f %% of its core)" % (
                step.get("rate_target", 0), step.get("why_not", "?"), step.get("server_cpu_pct_of_core", 0),
                step.get("generator_cpu_pct_of_core", 0))
    return None


METRICS = [
    ("fanout", "delivered msgs/s", lambda s: _win(s, "delivered_per_s"), "", "high"),
    ("fanout", "latency p50 (ms)", lambda s: _ms(_win(s, "latency_us", "p50")), "", "low"),
    ("fanout", "latency p99 (ms)", lambda s: _ms(_win(s, "latency_us", "p99")), "", "low"),
    ("fanout", "server CPU per delivery (us)", lambda s: _win(s, "server_cpu_us_per_delivery"), "", "low"),
    ("fanout", "missing / duplicated", _lost, "", None),
    ("sweep", "max sustained rate (msg/s into the room)", _max_rate, "", "high"),
    ("sweep", "delivered msgs/s at that rate", lambda s: _get(s, "max_sustained", "delivered_per_s"), "", "high"),
    ("sweep", "latency p50 / p99 at that rate (ms)",
     lambda s: None if not _get(s, "max_sustained") else "%s / %s" % (
         _fmt(_ms(_get(s, "max_sustained", "latency_us", "p50"))),
         _fmt(_ms(_get(s, "max_sustained", "latency_us", "p99")))), "", None),
    ("sweep", "server CPU per delivery at that rate (us)",
     lambda s: _get(s, "max_sustained", "server_cpu_us_per_delivery"), "", "low"),
    ("sweep", "first rate not sustained", _first_fail, "", None),
    ("rooms", "delivered msgs/s", lambda s: _win(s, "delivered_per_s"), "", "high"),
    ("rooms", "latency p50 (ms)", lambda s: _ms(_win(s, "latency_us", "p50")), "", "low"),
    ("rooms", "latency p99 (ms)", lambda s: _ms(_win(s, "latency_us", "p99")), "", "low"),
    ("rooms", "server CPU per delivery, publish path included (us)",
     lambda s: _win(s, "server_cpu_us_per_delivery"), "", "low"),
    ("rooms", "missing / duplicated", _lost, "", None),
    ("idle", "memory per connection, all server processes (KiB RSS)",
     lambda s: None if _get(s, "memory", "rss_per_conn_bytes") is None else s["memory"]["rss_per_conn_bytes"] / 1024,
     "", "low"),
    ("idle", "same, proportional set size (KiB PSS)",
     lambda s: None if _get(s, "memory", "pss_per_conn_bytes") is None else s["memory"]["pss_per_conn_bytes"] / 1024,
     "", "low"),
    ("storm", "time to all resumed (s)", _all_resumed, "", "low"),
    ("storm", "time to all caught up (s)", _all_caught, "", "low"),
    ("storm", "resume handshake p50 / p99 (ms)",
     lambda s: None if not _get(s, "storm") else "%s / %s" % (
         _fmt(_ms(_get(s, "storm", "resume_handshake_us", "p50"))),
         _fmt(_ms(_get(s, "storm", "resume_handshake_us", "p99")))), "", None),
    ("storm", "messages lost / duplicated", _lost, "", None),
    ("storm", "resume confirmed whole by the server", _resume_confirmed, "", None),
    ("kill", "time to all resumed (s)", _all_resumed, "", "low"),
    ("kill", "time to all caught up (s)", _all_caught, "", "low"),
    ("kill", "messages lost / duplicated", _lost, "", None),
    ("kill", "publishes unanswered when the server died", lambda s: None if s is None else (
        s.get("publish_unanswered_at_close") if s.get("config", {}).get("dialect") != "sio"
        else "unknown (no acks)"), "", None),
    ("kill", "resume confirmed whole by the server", _resume_confirmed, "", None),
]

TITLES = {
    "fanout": "fan-out",
    "sweep": "fan-out, max rate",
    "rooms": "many rooms",
    "idle": "idle connections",
    "storm": "reconnect storm",
    "kill": "server killed",
}


def _index(doc):
    idx = {}
    for r in doc["runs"]:
        idx[(r["workload"], r["system"])] = r
    return idx


def _cell(rec, fn, unit):
    if rec is None:
        return None, "not run"
    if rec.get("error") and not rec.get("summary"):
        return None, "failed: %s" % rec["error"].splitlines()[0][:80]
    v = fn(rec.get("summary"))
    text = _fmt(v, unit)
    if rec.get("error"):
        text += " (incomplete: %s)" % rec["error"].splitlines()[0][:60]
    if (rec.get("foreign_cpu_pct_of_machine") or 0) > FOREIGN_WARN:
        text += " \u2020"
    return v, text


def _ratio(t, p, better):
    if better is None or not isinstance(t, (int, float)) or not isinstance(p, (int, float)):
        return ""
    if p == 0:
        return "="  if t == 0 else ""
    return "%.2fx" % (t / p)


def table(doc):
    idx = _index(doc)
    systems = [s for s in ("tether",) + PEERS if any(k[1] == s for k in idx)]
    peers = [p for p in PEERS if p in systems]
    head = ["workload", "metric"] + [NAMES[s] for s in systems]
    if "tether" in systems:
        head += ["Tether/%s" % NAMES[p] for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set()
    for wl, label, fn, unit, better in METRICS:
        if not any((wl, s) in idx for s in systems):
            continue
        first = wl not in seen
        seen.add(wl)
        desc = ""
        if first:
            any_rec = next(idx[(wl, s)] for s in systems if (wl, s) in idx)
            desc = "**%s**, %s" % (TITLES[wl], any_rec.get("label", ""))
        vals, cells = {}, []
        for s in systems:
            v, text = _cell(idx.get((wl, s)), fn, unit)
            vals[s] = v
            cells.append(text)
        row = [desc, label + (" (lower is better)" if better == "low" else "")] + cells
        if "tether" in systems:
            row += [_ratio(vals.get("tether"), vals.get(p), better) for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine_line(m):
    return ("%s, %d cores, %.0f GiB, %s, kernel %s; servers pinned to CPU %s, load generator to CPU %s; "
            "Tether %s%s; nginx %s + nchan %s (Debian); Socket.IO %s + redis-streams-adapter %s, node %s; %s"
            % (m.get("cpu_model"), m.get("cpus") or 0, m.get("memory_gib") or 0, m.get("os"), m.get("kernel"),
               m.get("server_cpus"), m.get("generator_cpus"), m.get("tether_commit"),
               " (daemon sources modified)" if m.get("tether_daemon_sources_modified") else "", m.get("nginx"),
               m.get("nchan"), m.get("socket.io"), m.get("@socket.io/redis-streams-adapter"), m.get("node"),
               m.get("redis")))


def notes(doc):
    """Facts the table cannot hold, taken from the records."""
    idx = _index(doc)
    out = []
    st = idx.get(("storm", "sio"))
    s = st and st.get("summary")
    if s and _get(s, "storm"):
        miss = s.get("missing", 0)
        conf = _get(s, "storm", "recovered_confirmed") or 0
        if miss and conf and not _get(s, "storm", "not_resumed"):
            gaps = [e for e in st.get("events", []) if '"gap"' in e][:3]
            out.append("- Socket.IO confirmed %d recoveries (same pid back) and still lost %d messages in the storm: "
                       "the Redis streams adapter reads the stream (XRANGE offset..+) before the recovered socket "
                       "rejoins its rooms, so a broadcast that lands in between reaches neither. Holes seen: %s"
                       % (conf, miss, "; ".join(gaps) if gaps else "see the JSON"))
    st = idx.get(("kill", "sio"))
    s = st and st.get("summary")
    if s and _get(s, "storm") and _get(s, "storm", "recovery_refused"):
        out.append("- Socket.IO after its process was killed: {:,} of {:,} recoveries refused, {:,} messages lost. "
                   "The adapter saves a session in Redis only when the server sees the client go (persistSession "
                   "in Socket#_onclose); a killed process saves nothing, so connection state recovery cannot "
                   "survive a server crash.".format(_get(s, "storm", "recovery_refused"),
                                                    _get(s, "storm", "subs") or 0, s.get("missing", 0)))
    st = idx.get(("kill", "nchan"))
    s = st and st.get("summary")
    if s and s.get("duplicates"):
        out.append("- nchan after its worker was killed: the publishers sent again the {:,} POSTs that had no "
                   "answer; some had been stored before the kill, so subscribers got {:,} duplicate deliveries "
                   "(nchan has no idempotency key; Tether's publishers resent theirs with the same id and the "
                   "gateway dropped the copies).".format(s.get("publish_resent", 0), s.get("duplicates", 0)))
    st = idx.get(("storm", "sio"))
    s = st and st.get("summary")
    if s and _get(s, "storm") and _get(s, "storm", "not_resumed"):
        out.append("- Socket.IO in the storm: {:,} of {:,} clients resumed within {:.0f} s; node used {:.0f} s of CPU "
                   "in the window. Each recovery re-reads the Redis stream from the client's offset to its end "
                   "(XRANGE offset +, no COUNT), per client, while the publisher keeps adding to it.".format(
                       _get(s, "storm", "resumed") or 0, _get(s, "storm", "subs") or 0,
                       _get(s, "config", "timeout_s") or 120,
                       sum(v for k, v in (_get(s, "window", "server_cpu_s_by_process") or {}).items()
                           if k == "node")))
    st = idx.get(("storm", "nchan"))
    s = st and st.get("summary")
    if s and _get(s, "storm"):
        out.append("- nchan resumes with ?last_event_id=<id> and says nothing about whether it could: no "
                   "recovered flag; when the id has expired it silently starts from the oldest buffered message. "
                   "Here the buffer (100 per channel, 10 min) held everything: %d lost, %d duplicated."
                   % (s.get("missing", 0), s.get("duplicates", 0)))
    for (wl, sysname), r in sorted(idx.items()):
        if (r.get("foreign_cpu_pct_of_machine") or 0) > FOREIGN_WARN:
            out.append("- \u2020 %s / %s: other processes used %.0f %% of the machine during the run; noisy."
                       % (wl, NAMES[sysname], r["foreign_cpu_pct_of_machine"]))
        if r.get("error"):
            out.append("- %s / %s: %s" % (wl, NAMES[sysname], r["error"].splitlines()[0]))
    return "\n".join(out)


def details(doc):
    lines = ["| workload | system | wall s | foreign CPU % of machine | server CPU in window | generator CPU % of its core "
             "| connect s | prime s | server closes | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        s = r.get("summary") or {}
        w = s.get("window") or s.get("max_sustained") or {}
        by = w.get("server_cpu_s_by_process") or {}
        cpu = ", ".join("%s %.2f s" % (k, v) for k, v in by.items() if v) or "-"
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["workload"], NAMES[r["system"]], r.get("wall_s"), r.get("foreign_cpu_pct_of_machine"), cpu,
            _fmt(w.get("generator_cpu_pct_of_core")), _fmt(s.get("connect_s")), _fmt(s.get("prime_s")),
            s.get("server_closes", "-"), s.get("server_errors", "-")))
    return "\n".join(lines)


def markdown(doc):
    m = doc["machine"]
    parts = ["# Tether vs nginx+nchan vs Socket.IO, %s%s" % (doc["stamp"], " (quick)" if doc.get("quick") else ""),
             "",
             "Machine: " + machine_line(m),
             "",
             "Command: `%s` (total %.0f s)" % (doc.get("command"), doc.get("total_wall_s", 0)),
             "",
             table(doc),
             "",
             "Ratios are Tether divided by the peer (for latency, CPU, memory and times lower is better; for "
             "rates higher is better). \u2020: other processes used more than %.0f %% of the machine during "
             "that run." % FOREIGN_WARN,
             ""]
    n = notes(doc)
    if n:
        parts += ["## Notes from this run", "", n, ""]
    parts += ["## Workloads", ""]
    seen = set()
    for r in doc["runs"]:
        if r["workload"] not in seen:
            seen.add(r["workload"])
            parts.append("- **%s**: %s." % (TITLES[r["workload"]], r.get("description", "")))
    parts += ["", "## Runs", "", details(doc), ""]
    return "\n".join(parts)


def one_line(rec):
    s = rec.get("summary") or {}
    if rec["workload"] == "idle":
        v = _get(s, "memory", "rss_per_conn_bytes")
        return "idle: %s KiB/conn" % (_fmt(v / 1024) if v is not None else "-")
    if rec["workload"] == "sweep":
        return "max sustained %s msg/s; steps %s" % (
            _fmt(_max_rate(s)), ", ".join("%.0f:%s" % (x.get("rate_target", 0), "ok" if x.get("sustained") else "no")
                                          for x in s.get("steps", [])))
    if rec["workload"] in ("storm", "kill"):
        st = s.get("storm") or {}
        return "resumed %s/%s, all in %s s, caught up %s s, lost %s, dup %s, foreign %s%%" % (
            st.get("resumed"), st.get("subs"), _fmt(st.get("all_resumed_s")), _fmt(st.get("all_caught_up_s")),
            s.get("missing"), s.get("duplicates"), rec.get("foreign_cpu_pct_of_machine"))
    w = s.get("window") or {}
    return "%s msg/s, p50 %s ms, p99 %s ms, %s us/delivery, missing %s, foreign %s%%" % (
        _fmt(w.get("delivered_per_s")), _fmt(_ms(_get(w, "latency_us", "p50"))),
        _fmt(_ms(_get(w, "latency_us", "p99"))), _fmt(w.get("server_cpu_us_per_delivery")), s.get("missing"),
        rec.get("foreign_cpu_pct_of_machine"))
