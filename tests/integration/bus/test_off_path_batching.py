"""Consumers declared off the latency path, on the real Redis: they take what arrived within `off_path_batch_ms`
in one batch (fewer wake-ups), lose nothing, and ack every stream entry; consumers on the path are not held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from support.polling import until
from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus, Delivery
from wavesquant.bus.redis_bus import RedisBus
from wavesquant.config import Settings
from wavesquant.core.clock import Clock, LiveClock
from wavesquant.messages import Bar, Channel, Envelope, Heartbeat, NewOrder, OrderSpec

pytestmark = pytest.mark.redis

MESSAGES = 20
SPACING_S = 0.005
WINDOW_MS = 60


class OutcomeWatcher(Agent):
    """`core`, because loop names and tiers come from config.LOOPS (it declares no loops)."""

    name = "core"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock) -> None:
        super().__init__(settings, bus, clock, consumer_id="watcher-1")
        self.order_batches: list[int] = []
        self.heartbeat_batches: list[int] = []
        self.consume(Channel.ORDERS, self.on_orders, off_path=True)
        self.on([Channel.HEARTBEATS], self.on_heartbeats, off_path=True)
        self.on_path_delays_ms: list[float] = []
        self.on([Channel.MARKET_BARS], self.on_bars)

    async def on_orders(self, deliveries: list[Delivery]) -> None:
        self.order_batches.append(len(deliveries))

    async def on_heartbeats(self, batch: list[Envelope]) -> None:
        self.heartbeat_batches.append(sum(1 for m in batch if isinstance(m, Heartbeat) and m.agent == "sender"))

    async def on_bars(self, batch: list[Envelope]) -> None:
        now = time.time_ns()
        self.on_path_delays_ms += [(now - m.ts_ns) / 1e6 for m in batch]


@pytest.fixture
async def running(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[OutcomeWatcher, RedisBus]]:
    settings = Settings(bus={"backend": "redis", "url": redis_url, "prefix": redis_prefix,
                             "off_path_batch_ms": WINDOW_MS})
    clock = LiveClock()
    bus = RedisBus(redis_url, prefix=redis_prefix, clock=clock)
    await bus.start()
    agent = OutcomeWatcher(settings, bus, clock)
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.status == "running", "the agent running")
    await asyncio.sleep(0.3)  # its own start-up heartbeat has come and gone
    try:
        yield agent, bus
    finally:
        agent.shutdown()
        await asyncio.wait_for(task, 15)
        await bus.close()


def _order(i: int) -> NewOrder:
    spec = OrderSpec(client_order_id=f"c{i}", signal_id=f"s{i}", strategy_id="st", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    return NewOrder.create(source="risk", ts_ns=time.time_ns(), order=spec)


def _heartbeat(i: int) -> Heartbeat:
    return Heartbeat.create(source="sender", ts_ns=time.time_ns(), agent="sender", status="running", pid=i,
                            host="h", uptime_s=float(i))


async def test_off_path_consumers_take_a_window_at_a_time_and_lose_nothing(
    running: tuple[OutcomeWatcher, RedisBus],
) -> None:
    agent, bus = running
    for i in range(MESSAGES):  # 100 ms of messages, one every 5 ms
        await bus.publish_many([_order(i), _heartbeat(i)])
        await asyncio.sleep(SPACING_S)
    await until(lambda: sum(agent.order_batches) == MESSAGES and sum(agent.heartbeat_batches) == MESSAGES,
                "every order and heartbeat handled")
    # one read per 60 ms window at most: a ~100 ms burst cannot take more than a handful of wake-ups
    # (without the window each message of the burst comes on its own)
    assert len(agent.order_batches) <= 4, agent.order_batches
    assert len([n for n in agent.heartbeat_batches if n]) <= 4, agent.heartbeat_batches
    pending = await bus.pending_for(Channel.ORDERS, "core", "watcher-1")
    assert pending == []  # every entry acked


async def test_a_consumer_on_the_path_is_not_held(running: tuple[OutcomeWatcher, RedisBus]) -> None:
    agent, bus = running
    for i in range(MESSAGES):  # the same burst: a consumer on the path takes each as it comes
        await bus.publish(Bar.create(source="feed", ts_ns=time.time_ns(), exchange="binance", symbol="BTC/USDT",
                                     timeframe="1m", open_ts_ms=60_000 * (i + 1), open=1.0, high=1.0, low=1.0,
                                     close=1.0, volume=1.0))
        await asyncio.sleep(SPACING_S)
    await until(lambda: len(agent.on_path_delays_ms) == MESSAGES, "every bar handled")
    delays = sorted(agent.on_path_delays_ms)
    assert delays[len(delays) // 2] < WINDOW_MS / 2, delays  # held by a window, half would wait 30 ms or more
