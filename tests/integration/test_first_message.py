"""test_first_message.py -- a brand-new room's first message is never
announced as a loss.

replayd reads ranges and appends on two Redis connections, so Redis can run a
subscriber's first read of a room *before* the room's first append, while
the gateway gets that message from the bus *before* the read's reply. The
gateway then held the message (room not known yet), learned "no history"
from the late reply, delivered the held message under epoch "" and, when the
real epoch showed up (heads, the next message), took it for an epoch change:
`subscribed` with `recovered: false` for a room that lost nothing (seen by
tests/chaos about once in eight runs).

This test makes the race certain: replayd's Redis goes through a relay in the
test that holds the reply of the range read of the new room until the first
message has been published, acknowledged and seen by the gateway.
"""

import asyncio

import tether_client as tc
from tether_client import run


class HoldingRelay:
    """A TCP relay to Redis. Once armed for a room, the first connection that
    sends a range read of it (its meta and log keys, no dedup key: not an
    append) gets Redis's replies held until release()."""

    def __init__(self, redis_port):
        self.redis_port = redis_port
        self.room = None
        self.holding = None        # the connection whose replies are held
        self.held = []
        self.released = asyncio.Event()
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def arm(self, room):
        self.room = room

    async def wait_held(self, timeout):
        """Until a reply is held (polled: no client frame says so). The
        publish must follow at once: replayd drops a Redis connection whose
        reply is over 1 s late, and its retry would not be held."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.held:
            assert loop.time() < end, "no range read of %s reached Redis" % self.room
            await asyncio.sleep(0.002)

    async def release(self):
        self.room = None
        self.released.set()

    async def close(self):
        self.released.set()
        self.server.close()
        await self.server.wait_closed()

    async def _conn(self, creader, cwriter):
        rreader, rwriter = await asyncio.open_connection("127.0.0.1", self.redis_port)
        me = object()

        async def up():
            while data := await creader.read(65536):
                if (self.room and self.holding is None and ("tether:{%s}:meta" % self.room).encode() in data
                        and ("tether:{%s}:dd" % self.room).encode() not in data):
                    self.holding = me
                rwriter.write(data)
                await rwriter.drain()
            rwriter.close()

        async def down():
            while data := await rreader.read(65536):
                if self.holding is me and not self.released.is_set():
                    self.held.append(data)
                    await self.released.wait()
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()
        try:
            await asyncio.gather(up(), down())
        except (ConnectionError, OSError):
            pass


def test_first_message_of_a_new_room_is_not_a_loss(suite):
    async def t():
        relay = HoldingRelay(suite.redis.port)
        port = await relay.start()
        try:
            suite.daemons["replayd"].env["TETHER_REDIS"] = "redis://127.0.0.1:%d" % port
            await asyncio.to_thread(suite.restart, "replayd")
            other, room = tc.uid("warm"), tc.uid("first")
            c = await tc.connect(suite.ws_url(), token=suite.token("watcher"))
            await c.subscribe(other)
            pub = await tc.connect(suite.ws_url(), token=suite.token("pub"))
            await pub.publish(other, "w0", "warm-up")
            await c.wait_seq(other, 1)

            relay.arm(room)
            await c.send({"type": "subscribe", "room": room})
            await relay.wait_held(5)
            ack = await pub.publish(room, "f1", "first")
            assert ack["seq"] == 1, ack
            # Bus order: once the watcher has this, the gateway has seen the
            # new room's first message too (one replayd, one bus connection).
            await pub.publish(other, "w1", "after")
            await c.wait_seq(other, 2)
            await relay.release()

            s = await c.reply_for_room(room, "subscribed", 5)
            assert s["epoch"], "the room's first message exists: its epoch is known (%s)" % s
            assert s["recovered"] is True and "gap" not in s, s
            await pub.publish(room, "f2", "second")
            await c.wait_seq(room, 2)
            # Past a heads announcement (every second for active rooms): no
            # second `subscribed`, no gap, no message twice.
            await asyncio.sleep(1.5)
            subs = c.find("subscribed", room=room)
            assert len(subs) == 1, subs
            assert not c.find("gap", room=room), c.find("gap", room=room)
            seqs = [m["seq"] for m in c.messages(room)]
            assert seqs == sorted(set(seqs)) and seqs[-1] == 2, seqs
            assert all(m["epoch"] == s["epoch"] for m in c.messages(room)), c.messages(room)
        finally:
            await relay.close()
    run(t())
