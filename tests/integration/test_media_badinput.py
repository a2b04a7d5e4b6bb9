"""test_media_badinput.py -- hostile or broken media input is refused, counted,
and never disturbs the other sessions of the room.

Each case runs while alice talks to bob through mediad (SDES probes); after
it, bob still receives exactly alice's packets and mediad's /metrics show the
case counted:
  - malformed and unsupported SDP offers: `error` 4400 with the reason,
    tether_mediad_sdp_rejected_total;
  - a DTLS peer whose certificate does not match its offer's fingerprint:
    `error` 4400, tether_mediad_dtls_handshakes_total{result="fingerprint_mismatch"};
  - SRTP packets failing authentication (and replays) from a keyed peer:
    tether_mediad_srtp_errors_total{kind="auth"|"replay"};
  - RTP under an SSRC the peer never declared: dropped before decryption,
    tether_mediad_dropped_packets_total{reason="unknown_ssrc"};
  - datagrams that are neither STUN, DTLS, RTP nor RTCP:
    tether_mediad_dropped_packets_total{reason="malformed"};
  - UDP from an address that never passed ICE to a session's port: libnice
    drops it before mediad sees it (not forwarded; the session lives on);
  - bad candidates and media requests for rooms not joined.
"""

import asyncio
import re
import socket

import pytest

import tether_client as tc
from tether_client import run
from test_media_helpers import Probe, join_audio, media_answer, wait_stats

pytestmark = pytest.mark.requires("mediad")


async def member(suite, user, room):
    c = await tc.connect(suite.ws_url(), token=suite.token(user), name=user)
    await c.subscribe(room)
    return c


class Talk:
    """alice talks to bob; check() proves bob still hears exactly alice."""

    def __init__(self, suite, probe, room):
        self.suite, self.probe, self.room = suite, probe, room

    async def start(self):
        self.a = await member(self.suite, "alice", self.room)
        self.b = await member(self.suite, "bob", self.room)
        await join_audio(self.a, self.room, self.probe, "alice", keying="sdes")
        self.answer_b = await join_audio(self.b, self.room, self.probe, "bob", keying="sdes")
        await self.a.send({"type": "ptt", "room": self.room, "action": "request"})
        await self.a.expect("ptt", room=self.room, state="granted")
        await self.check()
        return self

    async def check(self, n=20):
        """n fresh packets from alice reach bob, exact and in sequence (the
        statistics start over: packets a case made mediad drop consumed
        sequence numbers, which a listener rightly sees as a loss)."""
        await self.probe.reset("bob")
        await self.probe.send("alice", n, interval_ms=5)
        s = await wait_stats(self.probe, "bob", lambda s: s["payload_ok"] >= n, what="alice's packets")
        assert s["payload_bad"] == 0 and s["rx_bad"] == 0 and set(s["tags"]) == {"alice"}, s
        assert s["seq_gaps"] == 0, s


def metric(suite, name):
    return suite["mediad"].metrics().get(name, 0)


async def wait_metric(suite, name, pred, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = metric(suite, name)
        if pred(v):
            return v
        if loop.time() > deadline:
            raise AssertionError("%s stayed at %s" % (name, v))
        await asyncio.sleep(0.05)   # poll interval


BAD_OFFERS = [
    ("not sdp at all", "SDP must start with v="),
    ("v=0\r\ns=-\r\n", "no m-line"),
    ("v=0\r\nm=audio nine RTP/SAVPF 111\r\n", "m-line"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", "no audio m-line"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n", "no Opus"),
    ("v=0\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n", "unencrypted"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n", "ICE credentials"),
    ("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
     "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "rtcp-mux"),
    ("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
     "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n", "fingerprint"),
    ("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
     "m=audio 9 RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n"
     "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n", "wrong length"),
    ("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
     "m=audio 9 RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n"
     "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n", "MKI"),
    ("v=0\r\na=fingerprint:md5 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "fingerprint hash"),
]


def test_malformed_and_unsupported_offers(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            m = await member(suite, "mallory", room)
            before = metric(suite, "tether_mediad_sdp_rejected_total")
            for sdp, reason in BAD_OFFERS:
                await m.send({"type": "media", "room": room, "action": "offer", "sdp": sdp})
                f = await media_answer(m, room)
                assert f["type"] == "error" and f["code"] == 4400, (sdp, f)
                assert reason in f["reason"], (sdp, f["reason"])
            assert metric(suite, "tether_mediad_sdp_rejected_total") - before == len(BAD_OFFERS)
            assert metric(suite, "tether_mediad_sessions") == 2
            await talk.check()
        finally:
            await probe.stop()
    run(t())


def test_wrong_dtls_fingerprint_refused(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            m = await member(suite, "mallory", room)
            before = metric(suite, 'tether_mediad_dtls_handshakes_total{result="fingerprint_mismatch"}')
            sdp = await probe.offer("mallory", keying="dtls", fingerprint=":".join(["AB"] * 32))
            await m.send({"type": "media", "room": room, "action": "offer", "sdp": sdp})
            f = await media_answer(m, room)
            assert f["type"] == "media", f
            await probe.answer("mallory", f["sdp"])
            e = await m.error(timeout=10)
            assert e["code"] == 4400 and "fingerprint" in e["reason"], e
            assert metric(suite, 'tether_mediad_dtls_handshakes_total{result="fingerprint_mismatch"}') == before + 1
            await wait_metric(suite, "tether_mediad_sessions", lambda v: v == 2)
            # mallory never got keys: nothing reaches it.
            s = await probe.stats("mallory")
            assert s["payload_ok"] == 0, s
            await talk.check()
        finally:
            await probe.stop()
    run(t())


def test_srtp_auth_failures_and_replays_counted(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            auth0 = metric(suite, 'tether_mediad_srtp_errors_total{kind="auth"}')
            await probe.send("alice", 30, interval_ms=2, corrupt=True, tag="forged")
            await wait_metric(suite, 'tether_mediad_srtp_errors_total{kind="auth"}', lambda v: v >= auth0 + 30)
            rep0 = metric(suite, 'tether_mediad_srtp_errors_total{kind="replay"}')
            await probe.send("alice", 20, interval_ms=5, replay=True, tag="alice")
            await wait_metric(suite, 'tether_mediad_srtp_errors_total{kind="replay"}', lambda v: v >= rep0 + 20)
            s = await probe.stats("bob")
            assert "forged" not in s["tags"], s
            assert s["payload_bad"] == 0 and s["rx_bad"] == 0, s
            await talk.check()
        finally:
            await probe.stop()
    run(t())


def test_unknown_ssrc_and_garbage_dropped(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            u0 = metric(suite, 'tether_mediad_dropped_packets_total{reason="unknown_ssrc"}')
            await probe.send("alice", 25, interval_ms=2, ssrc=0x0badf00d, tag="intruder")
            await wait_metric(suite, 'tether_mediad_dropped_packets_total{reason="unknown_ssrc"}',
                              lambda v: v >= u0 + 25)
            g0 = metric(suite, 'tether_mediad_dropped_packets_total{reason="malformed"}')
            await probe.request("sent", cmd="raw", id="alice", hex="ff" * 40, count=10)
            await probe.request("sent", cmd="raw", id="alice", hex="80", count=5)
            await wait_metric(suite, 'tether_mediad_dropped_packets_total{reason="malformed"}',
                              lambda v: v >= g0 + 10)
            s = await probe.stats("bob")
            assert "intruder" not in s["tags"], s
            await talk.check()
        finally:
            await probe.stop()
    run(t())


def test_udp_from_outside_ice_is_ignored(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            port = int(re.search(r"a=candidate:\S+ 1 UDP \d+ 127\.0\.0\.1 (\d+) typ host", talk.answer_b).group(1))
            rtp0 = metric(suite, 'tether_mediad_rtp_packets_total{dir="in"}')
            drops0 = sum(v for k, v in suite["mediad"].metrics().items()
                         if k.startswith("tether_mediad_dropped_packets_total"))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                rtp = bytes([0x80, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]) + b"x" * 60
                for _ in range(50):
                    s.sendto(rtp, ("127.0.0.1", port))
                    s.sendto(bytes([22, 0xfe, 0xfd]) + b"\0" * 40, ("127.0.0.1", port))
            await asyncio.sleep(0.3)   # let them arrive (nothing is expected to happen)
            assert metric(suite, 'tether_mediad_rtp_packets_total{dir="in"}') == rtp0
            drops1 = sum(v for k, v in suite["mediad"].metrics().items()
                         if k.startswith("tether_mediad_dropped_packets_total"))
            assert drops1 == drops0, "libnice drops them before mediad's demux"
            await talk.check()
        finally:
            await probe.stop()
    run(t())


def test_bad_candidates_and_rooms(suite):
    async def t():
        room = tc.uid("bad")
        probe = await Probe().start()
        try:
            talk = await Talk(suite, probe, room).start()
            # A malformed candidate is refused by the gateway's decoder or by mediad;
            # either way bob's session goes on.
            await talk.b.send({"type": "media", "room": room, "action": "candidate",
                               "candidate": "candidate:x 1 udp 1 127.0.0.1 99999 typ host", "mid": "0"})
            await talk.b.send({"type": "media", "room": room, "action": "candidate",
                               "candidate": "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "mid": "0"})
            # Candidates before any offer: 4404.
            c = await member(suite, "carol", room)
            await c.send({"type": "media", "room": room, "action": "candidate",
                          "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "mid": "0"})
            assert (await c.error())["code"] == 4404
            # A room not subscribed: 4404; not in the token: 4503.
            await c.send({"type": "media", "room": room + "-other", "action": "offer", "sdp": "v=0\r\n"})
            assert (await c.error())["code"] == 4404
            d = await tc.connect(suite.ws_url(), token=suite.token("dave", rooms=["only-*"]), name="dave")
            await d.send({"type": "media", "room": room, "action": "offer", "sdp": "v=0\r\n"})
            assert (await d.error())["code"] == 4503
            await talk.check()
        finally:
            await probe.stop()
    run(t())
