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

from support.polling import until
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
        await until(lambda: self.agent.status == "running", "agent running")

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
        await until(lambda: any(a.request_id == request_id for a in self.acks), f"ack of {verb}")
        return next(a for a in self.acks if a.request_id == request_id)

    async def parked(self) -> None:
        """Wait until the stream consumer has noticed the agent is parked (it then sleeps on the clock)."""
        await until(lambda: CONSUMER_TASK in self.clock.sleeping, "stream consumer parked")

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
    await until(lambda: bool(h.heartbeats), "first heartbeat")
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
    await until(lambda: h.heartbeats and h.heartbeats[-1].status == "running", "heartbeat after resume")
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
    await h.parked()
    await h.bus.publish_many([bar(1, h.clock), bar(2, h.clock)])
    await h.bus.publish(order("wq-a", h.clock))
    await until(lambda: h.agent.counters["discarded_inactive"] == 2, "discarded count")
    for _ in range(5):  # the parked consumer wakes every 50 ms of clock time, sees it is parked, sleeps again
        await h.clock.advance(0.05)
        await asyncio.sleep(0.01)
    assert h.agent.bars == [] and h.agent.orders == []
    assert h.pending() == {}  # not even read: the order waits in its stream
    assert await h.bus.stream_length(Channel.ORDERS) == 1
    await h.command("start")
    await h.tick(lambda: len(h.agent.orders) == 1, "order consumed after start")
    assert h.agent.orders[0].message.order.client_order_id == "wq-a"  # type: ignore[attr-defined]
    await until(lambda: h.pending() == {}, "order acked")
    await h.bus.publish(bar(3, h.clock))
    await until(lambda: len(h.agent.bars) == 1, "bar after start")
    assert h.agent.bars[0].open_ts_ms == 3  # the discarded ones are gone for good


async def test_paused_agent_also_parks(h: Harness) -> None:
    await h.command("pause")
    await h.parked()
    await h.bus.publish(bar(1, h.clock))
    await h.bus.publish(order("wq-p", h.clock))
    await until(lambda: h.agent.counters["discarded_inactive"] == 1, "discarded while paused")
    await h.clock.advance(0.2)
    await asyncio.sleep(0.01)
    assert h.agent.orders == [] and h.pending() == {}
    await h.command("resume")
    await h.tick(lambda: len(h.agent.orders) == 1, "order consumed after resume")


async def test_order_arriving_right_after_stop_is_not_handled(h: Harness) -> None:
    def handled() -> list[str]:
        return [d.message.order.client_order_id for d in h.agent.orders]  # type: ignore[attr-defined]

    for i in range(3):  # the window is the consumer's in-flight blocking read: open nearly every time
        ack = await h.command("stop")
        assert ack.status == "stopped"
        await h.bus.publish(order(f"wq-late{i}", h.clock))
        await asyncio.sleep(0.3)  # longer than the blocking read
        assert f"wq-late{i}" not in handled(), "an order was handled by a stopped agent"
        await h.command("start")
        await h.tick(lambda i=i: f"wq-late{i}" in handled(), "order handled after start")


async def test_handler_exception_is_counted_and_later_messages_still_handled(
        h: Harness, logs: list[dict[str, Any]]) -> None:
    h.agent.fail_bars = {1}
    await h.bus.publish(bar(1, h.clock))
    await until(lambda: h.agent.counters["errors:handler"] == 1, "handler error counted")
    await h.bus.publish(bar(2, h.clock))
    await until(lambda: len(h.agent.bars) == 1, "next bar handled")
    assert h.agent.bars[0].open_ts_ms == 2
    assert h.agent.status == "running"
    assert h.agent.heartbeat().counters["errors:handler"] == 1
    failed = [e for e in logs if e["event"] == "handler_failed"]
    assert failed and failed[0]["error"] == "RuntimeError: bad bar 1" and failed[0]["log_level"] == "error"


async def test_expired_messages_never_reach_a_handler(h: Harness) -> None:
    stale_bar = bar(1, h.clock, expires_in_ms=-1_000, age_ms=5_000)
    live_bar = bar(2, h.clock, expires_in_ms=60_000)
    at_expiry = bar(3, h.clock, expires_in_ms=0, age_ms=10)  # expires exactly now: expired
    await h.bus.publish_many([stale_bar, live_bar, at_expiry])
    await h.bus.publish(order("wq-stale", h.clock, expires_in_ms=-1_000, age_ms=5_000))
    await h.bus.publish(order("wq-live", h.clock))
    await until(lambda: len(h.agent.orders) == 1 and len(h.agent.bars) == 1, "live messages handled")
    await until(lambda: h.agent.counters["expired"] == 3, "expired counted")
    assert [b.open_ts_ms for b in h.agent.bars] == [2]
    assert [d.message.order.client_order_id for d in h.agent.orders] == ["wq-live"]  # type: ignore[attr-defined]
    assert sorted(type(m).__name__ for m in h.agent.expired) == ["Bar", "Bar", "NewOrder"]
    await until(lambda: h.pending() == {}, "expired order acked, never retried")


async def test_message_expiring_while_queued_is_dropped(h: Harness) -> None:
    await h.command("pause")
    await h.parked()
    await h.bus.publish(order("wq-soon", h.clock, expires_in_ms=500))
    await h.clock.advance(1.0)  # it expires while the agent is paused
    await h.command("resume")
    await h.tick(lambda: h.agent.counters["expired"] == 1, "expired on arrival")
    assert h.agent.orders == []


async def test_failing_stream_entry_is_retried_then_dead_lettered(h: Harness) -> None:
    h.agent.fail_orders = {"wq-bad"}
    await h.bus.publish(order("wq-bad", h.clock))
    await h.tick(lambda: h.agent.counters["poison:orders"] == 1, "entry given up", step_s=0.2)
    assert h.agent.counters["errors:stream:orders"] == MAX_STREAM_DELIVERIES
    dead = [json.loads(raw) for _, raw in await h.bus.read_range(Channel.DEADLETTER)]
    assert len(dead) == 1
    assert dead[0]["channel"] == "orders"
    assert dead[0]["reason"] == f"handler failed {MAX_STREAM_DELIVERIES + 1} times"
    assert decode(dead[0]["raw"]).order.client_order_id == "wq-bad"  # type: ignore[attr-defined]
    await until(lambda: h.pending() == {}, "poison acked")
    await h.bus.publish(order("wq-good", h.clock))  # the consumer goes on
    await until(lambda: len(h.agent.orders) == 1, "next order handled")


async def test_failed_stream_entry_succeeds_on_retry(h: Harness) -> None:
    h.agent.fail_orders = {"wq-flaky"}
    await h.bus.publish(order("wq-flaky", h.clock))
    await until(lambda: h.agent.counters["errors:stream:orders"] == 1, "first attempt failed")
    assert h.agent.orders == []
    assert len(h.pending()) == 1  # left pending, not acked
    h.agent.fail_orders = set()
    await h.tick(lambda: len(h.agent.orders) == 1, "retried after reclaim_idle_ms", step_s=0.2)
    assert h.agent.orders[0].deliveries == 2
    assert h.agent.counters["poison:orders"] == 0
    await until(lambda: h.pending() == {}, "acked after success")


async def test_own_pending_entries_are_handled_first_after_a_restart(logs: list[dict[str, Any]]) -> None:
    """Crash-only: entries a previous incarnation read but never acked are handled at start-up."""
    clock = RecordingClock(T0)
    bus = EmbeddedBus(prefix="t:", clock=clock)
    await bus.start()
    await bus.publish_many([order("wq-1", clock), order("wq-2", clock)])
    crashed = await bus.read_group(Channel.ORDERS, "core", "probe-1", block_ms=0)  # previous life, no ack
    assert len(crashed) == 2
    agent = ProbeAgent(Settings(), bus, clock)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: len(agent.orders) == 2, "pending entries handled")
        assert [d.deliveries for d in agent.orders] == [2, 2]
        await until(lambda: not bus._streams["orders"].groups["core"].pending, "acked")
    finally:
        agent.shutdown()
        await asyncio.wait_for(task, WAIT_S)
        await bus.close()


async def test_shutdown_publishes_a_final_stopped_heartbeat(logs: list[dict[str, Any]]) -> None:
    harness = Harness()
    await harness.start()
    try:
        harness.agent.shutdown()
        await asyncio.wait_for(harness.run_task, WAIT_S)
        assert harness.agent.status == "stopped" and harness.agent.stops == 1
        hb = decode((await harness.bus.get_statuses())["core"])
        assert isinstance(hb, Heartbeat) and hb.status == "stopped"
        assert all(t.done() for t in harness.agent._tasks)
        assert any(e["event"] == "agent_stopped" for e in logs)
    finally:
        await harness.stop()  # shutdown is idempotent


async def test_batch_handling_is_linear_in_the_batch_size(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher must not compare every message with every other one (a backlog would stall the agent)."""
    comparisons = {"n": 0}
    original = Bar.__eq__

    def counting_eq(self: Bar, other: object) -> bool:
        comparisons["n"] += 1
        return original(self, other)

    n = 300
    bars = [bar(i, h.clock) for i in range(n)]
    monkeypatch.setattr(Bar, "__eq__", counting_eq)
    await h.bus.publish_many(bars)
    await until(lambda: len(h.agent.bars) == n, "batch handled")
    monkeypatch.undo()
    assert comparisons["n"] <= 2 * n, f"{comparisons['n']} message comparisons for a batch of {n}"
