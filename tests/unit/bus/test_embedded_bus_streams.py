"""EmbeddedBus streams: consumer groups with acks, crash recovery (pending_for), takeover of a dead consumer's
entries (claim_stale on a SimulatedClock), maxlen trimming, the event log, read_range bounds, status TTLs."""

from __future__ import annotations

import asyncio
import json

import pytest

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.core.clock import SimulatedClock
from wavesquant.messages import (
    Bar,
    CancelOrder,
    Channel,
    ExecutionReport,
    NewOrder,
    OrderSpec,
    RiskDecision,
    SignalEvent,
    decode,
    encode,
)

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
S = Channel.ORDERS


def order(i: int) -> NewOrder:
    spec = OrderSpec(client_order_id=f"wq{i}", signal_id=f"s{i}", strategy_id="trend_btc", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    return NewOrder.create(source="risk", ts_ns=T0, msg_id=f"no{i}", order=spec)


def make_bus(**kw: int) -> tuple[EmbeddedBus, SimulatedClock]:
    clock = SimulatedClock(T0)
    return EmbeddedBus(prefix="t:", clock=clock, **kw), clock  # type: ignore[arg-type]


async def test_group_created_at_stream_start_reads_then_acks() -> None:
    bus, _ = make_bus()
    await bus.publish_many([order(1), order(2)])  # before any group exists
    got = await bus.read_group(S, "execution", "c1", block_ms=0)
    assert [(d.stream, d.message, d.deliveries) for d in got] == [("orders", order(1), 1), ("orders", order(2), 1)]
    assert await bus.read_group(S, "execution", "c1", block_ms=0) == []
    await bus.ack(S, "execution", [got[0].entry_id])
    assert [d.message for d in await bus.pending_for(S, "execution", "c1")] == [order(2)]
    await bus.ack(S, "execution", [got[1].entry_id, "999-0"])  # unknown ids are ignored
    assert await bus.pending_for(S, "execution", "c1") == []
    assert await bus.stream_length(S) == 2  # acking does not delete


async def test_count_limits_a_read_and_the_rest_follows() -> None:
    bus, _ = make_bus()
    await bus.publish_many([order(i) for i in range(5)])
    first = await bus.read_group(S, "g", "c1", count=2, block_ms=0)
    rest = await bus.read_group(S, "g", "c1", count=10, block_ms=0)
    assert [d.message.msg_id for d in first + rest] == [f"no{i}" for i in range(5)]


async def test_groups_are_independent_and_consumers_of_one_group_share() -> None:
    bus, _ = make_bus()
    await bus.publish_many([order(i) for i in range(4)])
    a = await bus.read_group(S, "execution", "c1", count=2, block_ms=0)
    b = await bus.read_group(S, "execution", "c2", count=10, block_ms=0)
    assert [d.message.msg_id for d in a] == ["no0", "no1"]
    assert [d.message.msg_id for d in b] == ["no2", "no3"]  # no entry delivered twice within a group
    other = await bus.read_group(S, "audit", "x", block_ms=0)
    assert len(other) == 4  # another group sees everything


async def test_unacked_entries_survive_a_crash_and_are_redelivered_to_the_same_consumer() -> None:
    bus, _ = make_bus()
    await bus.publish_many([order(1), order(2), order(3)])
    got = await bus.read_group(S, "execution", "exec-host1", block_ms=0)
    await bus.ack(S, "execution", [got[0].entry_id])
    # "crash": the consumer restarts with the same name and asks for what it had not acked
    again = await bus.pending_for(S, "execution", "exec-host1")
    assert [(d.message, d.deliveries) for d in again] == [(order(2), 2), (order(3), 2)]
    assert [d.deliveries for d in await bus.pending_for(S, "execution", "exec-host1")] == [3, 3]
    assert await bus.pending_for(S, "execution", "someone-else") == []
    assert await bus.read_group(S, "execution", "exec-host1", block_ms=0) == []  # not new entries
    assert await bus.pending_for(S, "execution", "exec-host1", count=1) != []


async def test_claim_stale_respects_min_idle_and_moves_ownership() -> None:
    bus, clock = make_bus()
    await bus.publish_many([order(1), order(2)])
    got = await bus.read_group(S, "execution", "dead", block_ms=0)
    await clock.advance(1.0)
    assert await bus.claim_stale(S, "execution", "alive", min_idle_ms=5_000) == []
    await clock.advance(3.999)
    assert await bus.claim_stale(S, "execution", "alive", min_idle_ms=5_000) == []
    await clock.advance(0.001)  # exactly 5 s idle
    claimed = await bus.claim_stale(S, "execution", "alive", min_idle_ms=5_000, count=1)
    assert [(d.message, d.deliveries) for d in claimed] == [(order(1), 2)]
    await clock.advance(10)
    claimed += await bus.claim_stale(S, "execution", "alive", min_idle_ms=5_000)
    # order(1) was claimed 10 s ago and is stale again, order(2) never was
    assert sorted(d.message.msg_id for d in claimed) == ["no1", "no1", "no2"]
    assert await bus.pending_for(S, "execution", "dead") == []
    assert len(await bus.pending_for(S, "execution", "alive")) == 2
    await bus.ack(S, "execution", [d.entry_id for d in got])
    await clock.advance(60)
    assert await bus.claim_stale(S, "execution", "alive", min_idle_ms=5_000) == []


async def test_claim_resets_the_idle_time() -> None:
    bus, clock = make_bus()
    await bus.publish(order(1))
    await bus.read_group(S, "g", "dead", block_ms=0)
    await clock.advance(6)
    assert len(await bus.claim_stale(S, "g", "b", min_idle_ms=5_000)) == 1
    assert await bus.claim_stale(S, "g", "c", min_idle_ms=5_000) == []  # b just took it


async def test_read_group_blocks_until_an_entry_arrives() -> None:
    bus, _ = make_bus()

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish(order(1))

    task = asyncio.create_task(later())
    got = await bus.read_group(S, "g", "c", block_ms=20_000)
    await task
    assert [d.message for d in got] == [order(1)]


async def test_read_group_times_out_empty() -> None:
    bus, _ = make_bus()
    assert await bus.read_group(S, "g", "c", block_ms=10) == []


async def test_invalid_stream_entries_are_dead_lettered_and_never_pending() -> None:
    bus, _ = make_bus()
    await bus.append_raw(S, b"{broken")
    await bus.publish(order(1))
    bad = json.loads(encode(order(2)))
    bad["order"]["quantity"] = -1
    await bus.append_raw(S, json.dumps(bad).encode())
    got = await bus.read_group(S, "g", "c", block_ms=0)
    assert [d.message for d in got] == [order(1)]
    assert bus.stats.invalid["orders"] == 2
    assert [d.message for d in await bus.pending_for(S, "g", "c")] == [order(1)]
    dead = [json.loads(raw) for _, raw in await bus.read_range(Channel.DEADLETTER)]
    assert [(d["channel"], d["raw"][:7]) for d in dead] == [("orders", "{broken"), ("orders", '{"type"')]
    assert "quantity" in dead[1]["reason"]


async def test_maxlen_trims_oldest_entries() -> None:
    bus, clock = make_bus(stream_maxlen=3, event_log_maxlen=5)
    early = await bus.read_group(S, "slow", "c", block_ms=0)
    assert early == []
    ids = []
    for i in range(6):
        await clock.advance(0.001)
        await bus.publish(order(i))
        ids.append((await bus.read_range(S))[-1][0])
    assert await bus.stream_length(S) == 3
    assert [eid for eid, _ in await bus.read_range(S)] == ids[3:]
    # a group that fell behind continues at the oldest surviving entry
    got = await bus.read_group(S, "slow", "c", block_ms=0)
    assert [d.message.msg_id for d in got] == ["no3", "no4", "no5"]
    assert await bus.stream_length(Channel.EVENTS) == 5  # the event log has its own (larger) bound


async def test_entry_ids_increase_even_when_the_clock_stands_still() -> None:
    bus, clock = make_bus()
    ids = [await bus.append_raw(S, encode(order(i))) for i in range(3)]
    ms = T0 // MS
    assert ids == [f"{ms}-0", f"{ms}-1", f"{ms}-2"]
    await clock.advance(0.002)
    assert await bus.append_raw(S, encode(order(3))) == f"{ms + 2}-0"


async def test_money_messages_are_appended_to_the_event_log() -> None:
    bus, _ = make_bus()
    spec = order(1).order
    decision = RiskDecision.create(source="risk", ts_ns=T0, order=spec, approved=True)
    cancel = CancelOrder.create(source="risk", ts_ns=T0, client_order_id="wq1")
    report = ExecutionReport.create(source="execution", ts_ns=T0, kind="ack", client_order_id="wq1", venue="paper",
                                    symbol="BTC/USDT", side="buy", status="open", quantity=1.0)
    event = SignalEvent.create(source="core", ts_ns=T0, steps=[{
        "signal_id": "s1", "signal_type": "trend_signal", "from_state": None, "to_state": "generated", "ts_ms": 1}])
    market = Bar.create(source="data_feeds", ts_ns=T0, exchange="x", symbol="BTC/USDT", timeframe="1m",
                        open_ts_ms=0, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0)
    await bus.publish_many([decision, order(1), cancel, report, event, market])
    events = [decode(raw) for _, raw in await bus.read_range(Channel.EVENTS)]
    assert events == [decision, order(1), cancel, report, event]  # in order, the bar not logged, event once
    assert [decode(r) for _, r in await bus.read_range(S)] == [order(1), cancel]
    assert [decode(r) for _, r in await bus.read_range(Channel.RISK_DECISIONS)] == [decision]
    assert [decode(r) for _, r in await bus.read_range(Channel.EXECUTION_REPORTS)] == [report]


async def test_read_range_bounds_and_count() -> None:
    bus, clock = make_bus()
    ms = T0 // MS
    for step in (0, 0, 1000, 1000):
        await clock.advance_to(clock.now_ns() + step * MS)
        await bus.publish(order(step))
    all_ids = [eid for eid, _ in await bus.read_range(S)]
    assert all_ids == [f"{ms}-0", f"{ms}-1", f"{ms + 1000}-0", f"{ms + 2000}-0"]
    assert [e for e, _ in await bus.read_range(S, f"{ms}-1", f"{ms + 1000}")] == all_ids[1:3]
    assert [e for e, _ in await bus.read_range(S, f"{ms}", f"{ms}")] == all_ids[:2]  # ms-only: whole ms
    assert [e for e, _ in await bus.read_range(S, f"{ms + 1000}-0", "+")] == all_ids[2:]
    assert [e for e, _ in await bus.read_range(S, "-", "+", count=3)] == all_ids[:3]
    assert [e for e, _ in await bus.read_range(S, f"{ms + 1}", f"{ms + 999}")] == []
    rows = await bus.read_range(S, count=1)
    assert rows[0][1] == encode(order(0))


async def test_read_range_count_zero_matches_redis() -> None:
    bus, _ = make_bus()
    await bus.publish_many([order(1), order(2)])
    assert await bus.read_range(S, "-", "+", count=0) == []


async def test_status_expires_after_its_ttl() -> None:
    bus, clock = make_bus()
    await bus.set_status("risk", b"hb-risk", ttl_s=10)
    await clock.advance(5)
    await bus.set_status("core", b"hb-core", ttl_s=10)
    assert await bus.get_statuses() == {"risk": b"hb-risk", "core": b"hb-core"}
    await clock.advance(4.999)
    assert set(await bus.get_statuses()) == {"risk", "core"}
    await clock.advance(0.001)  # risk's 10 s are up
    assert await bus.get_statuses() == {"core": b"hb-core"}
    await bus.set_status("risk", b"hb-risk-2", ttl_s=10)  # a new heartbeat refreshes it
    assert (await bus.get_statuses())["risk"] == b"hb-risk-2"
    await clock.advance(60)
    assert await bus.get_statuses() == {}


@pytest.mark.parametrize("stream,expected", [(Channel.ORDERS, 7), (Channel.EVENTS, 11), (Channel.DEADLETTER, 11)])
def test_maxlen_of_each_stream(stream: Channel, expected: int) -> None:
    bus = EmbeddedBus(stream_maxlen=7, event_log_maxlen=11)
    assert bus.maxlen_of(stream) == expected


async def test_trimmed_pending_entries_do_not_hide_live_ones() -> None:
    bus, clock = make_bus(stream_maxlen=3)
    await bus.publish_many([order(i) for i in range(3)])
    await bus.read_group(S, "g", "dead", block_ms=0)
    await bus.publish_many([order(i) for i in range(3, 6)])  # trims the three pending entries
    assert len(await bus.read_group(S, "g", "dead", block_ms=0)) == 3
    assert [d.message.msg_id for d in await bus.pending_for(S, "g", "dead", count=3)] == ["no3", "no4", "no5"]
    await clock.advance(10)
    claimed = await bus.claim_stale(S, "g", "alive", min_idle_ms=5_000, count=3)
    assert [d.message.msg_id for d in claimed] == ["no3", "no4", "no5"]
