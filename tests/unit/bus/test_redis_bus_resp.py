"""RESP encoding and Redis URL parsing for the raw connections."""

from __future__ import annotations

import hiredis
import pytest

from wavesquant.bus.resp import (
    RedisAddress,
    encode_publishes,
    encode_xack,
    pack_command,
    parse_redis_url,
    publish_header,
    xack_header,
)


def parse_all(wire: bytes) -> list[object]:
    reader = hiredis.Reader()
    reader.feed(wire)
    out = []
    while (item := reader.gets()) is not False:
        out.append(item)
    return out


def test_pack_command_matches_hiredis() -> None:
    args = ("XADD", "k", 5, b"\x00\r\nbin")
    assert pack_command(*args) == hiredis.pack_command(args)


def test_pipelined_publishes_round_trip_binary_payloads() -> None:
    h1, h2 = publish_header(b"wq:a"), publish_header(b"wq:bb")
    payloads = [b"", b"x\r\ny", b"{}" * 1000]
    wire = encode_publishes([(h1, payloads[0]), (h2, payloads[1]), (h1, payloads[2])])
    assert parse_all(wire) == [
        [b"PUBLISH", b"wq:a", payloads[0]],
        [b"PUBLISH", b"wq:bb", payloads[1]],
        [b"PUBLISH", b"wq:a", payloads[2]],
    ]
    assert wire == b"".join(hiredis.pack_command(("PUBLISH", c, p)) for c, p in
                            [(b"wq:a", payloads[0]), (b"wq:bb", payloads[1]), (b"wq:a", payloads[2])])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress()),
        ("redis://:p%40ss@redis:6380/2", RedisAddress(host="redis", port=6380, password="p@ss", db=2)),
        ("redis://bob:pw@h", RedisAddress(host="h", username="bob", password="pw")),
        ("rediss://h:7000", RedisAddress(host="h", port=7000, tls=True)),
        ("unix://:pw@/run/redis.sock?db=3", RedisAddress(path="/run/redis.sock", password="pw", db=3)),
    ],
)
def test_parse_redis_url(url: str, expected: RedisAddress) -> None:
    assert parse_redis_url(url) == expected


def test_parse_redis_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_redis_url("http://h:6379")


def test_handshake_auths_before_naming_and_describe_hides_password() -> None:
    addr = parse_redis_url("redis://bob:secret@h:1/0")
    assert [parse_all(c)[0] for c in addr.handshake("agent-pub")] == [
        [b"AUTH", b"bob", b"secret"], [b"CLIENT", b"SETNAME", b"agent-pub"]
    ]
    assert parse_redis_url("redis://h").handshake("n") == [pack_command("CLIENT", "SETNAME", "n")]
    assert "secret" not in addr.describe()


def test_encode_xack_matches_hiredis() -> None:
    header = xack_header(b"wq:orders", b"execution")
    for ids in (["1-0"], ["1700000000000-0", "1700000000000-1", "1700000000001-12"]):
        assert encode_xack(header, ids) == hiredis.pack_command(("XACK", "wq:orders", "execution", *ids))
