"""test_positions.py -- docs/protocol.md position rules on subscribe (and hello).

{} is live only (missed 0); {epoch, seq N} delivers exactly what follows N
(N = 0: from seq 1) with recovered:true; {seq: 0} without epoch starts at the
oldest message still buffered; a wrong epoch or a trimmed history gives
recovered:false with gap {from, first_available} and then the messages still
buffered; `missed` counts the message frames that follow before any live one.
"""

import asyncio

import pytest

import tether_client as tc
from tether_client import run


SEQ_TO_ID = {}      # room -> {seq: id}, from the acks


async def room_with(suite, n, user="pub"):
    """A new room holding n messages; returns (room, epoch, publisher).
    The publishes are pipelined, so which id got which seq is taken from the
    acks (docs/protocol.md promises no order among one connection's publishes)."""
    room = tc.uid()
    pub = await tc.connect(suite.ws_url(), token=suite.token(user), name="pub")
    acks = await pub.publish_many(room, n, prefix="h") if n else []
    assert sorted(a["seq"] for a in acks) == list(range(1, n + 1))
    SEQ_TO_ID[room] = {a["seq"]: a["id"] for a in acks}
    probe = await tc.connect(suite.ws_url(), token=suite.token("probe"))
    s = await probe.subscribe(room)
    await probe.close()
    assert s["seq"] == n, s
    return room, s["epoch"], pub


async def subscriber(suite, name="sub"):
    return await tc.connect(suite.ws_url(), token=suite.token(name), name=name)


def check_replay(c, room, sub, first, last):
    """`sub` announced messages first..last, and exactly those arrived first."""
    n = last - first + 1 if last >= first else 0
    assert sub["missed"] == n, sub
    got = [(m["seq"], m["id"]) for m in c.messages(room)[:n]]
    assert got == [(s, SEQ_TO_ID[room][s]) for s in range(first, last + 1)], got


def test_empty_position_is_live_only(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 5)
        c = await subscriber(suite)
        s = await c.subscribe(room)
        assert (s["seq"], s["missed"], s["epoch"]) == (5, 0, epoch), s
        await pub.publish(room, "live-1", "x")
        msgs = await c.wait_messages(room, 1)
        await c.ping()
        assert [m["seq"] for m in c.messages(room)] == [6], "history delivered on a live-only subscribe"
        assert msgs[0]["id"] == "live-1"
    run(t())


def test_exact_position_resumes_after_seq(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 10)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=4)
        assert s["recovered"] is True and s["seq"] == 10 and "gap" not in s, s
        await c.wait_messages(room, 6)
        check_replay(c, room, s, 5, 10)
        await pub.publish(room, "live-1", 1)
        await c.wait_seq(room, 11)
        assert c.seqs(room) == list(range(5, 12))
    run(t())


def test_exact_position_zero_is_from_seq_1(suite):
    async def t():
        room, epoch, _ = await room_with(suite, 7)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=0)
        assert s["recovered"] is True, s
        await c.wait_messages(room, 7)
        check_replay(c, room, s, 1, 7)
    run(t())


def test_exact_position_at_top_misses_nothing(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 3)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=3)
        assert (s["recovered"], s["missed"], s["seq"]) == (True, 0, 3), s
        await pub.publish(room, "live", 1)
        await c.wait_seq(room, 4)
        assert c.seqs(room) == [4]
    run(t())


def test_seq_zero_without_epoch_is_from_oldest(suite):
    async def t():
        room, epoch, _ = await room_with(suite, 6)
        c = await subscriber(suite)
        s = await c.subscribe(room, seq=0)
        assert s["epoch"] == epoch and s["seq"] == 6, s
        await c.wait_messages(room, 6)
        check_replay(c, room, s, 1, 6)
    run(t())


def test_wrong_epoch_is_not_recovered(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 5)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch + "-stale", seq=2)
        assert s["recovered"] is False, s
        assert s["epoch"] == epoch, s
        gap = s.get("gap")
        assert isinstance(gap, dict) and "from" in gap and "first_available" in gap, s
        assert gap["first_available"] == 1, s
        # What is still buffered follows, announced by `missed`.
        n = s["missed"]
        assert n == 5, s
        await c.wait_messages(room, n)
        check_replay(c, room, s, 1, 5)
        await pub.publish(room, "live", 1)
        await c.wait_seq(room, 6)
        assert c.seqs(room) == [1, 2, 3, 4, 5, 6]
    run(t())


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="10", TETHER_HISTORY_MIN_AGE_MS="0")
def test_trimmed_history_reports_gap_then_buffered(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 25)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=3)
        assert s["recovered"] is False, s
        assert s["epoch"] == epoch and s["seq"] == 25, s
        gap = s.get("gap") or {}
        assert (gap.get("from"), gap.get("first_available")) == (4, 16), s
        await c.wait_messages(room, 10)
        check_replay(c, room, s, 16, 25)
        await pub.publish(room, "live", 1)
        await c.wait_seq(room, 26)
        assert c.seqs(room) == list(range(16, 27))
    run(t())


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="10", TETHER_HISTORY_MIN_AGE_MS="0")
def test_trimmed_history_position_still_buffered_is_recovered(suite):
    async def t():
        room, epoch, _ = await room_with(suite, 25)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=15)      # 16..25 are all buffered
        assert s["recovered"] is True and "gap" not in s, s
        await c.wait_messages(room, 10)
        check_replay(c, room, s, 16, 25)
    run(t())


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="10", TETHER_HISTORY_MIN_AGE_MS="0")
def test_seq_zero_with_trimmed_history_starts_at_oldest_buffered(suite):
    async def t():
        room, epoch, _ = await room_with(suite, 25)
        c = await subscriber(suite)
        s = await c.subscribe(room, seq=0)
        assert s["epoch"] == epoch and s["seq"] == 25, s
        await c.wait_messages(room, 10)
        check_replay(c, room, s, 16, 25)
    run(t())


def test_seq_without_epoch_or_epoch_without_seq_is_4400(suite):
    # docs/protocol.md deviation 1: only {}, {epoch, seq} and {seq: 0} exist.
    async def t():
        room, epoch, _ = await room_with(suite, 3)
        c = await subscriber(suite)
        for pos in ({"seq": 2}, {"epoch": epoch}):
            with pytest.raises(tc.FrameError) as ei:
                await c.subscribe(room, **pos)
            assert ei.value.code == 4400, (pos, ei.value.frame)
        assert not c.messages(room)
        assert (await c.subscribe(room, epoch=epoch, seq=2))["missed"] == 1
    run(t())


def test_position_ahead_of_top_is_not_recovered(suite):
    # docs/protocol.md deviation 2: acknowledged writes the store no longer has.
    async def t():
        room, epoch, _ = await room_with(suite, 4)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=9)
        assert s["recovered"] is False and s["missed"] == 0 and s["seq"] == 4, s
        assert (s["gap"]["from"], s["gap"]["first_available"]) == (5, 5), s
    run(t())


def test_subscribe_to_empty_room_from_zero(suite):
    async def t():
        room = tc.uid()
        c = await subscriber(suite)
        s = await c.subscribe(room, seq=0)
        assert (s["seq"], s["missed"]) == (0, 0), s
        assert isinstance(s["epoch"], str), s
        p = await tc.connect(suite.ws_url(), token=suite.token("pub"))
        await p.publish(room, "first", 1)
        await c.wait_seq(room, 1)
        assert c.seqs(room) == [1]
    run(t())


def test_hello_rooms_subscribe_in_one_step(suite):
    async def t():
        room_a, epoch_a, _ = await room_with(suite, 4)
        room_b, epoch_b, _ = await room_with(suite, 2)
        room_c = tc.uid()
        c = tc.Client(suite.ws_url())
        await c.connect()
        await c.hello(token=suite.token("alice"),
                      rooms={room_a: {"epoch": epoch_a, "seq": 1}, room_b: {"seq": 0}, room_c: {}})
        subs = {}
        for _ in range(3):
            f = await c.recv_until(lambda x: x.get("type") in ("subscribed", "error"), 5, "subscribed")
            assert f["type"] == "subscribed", f
            subs[f["room"]] = f
        assert set(subs) == {room_a, room_b, room_c}
        assert subs[room_a]["recovered"] is True and subs[room_a]["missed"] == 3
        assert subs[room_b]["missed"] == 2 and subs[room_c]["missed"] == 0
        await c.wait_messages(room_a, 3)
        await c.wait_messages(room_b, 2)
        check_replay(c, room_a, subs[room_a], 2, 4)
        check_replay(c, room_b, subs[room_b], 1, 2)
    run(t())


def test_resubscribe_same_room_on_one_connection_no_duplicates(suite):
    async def t():
        room, epoch, pub = await room_with(suite, 3)
        c = await subscriber(suite)
        await c.subscribe(room, epoch=epoch, seq=0)
        await c.wait_messages(room, 3)
        # Subscribing again from an older position on the same connection
        # must not deliver seq 1..3 twice ("each once" per connection) --
        # unless the gateway treats it as a fresh subscription, in which
        # case it must say so with a second `subscribed` announcing them.
        s2 = await c.subscribe(room, epoch=epoch, seq=0)
        await pub.publish(room, "live", 1)
        await c.wait_seq(room, 4)
        seqs = c.seqs(room)
        if s2["missed"] == 0:
            assert seqs == [1, 2, 3, 4], seqs
        else:
            assert seqs == [1, 2, 3] + list(range(4 - s2["missed"], 4)) + [4], seqs
    run(t())


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="10", TETHER_HISTORY_BURST="40", TETHER_HISTORY_MIN_AGE_MS="60000")
def test_young_messages_outlive_the_history_size_up_to_the_burst_cap(suite):
    """A burst right after an outage must not trim what a gateway is about to
    repair: messages younger than TETHER_HISTORY_MIN_AGE_MS are kept beyond
    TETHER_HISTORY_SIZE, up to TETHER_HISTORY_BURST."""
    async def t():
        room, epoch, pub = await room_with(suite, 30)
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=0)
        # All 30 are younger than a minute: kept although the size is 10.
        assert s["recovered"] is True and s["missed"] == 30, s
        await c.wait_messages(room, 30)
        check_replay(c, room, s, 1, 30)
        # Past the cap, the oldest go even when young.
        more = await pub.publish_many(room, 20, prefix="b")
        for a in more:
            SEQ_TO_ID[room][a["seq"]] = a["id"]
        d = await subscriber(suite, "late")
        s2 = await d.subscribe(room, epoch=epoch, seq=0)
        assert s2["recovered"] is False and s2["gap"]["first_available"] == 50 - 40 + 1, s2
        assert s2["missed"] == 40, s2
    run(t())


@pytest.mark.suite_env(TETHER_HISTORY_SIZE="10", TETHER_HISTORY_BURST="40", TETHER_HISTORY_MIN_AGE_MS="1500")
def test_messages_past_the_min_age_are_trimmed_back_to_the_size(suite):
    """Young messages outlive the size (up to the cap); once older than
    TETHER_HISTORY_MIN_AGE_MS the next append trims the log back to
    TETHER_HISTORY_SIZE. replayd remembers a lower bound of the oldest
    entry's time so that appends at the cap skip looking at it while it is
    young: that shortcut must never keep old messages for good, nor trim
    young ones."""
    async def t():
        room, epoch, pub = await room_with(suite, 30)
        # Past the cap while young: 45 published, the newest 40 kept.
        more = await pub.publish_many(room, 15, prefix="b")
        for a in more:
            SEQ_TO_ID[room][a["seq"]] = a["id"]
        c = await subscriber(suite)
        s = await c.subscribe(room, epoch=epoch, seq=0)
        assert s["recovered"] is False and s["gap"]["first_available"] == 45 - 40 + 1, s
        # Every one of them ages past the minimum: one more append trims the
        # log to the newest 10.
        await asyncio.sleep(1.8)
        a = await pub.publish(room, "late-1", {"i": 46})
        assert a["seq"] == 46, a
        d = await subscriber(suite, "late")
        s2 = await d.subscribe(room, epoch=epoch, seq=0)
        assert s2["gap"]["first_available"] == 46 - 10 + 1 and s2["missed"] == 10, s2
        # Five more: the log holds 37..51, of which 37..45 are old: the
        # oldest go down to the size (42..51).
        await pub.publish_many(room, 5, prefix="c")
        e = await subscriber(suite, "later")
        s3 = await e.subscribe(room, epoch=epoch, seq=0)
        assert s3["gap"]["first_available"] == 42 and s3["missed"] == 10, s3
        # Five more: 42..45 are old and go, 46 (late-1) is young and stays
        # although the log is then past the size (46..56).
        await pub.publish_many(room, 5, prefix="d")
        f = await subscriber(suite, "latest")
        s4 = await f.subscribe(room, epoch=epoch, seq=0)
        assert s4["gap"]["first_available"] == 46 and s4["missed"] == 11, s4
    run(t())
