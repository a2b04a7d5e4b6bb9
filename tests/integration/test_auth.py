"""test_auth.py -- docs/protocol.md "Transport" and "Authentication".

hello/welcome fields, the token in the upgrade's Authorization header or in
hello, HTTP 401 before any upgrade for a bad header token, close 4501 for a bad
token in hello and 4502 for an expired one, the 30 s clock leeway, iss/aud when
configured, and the hello timeout (4508).
"""

import base64
import os
import time

import pytest
import websockets.exceptions

import tether_client as tc
import tether_harness as th
from tether_client import run


def bad_tokens(suite):
    """Tokens the gateway must refuse (and why), all for user mallory."""
    now = int(time.time())
    s = suite.secret
    return {
        "garbage": "not-a-jwt",
        "three_garbage_parts": "abc.def.ghi",
        "bad_signature": tc.make_token("some-other-secret", "mallory"),
        "alg_none": tc.jwt_encode({"sub": "mallory", "exp": now + 3600}, s, alg="none"),
        "alg_mismatch_hs512": tc.make_token(s, "mallory", alg="HS512"),
        "missing_exp": tc.make_token(s, "mallory", exp=None),
        "nbf_in_future": tc.make_token(s, "mallory", nbf=now + 600),
        "missing_sub": tc.jwt_encode({"exp": now + 3600, "iat": now}, s),
        "truncated_signature": tc.make_token(s, "mallory")[:-6],
    }


def expired_token(suite):
    return tc.make_token(suite.secret, "mallory", ttl=-120, iat=int(time.time()) - 3600)


@pytest.mark.suite_env(TETHER_HEARTBEAT_MS="20000", TETHER_SESSION_TTL_S="90")
def test_welcome_fields(suite):
    async def t():
        c = await tc.connect(suite.ws_url())
        assert c.subprotocol == "tether.v1.json"
        w = await c.hello(token=suite.token("alice", ttl=1800), client="pytest/1")
        assert w["type"] == "welcome"
        assert isinstance(w.get("session"), str) and w["session"], w
        assert w.get("user") == "alice", w
        assert w.get("resumed") is False, w
        assert w.get("heartbeat_ms") == 20000, w
        assert w.get("session_ttl_ms") == 90000, w
        assert isinstance(w.get("token_expires_in_ms"), int), w
        assert 1800_000 - 15_000 <= w["token_expires_in_ms"] <= 1800_000, w
        # A second connection is a second session.
        c2 = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        assert c2.session != c.session
        # And the connection is usable.
        await c.ping()
    run(t())


def test_no_subprotocol_means_json(suite):
    async def t():
        c = tc.Client(suite.ws_url(), proto=None)
        await c.connect()
        assert c.subprotocol is None
        w = await c.hello(token=suite.token("alice"))
        assert w["user"] == "alice"
    run(t())


def test_hello_with_authorization_header(suite):
    async def t():
        c = tc.Client(suite.ws_url(), headers={"Authorization": "Bearer " + suite.token("bob")})
        await c.connect()
        w = await c.hello()            # no token in hello: the header's counts
        assert w["user"] == "bob"
        room = tc.uid()
        await c.subscribe(room)
        ack = await c.publish(room, "m1", {"x": 1})
        assert ack["seq"] == 1
        msgs = await c.wait_messages(room, 1)
        assert msgs[0]["from"] == "bob"
    run(t())


def upgrade_status(suite, headers):
    """Status of a raw WebSocket upgrade request (any HTTP version in the
    answer is accepted here; see test_401_is_readable_by_a_websocket_client)."""
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
         "Sec-WebSocket-Protocol": "tether.v1.json"}
    h.update(headers)
    status, _, _ = th.http_request(suite.gateway.http, "GET", "/ws", headers=h)
    return status


def test_bad_tokens_on_upgrade_get_401(suite):
    toks = dict(bad_tokens(suite), expired=expired_token(suite))
    wrong = {}
    for kind, tok in toks.items():
        st = upgrade_status(suite, {"Authorization": "Bearer " + tok})
        if st != 401:
            wrong[kind] = st
    assert not wrong, "bad upgrade tokens not answered with 401: %s" % wrong
    # The control: the same request with a good token upgrades.
    assert upgrade_status(suite, {"Authorization": "Bearer " + suite.token("alice")}) == 101


def test_401_is_readable_by_a_websocket_client(suite):
    # A stock client library (python-websockets) must be able to read the
    # refusal as "401", not as an unparseable answer.
    async def t():
        c = tc.Client(suite.ws_url(), headers={"Authorization": "Bearer " + expired_token(suite)})
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            await c.connect()
        assert ei.value.status_code == 401
        ok = tc.Client(suite.ws_url(), headers={"Authorization": "Bearer " + suite.token("alice")})
        await ok.connect()
        assert (await ok.hello())["user"] == "alice"
    run(t())


def test_non_bearer_authorization_gets_401(suite):
    assert upgrade_status(suite, {"Authorization": "Basic YWxpY2U6cHc="}) == 401


async def _hello_close_code(suite, token, **hello):
    c = tc.Client(suite.ws_url())
    await c.connect()
    f = {"type": "hello"}
    if token is not None:
        f["token"] = token
    f.update(hello)
    await c.send(f)
    code, _ = await c.wait_closed(5)
    assert not c.find("welcome"), "welcome sent for a refused token: %s" % c.frames
    return code


def test_bad_tokens_in_hello_close_4501(suite):
    toks = dict(bad_tokens(suite), no_token=None)

    async def t():
        codes = {}
        for kind, tok in toks.items():
            try:
                codes[kind] = await _hello_close_code(suite, tok)
            except Exception as e:         # report every variant, not just the first
                codes[kind] = repr(e)
        wrong = {k: v for k, v in codes.items() if v != 4501}
        assert not wrong, "bad hello tokens not closed with 4501: %s" % wrong
    run(t(), timeout=120)


def test_expired_token_in_hello_closes_4502(suite):
    assert run(_hello_close_code(suite, expired_token(suite))) == 4502


def test_clock_leeway_30s(suite):
    now = int(time.time())

    async def t():
        # exp 10 s ago and nbf 10 s ahead are within the 30 s leeway.
        for tok in (tc.make_token(suite.secret, "alice", ttl=-10),
                    tc.make_token(suite.secret, "alice", nbf=now + 10)):
            c = await tc.connect(suite.ws_url())
            assert (await c.hello(token=tok))["user"] == "alice"
            await c.close()
    run(t())


@pytest.mark.suite_env(TETHER_JWT_ISS="tether-test-issuer", TETHER_JWT_AUD="tether-test-aud")
def test_iss_and_aud_checked_when_configured(suite):
    s = suite.secret

    async def t():
        good = tc.make_token(s, "alice", iss="tether-test-issuer", aud="tether-test-aud")
        c = await tc.connect(suite.ws_url())
        assert (await c.hello(token=good))["user"] == "alice"
        for bad in (tc.make_token(s, "m", aud="tether-test-aud"),
                    tc.make_token(s, "m", iss="other", aud="tether-test-aud"),
                    tc.make_token(s, "m", iss="tether-test-issuer"),
                    tc.make_token(s, "m", iss="tether-test-issuer", aud="other")):
            assert await _hello_close_code(suite, bad) == 4501
    run(t())


@pytest.mark.suite_env(TETHER_HELLO_TIMEOUT_MS="700")
def test_hello_timeout_closes_4508(suite):
    async def t():
        loop_t0 = time.monotonic()
        silent = tc.Client(suite.ws_url(), name="silent")
        await silent.connect()
        talker = await tc.connect(suite.ws_url(), token=suite.token("alice"), name="talker")
        code, _ = await silent.wait_closed(5)
        elapsed = time.monotonic() - loop_t0
        assert code == 4508
        assert elapsed >= 0.6, "closed after %.2fs, before the 700 ms hello timeout" % elapsed
        # The connection that said hello in time is not affected.
        await talker.ping()
        assert not talker.closed.is_set()
    run(t())


def test_second_hello_does_not_change_user(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.send({"type": "hello", "token": suite.token("mallory")})
        # Whatever the gateway answers (error or close), alice must not
        # become mallory on this connection.
        room = tc.uid()
        try:
            await c.subscribe(room)
            await c.publish(room, "x1", 1)
            m = (await c.wait_messages(room, 1))[0]
            assert m["from"] == "alice"
        except (tc.Closed, tc.FrameError):
            pass
        assert not [f for f in c.find("welcome") if f.get("user") == "mallory"]
    run(t())


def test_refresh_token_in_band(suite):
    # docs/protocol.md `refresh {token}`, deviation 5: success is
    # silent, a bad token gets error 4501, an expired one 4502, a token for
    # another user is refused; the connection stays open in every case.
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice", ttl=120))
        await c.send({"type": "refresh", "token": suite.token("alice", ttl=7200)})
        await c.ping()
        assert not c.find("error"), c.find("error")
        cases = {"bad signature": (tc.make_token("other-secret", "alice"), (4501,)),
                 "expired, alice, 120 s ago": (tc.make_token(suite.secret, "alice", ttl=-120), (4502,)),
                 "expired, another user": (expired_token(suite), (4501, 4502, 4503)),
                 "really expired": (tc.make_token(suite.secret, "alice", ttl=-600), (4502,)),
                 "another user": (suite.token("mallory"), (4501, 4503))}
        wrong = {}
        for what, (tok, codes) in cases.items():
            c.skip()
            # Frames are answered in order: an error for the refresh comes
            # before the pong of the ping sent right after it.
            await c.send({"type": "refresh", "token": tok})
            await c.send({"type": "ping"})
            e = await c.recv_until(lambda f: f.get("type") in ("error", "pong"), 5, "refresh answer")
            if e.get("type") != "error" or e.get("code") not in codes:
                wrong[what] = e
            if e.get("type") == "error":      # this case's pong, before the next case
                await c.recv_until(lambda f: f.get("type") == "pong", 5, "pong")
        assert not wrong, "refresh not refused as documented: %s" % wrong
        room = tc.uid()
        await c.subscribe(room)
        await c.publish(room, "still-alice", 1)
        assert (await c.wait_messages(room, 1))[0]["from"] == "alice"
    run(t())
