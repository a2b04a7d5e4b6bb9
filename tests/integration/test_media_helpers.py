"""test_media_helpers.py -- shared helpers of the media tests (no tests here).

Probe drives `mediad probe` (mediad/md_probe.c), the native media peer: full
ICE toward mediad's ICE-lite, SDES-SRTP or DTLS-SRTP, RTP with payloads that
name their talker and number ("alice:17:..."), and receive statistics. It
speaks JSON lines on stdin/stdout; the WebSocket signaling is done here with
the tests' own protocol client, exactly as a native app would.
"""

import asyncio
import json
import os

import tether_harness as th


class ProbeError(Exception):
    pass


class Probe:
    """One `mediad probe` process holding any number of peers (by id)."""

    def __init__(self, env=None):
        self.env = dict(os.environ)
        self.env.setdefault("TETHER_MEDIA_IFACES", "lo")
        self.env.update(env or {})
        self.proc = None
        self.events = []
        self._changed = None
        self._reader = None
        self.stderr = b""

    async def start(self):
        self._changed = asyncio.Event()
        self.proc = await asyncio.create_subprocess_exec(
            str(th.binary("mediad")), "probe", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env,
            limit=4 * 1024 * 1024)
        self._reader = asyncio.ensure_future(self._read())
        await self.wait(lambda e: e.get("ev") == "hello", 10, "probe hello")
        return self

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"ev": "garbage", "line": line.decode("utf-8", "replace")})
            self._changed.set()
        self._changed.set()

    async def cmd(self, **c):
        if self.proc.returncode is not None:
            raise ProbeError("probe exited with %s" % self.proc.returncode)
        self.proc.stdin.write((json.dumps(c) + "\n").encode())
        await self.proc.stdin.drain()

    async def wait(self, pred, timeout=10.0, what="probe event", start=0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for e in self.events[start:]:
                if pred(e):
                    return e
            if self.proc.returncode is not None and self._reader.done():
                raise ProbeError("probe exited (%s) while waiting for %s" % (self.proc.returncode, what))
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("timed out after %.1fs waiting for %s; last events: %s"
                                   % (timeout, what, self.events[-5:]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def request(self, ev, timeout=10.0, **c):
        """Sends a command and waits for the next `ev` event of that peer
        (or an error event of that peer)."""
        start = len(self.events)
        await self.cmd(**c)
        pid = c.get("id", "")
        e = await self.wait(lambda x: x.get("id", "") == pid and x.get("ev") in (ev, "error"), timeout,
                            "%s for %s" % (ev, pid), start)
        if e["ev"] == "error":
            raise ProbeError(e.get("error"))
        return e

    async def offer(self, pid, **opts):
        return (await self.request("offer", cmd="offer", id=pid, **opts))["sdp"]

    async def answer(self, pid, sdp):
        await self.cmd(cmd="answer", id=pid, sdp=sdp)

    async def wait_ready(self, pid, timeout=10.0):
        return await self.wait(lambda e: e.get("id") == pid and e.get("ev") in ("ready", "dtls_failed", "error"),
                               timeout, "ready for %s" % pid)

    async def send(self, pid, count, tag=None, interval_ms=20, size=80, timeout=None, **extra):
        timeout = timeout or max(10.0, count * interval_ms / 1000.0 * 3 + 5)
        return await self.request("sent", timeout=timeout, cmd="send", id=pid, count=count,
                                  tag=tag or pid, interval_ms=interval_ms, size=size, **extra)

    async def stats(self, pid):
        return await self.request("stats", cmd="stats", id=pid)

    async def reset(self, pid):
        return await self.request("reset", cmd="reset", id=pid)

    async def close_peer(self, pid):
        return await self.request("closed", cmd="close", id=pid)

    async def stop(self):
        if self.proc and self.proc.returncode is None:
            try:
                await self.cmd(cmd="quit")
                await asyncio.wait_for(self.proc.wait(), 5)
            except Exception:
                self.proc.kill()
                await self.proc.wait()
        if self._reader:
            await self._reader


async def media_answer(ws, room, timeout=10.0):
    """The next `media answer` (or error) for room on a WebSocket client."""
    f = await ws.recv_until(lambda x: (x.get("type") == "media" and x.get("room") == room
                                       and x.get("action") == "answer") or x.get("type") == "error",
                            timeout, "media answer for %s" % room)
    return f


async def join_audio(ws, room, probe, pid, timeout=15.0, **offer_opts):
    """Offer from the probe through the WebSocket, answer back, wait until
    the probe's ICE is up and its keys are set. Returns the answer SDP."""
    sdp = await probe.offer(pid, **offer_opts)
    await ws.send({"type": "media", "room": room, "action": "offer", "sdp": sdp})
    f = await media_answer(ws, room, timeout)
    if f["type"] == "error":
        raise ProbeError("offer refused: %s" % f)
    await probe.answer(pid, f["sdp"])
    r = await probe.wait_ready(pid, timeout)
    if r["ev"] != "ready":
        raise ProbeError("%s did not get ready: %s" % (pid, r))
    return f["sdp"]


async def wait_stats(probe, pid, pred, timeout=10.0, what="stats"):
    """Polls the probe's stats of pid until pred(stats) holds; returns them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        s = await probe.stats(pid)
        if pred(s):
            return s
        if loop.time() >= deadline:
            raise TimeoutError("%s: %s not reached; last stats %s" % (pid, what, s))
        await asyncio.sleep(0.05)   # poll interval
