"""An expired signal or order is never acted on, across processes: signals nobody evaluates in time end
`expired` in core's lifecycle with no order or fill, and an order that waited past its expiry in the orders
stream is refused by execution (report kind "expired") without ever reaching the venue."""

from __future__ import annotations

import time
import uuid

import pytest

from support.agents_procs import SIGNAL_TTL_S, SYMBOL, AgentSystem, RedisState, signal_steps
from support.polling import wait_until
from wavesquant.core.ids import client_order_id
from wavesquant.messages import (
    Envelope,
    ExecutionReport,
    NewOrder,
    OrderSpec,
    RiskDecision,
    SignalStep,
    encode,
)

pytestmark = [pytest.mark.redis, pytest.mark.shared_data]


def _fills(events: list[tuple[str, Envelope]]) -> list[ExecutionReport]:
    return [m for _, m in events if isinstance(m, ExecutionReport) and m.kind == "fill"]


def _ids(m: Envelope) -> tuple[str | None, str | None]:
    """(signal id, client order id) of a decision, order or report; (None, None) for anything else."""
    if isinstance(m, RiskDecision | NewOrder):
        return m.order.signal_id, m.order.client_order_id
    if isinstance(m, ExecutionReport):
        return m.signal_id, m.client_order_id
    return None, None


def _touching(events: list[tuple[str, Envelope]], signal_ids: set[str]) -> list[Envelope]:
    """Decisions, orders and reports that belong to any of these signals."""
    coids = {client_order_id(s) for s in signal_ids}
    return [m for _, m in events if _ids(m)[0] in signal_ids or _ids(m)[1] in coids]


def test_signals_nobody_evaluates_expire_without_orders(system: AgentSystem, state: RedisState) -> None:
    wait_until(lambda: _fills(state.events()), 45, "a first fill (the system trades)")
    out = system.control("stop", "risk")
    assert "risk: stop -> stopped" in out, out
    stopped_ms = int(time.time() * 1000)
    mark = state.last_id("events")
    try:

        def expired_signals() -> dict[str, tuple[SignalStep, SignalStep]] | None:
            events = [s for _, s in signal_steps(state.events(mark))]
            fresh = {m.signal_id: m for m in events if m.to_state == "generated" and m.ts_ms > stopped_ms}
            expired = {
                m.signal_id: (fresh[m.signal_id], m)
                for m in events
                if m.to_state == "expired" and m.signal_id in fresh
            }
            return expired if len(expired) >= 3 else None

        expired = wait_until(expired_signals, 30, "3 signals generated after the stop to expire")
        for generated, event in expired.values():
            expires_at = event.signal_expires_at_ms
            assert event.from_state == "evaluating" and expires_at is not None, event
            assert 0 < expires_at - generated.ts_ms <= SIGNAL_TTL_S * 1000, (generated, event)
            assert event.ts_ms >= expires_at, event  # never expired early
        # wait past every expiry plus any grace, then make sure nothing ever traded them
        time.sleep(1.0)
        events = state.events(mark)
        assert _touching(events, set(expired)) == []
        venue_orders = state.paper_orders()
        assert not {client_order_id(s) for s in expired} & set(venue_orders)
        core = state.live_heartbeat("core")
        assert core.counters.get("signals:expired", 0) >= len(expired), core.counters
    finally:
        out = system.control("start", "risk")
    assert "risk: start -> running" in out, out


def test_order_expired_in_the_stream_is_refused_by_execution(system: AgentSystem, state: RedisState) -> None:
    wait_until(lambda: _fills(state.events()), 45, "a first fill (the system trades)")
    out = system.control("pause", "execution")
    assert "execution: pause -> paused" in out, out
    tag = uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    expiring = _order(f"expiring{tag}", now_ns, expires_in_ms=1500)
    lasting = _order(f"lasting{tag}", now_ns, expires_in_ms=None)
    mark = state.last_id("events")
    try:
        for order in (expiring, lasting):  # straight onto the stream, as risk would
            state.client.xadd(state.key("orders"), {"d": encode(order)})
        assert expiring.expires_at_ms is not None
        time.sleep(max(0.0, expiring.expires_at_ms / 1000 - time.time()) + 0.5)
        ours = (expiring.order.client_order_id, lasting.order.client_order_id)
        assert not [m for _, m in state.events(mark) if _ids(m)[1] in ours]  # execution is not reading
    finally:
        out = system.control("resume", "execution")
    assert "execution: resume -> running" in out, out

    def reports_for(coid: str) -> list[ExecutionReport]:
        return [
            m for _, m in state.events(mark) if isinstance(m, ExecutionReport) and m.client_order_id == coid
        ]

    refused = wait_until(
        lambda: reports_for(expiring.order.client_order_id), 20, "a report on the expired order"
    )
    filled = wait_until(
        lambda: [r for r in reports_for(lasting.order.client_order_id) if r.kind == "fill"],
        20,
        "a fill of the order that did not expire",
    )
    assert [(r.kind, r.status.value) for r in refused] == [("expired", "failed")], refused
    assert "expired" in refused[0].reason and refused[0].filled_quantity == 0
    assert filled[0].last_quantity == pytest.approx(lasting.order.quantity)
    time.sleep(0.5)  # nothing more may follow for the expired order
    assert [r.kind for r in reports_for(expiring.order.client_order_id)] == ["expired"]
    venue_orders = state.paper_orders()
    assert expiring.order.client_order_id not in venue_orders  # it never reached the venue
    assert lasting.order.client_order_id in venue_orders
    assert all(f["client_order_id"] != expiring.order.client_order_id for f in state.paper_fills())


def _order(coid: str, now_ns: int, expires_in_ms: int | None) -> NewOrder:
    spec = OrderSpec(
        client_order_id=coid,
        signal_id=coid,
        strategy_id="expiry_probe",
        family="trend",
        exchange="binance",
        symbol=SYMBOL,
        side="buy",
        quantity=0.001,
    )
    expires = None if expires_in_ms is None else now_ns // 1_000_000 + expires_in_ms
    return NewOrder.create(source="risk", ts_ns=now_ns, order=spec, expires_at_ms=expires)
