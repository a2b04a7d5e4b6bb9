"""test_http.py -- the HTTP side: docs/protocol.md and
docs/operations.md ("HTTP limits", probes and metrics).

/healthz, /readyz and /metrics (Prometheus text) on every daemon; /readyz
follows the dependencies; POST /v1/rooms/{room}/publish with a Bearer token
and an Idempotency-Key; daemons log JSON lines and print their config once
with the secret masked.
"""

import json
import re
import subprocess
import urllib.parse

import pytest

import tether_client as tc
import tether_harness as th
from tether_client import run

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.eE+-]+|[+-]?Inf|NaN)( -?[0-9]+)?$')
COMMENT = re.compile(r"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                     r"(counter|gauge|histogram|summary|untyped))$")


def check_prometheus(name, text):
    bad = [l for l in text.splitlines() if l and not l.startswith("#") and not SAMPLE.match(l)]
    bad += [l for l in text.splitlines() if l.startswith("# ") and (l.startswith("# HELP") or l.startswith("# TYPE"))
            and not COMMENT.match(l)]
    assert not bad, "%s /metrics: lines not in Prometheus text format: %s" % (name, bad[:5])
    assert any(l.startswith("# TYPE ") for l in text.splitlines()), "%s /metrics has no # TYPE line" % name
    th.parse_metrics(text)


def test_health_ready_metrics_on_every_daemon(suite):
    problems = []
    for d in suite.daemons.values():
        st = d.healthz()
        if st != 200:
            problems.append("%s /healthz %d" % (d.name, st))
        if not d.ready(suite.missing_deps(d)):
            problems.append("%s /readyz %r" % (d.name, d.readyz()))
        status, headers, body = th.http_get(d.http, "/metrics")
        if status != 200:
            problems.append("%s /metrics %d" % (d.name, status))
            continue
        if not headers.get("content-type", "").startswith("text/plain"):
            problems.append("%s /metrics content-type %r" % (d.name, headers.get("content-type")))
        try:
            check_prometheus(d.name, body.decode())
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)


def test_gateway_unknown_path_is_404(suite):
    assert th.http_get(suite.gateway.http, "/no/such/path")[0] == 404


def test_gateway_metrics_move_with_traffic(suite):
    before = suite.gateway.metrics()

    async def t():
        room = tc.uid()
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.subscribe(room)
        await c.publish_many(room, 20)
        await c.wait_messages(room, 20)
    run(t())
    after = suite.gateway.metrics()
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed, "no gateway metric changed after 1 connection, 20 publishes and 20 deliveries"


def test_replayd_readyz_follows_redis(suite):
    replayd = suite["replayd"]
    assert replayd.readyz()[0] == 200
    suite.redis.kill9()
    th.wait_until(lambda: replayd.readyz()[0] == 503, 5, "replayd /readyz 503 with redis down")
    assert replayd.healthz() == 200, "/healthz must stay 200: the process still serves"
    suite.redis.start()
    th.wait_until(lambda: replayd.readyz()[0] == 200, 10, "replayd /readyz 200 with redis back")


@pytest.mark.parametrize("dependency", ["replayd", "busd"])
def test_gateway_readyz_follows_its_dependencies(suite, dependency):
    # replayd (and sessiond) and the bus (docs/protocol.md).
    gw = suite.gateway
    missing = suite.missing_deps(gw)          # sessiond, until it is built
    assert gw.ready(missing)
    suite.kill9(dependency)
    th.wait_until(lambda: not gw.ready(missing), 5, "gateway not ready with %s down" % dependency)
    status, body = gw.readyz()
    assert status == 503 and isinstance(json.loads(body), dict), body      # "503 with JSON detail"
    assert gw.healthz() == 200
    suite.restart(dependency)
    th.wait_until(lambda: gw.ready(missing), 10, "gateway ready again with %s back" % dependency)


def _publish(suite, room, key, body, token=None, headers=None):
    h = {"Content-Type": "application/json"}
    if token is not False:
        h["Authorization"] = "Bearer " + (token or suite.token("httpuser"))
    if key is not None:
        h["Idempotency-Key"] = key
    h.update(headers or {})
    path = "/v1/rooms/%s/publish" % urllib.parse.quote(room, safe="")
    return th.http_request(suite.gateway.http, "POST", path, body=json.dumps(body), headers=h)


def pick(reply):
    return {k: reply.get(k) for k in ("seq", "duplicate")}


def test_http_publish_with_idempotency_key(suite):
    # The body is the message's data, any JSON value (docs/protocol.md does not
    # spell the body out; this is the gateway's reading, and ours).
    payload = {"data": {"text": "from http", "n": 1}}

    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await sub.subscribe(room)
        status, headers, body = _publish(suite, room, "http-key-1", payload)
        assert status == 200, (status, body)
        assert headers.get("content-type", "").startswith("application/json")
        # More fields than seq and duplicate are an allowed extension.
        assert pick(json.loads(body)) == {"seq": 1, "duplicate": False}
        status, _, body = _publish(suite, room, "http-key-1", payload)
        assert status == 200 and pick(json.loads(body)) == {"seq": 1, "duplicate": True}
        status, _, body = _publish(suite, room, "http-key-2", payload)
        assert status == 200 and pick(json.loads(body)) == {"seq": 2, "duplicate": False}
        await sub.wait_seq(room, 2)
        await sub.ping()
        msgs = sub.messages(room)
        assert [(m["seq"], m["id"], m["from"]) for m in msgs] == [(1, "http-key-1", "httpuser"),
                                                                   (2, "http-key-2", "httpuser")]
        assert msgs[0]["data"] == payload, msgs[0]
        # The same user retrying over WebSocket with the same id is a duplicate too.
        ws = await tc.connect(suite.ws_url(), token=suite.token("httpuser"))
        ack = await ws.publish(room, "http-key-1", payload)
        assert (ack["seq"], ack["duplicate"]) == (1, True)
    run(t())


def test_http_publish_body_any_json_value(suite):
    async def t():
        room = tc.uid()
        sub = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await sub.subscribe(room)
        values = [None, 7, "text", [1, {"a": None}], {"k": "v"}]
        for i, v in enumerate(values):
            status, _, body = _publish(suite, room, "any-%d" % i, v)
            assert status == 200, (v, status, body)
        await sub.wait_messages(room, len(values))
        assert [m["data"] for m in sub.messages(room)] == values
        status, _, _ = th.http_request(suite.gateway.http, "POST", "/v1/rooms/%s/publish" % room,
                                       body="{not json", headers={"Authorization": "Bearer " + suite.token("a"),
                                                                  "Idempotency-Key": "bad-body"})
        assert status == 400
    run(t())


def test_http_publish_without_idempotency_key_is_not_deduplicated(suite):
    # docs/protocol.md: the gateway makes up an id, so two posts are two messages.
    room = tc.uid()
    a = json.loads(_publish(suite, room, None, {"x": 1})[2])
    b = json.loads(_publish(suite, room, None, {"x": 1})[2])
    assert (a["seq"], b["seq"], a["duplicate"], b["duplicate"]) == (1, 2, False, False)


@pytest.mark.suite_env(TETHER_MAX_FRAME="4096")
def test_http_publish_body_over_frame_limit_is_413(suite):
    room = tc.uid()
    assert _publish(suite, room, "big", "x" * 5000)[0] == 413
    assert _publish(suite, room, "small", "x" * 1000)[0] == 200


def test_http_publish_needs_a_valid_token(suite):
    room = tc.uid()
    assert _publish(suite, room, "k1", {"x": 1}, token=False)[0] == 401
    assert _publish(suite, room, "k1", {"x": 1}, token=tc.make_token("wrong", "u"))[0] == 401
    expired = tc.make_token(suite.secret, "u", ttl=-600)
    assert _publish(suite, room, "k1", {"x": 1}, token=expired)[0] == 401
    # Nothing was stored.
    status, _, body = _publish(suite, room, "k2", {"x": 2})
    assert status == 200 and json.loads(body)["seq"] == 1


def test_http_publish_forbidden_room_and_invalid_room(suite):
    tok = suite.token("carol", rooms=["allowed"])
    assert _publish(suite, "forbidden", "k1", 1, token=tok)[0] == 403
    assert _publish(suite, "allowed", "k1", 1, token=tok)[0] == 200
    assert _publish(suite, "bad room#", "k1", 1)[0] == 400
    assert _publish(suite, tc.uid(), "bad key with spaces", 1)[0] == 400


def _json_lines(path):
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    bad = []
    objs = []
    for l in lines:
        try:
            o = json.loads(l)
            if not isinstance(o, dict):
                raise ValueError
            objs.append(o)
        except ValueError:
            bad.append(l)
    return objs, bad


def test_logs_are_json_lines_with_config_and_masked_secret(suite):
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        room = tc.uid()
        await c.subscribe(room)
        await c.publish(room, "log-1", 1)
    run(t())
    problems = []
    for d in suite.daemons.values():
        objs, bad = _json_lines(d.log)
        if bad:
            problems.append("%s: stdout lines that are not JSON objects: %s" % (d.name, bad[:3]))
        if not objs:
            problems.append("%s: no log lines" % d.name)
            continue
        for key in ("ts", "level", "msg"):
            if not all(key in o for o in objs):
                problems.append("%s: log lines without %r" % (d.name, key))
        configs = [o for o in objs if "config" in str(o.get("msg", ""))]
        if len(configs) != 1:
            problems.append("%s: %d config lines, want exactly one" % (d.name, len(configs)))
        elif d.kind == "gateway" and "TETHER_JWT_SECRET" not in json.dumps(configs[0]):
            problems.append("gateway: its config line does not show TETHER_JWT_SECRET (masked)")
        text = d.log.read_text(errors="replace") + d.err.read_text(errors="replace")
        if suite.secret in text:
            problems.append("%s: the JWT secret appears in its log" % d.name)
    assert not problems, "\n".join(problems)


def test_gateway_log_level_warn_is_quiet(tether):
    s = tether(env={"TETHER_LOG_LEVEL": "warn"})

    async def t():
        c = await tc.connect(s.ws_url(), token=s.token("alice"))
        room = tc.uid()
        await c.subscribe(room)
        await c.publish(room, "x", 1)
    run(t())
    objs, _ = _json_lines(s.gateway.log)
    chatty = [o for o in objs if o.get("level") in ("debug", "info") and "config" not in str(o.get("msg"))]
    assert not chatty, "info/debug lines at TETHER_LOG_LEVEL=warn: %s" % chatty[:3]


def test_config_fails_fast_naming_the_variable(tmp_path):
    if th.missing(["gateway"]):
        pytest.skip("not built: gateway")
    s = th.Suite(tmp_path, components=[])
    env = s.base_env()
    env["TETHER_HTTP"] = "127.0.0.1:%d" % th.free_port()
    env["TETHER_MAX_FRAME"] = "not-a-number"
    p = subprocess.run([str(th.binary("gateway"))], env=env, capture_output=True, timeout=10)
    assert p.returncode != 0
    assert b"TETHER_MAX_FRAME" in p.stdout + p.stderr


def test_bare_tcp_connects_and_garbage_do_not_hurt_the_gateway(suite):
    """A port scan, a load balancer's TCP check, or garbage bytes: the
    gateway must stay up and keep serving (it once crashed on the close of a
    connection that never sent a request)."""
    import socket
    import time
    host, port = suite.gateway.http.rsplit(":", 1)
    for payload in (b"", b"", b"GARBAGE\r\n\r\n", b"\x00\xff" * 100, b"GET / HTTP/1.1\r\n"):
        s = socket.create_connection((host, int(port)), timeout=5)
        if payload:
            s.sendall(payload)
        time.sleep(0.05)
        s.close()
    assert th.http_get(suite.gateway.http, "/healthz")[0] == 200
    async def t():
        c = await tc.connect(suite.ws_url(), token=suite.token("alice"))
        await c.ping()
    run(t())
    assert suite.gateway.proc.poll() is None, "gateway exited"
