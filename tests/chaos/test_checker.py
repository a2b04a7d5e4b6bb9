"""test_checker.py -- every judgement of checker.py can fail.

Synthetic client logs, first clean (no violation, complete), then each with
one defect the suite could produce: a dropped, repeated or reordered
delivery, an epoch change nobody announced, a resume that skips, an ack
with two seqs, a publish sequenced twice, an `offline` for a client that
was only reconnecting, and so on. Each must be reported as its kind.
No daemons: these take milliseconds.
"""

import json

import checker as chk

E, E2 = "0001aaaa", "0002bbbb"
ROOM = "r-0"


def ev(t, c, kind, **kw):
    d = {"t": t, "c": c, "ev": kind}
    d.update(kw)
    return d


def clean_run(n=5):
    """Two subscribers (a: C-like, b: Python-like) and a publisher p, one
    room, n messages, everything as it should be."""
    out = []
    t = 1_000_000
    for c in ("a", "b", "p"):
        out.append(ev(t, c, "client", rooms=[ROOM], pub_room=ROOM))
        out.append(ev(t + 1, c, "state", state="connected", session="s-" + c, resumed=0))
        out.append(ev(t + 2, c, "sub", room=ROOM, epoch="", seq=0, missed=0, recovered=True))
    t += 1000
    for i in range(1, n + 1):
        id_ = "p-%d" % i
        out.append(ev(t, "p", "pub", room=ROOM, id=id_))
        out.append(ev(t + 10, "p", "ack", room=ROOM, id=id_, seq=i, dup=0, err=0))
        for c in ("a", "b", "p"):
            out.append(ev(t + 20, c, "msg", room=ROOM, epoch=E, seq=i, id=id_))
        t += 1000
    out.append(ev(t, "a", "stats", dups=0, outbox=0))
    return out


def judge(events, tmp_path, loss_ok=False, flushes=()):
    path = tmp_path / "log.jsonl"
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    c = chk.Checker()
    c.loss_ok = loss_ok
    c.flushes = list(flushes)
    c.add_file(path)
    c.poll()
    c.check_acks(10 ** 12)
    c.check_presence(0, 10 ** 12)
    return c


def kinds(c):
    return sorted({v.kind for v in c.violations})


def without(events, pred):
    return [e for e in events if not pred(e)]


def is_msg(e, c, seq):
    return e["ev"] == "msg" and e["c"] == c and e["seq"] == seq


def test_clean_run_passes(tmp_path):
    c = judge(clean_run(), tmp_path)
    assert c.violations == []
    ok, missing = c.complete(10 ** 12)
    assert ok, missing
    assert c.counts()["delivered"] == 15


def test_partial_last_line_waits(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(e) for e in clean_run()]
    text = "\n".join(lines)
    cut = len(text) - 7
    path.write_text(text[:cut])
    c = chk.Checker()
    c.add_file(path)
    c.poll()
    assert c.lines == len(lines) - 1
    with open(path, "a") as f:
        f.write(text[cut:] + "\n")
    c.poll()
    assert c.lines == len(lines) and c.violations == []


def test_dropped_delivery_is_a_hole(tmp_path):
    c = judge(without(clean_run(), lambda e: is_msg(e, "b", 3)), tmp_path)
    assert kinds(c) == ["hole"]
    assert "3..3" in c.violations[0].detail


def test_dropped_last_delivery_is_incomplete(tmp_path):
    c = judge(without(clean_run(), lambda e: is_msg(e, "b", 5)), tmp_path)
    assert c.violations == []
    ok, missing = c.complete(10 ** 12)
    assert not ok and any(m.startswith("b at") for m in missing), missing


def test_undelivered_ack_is_incomplete(tmp_path):
    evs = without(clean_run(), lambda e: e["ev"] == "msg" and e["seq"] == 5)
    ok, missing = judge(evs, tmp_path).complete(10 ** 12)
    assert not ok and any("delivered to nobody" in m for m in missing), missing


def test_unacked_publish_is_incomplete(tmp_path):
    evs = clean_run() + [ev(10 ** 7, "p", "pub", room=ROOM, id="p-99")]
    ok, missing = judge(evs, tmp_path).complete(10 ** 8)
    assert not ok and any("not acknowledged" in m for m in missing), missing


def test_repeated_delivery_is_a_duplicate(tmp_path):
    evs = clean_run()
    i = next(k for k, e in enumerate(evs) if is_msg(e, "b", 3))
    evs.insert(i + 1, dict(evs[i]))
    assert kinds(judge(evs, tmp_path)) == ["duplicate"]


def test_sdk_dropped_duplicates_count(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "a", "stats", dups=2, outbox=0)]
    assert kinds(judge(evs, tmp_path)) == ["duplicate"]


def test_reordered_delivery(tmp_path):
    evs = clean_run()
    i = next(k for k, e in enumerate(evs) if is_msg(e, "b", 3))
    j = next(k for k, e in enumerate(evs) if is_msg(e, "b", 4))
    evs[i], evs[j] = evs[j], evs[i]
    assert "order" in kinds(judge(evs, tmp_path))


def test_new_epoch_without_recovered_false(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "b", "msg", room=ROOM, epoch=E2, seq=1, id="p-6")]
    assert "epoch" in kinds(judge(evs, tmp_path))


def test_epoch_change_announced_with_recovered_true(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "b", "sub", room=ROOM, epoch=E2, seq=0, missed=0, recovered=True)]
    assert "epoch" in kinds(judge(evs, tmp_path, loss_ok=True))


def test_flush_announced_properly_is_declared_loss_only(tmp_path):
    # b had 1..3 when the flush came; 4 and 5 are gone and it is told so.
    evs = clean_run()
    evs = without(evs, lambda e: e["c"] == "b" and e["ev"] == "msg" and e["seq"] > 3)
    evs += [ev(10 ** 8, "b", "sub", room=ROOM, epoch=E2, seq=1, missed=1, recovered=False,
               gap={"from": 4, "first_available": 1}),
            ev(10 ** 8 + 1, "b", "msg", room=ROOM, epoch=E2, seq=1, id="p-6")]
    c = judge(evs, tmp_path, loss_ok=True, flushes=[10 ** 8 - 5])
    assert c.violations == []
    assert c.counts()["declared_lost"] == 2
    # The same in a round where nothing may be lost.
    c = judge(evs, tmp_path, loss_ok=False, flushes=[10 ** 8 - 5])
    assert kinds(c) == ["declared_gap"]


def test_resume_that_skips(tmp_path):
    # b reconnects at position 3; the gateway says recovered: true but starts at 5.
    evs = without(clean_run(), lambda e: e["c"] == "b" and e["ev"] == "msg" and e["seq"] > 3)
    evs += [ev(10 ** 8, "b", "sub", room=ROOM, epoch=E, seq=5, missed=1, recovered=True),
            ev(10 ** 8 + 1, "b", "msg", room=ROOM, epoch=E, seq=5, id="p-5")]
    assert kinds(judge(evs, tmp_path)) == ["resume"]


def test_gap_frame_outside_a_flush(tmp_path):
    evs = without(clean_run(), lambda e: e["c"] == "b" and e["ev"] == "msg" and e["seq"] in (3, 4))
    i = next(k for k, e in enumerate(evs) if is_msg(e, "b", 5))
    evs.insert(i, ev(evs[i]["t"], "b", "gap", room=ROOM, **{"from": 3, "to": 4, "by_client": 0}))
    assert kinds(judge(evs, tmp_path)) == ["declared_gap"]
    assert kinds(judge(evs, tmp_path, loss_ok=True)) == []


def test_sdk_found_a_silent_hole(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "a", "gap", room=ROOM, **{"from": 6, "to": 6, "by_client": 1})]
    assert kinds(judge(evs, tmp_path)) == ["sdk_gap"]


def test_ack_with_two_seqs(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "p", "ack", room=ROOM, id="p-2", seq=7, dup=1, err=0)]
    assert "ack" in kinds(judge(evs, tmp_path))
    # ... unless Redis was flushed in between (the dedup keys went with it).
    assert "ack" not in kinds(judge(evs, tmp_path, flushes=[10 ** 8 - 10]))


def test_ack_seq_not_where_delivered(tmp_path):
    evs = clean_run()
    for e in evs:
        if e["ev"] == "ack" and e["id"] == "p-4":
            e["seq"] = 3
    assert "ack" in kinds(judge(evs, tmp_path))


def test_two_ids_at_one_seq(tmp_path):
    evs = clean_run()
    for e in evs:
        if is_msg(e, "b", 2):
            e["id"] = "x-1"
    assert "conflict" in kinds(judge(evs, tmp_path))


def test_one_id_at_two_seqs(tmp_path):
    evs = clean_run()
    for e in evs:
        if e["ev"] == "msg" and e["seq"] == 5:
            e["id"] = "p-4"
    assert "republished" in kinds(judge(evs, tmp_path))


def test_failed_publish_and_failed_client(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "p", "ack", room=ROOM, id="p-9", seq=0, dup=0, err=4503),
                         ev(10 ** 8, "b", "error", code=4400, reason="bad", id="b-1"),
                         ev(10 ** 8 + 1, "a", "state", state="failed", code=4501)]
    assert kinds(judge(evs, tmp_path)) == ["ack_error", "failed"]


def presence(t, watcher, user, state):
    return ev(t, watcher, "frame", type="presence", f={"type": "presence", "room": ROOM, "user": user, "state": state})


def test_offline_while_reconnecting(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "b", "state", state="reconnecting", code=1006),
                         presence(10 ** 8 + 10, "a", "b", "reconnecting"),
                         presence(10 ** 8 + 20, "a", "b", "offline"),
                         ev(10 ** 8 + 30, "b", "state", state="connected", session="s-b", resumed=1)]
    assert kinds(judge(evs, tmp_path)) == ["offline"]


def test_offline_after_bye_or_ttl_is_right(tmp_path):
    bye = clean_run() + [ev(10 ** 8, "b", "churn", bye=1), presence(10 ** 8 + 20, "a", "b", "offline")]
    assert kinds(judge(bye, tmp_path)) == []
    gone = clean_run() + [ev(10 ** 8, "b", "state", state="reconnecting", code=1006),
                          presence(10 ** 8 + 121 * 10 ** 6, "a", "b", "offline")]
    assert kinds(judge(gone, tmp_path)) == []


def test_reconnect_times(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "b", "state", state="reconnecting", code=1006),
                         ev(10 ** 8 + 3 * 10 ** 6, "b", "state", state="connected", session="s-b", resumed=1)]
    c = judge(evs, tmp_path)
    assert c.reconnect_times(10 ** 8 - 1, 10 ** 8 + 10 ** 6) == [("b", 10 ** 8, 10 ** 8 + 3 * 10 ** 6)]


def test_stale_presence_view(tmp_path):
    evs = clean_run() + [ev(10 ** 8, "a", "frame", type="presence",
                            f={"type": "presence", "room": ROOM, "members": [{"user": "p", "state": "online"}]}),
                         ev(10 ** 8, "b", "frame", type="presence",
                            f={"type": "presence", "room": ROOM, "members": [{"user": "p", "state": "online"},
                                                                              {"user": "a", "state": "online"}]}),
                         ev(10 ** 8, "p", "frame", type="presence",
                            f={"type": "presence", "room": ROOM, "members": [{"user": "a", "state": "online"},
                                                                              {"user": "b", "state": "online"}]})]
    stale = judge(evs, tmp_path).stale_presence()
    assert stale == [("a", ROOM, "b", None)]


def test_first_epoch_announced_as_a_loss(tmp_path):
    # Live subscription announced as (epoch "", top 1), then the room's first
    # epoch announced with recovered: false from 0 and seq 1 sent: nothing was
    # lost, and seq 1 predates the client's position.
    evs = [ev(1, "b", "client", rooms=[ROOM]), ev(2, "b", "state", state="connected", session="s"),
           ev(3, "b", "sub", room=ROOM, epoch="", seq=1, missed=0, recovered=True),
           ev(4, "b", "sub", room=ROOM, epoch=E, seq=2, missed=2, recovered=False, gap={"from": 2, "first_available": 1}),
           ev(5, "b", "msg", room=ROOM, epoch=E, seq=1, id="x-1"),
           ev(6, "b", "msg", room=ROOM, epoch=E, seq=2, id="x-2")]
    assert kinds(judge(evs, tmp_path, loss_ok=True)) == ["spurious_gap"]
