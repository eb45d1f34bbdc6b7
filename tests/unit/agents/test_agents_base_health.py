"""Agent base health: timed loops from config, heartbeat contents (status, loops, counters, queue depths),
degraded while a loop keeps failing or the bus is down, the latest heartbeat kept with set_status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from support.polling import until
from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import LOOPS, Settings, load_settings
from wavesquant.core.clock import Clock, SimulatedClock
from wavesquant.messages import Bar, Channel, Envelope, Heartbeat, decode, encode

T0 = 1_700_000_000_000_000_000
WAIT_S = 20.0


class LoopAgent(Agent):
    name = "core"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock) -> None:
        super().__init__(settings, bus, clock, consumer_id="loop-1")
        self.routing_runs: list[int] = []
        self.health_runs = 0
        self.failing = False
        self.slow_s = 0.0
        self.loop("signal_routing", self.route)
        self.loop("agent_health_monitoring", self.health)
        self.on([Channel.MARKET_BARS], self.on_bars)
        self.seen: list[Envelope] = []

    async def route(self) -> None:
        self.routing_runs.append(self.clock.now_ns() - T0)
        if self.slow_s:
            await self.clock.sleep(self.slow_s)
        if self.failing:
            raise ValueError("routing table corrupt")

    async def health(self) -> None:
        self.health_runs += 1

    async def on_bars(self, batch: list[Envelope]) -> None:
        self.seen.extend(batch)


@pytest.fixture
async def env() -> AsyncIterator[tuple[LoopAgent, EmbeddedBus, SimulatedClock]]:
    with capture_logs():
        clock = SimulatedClock(T0)
        bus = EmbeddedBus(prefix="t:", clock=clock)
        await bus.start()
        agent = LoopAgent(Settings(), bus, clock)
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: agent.status == "running", "running")
            yield agent, bus, clock
        finally:
            agent.shutdown()
            await asyncio.wait_for(task, WAIT_S)
            await bus.close()


async def advance(clock: SimulatedClock, seconds: float, step_s: float = 0.01) -> None:
    end = clock.now_ns() + int(seconds * 1e9)
    while clock.now_ns() < end:
        await clock.advance_to(min(end, clock.now_ns() + int(step_s * 1e9)))


async def test_loops_take_tier_and_interval_from_config(tmp_path: Any) -> None:
    cfg = tmp_path / "wq.yaml"
    cfg.write_text("core:\n  loops:\n    signal_routing: 0.25\n")
    settings = load_settings(cfg)
    agent = LoopAgent(settings, EmbeddedBus(), SimulatedClock(T0))
    loops = {t.name: t for t in agent._loops}
    assert set(loops) == {"signal_routing", "agent_health_monitoring"}
    assert loops["signal_routing"].interval_s == 0.25
    assert loops["signal_routing"].tier is LOOPS["core"]["signal_routing"][0]
    assert loops["agent_health_monitoring"].interval_s == LOOPS["core"]["agent_health_monitoring"][1]


def test_unknown_loop_name_is_refused() -> None:
    class Bad(Agent):
        name = "core"

        def __init__(self, settings: Settings, bus: Bus, clock: Clock) -> None:
            super().__init__(settings, bus, clock)

            async def body() -> None:
                return None

            self.loop("no_such_loop", body)

    with pytest.raises(KeyError):
        Bad(Settings(), EmbeddedBus(), SimulatedClock(T0))


async def test_loops_run_on_the_clock(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, _, clock = env
    await advance(clock, 1.0)
    assert agent.routing_runs[:10] == [k * 100_000_000 for k in range(1, 11)]  # 100 ms, drift-free
    assert agent.health_runs == 0  # 30 s loop
    await advance(clock, 30.0, step_s=0.1)
    assert agent.health_runs == 1


async def test_heartbeat_contents(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, _, clock = env
    agent.counters["widgets"] = 3
    agent.slow_s = 0.25  # each routing run overruns: 2 slots skipped per run
    await advance(clock, 1.05)
    hb = agent.heartbeat()
    assert (hb.agent, hb.source, hb.status, hb.bus_connected, hb.problems) == ("core", "core", "running", True, ())
    assert hb.ts_ns == clock.now_ns()
    assert hb.uptime_s == pytest.approx(1.05)
    loops = {s.name: s for s in hb.loops}
    routing = loops["signal_routing"]
    assert (routing.tier, routing.interval_s) == ("fast", 0.1)
    assert routing.runs == 3 and routing.overruns == 6 and routing.failures == 0
    assert 0 <= routing.last_ms <= routing.max_ms
    assert loops["agent_health_monitoring"].tier == "tactical"
    assert hb.counters["widgets"] == 3
    assert hb.counters["pub:heartbeats"] >= 1  # the bus's counters are included
    assert set(hb.queue_depths) == {"sub0", "sub1"}  # control + market_bars subscriptions
    assert decode(encode(hb)) == hb  # a valid wire message


async def test_heartbeats_are_published_and_kept_as_status(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, bus, clock = env
    sub = bus.subscribe([Channel.HEARTBEATS])
    seen: list[Heartbeat] = []

    async def collect() -> None:
        async for batch in sub:
            seen.extend(m for m in batch if isinstance(m, Heartbeat))

    task = asyncio.create_task(collect())
    try:
        await advance(clock, 3.0, step_s=0.05)
        await until(lambda: len(seen) >= 3, "three heartbeats")
        assert [hb.ts_ns - T0 for hb in seen[:3]] == [1_000_000_000, 2_000_000_000, 3_000_000_000]  # every 1 s
        status = decode((await bus.get_statuses())["core"])
        assert isinstance(status, Heartbeat) and status.ts_ns == T0 + 3_000_000_000
        await advance(clock, 0.5)
        agent.shutdown()
        await until(lambda: agent.status == "stopped", "stopped")
    finally:
        await sub.close()
        await asyncio.wait_for(task, WAIT_S)


async def test_status_expires_when_heartbeats_stop(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, bus, clock = env
    assert "core" in await bus.get_statuses()
    await agent.bus.set_status("risk", b"{}", ttl_s=agent.settings.heartbeat.ttl_s)
    await clock.advance(agent.settings.heartbeat.ttl_s + 1)  # one jump: core's heartbeat loop refreshes itself
    assert set(await bus.get_statuses()) == {"core"}


async def test_repeated_loop_failures_degrade_the_agent_until_it_recovers(
        env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, _, clock = env
    agent.failing = True
    await advance(clock, 0.45)
    hb = agent.heartbeat()
    assert hb.status == "running"  # 4 failures: not yet
    assert {s.name: s.consecutive_failures for s in hb.loops}["signal_routing"] == 4
    await advance(clock, 0.1)
    hb = agent.heartbeat()
    assert hb.status == "degraded"
    assert hb.problems == ("loop signal_routing: 5 consecutive failures (ValueError: routing table corrupt)",)
    assert {s.name: s.failures for s in hb.loops}["signal_routing"] == 5
    assert agent.active  # degraded still works
    agent.failing = False
    await advance(clock, 0.1)
    hb = agent.heartbeat()
    assert hb.status == "running" and hb.problems == ()
    assert {s.name: (s.failures, s.consecutive_failures) for s in hb.loops}["signal_routing"] == (5, 0)


async def test_bus_down_is_a_problem(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, bus, _ = env
    bus.stats.connected = False
    hb = agent.heartbeat()
    assert (hb.status, hb.bus_connected, hb.problems) == ("degraded", False, ("bus disconnected",))
    bus.stats.connected = True
    assert agent.heartbeat().status == "running"


async def test_paused_agent_reports_paused_and_its_loops_stand_still(
        env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, bus, clock = env
    await advance(clock, 0.3)
    runs = len(agent.routing_runs)
    agent.status = "paused"
    await advance(clock, 1.0)
    assert len(agent.routing_runs) == runs
    hb = agent.heartbeat()
    assert hb.status == "paused"
    bus.stats.connected = False
    assert agent.heartbeat().status == "paused"  # problems do not hide a deliberate pause
    bus.stats.connected = True
    agent.status = "running"
    await advance(clock, 0.2)
    assert len(agent.routing_runs) == runs + 2


async def test_pubsub_queue_depth_is_reported(env: tuple[LoopAgent, EmbeddedBus, SimulatedClock]) -> None:
    agent, bus, _ = env
    bar = Bar.create(source="data_feeds", ts_ns=T0, exchange="x", symbol="BTC/USDT", timeframe="1m", open_ts_ms=0,
                     open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0)
    await bus.publish_many([bar, bar, bar])
    depths = agent.heartbeat().queue_depths  # not handed over yet: the dispatcher has not run
    assert depths["sub1"] == 3
    await until(lambda: len(agent.seen) == 3, "bars handled")
    assert agent.heartbeat().queue_depths["sub1"] == 0
