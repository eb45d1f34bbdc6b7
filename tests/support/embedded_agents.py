"""Agents in one process over the embedded bus, and the messages tests feed them: an HFT probe signal and the
tick it needs (risk wants a last price, execution a price to fill at)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.messages import Channel, ProbeSignal, TickBatch, decode
from wavesquant.runtime import Runtime

BTC = "BTC/USDT"


async def run_agents(names: list[str], seconds: float) -> tuple[EmbeddedBus, Runtime, asyncio.Task[Any]]:
    """A started embedded bus, a runtime of `names` running for `seconds` (its task), after 0.1 s to start."""
    bus = EmbeddedBus(clock=LiveClock())
    await bus.start()
    rt = Runtime(Settings(), names, bus=bus)
    run = asyncio.create_task(rt.run(seconds))
    await asyncio.sleep(0.1)
    return bus, rt, run


def probe(ts_ns: int) -> ProbeSignal:
    return ProbeSignal.create(source="strategy_engine", ts_ns=ts_ns, strategy_id="probe", exchange="paper",
                              symbol=BTC, side="buy", quantity=0.001, reference_price=60_000.0, tick_ts_ns=ts_ns,
                              expires_at_ms=ts_ns // 1_000_000 + 5_000)


def tick(ts_ns: int) -> TickBatch:
    return TickBatch.create(source="data_feeds", ts_ns=ts_ns, exchange="paper", symbols=[BTC],
                            event_ts_ms=[ts_ns // 1_000_000], prices=[60_000.0], sizes=[1.0])


async def send_probe(bus: EmbeddedBus) -> ProbeSignal:
    """The market's tick, then (once agents have it) an HFT probe signal; returns the signal."""
    await bus.publish(tick(time.time_ns()))
    await asyncio.sleep(0.05)
    signal = probe(time.time_ns())
    await bus.publish(signal)
    return signal


async def stream(bus: EmbeddedBus, channel: Channel | str) -> list[Any]:
    """Every message of a stream, decoded, oldest first."""
    return [decode(raw) for _, raw in await bus.read_range(channel)]
