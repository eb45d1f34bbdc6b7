"""Recorded order books flow over the bus and the paper venue fills market orders by walking their depth
(in process, embedded bus: the same agent code as deployment)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from wavesquant.config import Settings
from wavesquant.core.ids import client_order_id
from wavesquant.market.books import load_book_snapshots
from wavesquant.messages import Channel, ExecutionReport, NewOrder, OrderBook, OrderSpec, decode
from wavesquant.runtime import Runtime

BOOK = "orderbook/tardis_samples/binance-futures_book_snapshot_25_BTCUSDT.csv"


def test_loader_reads_every_snapshot_sorted_and_uncrossed(shared_data: Path) -> None:
    snaps = load_book_snapshots(shared_data / BOOK)
    assert len(snaps) == 10
    assert [s.ts_ms for s in snaps] == sorted(s.ts_ms for s in snaps)
    for s in snaps:
        assert s.bids.shape[1] == 2 and len(s.bids) == 25 and len(s.asks) == 25
        assert (s.bids[:-1, 0] > s.bids[1:, 0]).all() and (s.asks[:-1, 0] < s.asks[1:, 0]).all()
        assert s.bids[0, 0] < s.asks[0, 0]


async def _until(condition, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_replayed_book_is_walked_by_a_paper_market_order(shared_data: Path) -> None:
    settings = Settings(
        data_feeds={"source": "replay", "replay": {"files": [{"path": str(shared_data / BOOK)}],
                                                   "ticks_per_second": 1000}},
        execution={"paper": {"taker_fee": 0.0}},
    )
    rt = Runtime(settings, ["data_feeds", "execution"])
    books = rt.bus.subscribe([Channel.MARKET_BOOKS])
    task = asyncio.create_task(rt.run(30))
    try:
        seen: list[OrderBook] = []

        async def some_book() -> bool:
            async for batch in books:
                seen.extend(m for m in batch if isinstance(m, OrderBook))
                return bool(seen)
            return False

        await asyncio.wait_for(some_book(), 10)
        book = seen[-1]
        assert (book.exchange, book.symbol) == ("binance-futures", "BTC/USDT")
        await asyncio.sleep(0.5)  # every snapshot replayed: execution's venue holds the last one
        last = load_book_snapshots(shared_data / BOOK)[-1]
        qty = float(last.asks[0, 1] + last.asks[1, 1] / 2)  # more than the best level holds
        spec = OrderSpec(client_order_id=client_order_id("depth-test"), signal_id="depth-test", strategy_id="t",
                         family="trend", exchange="binance-futures", symbol="BTC/USDT", side="buy", quantity=qty)
        await rt.bus.publish(NewOrder.create(source="risk", ts_ns=time.time_ns(), order=spec))

        async def fills() -> list[ExecutionReport]:
            reports = [decode(raw) for _, raw in await rt.bus.read_range(Channel.EXECUTION_REPORTS)]
            done = [r for r in reports if isinstance(r, ExecutionReport) and r.kind == "fill"
                    and r.status.value == "filled"]
            return [r for r in reports if isinstance(r, ExecutionReport) and r.kind == "fill"] if done else []

        reports = await _until(fills)
        levels = {(round(r.last_price or 0, 2), round(r.last_quantity or 0, 9)) for r in reports}
        expected_vwap = (last.asks[0, 0] * last.asks[0, 1] + last.asks[1, 0] * (qty - last.asks[0, 1])) / qty
        assert reports[-1].average_price == pytest.approx(expected_vwap, rel=1e-9)
        assert round(float(last.asks[0, 0]), 2) in {p for p, _ in levels}  # the best level was taken first
        assert sum(r.last_quantity or 0 for r in reports) == pytest.approx(qty)
    finally:
        rt.stop()
        await task
        await books.close()
