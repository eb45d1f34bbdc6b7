"""EmbeddedBus pub/sub: routing by the registry, batching, dead-lettering of malformed payloads, fan-out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from wavesquant.bus.base import Subscription
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.core.clock import SimulatedClock
from wavesquant.messages import (
    Bar,
    Channel,
    Envelope,
    Heartbeat,
    NewOrder,
    OrderSpec,
    TickBatch,
    TrendSignal,
    encode,
)

TS_NS = 1_700_000_000_000_000_000


def bar(i: int) -> Bar:
    return Bar.create(source="data_feeds", ts_ns=TS_NS + i, exchange="binance", symbol="BTC/USDT", timeframe="1m",
                      open_ts_ms=i, open=100.0 + i, high=200.0, low=50.0, close=100.0, volume=1.0)


def ticks() -> TickBatch:
    return TickBatch.create(source="data_feeds", ts_ns=TS_NS, exchange="binance", symbols=["BTC/USDT"],
                            event_ts_ms=[1], prices=[100.0], sizes=[1.0])


def signal() -> TrendSignal:
    return TrendSignal.create(source="strategy_engine", ts_ns=TS_NS, strategy_id="trend_btc", exchange="paper",
                              symbol="BTC/USDT", side="buy", quantity=1.0, reference_price=100.0)


def new_order() -> NewOrder:
    spec = OrderSpec(client_order_id="wq1", signal_id="s1", strategy_id="trend_btc", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    return NewOrder.create(source="risk", ts_ns=TS_NS, order=spec)


@pytest.fixture
async def bus() -> AsyncIterator[EmbeddedBus]:
    b = EmbeddedBus(prefix="t:", clock=SimulatedClock(TS_NS))
    await b.start()
    yield b
    await b.close()


async def next_batch(sub: Subscription, timeout: float = 20.0) -> list[Envelope]:
    it = sub.__aiter__()
    return await asyncio.wait_for(it.__anext__(), timeout)


async def nothing_arrives(sub: Subscription) -> bool:
    try:
        await next_batch(sub, timeout=0.05)
    except TimeoutError:
        return True
    return False


async def test_start_and_close_set_connected() -> None:
    b = EmbeddedBus()
    assert not b.stats.connected
    await b.start()
    assert b.stats.connected
    await b.close()
    assert not b.stats.connected


async def test_publish_many_arrives_as_one_batch_in_order(bus: EmbeddedBus) -> None:
    sub = bus.subscribe([Channel.MARKET_BARS, Channel.MARKET_TICKS])
    msgs = [bar(1), ticks(), bar(2), bar(3)]
    await bus.publish_many(msgs)
    assert sub.depth() == 4
    batch = await next_batch(sub)
    assert batch == msgs
    assert all(a is b for a, b in zip(batch, msgs))  # immutable: handed over without copying
    assert sub.depth() == 0
    assert bus.stats.published == {"market_bars": 3, "market_ticks": 1}
    assert bus.stats.received == {"market_bars": 3, "market_ticks": 1}
    await sub.close()


async def test_publishes_queued_while_not_reading_are_drained_together(bus: EmbeddedBus) -> None:
    sub = bus.subscribe([Channel.MARKET_BARS])
    for i in range(5):
        await bus.publish(bar(i))
    assert [m.open_ts_ms for m in await next_batch(sub)] == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]
    assert await nothing_arrives(sub)


async def test_messages_are_routed_by_the_registry(bus: EmbeddedBus) -> None:
    bars = bus.subscribe([Channel.MARKET_BARS])
    signals = bus.subscribe([Channel.FAST_SIGNALS])
    orders_pubsub = bus.subscribe([Channel.ORDERS])  # a stream: never delivered by pub/sub
    b, s = bar(1), signal()
    await bus.publish_many([b, s, new_order()])
    assert await next_batch(bars) == [b]
    assert await next_batch(signals) == [s]
    assert await nothing_arrives(orders_pubsub)
    assert await bus.stream_length(Channel.ORDERS) == 1
    assert bus.stats.published == {"market_bars": 1, "fast_signals": 1, "orders": 1}


async def test_fan_out_to_every_subscriber_and_close_stops_delivery(bus: EmbeddedBus) -> None:
    a = bus.subscribe([Channel.HEARTBEATS])
    b = bus.subscribe([Channel.HEARTBEATS, Channel.MARKET_BARS])
    hb = Heartbeat.create(source="core", ts_ns=TS_NS, agent="core", status="running", pid=1, host="h", uptime_s=0)
    await bus.publish(hb)
    assert await next_batch(a) == [hb]
    assert await next_batch(b) == [hb]
    assert bus.stats.received["heartbeats"] == 2  # counted per delivery
    await a.close()
    await bus.publish(hb)
    assert a.depth() == 0
    assert await next_batch(b) == [hb]
    assert bus.stats.received["heartbeats"] == 3


async def test_close_ends_iteration(bus: EmbeddedBus) -> None:
    sub = bus.subscribe([Channel.MARKET_BARS])
    seen: list[list[Envelope]] = []

    async def reader() -> None:
        async for batch in sub:
            seen.append(batch)

    task = asyncio.create_task(reader())
    await bus.publish(bar(1))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    await sub.close()
    await asyncio.wait_for(task, 20)
    assert len(seen) == 1


async def test_malformed_raw_payloads_are_dead_lettered_and_valid_ones_still_arrive(bus: EmbeddedBus) -> None:
    sub = bus.subscribe([Channel.MARKET_BARS])
    good = bar(7)
    await bus.publish_raw("market_bars", b"not json at all")
    await bus.publish_raw("market_bars", encode(good))
    bad_price = json.loads(encode(bar(8)))
    bad_price["close"] = -1
    await bus.publish_raw("market_bars", json.dumps(bad_price).encode())
    await bus.publish_raw("market_bars", b"\xff\xfe\x00")
    await bus.publish(bar(9))
    batch = await next_batch(sub)
    assert [m.open_ts_ms for m in batch] == [7, 9]  # type: ignore[attr-defined]
    assert batch[0] == good
    assert bus.stats.invalid["market_bars"] == 3
    assert bus.stats.received["market_bars"] == 2
    dead = [json.loads(raw) for _, raw in await bus.read_range(Channel.DEADLETTER)]
    assert [d["channel"] for d in dead] == ["market_bars"] * 3
    assert dead[0]["raw"] == "not json at all"
    assert "json" in dead[0]["reason"].lower()
    assert json.loads(dead[1]["raw"])["close"] == -1
    assert "close" in dead[1]["reason"]
    assert dead[2]["raw"] == "fffe00"  # undecodable bytes are kept as hex
    assert all(d["ts_ms"] == TS_NS // 1_000_000 for d in dead)
    assert bus.stats.snapshot()["invalid:market_bars"] == 3


async def test_a_batch_of_only_invalid_payloads_is_not_handed_over(bus: EmbeddedBus) -> None:
    sub = bus.subscribe([Channel.MARKET_BARS])
    await bus.publish_raw("market_bars", b"{}")
    assert await nothing_arrives(sub)  # no empty batch
    assert await bus.stream_length(Channel.DEADLETTER) == 1
    await bus.publish(bar(1))
    assert len(await next_batch(sub)) == 1


async def test_raw_publish_to_an_unsubscribed_channel_goes_nowhere(bus: EmbeddedBus) -> None:
    await bus.publish_raw("market_bars", b"garbage")
    assert await bus.stream_length(Channel.DEADLETTER) == 0
    assert bus.stats.invalid["market_bars"] == 0
