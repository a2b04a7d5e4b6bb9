"""checker.py -- judges a chaos run from the clients' own logs.

Both workloads (`tether bench --mode chaos`, the C SDK; pyclient.py, raw
python3-websockets) write one JSON object per line: "t" (CLOCK_MONOTONIC
microseconds, the harness's clock too), "c" (user), "ev". The Checker reads
the files incrementally (a partial last line waits for the next read) and
replays every client's events in its own order.

What is a violation (each is recorded with the time and the client):

  hole          a client's messages of a room jump (seq N, then N+k, k > 1)
                with nothing said in between: a silent hole
  duplicate     a seq delivered again to the same client (the Python client
                sees raw frames; for the C SDK, which drops duplicates by
                design, its `dups` counter must stay 0)
  order         a seq lower than one already delivered
  epoch         a message of a new epoch with no `subscribed recovered:false`
                before it, or an epoch change announced with recovered: true
  resume        `subscribed recovered:true` whose first missed message is not
                the one after the client's position
  spurious_gap  `recovered:false` for a room's first epoch, restarting below
                the client's position (nothing was lost; the messages before
                the position would come a second time)
  sdk_gap       the C SDK saw a hole the server did not announce (by_client)
  declared_gap  a `gap` frame or `recovered:false` in a round where nothing
                may be lost (every kill round: Redis runs with appendfsync
                always and the history holds the whole run)
  conflict      two different ids delivered at one (room, epoch, seq)
  republished   one publish id delivered at two seqs of one epoch (dedup failed)
  ack           one id acknowledged with two different seqs (not across a
                Redis flush: the flush takes the dedup keys with it), or an
                ack whose seq is not where the id was delivered
  offline       presence `offline` for a user that neither said `bye` nor
                stayed away longer than the session TTL
  failed        a client gave up (state failed)

Completeness is separate (`complete(cut)`): every publish acknowledged
before `cut` is delivered somewhere, and every connected client has every
room it follows up to that room's top as of `cut`. A harness polls it to
know a round has settled, and reports what is missing when it never does.
"""

import json
import os
from collections import defaultdict


class View:
    """One client's position in one room, as the checker follows it."""
    __slots__ = ("epoch", "last", "started", "delivered", "declared", "t_start")

    def __init__(self):
        self.epoch = None        # None: no `subscribed` yet; "": the room was empty then
        self.last = 0
        self.started = False
        self.delivered = 0
        self.declared = 0        # seqs this client was told it will not get
        self.t_start = None      # first `subscribed`


class ClientState:
    def __init__(self, user, path):
        self.user = user
        self.path = path
        self.rooms = []
        self.views = {}
        self.state = "connecting"
        self.state_t = 0
        self.states = []         # (t, state, extra)
        self.byes = []           # t of each churn with bye
        self.away = False        # churned out on purpose
        self.last_stats = None
        self.dups_reported = 0
        self.presence = defaultdict(dict)   # room -> user -> state (this client's view)
        self.session = None
        self.sessions = []       # (t, session, resumed)


class Violation:
    __slots__ = ("t", "kind", "user", "detail")

    def __init__(self, t, kind, user, detail):
        self.t, self.kind, self.user, self.detail = t, kind, user, detail

    def __repr__(self):
        return "%s[%s @%.3f] %s" % (self.kind, self.user, self.t / 1e6, self.detail)


class Checker:
    def __init__(self, session_ttl_s=120):
        self.files = {}          # path -> [offset, partial bytes]
        self.clients = {}        # user -> ClientState
        self.truth = {}          # (room, epoch, seq) -> id
        self.id_pos = defaultdict(set)      # (room, id) -> {(epoch, seq)}
        self.acks = defaultdict(list)       # (room, id) -> [(t, seq, user)]
        self.ack_errors = []
        self.pubs = {}           # (room, id) -> t of the first publish
        self.epochs = defaultdict(list)     # room -> epochs in the order first seen
        self.violations = []
        self.presence_events = []           # (t, watcher, room, user, state)
        self.recovered_false = []           # (t, user, room, first sub after a reconnection)
        self.flushes = []        # t of each Redis FLUSHALL (told by the harness)
        self.loss_ok = False     # a round where declared gaps are legitimate
        self.session_ttl_us = session_ttl_s * 1_000_000
        self.lines = 0
        self._ack_checked = set()
        self.churns = 0          # departures on purpose (soak)
        self.ack_lat = []        # (t, us from the first send to the ack), C SDK clients

    # ---- input -------------------------------------------------------------------
    def add_file(self, path):
        self.files.setdefault(str(path), [0, b""])

    def poll(self):
        """Reads what the logs gained since the last call."""
        for path, st in self.files.items():
            try:
                with open(path, "rb") as f:
                    f.seek(st[0])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            st[0] += len(data)
            data = st[1] + data
            lines = data.split(b"\n")
            st[1] = lines.pop()           # partial (or empty) last line
            for line in lines:
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    self.violate(0, "log", path, "unparsable line %r" % line[:120])
                    continue
                self.lines += 1
                self.event(path, ev)

    def violate(self, t, kind, user, detail):
        self.violations.append(Violation(t, kind, user, detail))

    def flushed_between(self, t0, t1):
        lo, hi = min(t0, t1), max(t0, t1)
        return any(lo <= f <= hi for f in self.flushes)

    # ---- events ----------------------------------------------------------------------
    def event(self, path, ev):
        user = ev.get("c")
        kind = ev.get("ev")
        if not user:
            return
        cs = self.clients.get(user)
        if cs is None:
            cs = self.clients[user] = ClientState(user, path)
        h = getattr(self, "_ev_" + kind, None)
        if h is not None:
            h(cs, ev, ev.get("t", 0))

    def _ev_client(self, cs, ev, t):
        cs.rooms = list(ev.get("rooms") or [])
        for r in cs.rooms:
            cs.views.setdefault(r, View())

    def _ev_state(self, cs, ev, t):
        st = ev.get("state")
        cs.state, cs.state_t = st, t
        cs.states.append((t, st, ev))
        if st == "connected":
            cs.sessions.append((t, ev.get("session"), ev.get("resumed")))
            cs.session = ev.get("session")
        if st == "failed":
            self.violate(t, "failed", cs.user, "gave up: code %s %s" % (ev.get("code"), ev.get("reason")))

    def _ev_churn(self, cs, ev, t):
        self.churns += 1
        cs.away = True
        if ev.get("bye"):
            cs.byes.append(t)

    def _ev_rejoin(self, cs, ev, t):
        cs.away = False

    def _ev_pub(self, cs, ev, t):
        self.pubs.setdefault((ev.get("room"), ev.get("id")), t)

    def _ev_stats(self, cs, ev, t):
        cs.last_stats = ev
        dups = ev.get("dups") or 0
        if dups > cs.dups_reported:
            self.violate(t, "duplicate", cs.user, "the SDK dropped %d duplicate message(s)" % (dups - cs.dups_reported))
            cs.dups_reported = dups

    def _ev_ack(self, cs, ev, t):
        key = (ev.get("room"), ev.get("id"))
        if ev.get("err"):
            self.ack_errors.append((t, cs.user, key, ev.get("err")))
            self.violate(t, "ack_error", cs.user, "%s/%s failed for good with %s" % (key + (ev.get("err"),)))
            return
        seq = ev.get("seq")
        if ev.get("lat_us") is not None:
            self.ack_lat.append((t, ev["lat_us"]))
        for (t0, s0, u0) in self.acks[key]:
            if s0 != seq and not self.flushed_between(t0, t):
                self.violate(t, "ack", cs.user, "%s/%s acknowledged with seq %s, earlier with %s" % (key + (seq, s0)))
                break
        self.acks[key].append((t, seq, cs.user))

    def _ev_error(self, cs, ev, t):
        # 4500 and 4429 are "retry with the same id" (the clients do); any
        # other error for one of our publishes means it failed for good.
        if ev.get("id") and ev.get("code") not in (4500, 4429):
            key = (None, ev.get("id"))
            self.ack_errors.append((t, cs.user, key, ev.get("code")))
            self.violate(t, "ack_error", cs.user, "publish %s refused: %s %s" % (ev.get("id"), ev.get("code"),
                                                                                 ev.get("reason")))

    def _ev_frame(self, cs, ev, t):
        f = ev.get("f") or {}
        if f.get("type") != "presence":
            return
        room = f.get("room")
        if "members" in f:
            cs.presence[room] = {m.get("user"): m.get("state") for m in f.get("members") or []}
        elif f.get("user"):
            cs.presence[room][f["user"]] = f.get("state")
            self.presence_events.append((t, cs.user, room, f["user"], f.get("state")))

    def _view(self, cs, room):
        v = cs.views.get(room)
        if v is None:
            v = cs.views[room] = View()
            if room not in cs.rooms:
                cs.rooms.append(room)
        return v

    def _declare(self, cs, v, room, t, n, why):
        if n <= 0:
            return
        v.declared += n
        if not self.loss_ok:
            self.violate(t, "declared_gap", cs.user, "%s: %d message(s) declared lost (%s) in a round that may lose nothing"
                         % (room, n, why))

    def _ev_sub(self, cs, ev, t):
        room, epoch = ev.get("room"), ev.get("epoch") or ""
        top, missed = ev.get("seq") or 0, ev.get("missed") or 0
        recovered = ev.get("recovered")
        base = top - missed
        v = self._view(cs, room)
        if recovered is False:
            last_up = max((s[0] for s in cs.states if s[1] == "connected"), default=0)
            self.recovered_false.append((t, cs.user, room, t - last_up < 2_000_000 and len(cs.sessions) > 1))
        if not v.started:
            v.started = True
            v.t_start = t
            v.epoch, v.last = epoch, base
            return
        if v.epoch and epoch and epoch != v.epoch:
            if recovered is not False:
                self.violate(t, "epoch", cs.user, "%s: epoch %s -> %s announced with recovered: %s"
                             % (room, v.epoch, epoch, recovered))
            if epoch not in self.epochs[room]:
                self.epochs[room].append(epoch)
            # What this client had not got of the old epoch is gone: said so.
            old_top = max([s for (r, e, s) in self.truth if r == room and e == v.epoch] or [v.last])
            self._declare(cs, v, room, t, old_top - v.last, "epoch change")
            v.epoch, v.last = epoch, base
            return
        if not v.epoch:
            # Subscribed while the room had no epoch: any epoch it has now is
            # its first, and nothing can have been lost from it.
            if recovered is False:
                if base < v.last:
                    self.violate(t, "spurious_gap", cs.user, "%s: recovered: false (gap %s) for the room's first "
                                 "epoch %s, restarting at %d below the position %d: nothing was missing"
                                 % (room, ev.get("gap"), epoch, base + 1, v.last))
                    v.last = base
                else:
                    self._declare(cs, v, room, t, base - v.last, "recovered: false")
                    v.last = base
            v.epoch = epoch
            return
        if recovered is False:
            self._declare(cs, v, room, t, base - v.last, "recovered: false, gap %s" % (ev.get("gap"),))
            v.last = max(v.last, base)
        elif base != v.last:
            if base > v.last:
                self.violate(t, "resume", cs.user, "%s: recovered: true from %d but the position was %d (hole %d..%d)"
                             % (room, base, v.last, v.last + 1, base))
                v.last = base
            # base < last: the server replays what the client has; the
            # duplicates themselves are judged when they arrive.

    def _ev_gap(self, cs, ev, t):
        room = ev.get("room")
        v = self._view(cs, room)
        lo, hi = ev.get("from") or 0, ev.get("to") or 0
        if ev.get("by_client"):
            self.violate(t, "sdk_gap", cs.user, "%s: seqs %d..%d skipped without a word from the server" % (room, lo, hi))
        else:
            self._declare(cs, v, room, t, hi - max(lo, v.last + 1) + 1, "gap frame %d..%d" % (lo, hi))
        v.last = max(v.last, hi)

    def _ev_msg(self, cs, ev, t):
        room, epoch, seq, id_ = ev.get("room"), ev.get("epoch") or "", ev.get("seq"), ev.get("id")
        key = (room, epoch, seq)
        prev = self.truth.get(key)
        if prev is None:
            self.truth[key] = id_
            if epoch not in self.epochs[room]:
                self.epochs[room].append(epoch)
        elif prev != id_:
            self.violate(t, "conflict", cs.user, "%s epoch %s seq %d is %s here, %s elsewhere" % (room, epoch, seq, id_, prev))
        pos = self.id_pos[(room, id_)]
        if (epoch, seq) not in pos:
            if any(e == epoch for e, _ in pos):
                self.violate(t, "republished", cs.user, "%s id %s at seqs %s of epoch %s"
                             % (room, id_, sorted([s for e, s in pos if e == epoch] + [seq]), epoch))
            pos.add((epoch, seq))
        v = self._view(cs, room)
        if not v.started:
            self.violate(t, "order", cs.user, "%s: message %d before any subscribed" % (room, seq))
            v.started = True
            v.epoch, v.last = epoch, seq - 1
        if not v.epoch:
            v.epoch = epoch
        elif epoch != v.epoch:
            self.violate(t, "epoch", cs.user, "%s: message of epoch %s while at %s, without recovered: false"
                         % (room, epoch, v.epoch))
            v.epoch, v.last = epoch, seq - 1
        if seq == v.last:
            self.violate(t, "duplicate", cs.user, "%s: seq %d delivered again" % (room, seq))
            return
        if seq < v.last:
            self.violate(t, "order", cs.user, "%s: seq %d after %d" % (room, seq, v.last))
            return
        if seq > v.last + 1:
            self.violate(t, "hole", cs.user, "%s: seqs %d..%d never delivered (silent)" % (room, v.last + 1, seq - 1))
        v.last = seq
        v.delivered += 1

    # ---- judgements ----------------------------------------------------------------------
    def check_presence(self, t_from, t_to):
        """`offline` events in [t_from, t_to) that nothing justifies."""
        bad = []
        for (t, watcher, room, user, state) in self.presence_events:
            if state != "offline" or not (t_from <= t < t_to):
                continue
            cs = self.clients.get(user)
            if cs is None:
                continue           # a user of another test, not ours
            if any(b <= t for b in cs.byes):
                last_bye = max(b for b in cs.byes if b <= t)
                back = [s for s in cs.states if s[0] > last_bye and s[1] == "connected"]
                if not back or back[0][0] >= t - 2_000_000:
                    continue       # said bye, and was not back long before the event
            if self.flushed_between(t - 10_000_000, t):
                continue           # sessions went with the flush (see README)
            if any(s[1] == "failed" for s in cs.states if s[0] <= t):
                continue
            gone = [s[0] for s in cs.states if s[0] <= t and s[1] in ("reconnecting", "disconnected")]
            if gone and t - gone[-1] > self.session_ttl_us:
                continue
            bad.append((t, watcher, room, user))
            self.violate(t, "offline", user, "%s shown offline to %s in %s while within its session TTL"
                         % (user, watcher, room))
        return bad

    def latest_epoch(self, room):
        e = self.epochs.get(room)
        return e[-1] if e else ""

    def complete(self, cut, users=None):
        """(ok, missing): every ack before `cut` delivered somewhere, and every
        connected, non-churned client at or past each followed room's top as
        of `cut`. missing lists what is not there yet."""
        missing = []
        top = defaultdict(int)
        for (room, id_), acks in self.acks.items():
            first = min(a[0] for a in acks)
            # Published before the cut (acknowledged then or since): it must
            # be everywhere by now.
            t_pub = self.pubs.get((room, id_), first)
            if t_pub > cut:
                continue
            pos = self.id_pos.get((room, id_))
            seqs = {a[1] for a in acks}
            if not pos and self.flushed_between(t_pub, cut):
                continue           # acked, then flushed before anyone got it: gone (declared by the epoch change)
            if not pos:
                # Somebody subscribed before it was first sent must have it.
                if any(v.t_start is not None and v.t_start < t_pub
                       for cs in self.clients.values() for r, v in cs.views.items() if r == room):
                    missing.append("%s/%s acked (seq %s) but delivered to nobody" % (room, id_, sorted(seqs)))
                continue
            ep = self.latest_epoch(room)
            for e, s in pos:
                if e == ep and s in seqs:
                    top[room] = max(top[room], s)
        acked_ids = {k[1] for k in self.acks}
        failed_ids = {k[1] for (_, _, k, _) in self.ack_errors}
        pending = defaultdict(int)
        for (room, id_), t in self.pubs.items():
            if t <= cut and id_ not in acked_ids and id_ not in failed_ids:
                pending[id_.rsplit("-", 1)[0]] += 1
        for cs in self.clients.values():
            if users is not None and cs.user not in users:
                continue
            if cs.away or cs.state == "failed":
                continue
            if pending.get(cs.user):
                missing.append("%s has %d publish(es) not acknowledged yet" % (cs.user, pending[cs.user]))
            if cs.state != "connected":
                missing.append("%s is %s" % (cs.user, cs.state))
                continue
            for room in cs.rooms:
                v = cs.views.get(room)
                want = top.get(room, 0)
                if v is None or not v.started:
                    missing.append("%s not subscribed to %s" % (cs.user, room))
                elif want and (v.epoch != self.latest_epoch(room) or v.last < want):
                    missing.append("%s at %s/%s:%d, top %d" % (cs.user, room, (v.epoch or "-")[:8], v.last, want))
        return not missing, missing

    def check_acks(self, cut):
        """Every ack before `cut` names the seq its id was delivered at."""
        for (room, id_), acks in self.acks.items():
            for (t, seq, user) in acks:
                if t > cut or (room, id_, seq) in self._ack_checked:
                    continue
                pos = self.id_pos.get((room, id_)) or set()
                if pos and seq not in {s for _, s in pos} and not self.flushed_between(t - 60_000_000, t + 60_000_000):
                    self.violate(t, "ack", user, "%s/%s acked with seq %d, delivered at %s" % (room, id_, seq, sorted(pos)))
                self._ack_checked.add((room, id_, seq))

    def new_violations(self, since):
        return self.violations[since:]

    def counts(self):
        c = defaultdict(int)
        for cs in self.clients.values():
            for v in cs.views.values():
                c["delivered"] += v.delivered
                c["declared_lost"] += v.declared
        c["acked"] = len(self.acks)
        c["published"] = len(self.pubs)
        c["ack_errors"] = len(self.ack_errors)
        c["clients"] = len(self.clients)
        c["churns"] = self.churns
        c["byes"] = sum(len(cs.byes) for cs in self.clients.values())
        c["presence_offline_seen"] = sum(1 for x in self.presence_events if x[4] == "offline")
        return dict(c)

    # ---- reconnection ----------------------------------------------------------------------
    def reconnect_times(self, t_kill, t_ready, users=None):
        """For each client that lost its link after t_kill: (user, t_down,
        t_connected, t_all_rooms) with None when not back yet."""
        out = []
        for cs in self.clients.values():
            if users is not None and cs.user not in users:
                continue
            down = next((s for s in cs.states if s[0] >= t_kill and s[1] == "reconnecting"), None)
            if down is None:
                continue
            up = next((s for s in cs.states if s[0] > down[0] and s[1] == "connected"), None)
            out.append((cs.user, down[0], up[0] if up else None))
        return out

    def presence_state(self, watcher, room, user):
        cs = self.clients.get(watcher)
        return cs.presence.get(room, {}).get(user) if cs else None

    def stale_presence(self):
        """(watcher, room, user, shown) for every connected client whose
        members view of a room it follows does not show a connected,
        subscribed user of that room as online."""
        live = {u for u, cs in self.clients.items() if cs.state == "connected" and not cs.away}
        out = []
        for w in live:
            cw = self.clients[w]
            for room in cw.rooms:
                members = cw.presence.get(room, {})
                for u in live:
                    if u != w and room in self.clients[u].rooms and members.get(u) != "online":
                        out.append((w, room, u, members.get(u)))
        return out


def load(paths, **kw):
    """A Checker over finished logs (for tools and tests)."""
    c = Checker(**kw)
    for p in paths:
        if os.path.exists(p):
            c.add_file(p)
    c.poll()
    return c
