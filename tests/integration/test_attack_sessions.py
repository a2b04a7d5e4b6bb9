"""test_attack_sessions.py -- sessions belong to users; user ids are clean;
session ids do not leak. Real Redis, gateways, sessiond, replayd, busd.

- B's hello with A's session id (A live on the same gateway, A live on
  another gateway, A disconnected within its TTL, sessiond down at B's
  hello) gets B a new session: A's connection stays open and keeps
  receiving, A's presence and session record do not change, B receives
  nothing of A's, and A still resumes its own session afterwards.
- A JWT `sub` with a C0/C1 control, DEL, a bidirectional control or invalid
  UTF-8 is refused: close 4501 at hello, 401 at the upgrade.
- sessiond's GET /v1/sessions: 401 without the operator key or with a
  wrong one, 200 with it, 404 when no key is configured (also read from
  TETHER_OPERATOR_KEY_FILE).

After every attack a normal client connects, publishes and receives
everything it published, in order, once.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time

import pytest
import websockets

import tether_client as tc
import tether_harness as th
from tether_client import run

pytestmark = pytest.mark.requires("sessiond")


# ---- helpers ---------------------------------------------------------------------

async def hello_client(suite, user, gateway=None, session=None, rooms=None, name=None):
    c = tc.Client(suite.ws_url(gateway), name=name or user)
    await c.connect()
    await c.hello(token=suite.token(user), session=session, rooms=rooms)
    return c


async def members_of(c, room, timeout=5):
    f = await c.recv_until(lambda x: x.get("type") == "presence" and x.get("room") == room and "members" in x,
                           timeout, "presence members of %s" % room)
    return {m["user"]: m["state"] for m in f["members"]}


def presence_changes(c, room):
    return [(f.get("user"), f.get("state")) for f in c.find("presence", room=room) if "members" not in f]


def record(suite, sid):
    st, _, body = suite.operator_get("/v1/sessions/%s" % sid)
    assert st == 200, (st, body)
    return json.loads(body)


def user_session(suite, user):
    st, _, body = suite.operator_get("/v1/sessions?user=%s" % user)
    return json.loads(body)["session"] if st == 200 else None


async def normal_client_works(suite, gateway=None, n=20):
    """A fresh user publishes n messages into a fresh room and gets them all."""
    room = tc.uid("after")
    c = await hello_client(suite, "normal-%s" % tc.uid("u"), gateway=gateway)
    await c.subscribe(room)
    acks = await c.publish_many(room, n, prefix="n")
    assert sorted(a["seq"] for a in acks) == list(range(1, n + 1)), acks
    await c.wait_seq(room, n, timeout=10)
    assert c.seqs(room) == list(range(1, n + 1)), c.seqs(room)
    await c.close()


async def still_open_and_receiving(a, room, pub):
    """a is open and gets a message published into room now."""
    assert not a.closed.is_set(), (a.close_code, a.close_reason)
    before = len(a.messages(room))
    ack = await pub.publish(room, tc.uid("live"), {"check": True})
    await a.wait_seq(room, ack["seq"], timeout=5)
    assert len(a.messages(room)) == before + 1
    await a.ping()


def assert_b_saw_nothing_of_a(b, room_a, a_session):
    assert b.welcome["session"] != a_session, b.welcome
    assert b.welcome["resumed"] is False, b.welcome
    assert b.welcome["user"] == "bob", b.welcome
    leaked = [f for f in b.frames if f is not b.welcome and (f.get("room") == room_a or a_session in json.dumps(f))]
    assert not leaked, leaked


# ---- another user's session id -----------------------------------------------------

def test_foreign_session_on_the_same_gateway(suite):
    async def t():
        room = tc.uid("a-room")
        a = await hello_client(suite, "alice", rooms={room: {}})
        await a.reply_for_room(room, "subscribed")
        sid = a.session
        watcher = await hello_client(suite, "carol", rooms={room: {}})
        await watcher.reply_for_room(room, "subscribed")
        assert (await members_of(watcher, room)).get("alice") == "online"
        pub = await hello_client(suite, "pub")
        rec0 = record(suite, sid)

        b = await hello_client(suite, "bob", session=sid)
        assert_b_saw_nothing_of_a(b, room, sid)
        await asyncio.sleep(1.0)                      # room for any wrong event to arrive
        await still_open_and_receiving(a, room, pub)
        assert [p for p in presence_changes(watcher, room) if p[0] in ("alice", "bob")] == []
        rec1 = record(suite, sid)
        for k in ("user", "gateway", "incarnation", "conn", "connected", "disconnects", "rooms"):
            assert rec1[k] == rec0[k], (k, rec0[k], rec1[k])
        assert rec1["user"] == "alice" and rec1["connected"] is True
        # B's own session is a separate record of B's.
        bs = user_session(suite, "bob")
        assert bs == b.session and bs != sid
        assert_b_saw_nothing_of_a(b, room, sid)
        await b.ping()
        await normal_client_works(suite)
    run(t())


def test_foreign_session_on_another_gateway(suite):
    g2 = suite.add_gateway()

    async def t():
        room = tc.uid("a-room")
        a = await hello_client(suite, "alice", rooms={room: {}})
        await a.reply_for_room(room, "subscribed")
        sid = a.session
        watcher = await hello_client(suite, "carol", gateway=g2.name, rooms={room: {}})
        await watcher.reply_for_room(room, "subscribed")
        assert (await members_of(watcher, room)).get("alice") == "online"
        pub = await hello_client(suite, "pub", gateway=g2.name)
        rec0 = record(suite, sid)

        b = await hello_client(suite, "bob", gateway=g2.name, session=sid)
        assert_b_saw_nothing_of_a(b, room, sid)
        await asyncio.sleep(1.0)
        await still_open_and_receiving(a, room, pub)
        assert [p for p in presence_changes(watcher, room) if p[0] in ("alice", "bob")] == []
        rec1 = record(suite, sid)
        for k in ("user", "gateway", "incarnation", "conn", "connected", "disconnects", "rooms"):
            assert rec1[k] == rec0[k], (k, rec0[k], rec1[k])
        assert user_session(suite, "bob") == b.session
        # bob's second try from the first gateway: the same answer.
        b2 = await hello_client(suite, "bob", session=sid, name="bob2")
        assert_b_saw_nothing_of_a(b2, room, sid)
        await still_open_and_receiving(a, room, pub)
        await normal_client_works(suite, gateway=g2.name)
        await normal_client_works(suite)
    run(t())


def test_foreign_session_while_the_owner_is_away_then_the_owner_resumes(suite):
    async def t():
        room = tc.uid("a-room")
        pub = await hello_client(suite, "pub")
        a = await hello_client(suite, "alice", rooms={room: {}})
        await a.reply_for_room(room, "subscribed")
        watcher = await hello_client(suite, "carol", rooms={room: {}})
        await watcher.reply_for_room(room, "subscribed")
        await pub.publish_many(room, 5, prefix="pre")
        await a.wait_seq(room, 5)
        pos = {"epoch": a.messages(room)[-1]["epoch"], "seq": 5}
        sid = a.session
        a.abort()
        await watcher.wait_for(lambda: ("alice", "reconnecting") in presence_changes(watcher, room), 5,
                               "alice reconnecting")
        await pub.publish_many(room, 7, prefix="missed")
        n_changes = len(presence_changes(watcher, room))
        rec0 = await asyncio.to_thread(
            th.wait_until, lambda: (lambda r: r if not r["connected"] else None)(record(suite, sid)), 5,
            "alice's session disconnected")

        # bob presents alice's id, asking for alice's room from her position.
        b = tc.Client(suite.ws_url(), name="bob")
        await b.connect()
        await b.hello(token=suite.token("bob"), session=sid)
        assert_b_saw_nothing_of_a(b, room, sid)
        await asyncio.sleep(1.0)
        assert presence_changes(watcher, room)[n_changes:] == []
        rec1 = record(suite, sid)
        for k in ("user", "gateway", "conn", "connected", "disconnects", "disconnected_at_ms", "rooms"):
            assert rec1[k] == rec0[k], (k, rec0[k], rec1[k])
        await b.close()

        # alice comes back with her id: resumed, exactly the 7 she missed.
        a2 = tc.Client(suite.ws_url(), name="alice2")
        await a2.connect()
        w = await a2.hello(token=suite.token("alice"), session=sid, rooms={room: pos})
        assert w["session"] == sid and w["resumed"] is True and w["disconnected_ms"] > 0, w
        s = await a2.reply_for_room(room, "subscribed")
        assert s["recovered"] is True and s["missed"] == 7, s
        await a2.wait_seq(room, 12)
        assert a2.seqs(room) == list(range(6, 13))
        await watcher.wait_for(lambda: ("alice", "online") in presence_changes(watcher, room)[n_changes:], 5,
                               "alice online again")
        assert ("bob", "online") not in presence_changes(watcher, room)
        await normal_client_works(suite)
    run(t())


def test_own_session_is_still_taken_over(suite):
    async def t():
        room = tc.uid("own")
        a1 = await hello_client(suite, "alice", rooms={room: {}}, name="old")
        await a1.reply_for_room(room, "subscribed")
        a2 = await hello_client(suite, "alice", session=a1.session, rooms={room: {}}, name="new")
        assert a2.welcome["session"] == a1.session and a2.welcome["resumed"] is True, a2.welcome
        assert (await a1.wait_closed(5))[0] == 4006
        await normal_client_works(suite)
    run(t())


def test_foreign_session_while_sessiond_is_down(suite):
    """The gateway cannot ask sessiond at hello (it is down): bob is welcomed
    with the id he sent, resumed false. When sessiond is back and refuses the
    open (alice's session), bob's connection moves to a session of its own;
    alice's record is untouched and she keeps her session."""
    g2 = suite.add_gateway()

    async def t():
        room = tc.uid("a-room")
        a = await hello_client(suite, "alice", gateway=g2.name, rooms={room: {}})
        await a.reply_for_room(room, "subscribed")
        sid = a.session
        pub = await hello_client(suite, "pub", gateway=g2.name)
        rec0 = record(suite, sid)
        suite.kill9("sessiond")
        b = tc.Client(suite.ws_url(), name="bob")
        await b.connect()
        await b.hello(token=suite.token("bob"), session=sid, rooms={tc.uid("bob-room"): {}}, timeout=10)
        assert b.welcome["resumed"] is False and b.welcome["user"] == "bob", b.welcome
        await asyncio.to_thread(suite.restart, "sessiond")
        bs = await asyncio.to_thread(th.wait_until, lambda: (lambda s: s if s and s != sid else None)(
            user_session(suite, "bob")), 15, "bob's own session in sessiond")
        assert bs != sid
        rec1 = record(suite, sid)
        assert rec1["user"] == "alice"
        for k in ("gateway", "incarnation", "conn", "disconnects"):
            assert rec1[k] == rec0[k], (k, rec0[k], rec1[k])
        await still_open_and_receiving(a, room, pub)
        assert not [f for f in b.frames if f.get("room") == room]
        await b.ping()
        await normal_client_works(suite)
    run(t())


# ---- user ids ----------------------------------------------------------------------

BAD_SUBS = {
    "nul": "a\x00b", "c0-soh": "a\x01b", "newline": "alice\nadmin", "tab": "a\tb", "esc": "\x1b[31mred",
    "c0-us": "a\x1fb", "del": "a\x7fb", "c1-0080": "a\x80b", "c1-nel": "a\x85b", "c1-csi": "\x9b31m",
    "c1-009f": "a\x9fb", "alm-061c": "a\u061cb", "lrm-200e": "a\u200eb", "rlm-200f": "a\u200fb",
    "lre-202a": "a\u202ab", "rle-202b": "a\u202bb", "pdf-202c": "a\u202cb", "lro-202d": "a\u202db",
    "rlo-202e": "\u202enimda", "lri-2066": "a\u2066b", "rli-2067": "a\u2067b", "fsi-2068": "a\u2068b",
    "pdi-2069": "a\u2069b",
}
# Raw payload bytes that are not UTF-8 (json.dumps cannot produce them).
BAD_UTF8 = {
    "lone-continuation": b"a\x80b", "overlong-slash": b"a\xc0\xafb", "surrogate": b"a\xed\xa0\x80b",
    "past-10ffff": b"a\xf4\x90\x80\x80b", "truncated": b"a\xe2\x82", "ff": b"\xff",
}
GOOD_SUBS = ["j\u00fcrgen", "\u0639\u0644\u064a", "\u4e2d\u6587", "\U0001f600smile", "a b:c@d.e", "\u00a0x"]


def raw_token(secret, sub_bytes, ttl=3600):
    now = int(time.time())
    payload = b'{"sub":"' + sub_bytes + b'","iat":%d,"exp":%d}' % (now, now + ttl)
    hdr = tc.b64url(b'{"alg":"HS256","typ":"JWT"}')
    si = hdr + "." + tc.b64url(payload)
    sig = hmac.new(secret.encode(), si.encode(), hashlib.sha256).digest()
    return si + "." + tc.b64url(sig)


def bad_tokens(suite):
    toks = {k: suite.token(v) for k, v in BAD_SUBS.items()}
    toks.update({"utf8-" + k: raw_token(suite.secret, v) for k, v in BAD_UTF8.items()})
    return toks


def upgrade_status(suite, token):
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
         "Sec-WebSocket-Protocol": "tether.v1.json", "Authorization": "Bearer " + token}
    status, _, _ = th.http_request(suite.gateway.http, "GET", "/ws", headers=h)
    return status


def test_bad_sub_at_hello_closes_4501(suite):
    async def t():
        wrong = {}
        for kind, tok in bad_tokens(suite).items():
            c = tc.Client(suite.ws_url(), name=kind)
            await c.connect()
            await c.send({"type": "hello", "token": tok})
            code, _ = await c.wait_closed(5)
            if code != 4501 or c.welcome is not None:
                wrong[kind] = code
        assert not wrong, "bad subs not closed with 4501: %s" % wrong
        for sub in GOOD_SUBS:
            c = await hello_client(suite, sub)
            assert c.welcome["user"] == sub, c.welcome
            await c.close()
        await normal_client_works(suite)
    run(t())


def test_bad_sub_at_upgrade_is_401(suite):
    wrong = {k: st for k, st in ((k, upgrade_status(suite, tok)) for k, tok in bad_tokens(suite).items())
             if st != 401}
    assert not wrong, "bad subs not refused with 401 on the upgrade: %s" % wrong
    for sub in GOOD_SUBS:
        assert upgrade_status(suite, suite.token(sub)) == 101, sub

    async def t():
        c = tc.Client(suite.ws_url(), headers={"Authorization": "Bearer " + suite.token("\u202eevil")})
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            await c.connect()
        assert ei.value.status_code == 401
        await normal_client_works(suite)
    run(t())


def test_bad_sub_over_http_publish_is_401(suite):
    room = tc.uid("http")
    for kind, tok in bad_tokens(suite).items():
        st, _, _ = th.http_request(suite.gateway.http, "POST", "/v1/rooms/%s/publish" % room, json_body={"k": 1},
                                   headers={"Authorization": "Bearer " + tok, "Idempotency-Key": "k-" + kind})
        assert st == 401, (kind, st)
    run(normal_client_works(suite))


# ---- the operators' session listing -------------------------------------------------

def test_session_listing_needs_the_operator_key(suite):
    async def t():
        a = await hello_client(suite, "alice")
        sid = a.session
        hp = suite["sessiond"].http
        for path in ("/v1/sessions?user=alice", "/v1/sessions/%s" % sid, "/v1/sessions", "/v1/sessions/x"):
            for headers in ({}, {"Authorization": "Bearer wrong-" + suite.operator_key},
                            {"Authorization": "Basic " + suite.operator_key},
                            {"Authorization": suite.operator_key}, {"Authorization": "Bearer "}):
                st, hd, body = th.http_request(hp, "GET", path, headers=headers)
                assert st == 401, (path, headers, st)
                assert sid.encode() not in body and b"alice" not in body
                assert hd.get("www-authenticate", "").lower().startswith("bearer")
        st, _, body = suite.operator_get("/v1/sessions?user=alice")
        assert st == 200 and json.loads(body)["session"] == sid
        st, _, body = suite.operator_get("/v1/sessions/%s" % sid)
        assert st == 200 and json.loads(body)["user"] == "alice"
        # The other daemons' HTTP does not serve session records either.
        for name in [n for n in ("gateway", "replayd", "mediad", "busd") if n in suite.daemons]:
            st, _, body = th.http_get(suite[name].http, "/v1/sessions?user=alice")
            assert st in (401, 404) and sid.encode() not in body, (name, st)
            st, _, body = th.http_get(suite[name].http, "/metrics")
            assert sid.encode() not in body, name
        st, _, body = th.http_get(hp, "/metrics")
        assert sid.encode() not in body
        await normal_client_works(suite)
    run(t())


@pytest.mark.suite_env(TETHER_OPERATOR_KEY="")
def test_session_listing_not_served_without_a_key(suite):
    async def t():
        a = await hello_client(suite, "alice")
        hp = suite["sessiond"].http
        for path in ("/v1/sessions?user=alice", "/v1/sessions/%s" % a.session):
            for headers in ({}, {"Authorization": "Bearer " + suite.operator_key}, {"Authorization": "Bearer "}):
                st, _, body = th.http_request(hp, "GET", path, headers=headers)
                assert st == 404 and a.session.encode() not in body, (path, headers, st)
        assert th.http_get(hp, "/healthz")[0] == 200
        await normal_client_works(suite)
    run(t())


def test_operator_key_from_a_file(tether, tmp_path):
    key = "file-key-" + os.urandom(12).hex()
    kf = tmp_path / "operator.key"
    kf.write_text(key + "\n")
    suite = tether(env={"TETHER_OPERATOR_KEY": "", "TETHER_OPERATOR_KEY_FILE": str(kf)})

    async def t():
        a = await hello_client(suite, "alice")
        assert suite.operator_get("/v1/sessions/%s" % a.session)[0] == 401     # the suite's default key
        st, _, body = suite.operator_get("/v1/sessions/%s" % a.session, key=key)
        assert st == 200 and json.loads(body)["user"] == "alice"
        await normal_client_works(suite)
    run(t())
