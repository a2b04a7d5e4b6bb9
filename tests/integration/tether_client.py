"""tether_client.py -- an independent client of the Tether protocol for tests.

Written from the protocol's specification only (docs/protocol.md; no daemon
code consulted): JWT minting (HS256/384/512 and deliberately broken
variants) and an asyncio WebSocket client (python3-websockets 10.4, asyncio
API) speaking tether.v1.json or tether.v1.proto. A background task reads every frame into `frames` (nothing is
ever consumed away), files `message` frames per room, answers server `ping`s
(unless auto_pong=False) and records the close code.

Frames are dicts in the JSON shape of docs/protocol.md in both sub-protocols; the
proto mapping lives in _to_proto/_from_proto.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import weakref
from pathlib import Path

import websockets
import websockets.exceptions

import tether_proto

PROTO_FILE = Path(__file__).resolve().parents[2] / "protos" / "client.proto"
SUBPROTOCOLS = {"json": "tether.v1.json", "proto": "tether.v1.proto"}

# ---- JWT -------------------------------------------------------------------------


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_encode(claims, secret, alg="HS256", header=None, signature=None):
    """A compact JWS. alg "none" gives an empty signature; `signature`
    overrides the computed one (for forged tokens)."""
    hdr = {"alg": alg, "typ": "JWT"}
    hdr.update(header or {})
    signing_input = b64url(json.dumps(hdr, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    if signature is None:
        if alg == "none":
            signature = b""
        else:
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
            key = secret.encode() if isinstance(secret, str) else secret
            signature = hmac.new(key, signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(signature)


def claims_for(user, ttl=3600, rooms=None, **extra):
    now = int(time.time())
    c = {"sub": user, "iat": now, "exp": now + ttl}
    if rooms is not None:
        c["rooms"] = rooms
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def make_token(secret, user, ttl=3600, rooms=None, alg="HS256", **extra):
    """A valid token for `user` (unless the arguments say otherwise). Pass a
    claim as None to leave it out (e.g. exp=None)."""
    return jwt_encode(claims_for(user, ttl, rooms, **extra), secret, alg)


# ---- errors -----------------------------------------------------------------------


class Closed(Exception):
    """The connection closed while we waited for something else."""

    def __init__(self, code, reason, waiting_for=""):
        super().__init__("connection closed (code %s, reason %r) while waiting for %s"
                         % (code, reason, waiting_for))
        self.code = code
        self.reason = reason


class FrameError(Exception):
    """The server answered a request with an `error` frame."""

    def __init__(self, frame):
        super().__init__("error frame %r" % (frame,))
        self.frame = frame
        self.code = frame.get("code")


# ---- proto mapping ------------------------------------------------------------------

_schema = None


def schema():
    global _schema
    if _schema is None:
        _schema = tether_proto.Schema(PROTO_FILE.read_text())
    return _schema


def _position_to_proto(pos):
    pos = pos or {}
    p = {}
    if pos.get("epoch"):
        p["epoch"] = pos["epoch"]
    if "seq" in pos:
        p["seq"] = pos["seq"]
        p["has_seq"] = True
    return p


def _to_proto(frame):
    """JSON-shaped client frame -> ClientFrame bytes."""
    f = dict(frame)
    t = f.pop("type")
    if t == "hello" and "rooms" in f:
        f["rooms"] = {r: _position_to_proto(p) for r, p in f["rooms"].items()}
    elif t == "subscribe":
        pos = {k: f.pop(k) for k in ("epoch", "seq") if k in f}
        f["position"] = _position_to_proto(pos)
    elif t == "publish":
        f["data"] = json.dumps(f.get("data"), separators=(",", ":"))
    return schema().encode_frame("ClientFrame", t, f)


def _from_proto(data):
    """ServerFrame bytes -> JSON-shaped dict."""
    t, body = schema().decode_frame("ServerFrame", data)
    f = {"type": t}
    f.update(body)
    if t == "message":
        f["data"] = json.loads(f["data"]) if f["data"] else None
    elif t == "subscribed":
        if f.get("gap") is None:
            f.pop("gap", None)
        else:
            f["gap"].pop("to", None)
    elif t == "welcome" and not f.get("resumed"):
        f.pop("disconnected_ms", None)
    elif t == "error" and not f.get("id"):
        f.pop("id", None)
    return f


# ---- the client ---------------------------------------------------------------------


class Client:
    """One WebSocket connection to a gateway.

    proto: "json" (default), "proto", or None to offer no sub-protocol.
    headers: extra upgrade headers (e.g. Authorization).
    """

    def __init__(self, url, proto="json", headers=None, auto_pong=True, compression="deflate", name=""):
        self.url = url
        self.proto = proto
        self.headers = headers or {}
        self.auto_pong = auto_pong
        self.compression = compression
        self.name = name
        self.ws = None
        self.frames = []           # every frame received, in order
        self.raw = []              # undecodable frames (bytes/str)
        self.by_room = {}          # room -> [message frames]
        self.cursor = 0            # recv()/recv_until() position in frames
        self.close_code = None
        self.close_reason = None
        self.closed = None
        self.session = None
        self.welcome = None
        self.pings = 0
        self.acks = {}             # (room, id) -> [(frame index, ack frame)]
        self.id_errors = {}        # id -> [(frame index, error frame naming it)]
        self._taken = {}           # (room, id) -> frame indexes already returned
        self._changed = None
        self._reader = None

    # ---- connection ----------------------------------------------------------
    async def connect(self, timeout=5.0):
        _open_clients.add(self)
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        sub = [SUBPROTOCOLS[self.proto]] if self.proto else None
        self.ws = await asyncio.wait_for(websockets.connect(
            self.url, subprotocols=sub, extra_headers=self.headers, max_size=None,
            ping_interval=None, close_timeout=2, compression=self.compression,
            open_timeout=timeout), timeout + 1)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        return self

    @property
    def subprotocol(self):
        return self.ws.subprotocol if self.ws else None

    async def _read_loop(self):
        try:
            async for raw in self.ws:
                try:
                    frame = _from_proto(raw) if isinstance(raw, bytes) else json.loads(raw)
                except Exception:
                    self.raw.append(raw)
                    frame = {"type": "_undecodable", "raw": raw}
                self.frames.append(frame)
                t = frame.get("type") if isinstance(frame, dict) else None
                if t == "message":
                    self.by_room.setdefault(frame.get("room"), []).append(frame)
                elif t == "ack":
                    self.acks.setdefault((frame.get("room"), frame.get("id")), []).append(
                        (len(self.frames) - 1, frame))
                elif t == "error" and frame.get("id"):
                    self.id_errors.setdefault(frame.get("id"), []).append((len(self.frames) - 1, frame))
                elif t == "ping":
                    self.pings += 1
                    if self.auto_pong:
                        try:
                            await self.send({"type": "pong"})
                        except websockets.exceptions.ConnectionClosed:
                            pass
                self._changed.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()
            self._changed.set()

    async def send(self, frame):
        if self.proto == "proto":
            await self.ws.send(_to_proto(frame))
        else:
            await self.ws.send(json.dumps(frame, separators=(",", ":")))

    async def send_raw(self, data):
        """Sends str as a text frame, bytes as a binary frame, unvalidated."""
        await self.ws.send(data)

    async def close(self, code=1000):
        if self.ws is not None:
            await self.ws.close(code)
            await self.wait_closed(5)

    def abort(self):
        """Drops the TCP connection with no closing handshake (a network cut)."""
        self.ws.transport.abort()

    async def wait_closed(self, timeout=5.0):
        """Returns (code, reason) once closed; TimeoutError if still open."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return self.close_code, self.close_reason

    # ---- waiting ---------------------------------------------------------------
    async def wait_for(self, cond, timeout=5.0, what="condition"):
        """Waits until cond() is true (returned). Raises Closed if the
        connection closes first, TimeoutError at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            v = cond()
            if v:
                return v
            if self.closed.is_set():
                raise Closed(self.close_code, self.close_reason, what)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("%s: timed out after %.1fs waiting for %s; last frames: %s"
                                   % (self.name or "client", timeout, what, self.frames[-5:]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_change(self, timeout):
        """Returns when a frame arrives or the connection closes, or after
        timeout (no error): the tick of an event-driven client loop."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def recv_until(self, pred, timeout=5.0, what="matching frame"):
        """Advances the cursor to the next frame satisfying pred and returns it.
        Skipped frames stay in `frames` (and in by_room)."""
        def find():
            while self.cursor < len(self.frames):
                f = self.frames[self.cursor]
                self.cursor += 1
                if pred(f):
                    return f
            return None
        return await self.wait_for(find, timeout, what)

    def skip(self):
        """Moves the cursor past everything received so far."""
        self.cursor = len(self.frames)

    async def recv(self, timeout=5.0):
        return await self.recv_until(lambda f: True, timeout, "any frame")

    async def expect(self, type_, timeout=5.0, **fields):
        """The next frame of `type_` whose fields equal `fields`."""
        def pred(f):
            return f.get("type") == type_ and all(f.get(k) == v for k, v in fields.items())
        return await self.recv_until(pred, timeout, "%s %s" % (type_, fields or ""))

    def find(self, type_, **fields):
        """Every received frame of `type_` with these field values."""
        return [f for f in self.frames
                if f.get("type") == type_ and all(f.get(k) == v for k, v in fields.items())]

    def messages(self, room):
        return self.by_room.get(room, [])

    def seqs(self, room):
        return [m.get("seq") for m in self.messages(room)]

    async def wait_messages(self, room, n, timeout=10.0):
        """Waits until at least n message frames arrived for room."""
        await self.wait_for(lambda: len(self.messages(room)) >= n, timeout,
                            "%d messages in %s (have %d)" % (n, room, len(self.messages(room))))
        return self.messages(room)

    async def wait_seq(self, room, seq, timeout=10.0):
        """Waits until a message with seq >= `seq` arrived for room."""
        await self.wait_for(lambda: any((m.get("seq") or 0) >= seq for m in self.messages(room)),
                            timeout, "seq %d in %s (have %s)" % (seq, room, self.seqs(room)[-3:]))

    # ---- requests ----------------------------------------------------------------
    async def hello(self, token=None, session=None, rooms=None, client=None, timeout=5.0):
        """Sends hello and returns the welcome. Raises Closed if the server
        closes instead, FrameError on an error frame."""
        f = {"type": "hello"}
        for k, v in (("token", token), ("session", session), ("rooms", rooms), ("client", client)):
            if v is not None:
                f[k] = v
        await self.send(f)
        w = await self.recv_until(lambda x: x.get("type") in ("welcome", "error"), timeout, "welcome")
        if w["type"] == "error":
            raise FrameError(w)
        self.welcome = w
        self.session = w.get("session")
        return w

    async def subscribe(self, room, timeout=5.0, **position):
        """Sends subscribe (position: epoch=, seq=) and returns `subscribed`."""
        f = {"type": "subscribe", "room": room}
        f.update(position)
        await self.send(f)
        return await self.reply_for_room(room, "subscribed", timeout)

    async def reply_for_room(self, room, type_, timeout=5.0):
        r = await self.recv_until(
            lambda x: (x.get("type") == type_ and x.get("room") == room) or x.get("type") == "error",
            timeout, "%s for %s" % (type_, room))
        if r["type"] == "error":
            raise FrameError(r)
        return r

    async def publish(self, room, id_, data, timeout=5.0):
        """Publishes and returns the ack (FrameError on an error for this id)."""
        await self.send({"type": "publish", "room": room, "id": id_, "data": data})
        return await self.wait_ack(room, id_, timeout)

    async def wait_ack(self, room, id_, timeout=5.0):
        """The earliest ack (or error naming id_) not yet returned for
        (room, id_), so pipelined publishes can be awaited in any order and a
        retry after an error gets its own answer."""
        key = (room, id_)

        def find():
            taken = self._taken.setdefault(key, set())
            cands = [a for a in self.acks.get(key, []) + self.id_errors.get(id_, []) if a[0] not in taken]
            if not cands:
                return None
            i, f = min(cands, key=lambda a: a[0])
            taken.add(i)
            return f
        r = await self.wait_for(find, timeout, "ack for %s/%s" % (room, id_))
        if r["type"] == "error":
            raise FrameError(r)
        return r

    def acked_seqs(self, room, id_):
        """Every seq this connection was acked for (room, id_)."""
        return [f.get("seq") for _, f in self.acks.get((room, id_), [])]

    async def publish_many(self, room, n, prefix=None, data=None, window=64, timeout=30.0):
        """Publishes n messages (ids prefix-0..n-1, data data(i) or {"i": i}),
        at most `window` unacknowledged, re-sending the same id after a 4429
        or 4500 error as a client should. Returns the acks in id order."""
        prefix = prefix or uid("m")
        ids = ["%s-%d" % (prefix, i) for i in range(n)]
        make = data or (lambda i: {"i": i})
        acks = []
        for start in range(0, n, window):
            chunk = list(range(start, min(n, start + window)))
            for i in chunk:
                await self.send({"type": "publish", "room": room, "id": ids[i], "data": make(i)})
            for i in chunk:
                for attempt in range(50):
                    try:
                        acks.append(await self.wait_ack(room, ids[i], timeout))
                        break
                    except FrameError as e:
                        if e.code not in (4429, 4500):
                            raise
                        await asyncio.sleep(0.05 * (attempt + 1))   # client backoff, not a wait
                        await self.send({"type": "publish", "room": room, "id": ids[i], "data": make(i)})
                else:
                    raise AssertionError("publish %s never acknowledged" % ids[i])
        return acks

    async def ping(self, timeout=5.0):
        """Client ping; returns the round-trip time in seconds."""
        t0 = time.monotonic()
        n = len(self.find("pong"))
        await self.send({"type": "ping"})
        await self.wait_for(lambda: len(self.find("pong")) > n, timeout, "pong")
        return time.monotonic() - t0

    async def error(self, timeout=5.0):
        return await self.recv_until(lambda x: x.get("type") == "error", timeout, "error frame")


async def connect(url, token=None, proto="json", headers=None, name="", **kw):
    """Connects and, if token is given, completes hello."""
    c = Client(url, proto=proto, headers=headers, name=name, **kw)
    await c.connect()
    if token is not None:
        await c.hello(token=token)
    return c


# ---- helpers for tests -------------------------------------------------------------

_open_clients = weakref.WeakSet()


def run(coro, timeout=60):
    """Runs one test coroutine to completion with an overall deadline, then
    drops every connection it left open (no closing handshake: that would
    cost websockets' close_timeout per connection)."""
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            readers = []
            for c in list(_open_clients):
                if c.ws is not None and c.ws.transport is not None:
                    c.ws.transport.abort()
                if c._reader is not None:
                    readers.append(c._reader)
            _open_clients.clear()
            if readers:
                await asyncio.wait(readers, timeout=2)
    return asyncio.run(bounded())


_uniq = [0]


def uid(prefix="r"):
    """A name unique in this test run, valid as a room and as an id."""
    _uniq[0] += 1
    return "%s-%d-%s" % (prefix, _uniq[0], base64.b32encode(os.urandom(5)).decode().lower())
