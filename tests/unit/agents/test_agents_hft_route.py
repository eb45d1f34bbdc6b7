"""HFT-tier trade signals go to risk directly; core records their lifecycle without routing them, and a risk
decision that overtakes its signal at core is applied once the signal arrives."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support.embedded_agents import probe, run_agents, send_probe, stream
from support.polling import until
from wavesquant.messages import Channel, NewOrder, RiskDecision
from wavesquant.types import SignalState


def state_of(core: Any, signal_id: str) -> SignalState | None:
    tracked = core.book.get(signal_id)
    return tracked.state if tracked is not None else None


async def test_an_hft_signal_reaches_risk_without_an_intent_and_core_tracks_it() -> None:
    bus, rt, run = await run_agents(["core", "risk"], 1.0)
    signal = await send_probe(bus)
    await bus.publish(signal)  # a repeat: one order only
    core = rt.agent("core")
    await until(lambda: state_of(core, signal.msg_id) is SignalState.APPROVED, "signal approved at core")
    orders = [m for m in await stream(bus, Channel.ORDERS) if isinstance(m, NewOrder)]
    assert [o.order.signal_id for o in orders] == [signal.msg_id]
    assert orders[0].origin_ts_ns == signal.tick_ts_ns
    assert orders[0].order == signal.order_spec()
    assert bus.stats.published[Channel.ORDER_INTENTS] == 0  # core did not route it
    assert rt.agent("risk").counters["duplicate_signals"] == 1
    assert await run == 0


async def test_a_decision_that_overtakes_its_signal_is_applied_when_the_signal_arrives() -> None:
    bus, rt, run = await run_agents(["core"], 0.6)
    signal = probe(time.time_ns())
    decision = RiskDecision.create(source="risk", ts_ns=time.time_ns(), order=signal.order_spec(), approved=True)
    await bus.publish(decision)
    await asyncio.sleep(0.1)
    core = rt.agent("core")
    assert core.book.get(signal.msg_id) is None  # type: ignore[attr-defined]
    await bus.publish(signal)
    await until(lambda: state_of(core, signal.msg_id) is SignalState.APPROVED, "signal approved at core")
    assert await run == 0


async def test_outcomes_of_a_signal_core_never_saw_give_it_a_lifecycle(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A pub/sub gap can lose the signal at core while risk got it: its order still gets a lifecycle."""
    from wavesquant.agents import core as core_module

    monkeypatch.setattr(core_module, "ADOPT_AFTER_MS", 100)
    bus, rt, run = await run_agents(["core"], 1.0)
    signal = probe(time.time_ns())  # never published: core misses it
    await bus.publish(RiskDecision.create(source="risk", ts_ns=time.time_ns(), order=signal.order_spec(),
                                          approved=True))
    core = rt.agent("core")
    await until(lambda: state_of(core, signal.msg_id) is SignalState.APPROVED, "signal approved at core")
    tracked = core.book.get(signal.msg_id)  # type: ignore[attr-defined]
    assert tracked.strategy_id == "probe" and tracked.client_order_id == signal.order_spec().client_order_id
    assert core.counters["signals_adopted"] == 1
    assert await run == 0
