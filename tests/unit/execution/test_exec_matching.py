from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.execution.market_rules import MarketRules
from wavesquant.execution.matching import FeeSchedule, MatchingEngine, PaperOrder
from wavesquant.execution.venues.base import Fill, OrderNotFound, OrderRejected, OrderRequest
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce

SYM = "BTC/USDT"
FEES = FeeSchedule(maker=0.001, taker=0.002)


def limit(cid: str, side: Side, qty: float, price: float, tif: TimeInForce = TimeInForce.GTC) -> OrderRequest:
    return OrderRequest(cid, SYM, side, OrderType.LIMIT, qty, limit_price=price, time_in_force=tif)


def market(cid: str, side: Side, qty: float, tif: TimeInForce = TimeInForce.GTC) -> OrderRequest:
    return OrderRequest(cid, SYM, side, OrderType.MARKET, qty, time_in_force=tif)


def book_engine(latency_ms: int = 0, rules: MarketRules | None = None) -> MatchingEngine:
    engine = MatchingEngine(FEES, rules, latency_ms=latency_ms)
    engine.on_book(
        SYM, 0,
        bids=np.array([[99.0, 1.0], [98.0, 2.0], [97.0, 3.0]]),
        asks=np.array([[101.0, 1.0], [102.0, 2.0], [103.0, 3.0]]),
    )
    return engine


def test_market_order_walks_depth_and_cancels_rest() -> None:
    engine = book_engine()
    order, fills = engine.submit(market("m1", Side.BUY, 10.0), ts_ms=5)
    assert [(f.price, f.quantity) for f in fills] == [(101.0, 1.0), (102.0, 2.0), (103.0, 3.0)]
    assert all(f.liquidity is Liquidity.TAKER and f.ts_ms == 5 for f in fills)
    assert fills[1].fee == pytest.approx(0.002 * 2.0 * 102.0) and fills[0].fee_currency == "USDT"
    assert [f.fill_id for f in fills] == ["paper-m1-1", "paper-m1-2", "paper-m1-3"]
    assert order.status is OrderStatus.CANCELED and order.filled_quantity == 6.0
    assert order.average_price == pytest.approx((101 + 204 + 309) / 6)


def test_own_fills_consume_the_book_until_next_snapshot() -> None:
    engine = book_engine()
    engine.submit(market("m1", Side.BUY, 2.0), 1)
    _, fills = engine.submit(market("m2", Side.BUY, 2.0), 2)
    assert [(f.price, f.quantity) for f in fills] == [(102.0, 1.0), (103.0, 1.0)]


def test_market_order_on_quote_fills_whole_at_touch() -> None:
    engine = MatchingEngine(FEES)
    engine.on_quote(SYM, 0, bid=99.0, ask=101.0, bid_size=0.1, ask_size=0.1)
    order, fills = engine.submit(market("m1", Side.SELL, 5.0), 1)
    assert [(f.price, f.quantity) for f in fills] == [(99.0, 5.0)] and order.status is OrderStatus.FILLED


def test_market_order_falls_back_to_last_price() -> None:
    engine = MatchingEngine(FEES)
    engine.on_bar(SYM, 0, 100.0, 110.0, 90.0, 105.0, 10.0)
    _, fills = engine.submit(market("m1", Side.BUY, 1.0), 1)
    assert [(f.price, f.quantity) for f in fills] == [(105.0, 1.0)]
    engine.on_trade(SYM, 2, 104.0, 0.5)
    _, fills = engine.submit(market("m2", Side.BUY, 1.0), 3)
    assert fills[0].price == 104.0
    assert engine.last_price(SYM) == 104.0


def test_market_order_without_data_is_rejected() -> None:
    engine = MatchingEngine(FEES)
    with pytest.raises(OrderRejected) as exc:
        engine.submit(market("m1", Side.BUY, 1.0), 1)
    assert exc.value.code == "no_market_data"
    assert engine.get("m1") is None


def test_crossing_limit_takes_up_to_limit_then_rests() -> None:
    engine = book_engine()
    order, fills = engine.submit(limit("l1", Side.BUY, 5.0, 102.0), 1)
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [
        (101.0, 1.0, Liquidity.TAKER), (102.0, 2.0, Liquidity.TAKER)
    ]
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.remaining == 2.0
    assert [o.client_order_id for o in engine.open_orders()] == ["l1"]
    # it now rests at 102 as the best bid: a sell trade through fills it as maker at 102
    fills = engine.on_trade(SYM, 2, 101.5, 5.0)
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [(102.0, 2.0, Liquidity.MAKER)]
    assert fills[0].fee == pytest.approx(0.001 * 2.0 * 102.0)
    assert engine.get("l1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert engine.open_orders() == []


def test_post_only() -> None:
    engine = book_engine()
    with pytest.raises(OrderRejected) as exc:
        engine.submit(limit("p1", Side.BUY, 1.0, 101.0, TimeInForce.POST_ONLY), 1)
    assert exc.value.code == "post_only_would_cross"
    order, fills = engine.submit(limit("p2", Side.BUY, 1.0, 100.0, TimeInForce.POST_ONLY), 1)
    assert fills == [] and order.status is OrderStatus.OPEN
    with pytest.raises(OrderRejected) as exc:
        engine.submit(OrderRequest("p3", SYM, Side.BUY, OrderType.MARKET, 1.0, time_in_force=TimeInForce.POST_ONLY), 1)
    assert exc.value.code == "invalid_order"


def test_ioc_and_fok() -> None:
    engine = book_engine()
    order, fills = engine.submit(limit("i1", Side.BUY, 5.0, 102.0, TimeInForce.IOC), 1)
    assert sum(f.quantity for f in fills) == 3.0 and order.status is OrderStatus.CANCELED
    engine = book_engine()
    order, fills = engine.submit(limit("f1", Side.BUY, 5.0, 102.0, TimeInForce.FOK), 1)
    assert fills == [] and order.status is OrderStatus.CANCELED and order.filled_quantity == 0
    order, fills = engine.submit(limit("f2", Side.BUY, 3.0, 102.0, TimeInForce.FOK), 1)
    assert sum(f.quantity for f in fills) == 3.0 and order.status is OrderStatus.FILLED
    order, fills = engine.submit(market("f3", Side.SELL, 7.0, TimeInForce.FOK), 1)
    assert fills == [] and order.status is OrderStatus.CANCELED


def test_queue_position_consumed_by_trades_at_price() -> None:
    engine = book_engine()
    engine.submit(limit("q1", Side.BUY, 1.0, 98.0), 1)  # 2.0 ahead at 98
    assert engine.on_trade(SYM, 2, 98.0, 1.5) == []
    fills = engine.on_trade(SYM, 3, 98.0, 0.8)  # 0.5 left ahead, 0.3 reaches us
    assert [(f.price, f.quantity) for f in fills] == [(98.0, pytest.approx(0.3))]
    fills = engine.on_trade(SYM, 4, 98.0, 5.0)
    assert [f.quantity for f in fills] == [pytest.approx(0.7)]
    assert engine.get("q1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_trade_above_buy_limit_does_nothing_and_new_level_has_empty_queue() -> None:
    engine = book_engine()
    engine.submit(limit("q1", Side.BUY, 1.0, 100.0), 1)  # better than best bid: nobody ahead
    assert engine.on_trade(SYM, 2, 100.5, 3.0) == []
    fills = engine.on_trade(SYM, 3, 100.0, 0.25)
    assert [f.quantity for f in fills] == [0.25]


def test_book_update_shrinks_queue_and_crossing_book_fills_maker() -> None:
    engine = book_engine()
    engine.submit(limit("q1", Side.BUY, 1.0, 98.0), 1)  # 2.0 ahead
    engine.on_book(SYM, 2, bids=[[99.0, 1.0], [98.0, 0.5]], asks=[[101.0, 1.0]])
    fills = engine.on_trade(SYM, 3, 98.0, 0.6)  # only 0.5 ahead now
    assert [f.quantity for f in fills] == [pytest.approx(0.1)]
    # the ask side drops to 97.5 with 0.4 shown: we are filled 0.4 as maker at our 98
    fills = engine.on_book(SYM, 4, bids=[[97.0, 1.0]], asks=[[97.5, 0.4], [99.0, 5.0]])
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [(98.0, pytest.approx(0.4), Liquidity.MAKER)]
    # a quote through our price fills the rest (quote depth is not limiting)
    fills = engine.on_quote(SYM, 5, 97.0, 97.9, 1.0, 0.01)
    assert [f.quantity for f in fills] == [pytest.approx(0.5)]
    assert engine.get("q1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_bar_fills_resting_orders_strictly_through() -> None:
    engine = MatchingEngine(FEES)
    engine.on_bar(SYM, 0, 100, 101, 99, 100, 1)
    engine.submit(limit("b1", Side.BUY, 1.0, 98.0), 1)
    engine.submit(limit("s1", Side.SELL, 1.0, 102.0), 1)
    assert engine.on_bar(SYM, 60_000, 100, 102, 98, 100, 1) == []  # touch only, queue unknown
    fills = engine.on_bar(SYM, 120_000, 100, 102.5, 97.9, 101, 1)
    assert sorted((f.client_order_id, f.price, f.quantity) for f in fills) == [("b1", 98.0, 1.0), ("s1", 102.0, 1.0)]


def test_bar_touch_fills_when_queue_known_empty() -> None:
    engine = book_engine()
    engine.submit(limit("b1", Side.BUY, 1.0, 100.0), 1)  # new best bid: queue 0
    fills = engine.on_bar(SYM, 60_000, 100.5, 101, 100.0, 100.5, 3)
    assert [(f.price, f.quantity) for f in fills] == [(100.0, 1.0)]


def test_marketable_limit_on_bar_data_fills_at_last_price() -> None:
    engine = MatchingEngine(FEES)
    engine.on_bar(SYM, 0, 100, 101, 99, 100, 1)
    _, fills = engine.submit(limit("b1", Side.BUY, 1.0, 105.0), 1)
    assert [(f.price, f.liquidity) for f in fills] == [(100.0, Liquidity.TAKER)]
    with pytest.raises(OrderRejected):
        engine.submit(limit("b2", Side.BUY, 1.0, 100.0, TimeInForce.POST_ONLY), 2)


def test_latency_order_goes_live_later_against_state_at_live_time() -> None:
    engine = book_engine(latency_ms=10)
    order, fills = engine.submit(market("m1", Side.BUY, 1.0), ts_ms=100)
    assert fills == [] and order.status is OrderStatus.OPEN
    assert engine.on_quote(SYM, 105, 99.0, 101.5, 1.0, 1.0) == []  # not live yet; changes the market
    fills = engine.on_quote(SYM, 112, 99.0, 120.0, 1.0, 1.0)  # live at 110: matched against the 105 quote
    assert [(f.price, f.ts_ms) for f in fills] == [(101.5, 110)]
    assert engine.get("m1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_latency_cancel_before_live_never_fills_and_post_only_cross_cancels() -> None:
    engine = book_engine(latency_ms=10)
    engine.submit(limit("l1", Side.BUY, 1.0, 105.0), 0)
    order, _ = engine.cancel("l1", 5)
    assert order.status is OrderStatus.CANCELED
    assert engine.advance(100) == [] and engine.get("l1").filled_quantity == 0  # type: ignore[union-attr]
    order, _ = engine.submit(limit("p1", Side.BUY, 1.0, 101.0, TimeInForce.POST_ONLY), 200)
    assert order.status is OrderStatus.OPEN  # accepted; checked when live
    engine.advance(210)
    assert engine.get("p1").status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_submit_is_idempotent_and_cancel() -> None:
    engine = book_engine()
    first, _ = engine.submit(limit("l1", Side.BUY, 1.0, 95.0), 1)
    again, fills = engine.submit(limit("l1", Side.BUY, 9.0, 95.0), 2)
    assert again == first and fills == []
    assert len(engine.orders()) == 1
    canceled, _ = engine.cancel("l1", 3)
    assert canceled.status is OrderStatus.CANCELED and canceled.ts_ms == 3
    assert engine.cancel("l1", 4)[0] == canceled  # terminal: unchanged
    assert engine.on_trade(SYM, 5, 90.0, 10.0) == []
    with pytest.raises(OrderNotFound):
        engine.cancel("nope", 5)


def test_rules_rejections() -> None:
    rules = MarketRules(tick_size=0.5, lot_size=0.1, min_qty=0.1, min_notional=10.0)
    engine = book_engine(rules=rules)
    for request, code in [
        (limit("a", Side.BUY, 1.0, 95.3), "tick_size"),
        (limit("b", Side.BUY, 0.05, 95.0), "min_qty"),
        (limit("c", Side.BUY, 0.15, 95.0), "lot_size"),
        (limit("d", Side.BUY, 0.1, 95.0), "min_notional"),
        (market("e", Side.BUY, 0.09), "min_qty"),
        (limit("f", Side.BUY, 1.0, math.nan), "invalid_price"),
    ]:
        with pytest.raises(OrderRejected) as exc:
            engine.submit(request, 1)
        assert exc.value.code == code
    assert engine.orders() == []
    per_symbol = MatchingEngine(FEES, {SYM: rules})
    assert per_symbol.rules_for(SYM) == rules and per_symbol.rules_for("ETH/USDT") == MarketRules()


def test_drain_changes_and_restore_round_trip() -> None:
    engine = book_engine()
    engine.submit(limit("l1", Side.BUY, 5.0, 102.0), 1)
    engine.submit(limit("l2", Side.SELL, 1.0, 110.0), 1)
    changed, fills = engine.drain_changes()
    assert {o.client_order_id for o in changed} == {"l1", "l2"} and len(fills) == 2
    assert engine.drain_changes() == ([], [])
    data = [json.loads(json.dumps(o.to_dict())) for o in changed]
    fresh = MatchingEngine(FEES)
    fresh.restore(PaperOrder.from_dict(d) for d in data)
    assert {o.client_order_id: o for o in fresh.orders()} == {o.client_order_id: o for o in engine.orders()}
    fills = fresh.on_trade(SYM, 5, 101.0, 10.0)  # l1 rests at 102 with 2 left: a trade through fills it
    assert [(f.fill_id, f.quantity) for f in fills] == [("paper-l1-3", 2.0)]


# --- property: a limit order never fills at a worse price than its limit ------------------------------------

prices = st.integers(90, 110).map(float)
sizes = st.sampled_from([0.5, 1.0, 2.0, 3.5])
levels = st.lists(st.tuples(prices, sizes), max_size=4)
market_events = st.one_of(
    st.tuples(st.just("book"), levels, levels),
    st.tuples(st.just("quote"), prices, prices, sizes, sizes),
    st.tuples(st.just("trade"), prices, sizes),
    st.tuples(st.just("bar"), prices, prices),
)
orders = st.tuples(
    st.just("order"),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([OrderType.LIMIT, OrderType.LIMIT, OrderType.MARKET]),
    sizes,
    prices,
    st.sampled_from(list(TimeInForce)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(market_events, orders, st.tuples(st.just("cancel"), st.integers(0, 20))), max_size=30),
       st.sampled_from([0, 0, 5]))
def test_limit_orders_never_fill_worse_than_limit(steps: list[tuple[Any, ...]], latency: int) -> None:
    engine = MatchingEngine(FEES, latency_ms=latency)
    all_fills: list[Fill] = []
    n = 0
    for ts, step in enumerate(steps, start=1):
        kind = step[0]
        if kind == "book":
            all_fills += engine.on_book(SYM, ts, list(step[1]), list(step[2]))
        elif kind == "quote":
            all_fills += engine.on_quote(SYM, ts, *step[1:])
        elif kind == "trade":
            all_fills += engine.on_trade(SYM, ts, *step[1:])
        elif kind == "bar":
            a, b = step[1], step[2]
            lo, hi = min(a, b), max(a, b)
            all_fills += engine.on_bar(SYM, ts, lo, hi, lo, hi, 1.0)
        elif kind == "order":
            _, side, otype, qty, price, tif = step
            n += 1
            request = OrderRequest(
                f"o{n}", SYM, side, otype, qty,
                limit_price=price if otype is OrderType.LIMIT else None,
                time_in_force=tif,
            )
            try:
                _, fills = engine.submit(request, ts)
                all_fills += fills
            except OrderRejected:
                pass
        else:
            cid = f"o{step[1]}"
            if engine.get(cid) is not None:
                all_fills += engine.cancel(cid, ts)[1]
        # the open-order index says what a scan of every order would
        assert engine.open_orders() == [o for o in engine.orders() if not o.status.is_terminal]
    all_fills += engine.advance(len(steps) + 100)
    assert len({f.fill_id for f in all_fills}) == len(all_fills)
    by_order: dict[str, float] = {}
    for fill in all_fills:
        order = engine.get(fill.client_order_id)
        assert order is not None and fill.quantity > 0
        if order.limit_price is not None:
            if order.side is Side.BUY:
                assert fill.price <= order.limit_price
            else:
                assert fill.price >= order.limit_price
        by_order[fill.client_order_id] = by_order.get(fill.client_order_id, 0.0) + fill.quantity
    for order in engine.orders():
        assert order.filled_quantity <= order.quantity
        assert by_order.get(order.client_order_id, 0.0) == pytest.approx(order.filled_quantity)
        assert (order.status is OrderStatus.FILLED) == (order.filled_quantity >= order.quantity - 1e-9)
        if order.status is OrderStatus.FILLED or order.status is OrderStatus.CANCELED:
            assert order not in engine.open_orders()


# --- real recorded data ------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_replay_recorded_binance_quotes_and_trades(shared_data: Path) -> None:
    quotes = pd.read_csv(shared_data / "ticks" / "binance_BTCUSDT_quotes_2021-01-08.csv")
    trades = pd.read_csv(shared_data / "ticks" / "binance_BTCUSDT_trades_2021-01-08.csv")
    events = sorted(
        [(int(r.timestamp_ms), 0, ("q", r.bid, r.ask, r.bid_size, r.ask_size)) for r in quotes.itertuples()]
        + [(int(r.timestamp_ms), 1, ("t", r.price, r.size)) for r in trades.itertuples()],
        key=lambda e: (e[0], e[1]),
    )
    engine = MatchingEngine(FEES, MarketRules(tick_size=0.01, lot_size=1e-6), latency_ms=20)
    first_bid = float(quotes.bid.iloc[0])
    buy_price, sell_price = round(first_bid - 2.0, 2), round(first_bid + 60.0, 2)
    fills: list[Fill] = []
    placed = False
    for ts, _, payload in events:
        if payload[0] == "q":
            fills += engine.on_quote(SYM, ts, *map(float, payload[1:]))
            if not placed:
                engine.submit(limit("b", Side.BUY, 0.01, buy_price), ts)
                engine.submit(limit("s", Side.SELL, 0.01, sell_price), ts)
                placed = True
        else:
            fills += engine.on_trade(SYM, ts, float(payload[1]), float(payload[2]))
    lo, hi = float(trades.price.min()), float(trades.price.max())
    for fill in fills:
        limit_price = buy_price if fill.side is Side.BUY else sell_price
        assert (fill.price <= limit_price) if fill.side is Side.BUY else (fill.price >= limit_price)
    # the window trades below our bid and above our offer: both must have been filled as makers
    assert lo < buy_price and hi > sell_price
    assert {f.client_order_id for f in fills} == {"b", "s"}
    assert all(f.liquidity is Liquidity.MAKER for f in fills)
    assert engine.open_orders() == []


@pytest.mark.shared_data
def test_recorded_depth_snapshot_walk(shared_data: Path) -> None:
    snap = pd.read_csv(shared_data / "orderbook" / "tardis_samples" / "binance-futures_book_snapshot_25_BTCUSDT.csv")
    row = snap.iloc[0]
    asks = np.array([[row[f"asks[{i}].price"], row[f"asks[{i}].amount"]] for i in range(25)])
    bids = np.array([[row[f"bids[{i}].price"], row[f"bids[{i}].amount"]] for i in range(25)])
    engine = MatchingEngine(FEES)
    engine.on_book(SYM, int(row["timestamp"]) // 1000, bids, asks)
    qty = float(asks[:3, 1].sum())
    order, fills = engine.submit(market("m", Side.BUY, qty), int(row["timestamp"]) // 1000)
    assert order.status is OrderStatus.FILLED
    assert [f.price for f in fills] == list(asks[:3, 0])
    assert order.average_price == pytest.approx(float((asks[:3, 0] * asks[:3, 1]).sum() / qty))
