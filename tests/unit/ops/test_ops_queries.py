"""ops.queries: signals, orders, positions and raw events rebuilt from an event log (EmbeddedBus, fakeredis)."""

from __future__ import annotations

import asyncio

import pytest

from support.event_log_flow import T0, EventLogFlow
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.execution.orders import Accepted, Canceled, CancelRequested, Submitted
from wavesquant.messages import (
    Channel,
    ControlCommand,
    Envelope,
    ExecutionReport,
    OrderTransition,
    RiskAlert,
    SignalEvent,
    encode,
)
from wavesquant.ops import queries
from wavesquant.ops.queries import describe
from wavesquant.types import OrderStatus, Side
from wavesquant.types import SignalState as S


def system() -> EventLogFlow:
    f = EventLogFlow()
    f.signal("sig-1", S.GENERATED, S.EVALUATING, S.APPROVED, S.EXECUTING, S.EXECUTED)
    f.signal("sig-2", S.GENERATED, S.EVALUATING, S.BLOCKED, strategy="mr_b")
    f.signal("sig-3", S.GENERATED, S.EVALUATING)
    f.signal("sig-4", S.GENERATED, S.EVALUATING, S.APPROVED)
    o1 = f.new("o1", qty=1.0)  # buy 1, filled in two
    f.apply(o1, Submitted())
    f.apply(o1, Accepted("v1"), "ack")
    f.fill(o1, "f1", 0.4, 100.0, fee=0.04)
    f.fill(o1, "f2", 0.6, 105.0, fee=0.06)
    o2 = f.new("o2", side=Side.SELL, qty=2.0, limit=120.0, strategy="mr_b", signal="sig-2")  # canceled
    f.apply(o2, Accepted("v2"), "ack")
    f.apply(o2, CancelRequested())
    f.apply(o2, Canceled(), "cancel")
    o3 = f.new("o3", qty=3.0, limit=90.0, signal="sig-4")  # open, partially filled
    f.apply(o3, Accepted("v3"), "ack")
    f.fill(o3, "f3", 1.0, 90.0)
    o4 = f.new("o4", side=Side.SELL, qty=0.5, strategy="mr_b", signal="sig-5")  # sells at 110: marks BTC
    f.apply(o4, Accepted("v4"), "ack")
    f.fill(o4, "f4", 0.5, 110.0)
    return f


async def bus_with(msgs: list[Envelope]) -> EmbeddedBus:
    bus = EmbeddedBus()
    await bus.start()
    await bus.publish_many(msgs)
    return bus


async def test_signals_replay_to_their_current_state() -> None:
    bus = await bus_with(system().msgs)
    rows, total = await queries.list_signals(bus)
    assert total == 4
    assert {s.signal_id: s.state for s in rows} == {
        "sig-1": S.EXECUTED, "sig-2": S.BLOCKED, "sig-3": S.EVALUATING, "sig-4": S.APPROVED}
    assert [s.signal_id for s in rows] == ["sig-4", "sig-3", "sig-2", "sig-1"]  # newest first
    blocked, n = await queries.list_signals(bus, "blocked")
    assert n == 1 and blocked[0].signal_id == "sig-2" and blocked[0].strategy_id == "mr_b"
    assert blocked[0].history[-1].reason == "to blocked"
    pending, n = await queries.list_signals(bus, "pending")
    assert n == 2 and {s.signal_id for s in pending} == {"sig-3", "sig-4"}
    limited, n = await queries.list_signals(bus, limit=1)
    assert n == 4 and [s.signal_id for s in limited] == ["sig-4"]
    with pytest.raises(ValueError, match="states are: generated"):
        await queries.list_signals(bus, "bogus")


async def test_orders_replay_through_the_state_machine() -> None:
    bus = await bus_with(system().msgs)
    rows, total = await queries.list_orders(bus)
    assert total == 4 and [o.client_order_id for o in rows] == ["o4", "o3", "o2", "o1"]
    by_id = {o.client_order_id: o for o in rows}
    o1 = by_id["o1"]
    assert (o1.status, o1.strategy_id, o1.signal_id, o1.transitions) == (OrderStatus.FILLED, "trend_a", "sig-1", 4)
    assert o1.filled_quantity == pytest.approx(1.0)
    assert o1.average_price == pytest.approx(0.4 * 100 + 0.6 * 105)
    assert o1.fees == pytest.approx(0.1)
    assert by_id["o2"].status is OrderStatus.CANCELED and by_id["o2"].limit_price == 120.0
    assert by_id["o3"].status is OrderStatus.PARTIALLY_FILLED and by_id["o3"].is_open
    assert all(not o.problem for o in rows)
    open_rows, n = await queries.list_orders(bus, open_only=True)
    assert n == 1 and [o.client_order_id for o in open_rows] == ["o3"]


async def test_order_whose_history_does_not_replay_is_shown_with_its_problem() -> None:
    f = EventLogFlow()
    o = f.new("bad", qty=1.0)
    f.apply(o, Accepted("v1"), "ack")
    bad = {"ts_ms": T0 + 50, "from_status": "open", "to_status": "filled", "event": "Canceled", "detail": {}}
    f.msgs.append(OrderTransition.create(source="execution", ts_ns=(T0 + 50) * 1_000_000, client_order_id="bad",
                                         transitions=[bad]))
    f.msgs.append(OrderTransition.create(source="execution", ts_ns=(T0 + 51) * 1_000_000, client_order_id="orphan",
                                         transitions=[bad]))  # no request: not an order we can show
    bus = await bus_with(f.msgs)
    rows, total = await queries.list_orders(bus)
    assert total == 1
    assert rows[0].status is OrderStatus.FILLED  # the last recorded status
    assert "replay diverges" in rows[0].problem


async def test_positions_from_fills_marked_at_the_last_fill_price() -> None:
    flow = system()
    dup = [m for m in flow.msgs if isinstance(m, ExecutionReport) and m.kind == "fill"][:1]
    bus = await bus_with(flow.msgs + dup)  # a fill report delivered twice is booked once
    view = await queries.positions(bus)
    assert view.fills == 4
    assert view.marks == {"BTC/USDT": 110.0}
    pf = view.portfolio
    trend = pf.position("BTC/USDT", "trend_a")
    mr = pf.position("BTC/USDT", "mr_b")
    assert trend is not None and mr is not None
    assert trend.quantity == pytest.approx(2.0)  # 1 (o1) + 1 (o3 partial)
    assert trend.avg_entry_price == pytest.approx((0.4 * 100 + 0.6 * 105 + 90.0) / 2)
    assert mr.quantity == pytest.approx(-0.5)
    assert pf.unrealized_pnl("BTC/USDT", "trend_a") == pytest.approx(2.0 * (110.0 - trend.avg_entry_price))
    net = pf.position("BTC/USDT")
    assert net is not None and net.quantity == pytest.approx(1.5)


async def test_list_events_filters_by_type_range_and_count() -> None:
    flow = system()
    bus = await bus_with(flow.msgs)
    await bus.append_raw(Channel.EVENTS, b"{not json")
    everything = await queries.list_events(bus)
    assert len(everything) == len(flow.msgs) + 1
    assert everything[-1].message is None and everything[-1].type == "invalid" and everything[-1].error
    reports = await queries.list_events(bus, types=["execution_report"])
    assert len(reports) == sum(isinstance(m, ExecutionReport) for m in flow.msgs)
    assert all(isinstance(e.message, ExecutionReport) for e in reports)
    mid = everything[5].entry_id
    end = everything[9].entry_id
    window = await queries.list_events(bus, start=mid, end=end)
    assert [e.entry_id for e in window] == [e.entry_id for e in everything[5:10]]
    assert len(await queries.list_events(bus, count=3)) == 3
    assert [e.entry_id for e in await queries.list_events(bus, types=["signal_event"], count=2)] == \
        [e.entry_id for e in everything[:2]]


async def test_event_log_is_read_page_by_page() -> None:
    flow = system()
    bus = await bus_with(flow.msgs)
    paged = [e.entry_id async for e in queries.iter_event_log(bus, page=4)]
    whole = [e.entry_id async for e in queries.iter_event_log(bus)]
    assert paged == whole and len(whole) == len(flow.msgs)


def test_entry_id_validation() -> None:
    for ok in ("-", "+", "1700000000000", "1700000000000-12"):
        assert queries.valid_entry_id(ok)
    for bad in ("", "abc", "1-2-3", "(1-0", "1700000000000-"):
        assert not queries.valid_entry_id(bad)


def test_event_log_types_are_those_written_to_the_log() -> None:
    assert "execution_report" in queries.EVENT_LOG_TYPES and "signal_event" in queries.EVENT_LOG_TYPES
    assert "order_transition" in queries.EVENT_LOG_TYPES and "control_command" in queries.EVENT_LOG_TYPES
    assert "tick_batch" not in queries.EVENT_LOG_TYPES and "heartbeat" not in queries.EVENT_LOG_TYPES


async def test_tail_follows_new_entries_only(fake_redis: object) -> None:
    client = fake_redis
    key = "t:events"
    flow = system()
    old = flow.msgs[0]
    await client.xadd(key, {"d": encode(old)})  # type: ignore[attr-defined]
    reports = [m for m in flow.msgs if isinstance(m, ExecutionReport)][:2]
    seen: list[queries.EventEntry] = []

    async def writer() -> None:
        await asyncio.sleep(0.05)
        await client.xadd(key, {"d": encode(flow.msgs[1])})  # type: ignore[attr-defined]  # filtered out
        await client.xadd(key, {"d": b"garbage"})  # type: ignore[attr-defined]  # filtered out (invalid)
        for m in reports:
            await client.xadd(key, {"d": encode(m)})  # type: ignore[attr-defined]

    task = asyncio.create_task(writer())
    shown = await asyncio.wait_for(
        queries.tail_events(client, key, seen.append, types=["execution_report"], count=2, block_ms=100), 20)
    await task
    assert shown == 2
    assert [e.message for e in seen] == reports


async def test_tail_without_filter_shows_invalid_entries(fake_redis: object) -> None:
    client = fake_redis
    seen: list[queries.EventEntry] = []
    await client.xadd("k", {"d": b"garbage"})  # type: ignore[attr-defined]
    await client.xadd("k", {"d": b"more garbage"})  # type: ignore[attr-defined]
    task = asyncio.create_task(queries.tail_events(client, "k", seen.append, count=1, block_ms=100))
    await asyncio.sleep(0.05)
    await client.xadd("k", {"d": b"{}"})  # type: ignore[attr-defined]
    assert await asyncio.wait_for(task, 20) == 1
    assert seen[0].message is None and seen[0].raw == b"{}"


def test_describe_says_what_happened() -> None:
    flow = system()
    fill = next(m for m in flow.msgs if isinstance(m, ExecutionReport) and m.kind == "fill")
    assert describe(fill) == "fill o1 buy BTC/USDT 0.4/1 partially_filled fill 0.4@100 fee 0.04 USDT"
    created = next(m for m in flow.msgs if isinstance(m, OrderTransition) and m.request)
    assert describe(created) == "o1 created: buy 1.0 BTC/USDT market strategy=trend_a"
    moved = next(m for m in flow.msgs if isinstance(m, OrderTransition) and m.transitions
                 and m.transitions[0]["event"] == "Accepted")
    assert describe(moved) == "o1 creating -> open (Accepted)"
    both = moved.model_copy(update={"request": created.request, "transitions": [*moved.transitions] * 2})
    assert describe(both) == ("o1 created: buy 1.0 BTC/USDT market strategy=trend_a; creating -> open (Accepted); "
                              "creating -> open (Accepted)")
    sig = next(m for m in flow.msgs if isinstance(m, SignalEvent))
    assert describe(sig).startswith("sig-1 - -> generated trend_signal trend_a BTC/USDT (to generated); "
                                    "sig-1 generated -> evaluating trend_signal trend_a BTC/USDT (to evaluating)")
    alert = RiskAlert.create(source="risk", ts_ns=T0 * 1_000_000, level="critical", code="kill_switch",
                             message="kill switch by cli", trading_state="halted")
    assert describe(alert) == "critical kill_switch trading=halted: kill switch by cli"
    cmd = ControlCommand.create(source="cli", ts_ns=T0 * 1_000_000, target="risk", command="kill", request_id="r1",
                                args={"flatten": "true"})
    assert describe(cmd) == "kill -> risk flatten=true"
