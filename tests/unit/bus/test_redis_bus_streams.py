"""RedisBus stream, status and retry behaviour on fakeredis: its TCP server speaks RESP, so the raw stream
connections (XADD, XREADGROUP, XACK) and redis-py both talk to one fake Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.bus.factory import make_bus
from wavesquant.bus.redis_bus import BusUnavailableError, RedisBus
from wavesquant.messages import Channel, NewOrder, OrderSpec, encode

TS = 1_700_000_000_000_000_000
S = Channel.ORDERS


def order(i: int) -> NewOrder:
    spec = OrderSpec(client_order_id=f"c{i}", signal_id=f"s{i}", strategy_id="st", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    return NewOrder.create(source="risk", ts_ns=TS + i, msg_id=f"no{i}", order=spec)


@pytest.fixture
def fake_server() -> Iterator[tuple[str, int]]:
    server = fakeredis.TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture
async def fake_redis(fake_server: tuple[str, int]) -> AsyncIterator[Any]:
    """A client of the fake server (what the test inspects), shadowing the in-process fakeredis fixture."""
    import redis.asyncio

    client = redis.asyncio.Redis(host=fake_server[0], port=fake_server[1])
    yield client
    await client.aclose()


@pytest.fixture
def bus(fake_server: tuple[str, int], fake_redis: Any) -> RedisBus:
    return RedisBus(f"redis://{fake_server[0]}:{fake_server[1]}/0", prefix="t:", client=fake_redis,
                    retry_timeout_s=0.3)


async def test_append_range_and_length(bus: RedisBus, fake_redis: fakeredis.FakeAsyncRedis) -> None:
    ids = [await bus.append_raw(S, encode(order(i))) for i in range(3)]
    assert await bus.stream_length(S) == 3
    rows = await bus.read_range(S)
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == [encode(order(i)) for i in range(3)]
    assert await bus.read_range(S, start=ids[1], count=1) == [rows[1]]
    assert await fake_redis.xlen("t:orders") == 3  # keys carry the prefix


async def test_read_group_from_stream_start_then_ack(bus: RedisBus) -> None:
    await bus.append_raw(S, encode(order(1)))  # before the group exists: still delivered (group at id 0)
    got = await bus.read_group(S, "exec", "c1", block_ms=0)
    assert [(d.stream, d.message, d.deliveries) for d in got] == [("orders", order(1), 1)]
    assert await bus.read_group(S, "exec", "c1", block_ms=0) == []
    assert [d.entry_id for d in await bus.pending_for(S, "exec", "c1")] == [got[0].entry_id]
    await bus.ack(S, "exec", [got[0].entry_id])
    assert await bus.pending_for(S, "exec", "c1") == []
    assert bus.stats.received["orders"] == 2  # read + re-read from the PEL


async def test_invalid_entries_are_dead_lettered_and_acked(
    bus: RedisBus, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await bus.append_raw(S, b"not json")
    await fake_redis.xadd("t:orders", {"other": b"x"})
    await bus.append_raw(S, encode(order(2)))
    got = await bus.read_group(S, "exec", "c1", block_ms=0)
    assert [d.message for d in got] == [order(2)]
    assert bus.stats.invalid["orders"] == 2
    dead = [json.loads(raw) for _, raw in await bus.read_range(Channel.DEADLETTER)]
    assert [d["channel"] for d in dead] == ["orders", "orders"]
    assert "Invalid JSON" in dead[0]["reason"] and dead[0]["raw"] == "not json"
    assert dead[1]["reason"] == "stream entry has no 'd' field"
    pending = await fake_redis.xpending("t:orders", "exec")
    assert pending["pending"] == 1  # only the valid one awaits its ack


async def test_pending_for_only_sees_own_entries_with_delivery_count(bus: RedisBus) -> None:
    for i in range(4):
        await bus.append_raw(S, encode(order(i)))
    mine = await bus.read_group(S, "exec", "c1", count=2, block_ms=0)
    await bus.read_group(S, "exec", "c2", count=2, block_ms=0)
    again = await bus.pending_for(S, "exec", "c1")
    assert [d.entry_id for d in again] == [d.entry_id for d in mine]
    assert all(d.deliveries >= 2 for d in again)


async def test_claim_stale_takes_over_a_dead_consumers_entries(bus: RedisBus) -> None:
    for i in range(3):
        await bus.append_raw(S, encode(order(i)))
    dead = await bus.read_group(S, "exec", "dead", block_ms=0)
    assert await bus.claim_stale(S, "exec", "alive", min_idle_ms=3_600_000) == []
    claimed = await bus.claim_stale(S, "exec", "alive", min_idle_ms=0)
    assert [d.message for d in claimed] == [order(0), order(1), order(2)]
    assert all(d.deliveries == 2 for d in claimed)
    assert [d.entry_id for d in await bus.pending_for(S, "exec", "alive")] == [d.entry_id for d in dead]
    assert await bus.pending_for(S, "exec", "dead") == []


async def test_group_is_recreated_when_the_stream_was_deleted(
    bus: RedisBus, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await bus.append_raw(S, encode(order(1)))
    assert len(await bus.read_group(S, "exec", "c1", block_ms=0)) == 1
    await fake_redis.delete("t:orders")
    await bus.append_raw(S, encode(order(2)))  # new stream, no group: XREADGROUP answers NOGROUP
    assert [d.message for d in await bus.read_group(S, "exec", "c1", block_ms=0)] == [order(2)]


async def test_statuses_by_agent_with_glob_chars_in_prefix(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    bus = RedisBus("redis://127.0.0.1/0", prefix="w*q:", client=fake_redis)
    other = RedisBus("redis://127.0.0.1/0", prefix="wxq:", client=fake_redis)
    await bus.set_status("risk", b"r", ttl_s=30)
    await bus.set_status("execution", b"e", ttl_s=30)
    await other.set_status("risk", b"other", ttl_s=30)
    assert await bus.get_statuses() == {"risk": b"r", "execution": b"e"}
    assert 0 < await fake_redis.ttl("w*q:status:risk") <= 30


class Flaky:
    """A client whose `xlen` fails with a connection error `failures` times first."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def xlen(self, key: str) -> int:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("connection refused")
        return await self.inner.xlen(key)

    async def xreadgroup(self, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("connection refused")


async def test_connection_errors_are_retried_and_reflected_in_connected(
    fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    flaky: Any = Flaky(fake_redis, 2)
    bus = RedisBus("redis://127.0.0.1/0", client=flaky, retry_timeout_s=5)
    bus._started = True  # health accounting only; no raw connections in this test
    assert await bus.stream_length(S) == 0
    assert bus.stats.connected


async def test_retry_is_bounded(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    flaky: Any = Flaky(fake_redis, 10**6)
    bus = RedisBus("redis://127.0.0.1:1/0", client=flaky, retry_timeout_s=0.2)  # nothing listens on port 1
    with pytest.raises(BusUnavailableError, match="unreachable .* during xlen"):
        await bus.stream_length(S)
    assert not bus.stats.connected
    # a consumer loop is never crashed by an outage: read_group logs and returns nothing
    assert await bus.read_group(S, "g", "c", block_ms=0) == []


def test_factory_chooses_backend() -> None:
    redis_bus = make_bus("redis", "redis://:pw@h:1/0", "p:", stream_maxlen=5, client_name="x")
    assert isinstance(redis_bus, RedisBus)
    assert (redis_bus.prefix, redis_bus.stream_maxlen, redis_bus.client_name) == ("p:", 5, "x")
    assert redis_bus.address.password == "pw"
    embedded = make_bus("embedded", None, "e:", client_name="ignored")
    assert isinstance(embedded, EmbeddedBus) and embedded.prefix == "e:"
    with pytest.raises(ValueError, match="needs a Redis URL"):
        make_bus("redis", None, "p:")
    with pytest.raises(ValueError, match="unknown bus backend"):
        make_bus("kafka", None, "p:")
