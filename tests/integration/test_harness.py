"""test_harness.py -- checks of the test harness itself (no daemons needed).

If these fail, the acceptance tests' verdicts cannot be trusted: the redis
fixtures, AOF durability across kill -9, port allocation, the JWT minting and
the protobuf codec (checked against fixed bytes encoded by protobuf-c).
"""

import base64
import hashlib
import hmac
import json

import pytest

import tether_client as tc
import tether_harness as th


def test_redis_fixture_answers(redis):
    assert redis.command("PING") == "PONG"
    assert redis.command("SET", "k", "v") == "OK"
    assert redis.command("GET", "k") == b"v"
    assert redis.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    assert redis.command("CONFIG", "GET", "save") == [b"save", b""]


def test_redis_is_fresh_per_test(redis):
    assert redis.command("DBSIZE") == 0


def test_redis_aof_survives_kill9(redis_aof):
    assert redis_aof.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    for i in range(50):
        redis_aof.command("RPUSH", "l", i)
    redis_aof.kill9()
    with pytest.raises(OSError):
        redis_aof.command("PING")
    redis_aof.start()
    assert redis_aof.command("LLEN", "l") == 50


def test_redis_without_aof_loses_data_on_kill9(redis):
    # The control for the test above: without AOF the data is gone, so that
    # test really depends on AOF.
    redis.command("SET", "k", "v")
    redis.kill9()
    redis.start()
    assert redis.command("GET", "k") is None


def test_redis_error_reply(redis):
    with pytest.raises(th.RedisError):
        redis.command("NOSUCHCOMMAND")


def test_free_ports_are_distinct_and_bindable():
    # SO_REUSEADDR as the daemons' listeners use it: earlier tests' servers
    # leave TIME_WAIT entries on these ports, which only matter without it.
    import socket
    ports = [th.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(20000 <= p < 32768 for p in ports), "ports must stay below the ephemeral range"
    for p in ports[-5:]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))


def test_wait_until_deadline():
    with pytest.raises(TimeoutError, match="never"):
        th.wait_until(lambda: False, 0.1, "never")
    assert th.wait_until(lambda: 7, 0.1) == 7


def test_parse_metrics():
    text = ('# HELP x_total things\n# TYPE x_total counter\nx_total 3\n'
            'y{a="1",b="two words"} 2.5 1700000000000\nz_bucket{le="+Inf"} 4\n')
    m = th.parse_metrics(text)
    assert m == {"x_total": 3.0, 'y{a="1",b="two words"}': 2.5, 'z_bucket{le="+Inf"}': 4.0}
    with pytest.raises(ValueError):
        th.parse_metrics("x_total\n")


def test_jwt_hs256_matches_independent_computation():
    tok = tc.jwt_encode({"sub": "alice", "exp": 2000000000}, "s3cret")
    h, p, s = tok.split(".")
    assert json.loads(base64.urlsafe_b64decode(h + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(p + "==")) == {"sub": "alice", "exp": 2000000000}
    mac = hmac.new(b"s3cret", (h + "." + p).encode(), hashlib.sha256).digest()
    assert s == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert "=" not in tok
    assert tc.jwt_encode({"sub": "a"}, "x", alg="none").endswith(".")


def test_proto_codec_reads_protobuf_c_bytes():
    # ServerFrame{subscribed{room:"r1", epoch:"E", seq:300, missed:7,
    # gap{from:4, first_available:16}}} as packed by protobuf-c 1.4.1.
    data = bytes.fromhex("12120a02723112014518ac022807320408041010")
    t, body = tc.schema().decode_frame("ServerFrame", data)
    assert t == "subscribed"
    assert body["room"] == "r1" and body["epoch"] == "E" and body["seq"] == 300
    assert body["missed"] == 7 and body["recovered"] is False
    assert body["gap"] == {"from": 4, "first_available": 16, "to": 0}


def test_proto_codec_round_trip_client_frames():
    frames = [
        {"type": "hello", "token": "t", "session": "s", "rooms": {"a": {"epoch": "e", "seq": 5}, "b": {}}},
        {"type": "subscribe", "room": "x", "seq": 0},
        {"type": "publish", "room": "x", "id": "i", "data": {"k": [1, 2, None]}},
        {"type": "ping"},
        {"type": "bye"},
    ]
    s = tc.schema()
    decoded = [s.decode_frame("ClientFrame", tc._to_proto(f)) for f in frames]
    assert decoded[0][0] == "hello"
    assert decoded[0][1]["rooms"]["a"] == {"epoch": "e", "seq": 5, "has_seq": True}
    assert decoded[0][1]["rooms"]["b"] == {"epoch": "", "seq": 0, "has_seq": False}
    assert decoded[1][1]["position"] == {"epoch": "", "seq": 0, "has_seq": True}
    assert json.loads(decoded[2][1]["data"]) == {"k": [1, 2, None]}
    assert decoded[3] == ("ping", {})
    assert decoded[4] == ("bye", {})


def test_proto_server_frame_mapping():
    s = tc.schema()
    raw = s.encode_frame("ServerFrame", "message",
                         {"room": "r", "seq": 3, "epoch": "E", "id": "i", "from": "u", "ts": 5, "data": "[1]"})
    assert tc._from_proto(raw) == {"type": "message", "room": "r", "seq": 3, "epoch": "E",
                                   "id": "i", "from": "u", "ts": 5, "data": [1]}
