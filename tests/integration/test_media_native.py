"""test_media_native.py -- native clients (SDES-SRTP, and DTLS-SRTP without a
browser) hear the floor holder through mediad.

Each client signals over its own authenticated WebSocket (`media offer` with
a=crypto; the answer carries mediad's key) and runs ICE + SRTP with the
`mediad probe` peer. Checked: the listener decrypts exactly the payloads the
talker sent, under one SSRC (mediad's, announced in the answer) with
contiguous sequence numbers; audio from non-holders is dropped; after a
release and a new talker the same listener SSRC carries the new voice with a
marker bit and no sequence gap; the talker does not hear itself; re-offers
and ICE restarts keep the session; mediad's metrics count what happened.
"""

import asyncio
import re

import pytest

import tether_client as tc
from tether_client import run
from test_media_helpers import Probe, join_audio, wait_stats

pytestmark = pytest.mark.requires("mediad")


async def member(suite, user, room):
    c = await tc.connect(suite.ws_url(), token=suite.token(user), name=user)
    await c.subscribe(room)
    return c


async def take_floor(ws, room):
    await ws.send({"type": "ptt", "room": room, "action": "request"})
    f = await ws.expect("ptt", room=room, state="granted")
    return f


async def release_floor(ws, room):
    await ws.send({"type": "ptt", "room": room, "action": "release"})
    await ws.expect("ptt", room=room, state="idle")


def answer_ssrc(sdp):
    m = re.search(r"a=ssrc:(\d+) cname:", sdp)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("suite_name", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_32",
                                        "AEAD_AES_256_GCM"])
def test_sdes_listener_hears_holder_exactly(suite, suite_name):
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes", suite=suite_name)
            ans_b = await join_audio(b, room, probe, "bob", keying="sdes", suite=suite_name)
            assert "a=crypto:1 %s inline:" % suite_name in ans_b
            await take_floor(a, room)
            await probe.send("alice", 100, interval_ms=10)
            s = await wait_stats(probe, "bob", lambda s: s["rx"] >= 100, what="100 packets")
            assert s["payload_ok"] == 100 and s["payload_bad"] == 0 and s["rx_bad"] == 0, s
            assert s["tags"] == {"alice": 100}, s
            assert s["ssrcs"] == [answer_ssrc(ans_b)], (s, answer_ssrc(ans_b))
            assert s["seq_gaps"] == 0 and s["markers"] >= 1, s
            # The talker does not hear itself.
            sa = await probe.stats("alice")
            assert sa["rx"] == 0, sa
        finally:
            await probe.stop()
    run(t())


def test_non_holder_dropped_and_talker_switch_is_seamless(suite):
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            c = await member(suite, "carol", room)
            for ws, pid in ((a, "alice"), (b, "bob"), (c, "carol")):
                await join_audio(ws, room, probe, pid, keying="sdes")
            m0 = suite["mediad"].metrics()
            # No floor: nobody is forwarded.
            await probe.send("alice", 20, interval_ms=5)
            await asyncio.sleep(0.3)   # packets in flight would show up by now
            assert (await probe.stats("bob"))["rx"] == 0
            await take_floor(a, room)
            await c.expect("ptt", room=room, state="taken")
            # carol talks over alice: dropped.
            await asyncio.gather(probe.send("alice", 50, interval_ms=10), probe.send("carol", 50, interval_ms=10))
            s = await wait_stats(probe, "bob", lambda s: s["rx"] >= 50, what="alice's 50")
            await asyncio.sleep(0.2)
            s = await probe.stats("bob")
            assert s["tags"] == {"alice": 50}, s
            ssrc = s["ssrcs"]
            await release_floor(a, room)
            await take_floor(c, room)
            await probe.send("carol", 50, interval_ms=10)
            s = await wait_stats(probe, "bob", lambda s: s["rx"] >= 100, what="carol's 50")
            assert s["tags"] == {"alice": 50, "carol": 50}, s
            # One stream for the listener across talkers: same SSRC, no gap.
            assert s["ssrcs"] == ssrc and s["seq_gaps"] == 0, s
            assert s["markers"] >= 2, s
            # alice hears carol now.
            sa = await wait_stats(probe, "alice", lambda s: s["rx"] >= 50, what="alice hears carol")
            assert sa["tags"] == {"carol": 50}, sa
            m1 = suite["mediad"].metrics()
            dropped = (m1['tether_mediad_dropped_packets_total{reason="not_holder"}']
                       - m0.get('tether_mediad_dropped_packets_total{reason="not_holder"}', 0))
            assert dropped >= 70, dropped   # alice's 20 without floor + carol's 50 over alice
            assert m1["tether_mediad_sessions"] == 3
        finally:
            await probe.stop()
    run(t())


def test_dtls_native_peer_and_reoffer(suite):
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            await join_audio(a, room, probe, "alice", keying="dtls")
            ans = await join_audio(b, room, probe, "bob", keying="dtls")
            assert "a=setup:passive" in ans and "a=fingerprint:sha-256 " in ans
            r = await probe.wait_ready("bob")
            assert r["suite"] == "AEAD_AES_128_GCM", r   # GCM first when both offer it
            await take_floor(a, room)
            await probe.send("alice", 40, interval_ms=10)
            s = await wait_stats(probe, "bob", lambda s: s["rx"] >= 40, what="40 packets over DTLS-SRTP")
            assert s["payload_ok"] == 40 and s["tags"] == {"alice": 40}, s
            # The same offer again (a retried request): the same answer.
            # mediad's certificate fingerprint is stable across answers.
            fp = re.search(r"a=fingerprint:sha-256 (\S+)", ans).group(1)
            m = suite["mediad"].metrics()
            assert m['tether_mediad_dtls_handshakes_total{result="ok"}'] >= 2
            c = await member(suite, "carol", room)
            ans_c = await join_audio(c, room, probe, "carol", keying="dtls", setup="passive")
            assert "a=setup:active" in ans_c     # the offerer chose passive: mediad connects
            assert fp in ans_c
            await probe.send("alice", 20, interval_ms=10)
            await wait_stats(probe, "carol", lambda s: s["payload_ok"] >= 20, what="carol over active DTLS")
        finally:
            await probe.stop()
    run(t())


def test_answer_retry_renegotiation_and_leave(suite):
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes")
            sdp_b = await probe.offer("bob", keying="sdes")
            await b.send({"type": "media", "room": room, "action": "offer", "sdp": sdp_b})
            f1 = await b.expect("media", room=room, action="answer")
            # The same offer again: the same answer (idempotent).
            await b.send({"type": "media", "room": room, "action": "offer", "sdp": sdp_b})
            f2 = await b.expect("media", room=room, action="answer")
            assert f1["sdp"] == f2["sdp"]
            await probe.answer("bob", f1["sdp"])
            assert (await probe.wait_ready("bob"))["ev"] == "ready"
            # A renegotiation to recvonly keeps the session (same ICE ufrag).
            await b.send({"type": "media", "room": room, "action": "offer",
                          "sdp": sdp_b.replace("a=sendrecv", "a=recvonly")})
            f3 = await b.expect("media", room=room, action="answer")
            assert "a=sendonly" in f3["sdp"]
            ufrag = lambda s: re.search(r"a=ice-ufrag:(\S+)", s).group(1)
            assert ufrag(f3["sdp"]) == ufrag(f1["sdp"])
            await take_floor(a, room)
            await probe.send("alice", 30, interval_ms=10)
            await wait_stats(probe, "bob", lambda s: s["payload_ok"] >= 30, what="after renegotiation")
            # leave: no more audio for bob.
            await b.send({"type": "media", "room": room, "action": "leave"})
            m = None
            for _ in range(50):
                m = suite["mediad"].metrics()
                if m["tether_mediad_sessions"] == 1:
                    break
                await asyncio.sleep(0.05)
            assert m["tether_mediad_sessions"] == 1, m
            await probe.reset("bob")
            await probe.send("alice", 20, interval_ms=5)
            await asyncio.sleep(0.3)
            assert (await probe.stats("bob"))["rx"] == 0
        finally:
            await probe.stop()
    run(t())


def test_ice_restart_keeps_session_and_keys(suite):
    """An offer with new ICE credentials on an existing session: mediad
    restarts ICE (nice_agent_restart before the new remote credentials),
    answers new local credentials, keeps the SRTP keys, and audio flows on
    the restarted transport."""
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            await join_audio(a, room, probe, "alice", keying="sdes")
            ans1 = await join_audio(b, room, probe, "bob", keying="sdes")
            await take_floor(a, room)
            m0 = suite["mediad"].metrics()
            sdp = (await probe.request("offer", cmd="restart_ice", id="bob"))["sdp"]
            await b.send({"type": "media", "room": room, "action": "offer", "sdp": sdp})
            f = await b.expect("media", room=room, action="answer")
            u1 = re.search(r"a=ice-ufrag:(\S+)", ans1).group(1)
            u2 = re.search(r"a=ice-ufrag:(\S+)", f["sdp"]).group(1)
            assert u1 != u2, "new local credentials after an ICE restart"
            assert re.search(r"a=crypto:\S+ \S+ inline:(\S+)", ans1).group(1) == \
                re.search(r"a=crypto:\S+ \S+ inline:(\S+)", f["sdp"]).group(1), "keys carry over"
            await probe.answer("bob", f["sdp"])
            await probe.reset("bob")
            await probe.send("alice", 40, interval_ms=10)
            s = await wait_stats(probe, "bob", lambda s: s["payload_ok"] >= 30, what="audio after the ICE restart")
            assert s["tags"] == {"alice": s["payload_ok"]} and s["payload_bad"] == 0, s
            m1 = suite["mediad"].metrics()
            assert m1["tether_mediad_ice_restarts_total"] - m0.get("tether_mediad_ice_restarts_total", 0) == 1
            assert m1["tether_mediad_sessions"] == 2
        finally:
            await probe.stop()
    run(t())


@pytest.mark.suite_env(TETHER_MEDIA_TRICKLE=1)
def test_server_candidates_trickled(suite):
    """TETHER_MEDIA_TRICKLE=1: the answer carries no candidates; mediad's
    arrive afterwards as `media {action: candidate}` frames (never before the
    answer), the last one empty (end of candidates), and ICE completes with
    them."""
    async def t():
        room = tc.uid("audio")
        probe = await Probe().start()
        try:
            a = await member(suite, "alice", room)
            b = await member(suite, "bob", room)
            for ws, pid in ((a, "alice"), (b, "bob")):
                sdp = await probe.offer(pid, keying="sdes")
                await ws.send({"type": "media", "room": room, "action": "offer", "sdp": sdp})
                ans = await ws.expect("media", room=room, action="answer")
                assert "a=candidate" not in ans["sdp"] and "a=end-of-candidates" not in ans["sdp"], ans["sdp"]
                await probe.answer(pid, ans["sdp"])
                while True:
                    c = await ws.expect("media", room=room, action="candidate", timeout=5)
                    if not c.get("candidate"):
                        break
                    assert c["candidate"].startswith("candidate:") and c.get("mid") == "0", c
                    await probe.cmd(cmd="candidate", id=pid, candidate=c["candidate"])
                assert (await probe.wait_ready(pid))["ev"] == "ready"
                # Every candidate came after the answer.
                frames = [f for f in ws.frames if f.get("type") == "media"]
                assert frames[0]["action"] == "answer", frames[:2]
            await take_floor(a, room)
            await probe.send("alice", 30, interval_ms=5)
            await wait_stats(probe, "bob", lambda s: s["payload_ok"] >= 30, what="audio over trickled candidates")
        finally:
            await probe.stop()
    run(t())
