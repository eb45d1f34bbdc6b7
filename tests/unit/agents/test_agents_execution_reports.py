"""Execution's reports: an order the venue fills as it accepts it gets its fill report alone (no ack before it);
an order that rests gets an ack, and its fill later; risk counts either as one accepted result."""

from __future__ import annotations

import asyncio
import time

from support.embedded_agents import BTC, run_agents, send_probe, stream, tick
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.messages import Channel, ExecutionReport, NewOrder, OrderSpec
from wavesquant.types import OrderType, Side


def limit_order(coid: str, price: float) -> NewOrder:
    spec = OrderSpec(client_order_id=coid, signal_id=f"sig-{coid}", strategy_id="probe", family="hft",
                     exchange="paper", symbol=BTC, side=Side.BUY, quantity=0.001, order_type=OrderType.LIMIT,
                     limit_price=price)
    return NewOrder.create(source="risk", ts_ns=time.time_ns(), order=spec)


async def reports_of(bus: EmbeddedBus, coid: str) -> list[ExecutionReport]:
    return [m for m in await stream(bus, Channel.EXECUTION_REPORTS)
            if isinstance(m, ExecutionReport) and m.client_order_id == coid]


async def test_a_resting_order_is_acked_then_filled_in_its_own_report() -> None:
    bus, _, run = await run_agents(["execution"], 1.0)
    await bus.publish(tick(time.time_ns()))  # the market at 60,000
    await asyncio.sleep(0.05)
    await bus.publish(limit_order("wq-rest", 59_000.0))
    await asyncio.sleep(0.1)
    acked = await reports_of(bus, "wq-rest")
    assert [(r.kind, r.status.value) for r in acked] == [("ack", "open")] and acked[0].venue_order_id

    falls = tick(time.time_ns())
    await bus.publish(falls.model_copy(update={"prices": [58_900.0], "bids": None, "asks": None}))
    assert await run == 0
    assert [(r.kind, r.status.value) for r in await reports_of(bus, "wq-rest")] == [("ack", "open"),
                                                                                   ("fill", "filled")]


async def test_risk_counts_a_fill_without_an_ack_as_one_accepted_result() -> None:
    bus, rt, run = await run_agents(["risk", "execution"], 1.0)
    signal = await send_probe(bus)
    assert await run == 0
    coid = signal.order_spec().client_order_id
    assert [r.kind for r in await reports_of(bus, coid)] == ["fill"]
    results = list(rt.agent("risk").breakers._results)  # type: ignore[attr-defined]
    assert [rejected for _, rejected in results] == [False]
