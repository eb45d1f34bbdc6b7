"""Agent base on the embedded bus with a simulated clock: control commands (acknowledged on the control channel),
parked agents discard pub/sub and leave stream entries in their stream, handler errors are survived,
expired messages never reach a handler, failing stream entries are retried then dead-lettered.

The clock is simulated so retries and parking are deterministic: a parked stream consumer sleeps on the clock,
which `RecordingClock` makes observable; only the bus's blocking read waits in real time (200 ms at most)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from wavesquant.agents.base import MAX_STREAM_DELIVERIES, Agent
from wavesquant.bus.base import Bus, Delivery, Subscription
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import Clock, SimulatedClock
from wavesquant.messages import (
    Bar,
    Channel,
    ControlAck,
    ControlCommand,
    Envelope,
    Heartbeat,
    NewOrder,
    OrderSpec,
    decode,
)

WAIT_S = 20.0
T0 = 1_700_000_000_000_000_000
CONSUMER_TASK = "core:stream:orders"


class RecordingClock(SimulatedClock):
    """A SimulatedClock that knows which tasks are asleep on it."""

    def __init__(self, start_ns: int) -> None:
        super().__init__(start_ns)
        self.sleeping: set[str] = set()

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        task = asyncio.current_task()
        name = task.get_name() if task else "?"
        self.sleeping.add(name)
        try:
            await super().sleep_until_ns(deadline_ns)
        finally:
            self.sleeping.discard(name)


class ProbeAgent(Agent):
    """A minimal agent; `core` because loop names and tiers come from config.LOOPS."""

    name = "core"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock) -> None:
        super().__init__(settings, bus, clock, consumer_id="probe-1")
        self.bars: list[Bar] = []
        self.orders: list[Delivery] = []
        self.expired: list[Envelope] = []
        self.fail_bars: set[int] = set()  # open_ts_ms values whose batch raises
        self.fail_orders: set[str] = set()  # client order ids whose delivery raises
        self.starts = 0
        self.stops = 0
        self.on([Channel.MARKET_BARS], self.on_bars)
        self.consume(Channel.ORDERS, self.on_orders, reclaim_idle_ms=100)

    async def on_bars(self, batch: list[Envelope]) -> None:
        for msg in batch:
            assert isinstance(msg, Bar)
            if msg.open_ts_ms in self.fail_bars:
                raise RuntimeError(f"bad bar {msg.open_ts_ms}")
            self.bars.append(msg)

    async def on_orders(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            assert isinstance(d.message, NewOrder)
            if d.message.order.client_order_id in self.fail_orders:
                raise RuntimeError("venue down")
        self.orders.extend(deliveries)

    async def on_start(self) -> None:
        self.starts += 1

    async def on_stop(self) -> None:
        self.stops += 1

    async def on_expired(self, msg: Envelope) -> None:
        self.expired.append(msg)


async def wait_until(cond: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Harness:
    def __init__(self) -> None:
        self.clock = RecordingClock(T0)
        self.bus = EmbeddedBus(prefix="t:", clock=self.clock)
        self.agent = ProbeAgent(Settings(), self.bus, self.clock)
        self.control: Subscription = self.bus.subscribe([Channel.CONTROL])
        self.acks: list[ControlAck] = []
        self.heartbeats: list[Heartbeat] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.bus.start()
        self._tasks.append(asyncio.create_task(self._collect()))
        self._tasks.append(asyncio.create_task(self._collect_heartbeats(self.bus.subscribe([Channel.HEARTBEATS]))))
        self.run_task = asyncio.create_task(self.agent.run())
        await wait_until(lambda: self.agent.status == "running", "agent running")

    async def _collect(self) -> None:
        async for batch in self.control:
            self.acks.extend(m for m in batch if isinstance(m, ControlAck))

    async def _collect_heartbeats(self, sub: Subscription) -> None:
        async for batch in sub:
            self.heartbeats.extend(m for m in batch if isinstance(m, Heartbeat))

    async def command(self, verb: str, target: str = "core") -> ControlAck:
        request_id = uuid.uuid4().hex
        await self.bus.publish(ControlCommand.create(source="cli", ts_ns=self.clock.now_ns(), target=target,
                                                     command=verb, request_id=request_id))
        await wait_until(lambda: any(a.request_id == request_id for a in self.acks), f"ack of {verb}")
        return next(a for a in self.acks if a.request_id == request_id)

    async def parked(self) -> None:
        """Wait until the stream consumer has noticed the agent is parked (it then sleeps on the clock)."""
        await wait_until(lambda: CONSUMER_TASK in self.clock.sleeping, "stream consumer parked")

    async def tick(self, until: Callable[[], Any], what: str, step_s: float = 0.06) -> None:
        """Move simulated time in small steps until `until()` holds (or WAIT_S of real time passes)."""
        deadline = time.monotonic() + WAIT_S
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await self.clock.advance(step_s)
            await asyncio.sleep(0.005)

    def pending(self) -> dict[str, Any]:
        group = self.bus._streams["orders"].groups.get("core")
        return dict(group.pending) if group else {}

    async def stop(self) -> None:
        self.agent.shutdown()
        try:
            await asyncio.wait_for(self.run_task, WAIT_S)
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.bus.close()


@pytest.fixture
async def logs() -> AsyncIterator[list[dict[str, Any]]]:
    """Capture structlog events (cheap, and lets tests assert on what was logged)."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def h(logs: list[dict[str, Any]]) -> AsyncIterator[Harness]:
    harness = Harness()
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def bar(i: int, clock: Clock, expires_in_ms: int | None = None, age_ms: int = 0) -> Bar:
    ts_ns = clock.now_ns() - age_ms * 1_000_000
    exp = None if expires_in_ms is None else clock.now_ms() + expires_in_ms
    return Bar.create(source="data_feeds", ts_ns=ts_ns, exchange="binance", symbol="BTC/USDT", timeframe="1m",
                      open_ts_ms=i, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0, expires_at_ms=exp)


def order(coid: str, clock: Clock, expires_in_ms: int | None = None, age_ms: int = 0) -> NewOrder:
    spec = OrderSpec(client_order_id=coid, signal_id=f"s-{coid}", strategy_id="trend_btc", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    ts_ns = clock.now_ns() - age_ms * 1_000_000
    exp = None if expires_in_ms is None else clock.now_ms() + expires_in_ms
    return NewOrder.create(source="risk", ts_ns=ts_ns, order=spec, expires_at_ms=exp)


async def test_starts_running_and_announces_itself(h: Harness) -> None:
    assert h.agent.starts == 1
    await wait_until(lambda: bool(h.heartbeats), "first heartbeat")
    assert h.heartbeats[0].agent == "core" and h.heartbeats[0].status == "running"
    statuses = await h.bus.get_statuses()
    hb = decode(statuses["core"])
    assert isinstance(hb, Heartbeat) and hb.status == "running"


async def test_stop_pause_resume_start_are_acknowledged(h: Harness) -> None:
    ack = await h.command("stop")
    assert (ack.ok, ack.status, ack.agent, ack.command) == (True, "stopped", "core", "stop")
    assert h.agent.status == "stopped" and h.agent.stops == 1
    ack = await h.command("start")
    assert (ack.ok, ack.status) == (True, "running")
    assert h.agent.starts == 2
    ack = await h.command("pause")
    assert (ack.ok, ack.status) == (True, "paused")
    ack = await h.command("pause")
    assert (ack.ok, ack.status, ack.detail) == (False, "paused", "cannot pause while paused")
    ack = await h.command("resume")
    assert (ack.ok, ack.status) == (True, "running")
    assert h.agent.starts == 2  # resuming from pause is not a restart
    assert h.agent.stops == 1
    # every control command is followed by a heartbeat with the new status
    await wait_until(lambda: h.heartbeats and h.heartbeats[-1].status == "running", "heartbeat after resume")
    assert {"stopped", "paused"} <= {hb.status for hb in h.heartbeats}


async def test_stop_when_paused_and_start_when_running(h: Harness) -> None:
    await h.command("pause")
    ack = await h.command("stop")
    assert (ack.ok, ack.status) == (True, "stopped")
    assert h.agent.stops == 0  # on_stop only drains an active agent
    await h.command("start")
    ack = await h.command("start")
    assert (ack.ok, ack.status) == (True, "running")
    assert h.agent.starts == 2


async def test_unhandled_verb_and_other_targets(h: Harness) -> None:
    ack = await h.command("kill")
    assert (ack.ok, ack.detail, ack.status) == (False, "core does not handle kill", "running")
    ack = await h.command("stop", target="*")
    assert (ack.ok, ack.status) == (True, "stopped")
    before = len(h.acks)
    await h.bus.publish(ControlCommand.create(source="cli", ts_ns=h.clock.now_ns(), target="risk", command="start",
                                              request_id="not-for-core"))
    await h.command("start")  # processed after the one for risk
    assert not any(a.request_id == "not-for-core" for a in h.acks)
    assert len(h.acks) == before + 1
    assert h.agent.status == "running"


async def test_stopped_agent_discards_pubsub_and_leaves_orders_in_their_stream(h: Harness) -> None:
    await h.command("stop")
    await h.bus.publish_many([bar(1, h.clock), bar(2, h.clock)])
    await h.bus.publish(order("wq-a", h.clock))
    await wait_until(lambda: h.agent.counters["discarded_inactive"] == 2, "discarded count")
    await asyncio.sleep(0.3)  # the stream consumer polls every 50 ms while parked
    assert h.agent.bars == [] and h.agent.orders == []
    assert await h.bus.pending_for(Channel.ORDERS, "core", "probe-1") == []  # not even read
    await h.command("start")
    await wait_until(lambda: len(h.agent.orders) == 1, "order consumed after start")
    assert h.agent.orders[0].message.order.client_order_id == "wq-a"  # type: ignore[attr-defined]
    await wait_until(lambda: h.agent.bus is h.bus, "noop")
    await h.bus.publish(bar(3, h.clock))
    await wait_until(lambda: len(h.agent.bars) == 1, "bar after start")
    assert h.agent.bars[0].open_ts_ms == 3  # the discarded ones are gone for good
    await wait_until(lambda: not h.bus._streams["orders"].groups["core"].pending, "order acked")


async def test_paused_agent_also_parks(h: Harness) -> None:
    await h.command("pause")
    await h.bus.publish(bar(1, h.clock))
    await h.bus.publish(order("wq-p", h.clock))
    await wait_until(lambda: h.agent.counters["discarded_inactive"] == 1, "discarded while paused")
    await asyncio.sleep(0.3)
    assert h.agent.orders == []
    await h.command("resume")
    await wait_until(lambda: len(h.agent.orders) == 1, "order consumed after resume")


async def test_handler_exception_is_counted_and_later_messages_still_handled(h: Harness) -> None:
    h.agent.fail_bars = {1}
    await h.bus.publish(bar(1, h.clock))
    await wait_until(lambda: h.agent.counters["errors:handler"] == 1, "handler error counted")
    await h.bus.publish(bar(2, h.clock))
    await wait_until(lambda: len(h.agent.bars) == 1, "next bar handled")
    assert h.agent.bars[0].open_ts_ms == 2
    assert h.agent.status == "running"
    assert h.agent.heartbeat().counters["errors:handler"] == 1


async def test_expired_messages_never_reach_a_handler(h: Harness) -> None:
    stale_bar = bar(1, h.clock, expires_in_ms=-1_000, age_ms=5_000)
    live_bar = bar(2, h.clock, expires_in_ms=60_000)
    await h.bus.publish_many([stale_bar, live_bar])
    await h.bus.publish(order("wq-stale", h.clock, expires_in_ms=-1_000, age_ms=5_000))
    await h.bus.publish(order("wq-live", h.clock))
    await wait_until(lambda: len(h.agent.orders) == 1 and len(h.agent.bars) == 1, "live messages handled")
    await wait_until(lambda: h.agent.counters["expired"] == 2, "both expired counted")
    assert [b.open_ts_ms for b in h.agent.bars] == [2]
    assert [d.message.order.client_order_id for d in h.agent.orders] == ["wq-live"]  # type: ignore[attr-defined]
    assert {type(m) for m in h.agent.expired} == {Bar, NewOrder}
    # the expired order is acked (never retried)
    await wait_until(lambda: not h.bus._streams["orders"].groups["core"].pending, "expired order acked")


async def test_failing_stream_entry_is_retried_then_dead_lettered(h: Harness) -> None:
    h.agent.fail_orders = {"wq-bad"}
    await h.bus.publish(order("wq-bad", h.clock))
    await wait_until(lambda: h.agent.counters["poison:orders"] == 1, "entry given up")
    assert h.agent.counters["errors:stream:orders"] == MAX_STREAM_DELIVERIES
    dead = [json.loads(raw) for _, raw in await h.bus.read_range(Channel.DEADLETTER)]
    assert len(dead) == 1
    assert dead[0]["channel"] == "orders"
    assert dead[0]["reason"] == f"handler failed {MAX_STREAM_DELIVERIES + 1} times"
    assert decode(dead[0]["raw"]).order.client_order_id == "wq-bad"  # type: ignore[attr-defined]
    await wait_until(lambda: not h.bus._streams["orders"].groups["core"].pending, "poison acked")
    await h.bus.publish(order("wq-good", h.clock))  # the consumer goes on
    await wait_until(lambda: len(h.agent.orders) == 1, "next order handled")


async def test_failed_stream_entry_succeeds_on_retry(h: Harness) -> None:
    h.agent.fail_orders = {"wq-flaky"}
    await h.bus.publish(order("wq-flaky", h.clock))
    await wait_until(lambda: h.agent.counters["errors:stream:orders"] >= 1, "first attempt failed")
    h.agent.fail_orders = set()
    await wait_until(lambda: len(h.agent.orders) == 1, "retried")
    assert h.agent.orders[0].deliveries >= 2
    assert h.agent.counters["poison:orders"] == 0


async def test_shutdown_publishes_a_final_stopped_heartbeat() -> None:
    harness = Harness()
    await harness.start()
    bus = harness.bus
    harness.agent.shutdown()
    await asyncio.wait_for(harness.run_task, WAIT_S)
    assert harness.agent.status == "stopped" and harness.agent.stops == 1
    hb = decode((await bus.get_statuses())["core"])
    assert isinstance(hb, Heartbeat) and hb.status == "stopped"
    assert all(t.done() for t in harness.agent._tasks)
    harness.agent.shutdown()  # idempotent
    for t in harness._tasks:
        t.cancel()
    await asyncio.gather(*harness._tasks, return_exceptions=True)
    await bus.close()
