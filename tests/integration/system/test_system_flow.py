"""The whole system as seven processes over the real Redis: replayed real candles -> bars -> trend signals ->
risk -> orders -> paper fills, every step visible in the event log; positions and PnL agree between the fill
reports, an independent average-cost recomputation, wavesquant's Portfolio, the paper venue's persisted fills
and balances, and the strategy engine's own published PnL."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import redis

from support.agents_procs import (
    STARTING_USDT,
    STRATEGY,
    SYMBOL,
    TAKER_FEE,
    AgentSystem,
    RedisState,
    signal_steps,
    wait_until,
)
from wavesquant.core.ids import client_order_id
from wavesquant.execution.reports import fill_from_report
from wavesquant.messages import (
    Envelope,
    ExecutionReport,
    LearningUpdate,
    NewOrder,
    RiskDecision,
    decode,
)
from wavesquant.portfolio.positions import Portfolio

pytestmark = [pytest.mark.redis, pytest.mark.shared_data]

MIN_EXECUTED = 4
AGENTS_IN_FLOW = ("data_feeds", "intelligence", "strategy_engine")
LIFECYCLE = ["generated", "evaluating", "approved", "executing", "executed"]


def executed_signals(events: list[tuple[str, Envelope]]) -> list[str]:
    return [s.signal_id for _, s in signal_steps(events) if s.to_state == "executed"]


def fill_reports(events: list[tuple[str, Envelope]]) -> list[ExecutionReport]:
    return [m for _, m in events if isinstance(m, ExecutionReport) and m.kind == "fill"]


@dataclass
class Ledger:
    """Average-cost position and realised PnL (net of fees), recomputed here independently of src/."""

    quantity: float = 0.0
    avg_price: float = 0.0
    realized: float = 0.0
    fees: float = 0.0
    cash: float = 0.0  # quote currency: -sum(sign * qty * price) - fees

    def book(self, sign: int, qty: float, price: float, fee: float) -> None:
        self.fees += fee
        self.realized -= fee
        self.cash -= sign * qty * price + fee
        if self.quantity == 0 or (self.quantity > 0) == (sign > 0):
            self.avg_price = (abs(self.quantity) * self.avg_price + qty * price) / (abs(self.quantity) + qty)
            self.quantity += sign * qty
            return
        closed = min(qty, abs(self.quantity))
        self.realized += closed * (price - self.avg_price) * (1 if self.quantity > 0 else -1)
        self.quantity += sign * qty
        if abs(self.quantity) < 1e-12:
            self.quantity, self.avg_price = 0.0, 0.0
        elif (self.quantity > 0) == (sign > 0):  # flipped: the rest opened at this price
            self.avg_price = price


def test_replayed_bars_become_signals_orders_and_fills(system: AgentSystem, state: RedisState) -> None:
    # market data and analysis flow: bars out of data_feeds, trend assessments out of intelligence
    def flowing() -> bool:
        feeds, intelligence, engine = (state.live_heartbeat(a) for a in AGENTS_IN_FLOW)
        return (
            feeds.counters.get("bars", 0) > 0
            and intelligence.counters.get("trend_assessments", 0) > 0
            and engine.counters.get("signals", 0) > 0
        )

    wait_until(flowing, 30, "bars, trend assessments and signals counted in the heartbeats")

    def with_executed() -> list[tuple[str, Envelope]] | None:
        events = state.events()
        return events if len(executed_signals(events)) >= MIN_EXECUTED else None

    events = wait_until(with_executed, 45, f"{MIN_EXECUTED} executed signals in the event log")
    position = {i: n for n, (i, _) in enumerate(events)}
    for signal_id in executed_signals(events)[:MIN_EXECUTED]:
        coid = client_order_id(signal_id)
        sig = [(i, s) for i, s in signal_steps(events) if s.signal_id == signal_id]
        states = [m.to_state.value for _, m in sig]
        assert states in (LIFECYCLE, [*LIFECYCLE, "learned"]), f"signal {signal_id} went through {states}"
        assert [m.from_state for _, m in sig][1:] == [m.to_state for _, m in sig][:-1]
        assert {(m.signal_type, m.strategy_id, m.symbol) for _, m in sig} == {
            ("trend_signal", STRATEGY, SYMBOL)
        }
        decisions = [
            (i, m) for i, m in events if isinstance(m, RiskDecision) and m.order.signal_id == signal_id
        ]
        assert (
            len(decisions) == 1 and decisions[0][1].approved and decisions[0][1].order.client_order_id == coid
        )
        orders = [(i, m) for i, m in events if isinstance(m, NewOrder) and m.order.signal_id == signal_id]
        assert len(orders) == 1 and orders[0][1].order.client_order_id == coid
        reports = [(i, m) for i, m in events if isinstance(m, ExecutionReport) and m.client_order_id == coid]
        kinds = [m.kind for _, m in reports]
        # an order the venue fills as it accepts it (these are market orders) gets the fill report alone
        assert kinds[0] in ("ack", "fill") and "fill" in kinds and reports[-1][1].status.value == "filled", kinds
        assert sum(m.last_quantity or 0.0 for _, m in reports if m.kind == "fill") == pytest.approx(
            orders[0][1].order.quantity
        )
        assert all(m.signal_id == signal_id and m.strategy_id == STRATEGY for _, m in reports)
        # causality as the event log recorded it
        generated, executed = sig[0][0], sig[-1][0]
        first_report = reports[0][0]
        first_fill = next(i for i, m in reports if m.kind == "fill")
        chain = [generated, decisions[0][0], orders[0][0], first_report, first_fill, executed]
        assert [position[i] for i in chain] == sorted(position[i] for i in chain), chain


def test_positions_and_pnl_agree_everywhere(system: AgentSystem, state: RedisState, redis_url: str) -> None:
    def round_trips() -> bool:
        fills = fill_reports(state.events())
        return len(fills) >= MIN_EXECUTED and any(f.side.value == "sell" for f in fills)

    wait_until(round_trips, 45, f"{MIN_EXECUTED} fills including a sell (a closed round trip)")
    out = system.control("pause", "risk")  # no new orders: the fills stop changing
    assert "risk: pause -> paused" in out, out
    try:
        wait_until(lambda: state.live_heartbeat("risk").status == "paused", 10, "risk's heartbeat: paused")
        fills = _settled_fills(state)
        _check_fills(fills, state, redis_url)
    finally:
        out = system.control("resume", "risk")
    assert "risk: resume -> running" in out, out
    wait_until(lambda: state.live_heartbeat("risk").status == "running", 10, "risk's heartbeat: running")


def _settled_fills(state: RedisState) -> list[ExecutionReport]:
    """Once every order in the log is terminal and the log has stopped changing for a second, its fills."""

    def settled() -> list[ExecutionReport] | None:
        before = state.events()
        orders = {m.order.client_order_id for _, m in before if isinstance(m, NewOrder)}
        done = {
            m.client_order_id for _, m in before if isinstance(m, ExecutionReport) and m.status.is_terminal
        }
        if not orders <= done:
            return None
        time.sleep(1.0)
        after = state.events()
        if len(fill_reports(after)) != len(fill_reports(before)):
            return None
        return fill_reports(after)

    return wait_until(settled, 30, "every order terminal and no new fills for 1 s")


def _check_fills(fills: list[ExecutionReport], state: RedisState, redis_url: str) -> None:
    ids = [f.fill_id for f in fills]
    assert len(ids) == len(set(ids)), "a fill was reported twice"
    # the paper venue persisted exactly these fills
    venue = state.paper_fills()
    venue_by_id = {f["fill_id"]: f for f in venue}
    assert len(venue) == len(venue_by_id), "the venue persisted a fill twice"
    assert set(venue_by_id) == set(ids)
    for r in fills:
        v = venue_by_id[r.fill_id]
        assert (v["client_order_id"], v["side"], v["symbol"]) == (r.client_order_id, r.side.value, r.symbol)
        assert v["quantity"] == pytest.approx(r.last_quantity, rel=1e-12)
        assert v["price"] == pytest.approx(r.last_price, rel=1e-12)
        assert v["fee"] == pytest.approx(r.fee, rel=1e-9, abs=1e-12)
        assert r.fee_currency == "USDT" and r.fee == pytest.approx(TAKER_FEE * r.last_quantity * r.last_price)
    # an independent average-cost ledger, wavesquant's Portfolio, and the venue's balances agree
    ledger = Ledger()
    portfolio = Portfolio()
    for r in fills:
        assert r.last_quantity is not None and r.last_price is not None
        ledger.book(r.side.sign, r.last_quantity, r.last_price, r.fee)
        fill = fill_from_report(r)
        assert fill is not None and portfolio.apply(fill, r.strategy_id or "")
    net = portfolio.position(SYMBOL)
    assert net is not None
    assert net.quantity == pytest.approx(ledger.quantity, abs=1e-12)
    assert net.realized_pnl == pytest.approx(ledger.realized, rel=1e-9, abs=1e-9)
    assert net.fees == pytest.approx(ledger.fees, rel=1e-12)
    assert ledger.realized != 0.0
    signed = sum(f["quantity"] * (1 if f["side"] == "buy" else -1) for f in venue)
    balances = state.paper_balances()
    assert signed == pytest.approx(ledger.quantity, abs=1e-12)
    assert balances.get("BTC", 0.0) == pytest.approx(signed, abs=1e-12), balances
    assert balances["USDT"] == pytest.approx(STARTING_USDT + ledger.cash, rel=1e-12), balances
    # the strategy engine's own portfolio (from the same reports) publishes the same PnL
    expected = {"realized_pnl": ledger.realized, "fees": ledger.fees}
    update = _strategy_performance(redis_url, state.prefix, expected)
    assert update.metrics["realized_pnl"] != 0.0


def _strategy_performance(redis_url: str, prefix: str, expected: dict[str, float]) -> LearningUpdate:
    """The strategy engine's next performance update for the strategy that matches `expected` (it may first
    publish one or two from before it read the last reports)."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{prefix}learning_updates")
    seen: list[LearningUpdate] = []
    try:

        def matching() -> LearningUpdate | None:
            msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg is None:
                return None
            update = decode(msg["data"])
            if not (
                isinstance(update, LearningUpdate)
                and update.source == "strategy_engine"
                and update.strategy_id == STRATEGY
                and update.note == "performance"
            ):
                return None
            seen.append(update)
            ok = all(
                update.metrics.get(k, 0.0) == pytest.approx(v, rel=1e-9, abs=1e-9)
                for k, v in expected.items()
            )
            return update if ok else None

        try:
            return wait_until(
                matching, 15, f"a strategy_engine performance update with {expected}", interval=0.0
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; latest seen: {[json.dumps(u.metrics) for u in seen[-3:]]}"
            ) from None
    finally:
        pubsub.close()
        client.close()


def test_every_fill_belongs_to_one_approved_order_of_an_executed_signal(
    system: AgentSystem, state: RedisState
) -> None:
    def enough_fills() -> list[ExecutionReport] | None:
        fills = fill_reports(state.events())
        return fills if len(fills) >= MIN_EXECUTED else None

    fills = wait_until(enough_fills, 45, f"{MIN_EXECUTED} fills")

    def histories() -> dict[str, list[str]] | None:
        states: dict[str, list[str]] = {}
        for _, step in signal_steps(state.events()):
            states.setdefault(step.signal_id, []).append(step.to_state.value)
        done = all("executed" in states.get(r.signal_id or "", []) for r in fills)
        return states if done else None

    states = wait_until(histories, 15, "core to record every filled signal as executed")
    events = state.events()
    approved = Counter(
        m.order.client_order_id for _, m in events if isinstance(m, RiskDecision) and m.approved
    )
    sent = Counter(m.order.client_order_id for _, m in events if isinstance(m, NewOrder))
    acks = Counter(m.client_order_id for _, m in events if isinstance(m, ExecutionReport) and m.kind == "ack")
    assert set(sent) <= set(approved) and max(approved.values()) == 1 and max(sent.values()) == 1
    assert set(acks) <= set(sent) and max(acks.values(), default=1) == 1  # exactly once at the venue
    fill_ids = Counter(r.fill_id for r in fill_reports(events))
    assert max(fill_ids.values()) == 1  # every fill reported once
    for r in fill_reports(events):
        assert r.client_order_id in sent and r.signal_id is not None
        assert client_order_id(r.signal_id) == r.client_order_id
    for r in fills:
        history = states[r.signal_id or ""]
        assert history in (LIFECYCLE, [*LIFECYCLE, "learned"]), (r.signal_id, history)
