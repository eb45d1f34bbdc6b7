"""sync_journal: the event log (EmbeddedBus) -> the journal, incremental, idempotent, atomic per page."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.event_log_flow import EventLogFlow
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.execution.orders import Accepted, Canceled, CancelRequested, Submitted
from wavesquant.journal.store import TradeJournal
from wavesquant.journal.sync import SyncStats, next_entry_id, sync_journal
from wavesquant.messages import Channel, Envelope, ExecutionReport, OrderTransition
from wavesquant.types import Side, SignalState


def two_orders() -> EventLogFlow:
    """o1: market buy 1 filled in two fills; o2: limit sell accepted then canceled; signal events around."""
    f = EventLogFlow()
    f.signal("sig-1", SignalState.GENERATED)
    o1 = f.new("o1", qty=1.0)
    f.apply(o1, Submitted())
    f.apply(o1, Accepted("v1"), "ack")
    f.fill(o1, "f1", 0.4, 100.0, fee=0.04)
    f.fill(o1, "f2", 0.6, 101.0, fee=0.06)
    o2 = f.new("o2", side=Side.SELL, qty=2.0, limit=120.0, strategy="mr_b", signal="sig-2")
    f.apply(o2, Submitted())
    f.apply(o2, Accepted("v2"), "ack")
    f.apply(o2, CancelRequested())
    f.apply(o2, Canceled(), "cancel")
    return f


async def make_bus(msgs: list[Envelope]) -> EmbeddedBus:
    bus = EmbeddedBus()
    await bus.start()
    await bus.publish_many(msgs)
    return bus


async def test_sync_builds_orders_and_fills(tmp_path: Path) -> None:
    flow = two_orders()
    bus = await make_bus(flow.msgs)
    await bus.append_raw(Channel.EVENTS, b'{"type": "execution_report", "broken": true}')
    await bus.append_raw(Channel.EVENTS, b"not json")
    stats = SyncStats()
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        applied = await sync_journal(journal, bus, stats)
        entries = await bus.read_range(Channel.EVENTS)
        assert stats.entries == len(entries) == len(flow.msgs) + 2
        transitions = sum(isinstance(m, OrderTransition) for m in flow.msgs)
        reports = sum(isinstance(m, ExecutionReport) for m in flow.msgs)
        assert applied == stats.applied == transitions + reports
        assert stats.undecodable == 2 and stats.new_fills == 2 and not stats.gap
        assert journal.last_event_id == stats.last_event_id == entries[-1][0]
        orders = {o.client_order_id: o for o in journal.orders()}
        o1, o2 = orders["o1"], orders["o2"]
        assert (o1.status, o1.type, o1.strategy_id, o1.signal_id, o1.side) == \
            ("filled", "market", "trend_a", "sig-1", "buy")
        assert o1.filled_quantity == pytest.approx(1.0)
        assert o1.average_price == pytest.approx((0.4 * 100 + 0.6 * 101) / 1.0)
        assert o1.fees == pytest.approx(0.1)
        assert (o2.status, o2.type, o2.limit_price, o2.quantity, o2.filled_quantity) == \
            ("canceled", "limit", 120.0, 2.0, 0)
        fills = journal.fills()
        assert [(f.fill_id, f.quantity, f.price, f.strategy_id) for f in fills] == [
            ("f1", 0.4, 100.0, "trend_a"), ("f2", 0.6, 101.0, "trend_a")]
        [pnl] = journal.pnl_by_strategy()
        assert (pnl.strategy_id, pnl.net_quantity, pnl.fills) == ("trend_a", pytest.approx(1.0), 2)


async def test_second_sync_applies_only_new_entries(tmp_path: Path) -> None:
    flow = two_orders()
    bus = await make_bus(flow.msgs)
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        await sync_journal(journal, bus)
        assert await sync_journal(journal, bus) == 0
        synced = len(flow.msgs)
        o3 = flow.new("o3", qty=0.5, signal="sig-3")
        flow.apply(o3, Accepted("v3"), "ack")
        flow.fill(o3, "f3", 0.5, 99.0)
        await bus.publish_many(flow.msgs[synced:])
        stats = SyncStats()
        assert await sync_journal(journal, bus, stats) == 5  # 3 transitions (request, Accepted, fill) + 2 reports
        assert stats.entries == 5
        assert stats.new_fills == 1
        assert journal.counts() == {"orders": 3, "fills": 3}
        assert {o.client_order_id: o.status for o in journal.orders()}["o3"] == "filled"


async def test_fill_reported_twice_is_journaled_once(tmp_path: Path) -> None:
    flow = two_orders()
    dup = [m for m in flow.msgs if isinstance(m, ExecutionReport) and m.kind == "fill"]
    bus = await make_bus(flow.msgs + dup)  # at-least-once delivery: the same reports land again
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        stats = SyncStats()
        await sync_journal(journal, bus, stats)
        assert stats.new_fills == 2 and journal.counts()["fills"] == 2
        assert {o.client_order_id: o.status for o in journal.orders()}["o1"] == "filled"


async def test_pending_cancel_comes_from_the_transition(tmp_path: Path) -> None:
    f = EventLogFlow()
    o = f.new("o9", limit=50.0)
    f.apply(o, Accepted("v9"), "ack")
    f.apply(o, CancelRequested())  # no report announces pending_cancel
    bus = await make_bus(f.msgs)
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        await sync_journal(journal, bus)
        [order] = journal.orders()
        assert order.status == "pending_cancel"


async def test_paging_gives_the_same_journal_as_one_page(tmp_path: Path) -> None:
    flow = two_orders()
    bus = await make_bus(flow.msgs)
    with TradeJournal(tmp_path / "a.sqlite") as small, TradeJournal(tmp_path / "b.sqlite") as big:
        assert await sync_journal(small, bus, page=3) == await sync_journal(big, bus)
        assert small.orders() == big.orders() and small.fills() == big.fills()
        assert small.last_event_id == big.last_event_id


async def test_interrupted_sync_resumes_from_the_last_committed_page(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    flow = two_orders()
    bus = await make_bus(flow.msgs)
    entries = await bus.read_range(Channel.EVENTS)
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        real = journal.record_fill
        calls = {"n": 0}

        def flaky(fill: object) -> bool:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full")
            return real(fill)  # type: ignore[arg-type]

        monkeypatch.setattr(journal, "record_fill", flaky)
        with pytest.raises(OSError):
            await sync_journal(journal, bus, page=4)
        committed = journal.last_event_id
        assert committed is not None and committed != entries[-1][0]
        assert committed in [e[0] for e in entries]
        monkeypatch.setattr(journal, "record_fill", real)
        await sync_journal(journal, bus, page=4)
        assert journal.last_event_id == entries[-1][0]
        assert [f.fill_id for f in journal.fills()] == ["f1", "f2"]


async def test_gap_is_flagged_when_the_log_was_trimmed_past_the_journal(tmp_path: Path) -> None:
    bus = await make_bus(two_orders().msgs)
    entries = await bus.read_range(Channel.EVENTS)
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        with journal.transaction():
            journal.set_last_event_id(entries[2][0])  # still in the log: no gap
        stats = SyncStats()
        await sync_journal(journal, bus, stats)
        assert not stats.gap
        with journal.transaction():
            journal.set_last_event_id("1000-0")  # older than anything the log still holds
        stats = SyncStats()
        await sync_journal(journal, bus, stats)
        assert stats.gap


def test_next_entry_id() -> None:
    assert next_entry_id("1700000000000-7") == "1700000000000-8"
    assert next_entry_id("5") == "5-1"
