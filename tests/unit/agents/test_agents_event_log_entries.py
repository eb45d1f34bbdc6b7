"""The event log gets one entry per order per flush (not one per transition) and one signal_event entry per batch
core handles (not one per lifecycle step), without losing the order of what happened."""

from __future__ import annotations

from support.embedded_agents import BTC, run_agents, send_probe, stream
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.execution.orders import Order, Submitted, Transition
from wavesquant.execution.venues.base import OrderRequest
from wavesquant.lifecycle.signals import SignalTransition
from wavesquant.messages import (
    MAX_SIGNAL_STEPS,
    MAX_TRANSITIONS_PER_ENTRY,
    Channel,
    ExecutionReport,
    OrderTransition,
    SignalEvent,
)
from wavesquant.runtime import Runtime
from wavesquant.types import OrderType, Side, SignalState

LIFECYCLE = [SignalState.GENERATED, SignalState.EVALUATING, SignalState.APPROVED, SignalState.EXECUTING,
             SignalState.EXECUTED]


async def test_an_order_filled_at_once_is_one_entry_and_its_signal_steps_are_grouped() -> None:
    bus, _, run = await run_agents(["core", "risk", "execution"], 1.5)
    signal = await send_probe(bus)
    coid = signal.order_spec().client_order_id

    assert await run == 0
    log = await stream(bus, Channel.EVENTS)

    entries = [(i, m) for i, m in enumerate(log) if isinstance(m, OrderTransition) and m.client_order_id == coid]
    assert len(entries) == 1, entries  # created, submitted, accepted and filled in one flush: one entry
    at, entry = entries[0]
    assert entry.request is not None and entry.request["symbol"] == BTC
    assert [t["event"] for t in entry.transitions] == ["Submitted", "Accepted", "FillEvent"]
    assert entry.strategy_id == "probe" and entry.signal_id == signal.msg_id
    reports = [(i, m) for i, m in enumerate(log) if isinstance(m, ExecutionReport) and m.client_order_id == coid]
    assert len(reports) == 1 and at < reports[0][0]  # the transitions are logged before the report they explain
    report = reports[0][1]  # filled as accepted: the fill report alone, no ack before it
    assert report.kind == "fill" and report.status.value == "filled" and report.venue_order_id

    grouped = [m for m in log if isinstance(m, SignalEvent) and any(s.signal_id == signal.msg_id for s in m.steps)]
    steps = [s for m in grouped for s in m.steps if s.signal_id == signal.msg_id]
    assert [s.to_state for s in steps] == LIFECYCLE
    assert [s.from_state for s in steps[1:]] == [s.to_state for s in steps[:-1]]
    assert steps[0].signal_expires_at_ms == signal.expires_at_ms
    assert len(grouped) < len(steps)  # generated and evaluating at least share an entry


async def test_entries_are_split_at_their_bounds() -> None:
    bus = EmbeddedBus(clock=LiveClock())
    await bus.start()
    rt = Runtime(Settings(), ["core", "execution"], bus=bus)
    core, execution = rt.agent("core"), rt.agent("execution")

    n = 2 * MAX_SIGNAL_STEPS + 3
    core._record([SignalTransition(f"s{i}", None, SignalState.GENERATED, 1_000 + i, "", "trend_signal")  # type: ignore[attr-defined]
                  for i in range(n)])
    entries = core._take_events()  # type: ignore[attr-defined]
    assert [len(e.steps) for e in entries] == [MAX_SIGNAL_STEPS, MAX_SIGNAL_STEPS, 3]
    assert [s.signal_id for e in entries for s in e.steps] == [f"s{i}" for i in range(n)]
    assert core._take_events() == []  # type: ignore[attr-defined]

    order = Order(request=OrderRequest("wq-many", BTC, Side.BUY, OrderType.LIMIT, 1.0, 50_000.0, ts_ms=1),
                  created_ts_ms=1)
    step = Transition(2, order.status, order.status, Submitted.__name__, {})
    execution._event(order, None, first=True)  # type: ignore[attr-defined]
    for _ in range(MAX_TRANSITIONS_PER_ENTRY + 1):
        execution._event(order, step)  # type: ignore[attr-defined]
    await execution.flush()  # type: ignore[attr-defined]
    logged = [m for m in await stream(bus, Channel.EVENTS) if isinstance(m, OrderTransition)]
    assert [len(m.transitions) for m in logged] == [MAX_TRANSITIONS_PER_ENTRY, 1]
    assert logged[0].request is not None and logged[1].request is None
    await bus.close()
