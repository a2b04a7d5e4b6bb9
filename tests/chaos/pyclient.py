#!/usr/bin/python3
"""pyclient.py -- the independent side of the chaos workload.

N Tether clients in one asyncio process on Debian's python3-websockets,
written from the protocol's specification alone (docs/protocol.md; no SDK,
no daemon code), so that the chaos harness does not only watch our C SDK
talk to our gateway. Each client does what docs/protocol.md asks of a client
and nothing more:

- `hello` with its session and every room's position (`{}` the first time,
  `{"epoch": E, "seq": N}` once it has delivered something, `{"seq": 0}` for
  a room that was empty when it subscribed), on every (re)connection;
- publishes with ids; an unacknowledged publish is re-sent with the same id
  after a reconnection, 1 s after an error 4500/4429, and 2 s after its last
  send with no answer ("retrying an unacknowledged publish is always safe":
  this is what exercises the dedup, since a stalled publish is then in
  flight twice);
- answers `ping` with `pong`; treats `heartbeat_ms` + 10 s without any frame
  as a dead link (the network may be silently gone) and reconnects;
- reconnects with backoff (0.5 s doubling to 5 s, full jitter), trying the
  next gateway of --url each attempt; stops on the close codes that say so.

It logs every frame that matters, raw (no de-duplication, no reordering), as
JSON lines in the same schema as `tether bench --mode chaos`: "t" (monotonic
microseconds), "c" (the user), "ev" (client, state, sub, msg, gap, pub, ack,
error, frame, stats, ...). Client i is user "<user>-<i>", subscribes to rooms
<room>-<(i + off) % K> and <room>-<(i + off + 1) % K> and publishes into the
first. Control on stdin, as the C workload: quiesce, resume, stats, stop.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import time

import websockets
import websockets.exceptions

NO_RECONNECT = {1000, 4006, 4501, 4503, 4504, 4505, 4508, 1008}


def now_us():
    return int(time.monotonic() * 1e6)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(secret, user, ttl=7 * 86400):
    now = int(time.time())
    hdr = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps({"sub": user, "iat": now, "exp": now + ttl}, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), (hdr + "." + body).encode(), hashlib.sha256).digest()
    return hdr + "." + body + "." + b64url(sig)


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1 << 16) if path != "-" else sys.stdout

    def write(self, who, ev, **fields):
        d = {"t": now_us(), "c": who, "ev": ev}
        d.update(fields)
        self.f.write(json.dumps(d, separators=(",", ":")) + "\n")

    def flush(self):
        self.f.flush()


class Room:
    def __init__(self, name):
        self.name = name
        self.epoch = None        # None: never subscribed; "": subscribed to an empty room
        self.last = 0

    def position(self):
        if self.epoch is None:
            return {}
        if self.epoch == "":
            return {"seq": 0}
        return {"epoch": self.epoch, "seq": self.last}


class PyClient:
    def __init__(self, app, idx):
        a = app.args
        self.app, self.idx = app, idx
        self.user = "%s-%d" % (a.user, idx)
        k = a.rooms
        names = ["%s-%d" % (a.room, (idx + a.room_offset) % k), "%s-%d" % (a.room, (idx + a.room_offset + 1) % k)]
        self.rooms = {n: Room(n) for n in (names if k > 1 else names[:1])}
        self.pub_room = names[0]
        self.urls = a.url
        self.url_i = idx % len(self.urls)
        self.token = token(a.secret, self.user)
        self.session = None
        self.ws = None
        self.connected = False
        self.outbox = {}         # id -> data, in publish order (dicts keep it)
        self.sent_at = {}        # id -> monotonic time of its last send
        self.npub = 0
        self.attempt = 0
        self.connects = 0
        self.up_since = 0.0
        self.heartbeat_ms = 25000
        self.last_rx = time.monotonic()
        self.counts = {"msgs": 0, "acks": 0, "resent": 0, "errors": 0}
        self.failed = False
        self.churning = None     # (bye, come back at) while away on purpose
        self.log = app.log

    def L(self, ev, **kw):
        self.log.write(self.user, ev, **kw)

    async def send(self, frame):
        ws = self.ws
        if ws is None or not self.connected:
            return False
        try:
            await ws.send(json.dumps(frame, separators=(",", ":")))
            return True
        except (websockets.exceptions.ConnectionClosed, OSError):
            return False

    # ---- publishing ---------------------------------------------------------------
    async def publish_loop(self, period):
        await asyncio.sleep(random.random() * period)
        while not self.app.stopping:
            if not self.app.quiesced and not self.failed:
                self.npub += 1
                id_ = "%s-%d" % (self.user, self.npub)
                data = {"c": self.user, "n": self.npub, "t": now_us()}
                self.outbox[id_] = data
                self.L("pub", room=self.pub_room, id=id_)
                self.sent_at[id_] = time.monotonic()
                await self.send({"type": "publish", "room": self.pub_room, "id": id_, "data": data})
            await asyncio.sleep(period)

    async def churn_loop(self, mean_s):
        """Leaves at random (exponential, mean mean_s) and comes back 0.2..3 s
        later; one time in five with `bye` (the session ends)."""
        while not self.app.stopping:
            await asyncio.sleep(random.expovariate(1.0 / mean_s))
            ws = self.ws
            if not self.connected or ws is None or self.churning is not None:
                continue
            bye = random.random() < 0.2
            self.churning = (bye, time.monotonic() + 0.2 + random.random() * 2.8)
            self.L("churn", bye=int(bye))
            if bye:
                await self.send({"type": "bye"})
            try:
                await ws.close(1000)
            except Exception:
                ws.transport.abort()

    async def resend_later(self, id_, delay):
        await asyncio.sleep(delay)
        if id_ in self.outbox:
            await self.resend(id_)

    async def resend(self, id_):
        self.counts["resent"] += 1
        self.sent_at[id_] = time.monotonic()
        await self.send({"type": "publish", "room": self.pub_room, "id": id_, "data": self.outbox[id_]})

    async def retry_loop(self):
        """Re-sends what has waited 2 s for an answer on a live link."""
        while not self.app.stopping:
            await asyncio.sleep(0.5)
            if not self.connected:
                continue
            now = time.monotonic()
            for id_ in [i for i in self.outbox if now - self.sent_at.get(i, now) > 2.0]:
                if id_ in self.outbox:
                    await self.resend(id_)

    # ---- the connection -------------------------------------------------------------
    def backoff(self):
        ceiling = min(5.0, 0.5 * (2 ** max(0, self.attempt - 1)))
        return random.random() * ceiling

    async def run(self):
        self.L("client", url=self.urls[self.url_i], pub_room=self.pub_room, rooms=list(self.rooms))
        self.L("state", state="connecting", prev="disconnected", code=0, reason="connecting", attempt=0, delay_ms=0)
        while not self.app.stopping and not self.failed:
            code, reason = await self.one_link()
            if self.app.stopping:
                break
            if self.churning is not None:
                bye, back_at = self.churning
                self.connected = False
                self.L("state", state="disconnected", prev="connected", code=1000, reason="churn")
                await asyncio.sleep(max(0.0, back_at - time.monotonic()))
                self.churning = None
                if bye:
                    self.session = None
                self.attempt = 0
                self.L("rejoin")
                self.L("state", state="connecting", prev="disconnected", code=0, reason="rejoin", attempt=0,
                       delay_ms=0)
                continue
            if code in NO_RECONNECT:
                self.failed = True
                self.L("state", state="failed", prev="connected", code=code, reason=reason or "", gave_up=0)
                break
            if code == 4003:
                self.session = None
            if self.up_since and time.monotonic() - self.up_since >= 10:
                self.attempt = 0
            self.up_since = 0.0
            self.attempt += 1
            delay = self.backoff()
            self.L("state", state="reconnecting", prev="connected" if self.connected else "connecting",
                   code=code or 1006, reason=reason or "", attempt=self.attempt, delay_ms=int(delay * 1000))
            self.connected = False
            self.url_i = (self.url_i + 1) % len(self.urls)
            await asyncio.sleep(delay)

    async def one_link(self):
        """One connection's life; returns (close code, reason)."""
        url = self.urls[self.url_i]
        try:
            ws = await asyncio.wait_for(websockets.connect(
                url, subprotocols=["tether.v1.json"], ping_interval=None, close_timeout=1,
                max_size=None, compression=None, open_timeout=5), 6)
        except Exception as e:   # refused, timed out, HTTP error: all mean "try again"
            return 1006, "connect: %s" % (type(e).__name__,)
        self.ws = ws
        self.last_rx = time.monotonic()
        hello = {"type": "hello", "token": self.token, "rooms": {r.name: r.position() for r in self.rooms.values()},
                 "client": "chaos-pyclient/1"}
        if self.session:
            hello["session"] = self.session
        watchdog = asyncio.get_running_loop().create_task(self.watchdog(ws))
        try:
            await ws.send(json.dumps(hello, separators=(",", ":")))
            async for raw in ws:
                self.last_rx = time.monotonic()
                try:
                    f = json.loads(raw)
                except ValueError:
                    self.L("undecodable", raw=str(raw)[:200])
                    continue
                await self.on_frame(f)
        except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError):
            pass
        finally:
            watchdog.cancel()
            self.ws = None
        code = ws.close_code if ws.close_code is not None else 1006
        return code, ws.close_reason or ""

    async def watchdog(self, ws):
        while True:
            await asyncio.sleep(1)
            if time.monotonic() - self.last_rx > self.heartbeat_ms / 1000 + 10:
                self.L("watchdog", silent_ms=int((time.monotonic() - self.last_rx) * 1000))
                ws.transport.abort()      # a dead peer sends no close frame
                return

    async def on_frame(self, f):
        t = f.get("type")
        if t == "message":
            self.counts["msgs"] += 1
            self.L("msg", room=f.get("room"), epoch=f.get("epoch"), seq=f.get("seq"), id=f.get("id"),
                   **{"from": f.get("from")})
            r = self.rooms.get(f.get("room"))
            if r is not None and isinstance(f.get("seq"), int):
                if r.epoch in (None, "") or r.epoch != f.get("epoch"):
                    r.epoch = f.get("epoch") or ""
                    r.last = f["seq"]
                else:
                    r.last = max(r.last, f["seq"])
        elif t == "ack":
            self.counts["acks"] += 1
            self.L("ack", room=f.get("room"), id=f.get("id"), seq=f.get("seq"), dup=int(bool(f.get("duplicate"))),
                   err=0)
            self.outbox.pop(f.get("id"), None)
            self.sent_at.pop(f.get("id"), None)
        elif t == "subscribed":
            r = self.rooms.get(f.get("room"))
            resub = 0
            if r is not None:
                resub = int(r.epoch is not None)
                top, missed = f.get("seq") or 0, f.get("missed") or 0
                if r.epoch != f.get("epoch"):
                    r.epoch = f.get("epoch") or ""
                r.last = max(0, top - missed) if r.epoch else 0
            extra = {"gap": f["gap"]} if "gap" in f else {}
            self.L("sub", room=f.get("room"), epoch=f.get("epoch"), seq=f.get("seq"), missed=f.get("missed"),
                   recovered=f.get("recovered"), resub=resub, **extra)
        elif t == "gap":
            self.L("gap", room=f.get("room"), **{"from": f.get("from"), "to": f.get("to"), "by_client": 0})
            r = self.rooms.get(f.get("room"))
            if r is not None and isinstance(f.get("to"), int):
                r.last = max(r.last, f["to"])
        elif t == "welcome":
            self.session = f.get("session")
            self.heartbeat_ms = f.get("heartbeat_ms") or 25000
            self.connected = True
            self.connects += 1
            self.up_since = time.monotonic()
            self.L("state", state="connected", prev="reconnecting" if self.connects > 1 else "connecting", code=0,
                   reason="", resumed=int(bool(f.get("resumed"))), session=self.session,
                   disc_ms=f.get("disconnected_ms") or 0)
            for id_ in list(self.outbox):
                if id_ in self.outbox:
                    await self.resend(id_)
        elif t == "ping":
            await self.send({"type": "pong"})
        elif t == "error":
            self.counts["errors"] += 1
            self.L("error", code=f.get("code"), reason=f.get("reason"), id=f.get("id"))
            id_ = f.get("id")
            if id_ in self.outbox:
                if f.get("code") in (4500, 4429):
                    asyncio.get_running_loop().create_task(self.resend_later(id_, 1.0))
                else:
                    del self.outbox[id_]
                    self.sent_at.pop(id_, None)
        elif t in ("presence", "reconnect"):
            self.L("frame", type=t, f=f)

    def stats(self):
        self.L("stats", state="connected" if self.connected else ("failed" if self.failed else "reconnecting"),
               connects=self.connects, messages=self.counts["msgs"], acked=self.counts["acks"],
               resent=self.counts["resent"], errors=self.counts["errors"], outbox=len(self.outbox),
               published=self.npub, dups=0)


class App:
    def __init__(self, args):
        self.args = args
        self.log = Log(args.log)
        self.quiesced = False
        self.stopping = False
        self.clients = [PyClient(self, i) for i in range(args.conns)]

    async def flusher(self):
        while True:
            await asyncio.sleep(0.1)
            self.log.flush()

    async def control(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            cmd = line.decode().strip()
            if not line or cmd == "stop":
                self.log.write("", "stop", why="stop command" if line else "stdin closed")
                return
            if cmd in ("quiesce", "resume"):
                self.quiesced = cmd == "quiesce"
                self.log.write("", cmd)
            elif cmd == "stats":
                for c in self.clients:
                    c.stats()
            self.log.flush()

    async def main(self):
        a = self.args
        self.log.write("", "start", conns=a.conns, rooms=a.rooms, rate=a.rate, pid=os.getpid())
        period = a.conns / a.rate if a.rate > 0 else None
        tasks = [asyncio.get_running_loop().create_task(self.flusher())]
        for c in self.clients:
            tasks.append(asyncio.get_running_loop().create_task(c.run()))
            tasks.append(asyncio.get_running_loop().create_task(c.retry_loop()))
            if period:
                tasks.append(asyncio.get_running_loop().create_task(c.publish_loop(period)))
            if a.churn_ms > 0:
                tasks.append(asyncio.get_running_loop().create_task(c.churn_loop(a.churn_ms / 1000)))
            await asyncio.sleep(0.01)
        await self.control()
        self.stopping = True
        for c in self.clients:
            c.stats()
        self.log.flush()
        for t in tasks:
            t.cancel()
        for c in self.clients:
            if c.ws is not None and c.ws.transport is not None:
                c.ws.transport.abort()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, type=lambda s: s.split(","))
    p.add_argument("--secret", required=True)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--rooms", type=int, default=4)
    p.add_argument("--room-offset", type=int, default=0)
    p.add_argument("--room", default="room")
    p.add_argument("--rate", type=float, default=4.0, help="total publishes per second")
    p.add_argument("--user", default="py")
    p.add_argument("--log", default="-")
    p.add_argument("--churn-ms", type=int, default=0, help="mean time between a client's departures")
    args = p.parse_args()
    asyncio.run(App(args).main())


if __name__ == "__main__":
    main()
