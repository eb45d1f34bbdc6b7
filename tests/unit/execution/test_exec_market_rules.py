from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavesquant.execution.market_rules import (
    DECIMAL_PLACES,
    TICK_SIZE,
    MarketRules,
    RejectCode,
    rules_from_ccxt_market,
    split_symbol,
)
from wavesquant.types import OrderType, Side

RULES = MarketRules(tick_size=0.01, lot_size=0.001, min_qty=0.001, max_qty=100.0, min_notional=5.0)


def test_round_price_is_never_more_aggressive() -> None:
    assert RULES.round_price(100.017, Side.BUY) == 100.01
    assert RULES.round_price(100.011, Side.SELL) == 100.02
    assert RULES.round_price(100.016) == 100.02
    assert RULES.round_price(100.01, Side.SELL) == 100.01  # already on tick: unchanged despite float noise
    assert RULES.round_price(0.3 / 0.1 * 0.01 + 100, Side.BUY) == 100.03  # 100.03 with float noise below


def test_round_qty_rounds_down() -> None:
    assert RULES.round_qty(1.23456) == 1.234
    assert RULES.round_qty(0.3) == 0.3
    assert MarketRules(lot_size=5.0).round_qty(12.0) == 10.0
    assert MarketRules().round_qty(1.23456) == 1.23456


def test_precisions() -> None:
    assert RULES.price_precision == 2 and RULES.qty_precision == 3
    assert MarketRules(tick_size=0.25).price_precision == 2
    assert MarketRules().price_precision is None


@pytest.mark.parametrize(
    ("order_type", "qty", "price", "ref", "code"),
    [
        (OrderType.LIMIT, 0.1, 100.0, None, None),
        (OrderType.LIMIT, 0.0, 100.0, None, RejectCode.INVALID_QUANTITY),
        (OrderType.LIMIT, math.nan, 100.0, None, RejectCode.INVALID_QUANTITY),
        (OrderType.LIMIT, 0.0005, 100.0, None, RejectCode.MIN_QTY),
        (OrderType.LIMIT, 101.0, 100.0, None, RejectCode.MAX_QTY),
        (OrderType.LIMIT, 0.1005, 100.0, None, RejectCode.LOT_SIZE),
        (OrderType.LIMIT, 0.1, None, None, RejectCode.INVALID_ORDER),
        (OrderType.LIMIT, 0.1, -1.0, None, RejectCode.INVALID_PRICE),
        (OrderType.LIMIT, 0.1, 100.005, None, RejectCode.TICK_SIZE),
        (OrderType.LIMIT, 0.01, 100.0, None, RejectCode.MIN_NOTIONAL),
        (OrderType.MARKET, 0.01, None, 100.0, RejectCode.MIN_NOTIONAL),
        (OrderType.MARKET, 0.01, None, None, None),  # no reference: notional not checkable
        (OrderType.LIMIT, 0.3, 16.67, None, None),  # 0.3 and 16.67 are on grid despite float repr
    ],
)
def test_validate(order_type: OrderType, qty: float, price: float | None, ref: float | None, code: RejectCode | None) -> None:
    assert RULES.validate(order_type, qty, price, ref) == code


@given(st.floats(0.01, 1e6), st.sampled_from([Side.BUY, Side.SELL]))
def test_rounded_price_is_on_grid_and_passive(price: float, side: Side) -> None:
    rounded = RULES.round_price(price, side)
    assert RULES.validate(OrderType.LIMIT, 1.0, rounded) in (None, RejectCode.MIN_NOTIONAL)
    if side is Side.BUY:
        assert rounded <= price + 1e-9 * price
    else:
        assert rounded >= price - 1e-9 * price
    assert abs(rounded - price) < 0.01 + 1e-9 * price


def test_split_symbol() -> None:
    assert split_symbol("BTC/USDT") == ("BTC", "USDT")
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")


def _markets(shared_data: Path, exchange: str) -> dict[str, dict[str, object]]:
    return json.loads((shared_data / "ccxt_static" / "markets" / f"{exchange}.json").read_text())


@pytest.mark.shared_data
def test_rules_from_recorded_binance_markets(shared_data: Path) -> None:
    markets = _markets(shared_data, "binance")
    btc = rules_from_ccxt_market(markets["BTC/USDT"])  # decimal-places precision, inferred
    assert btc == MarketRules(
        tick_size=0.01, lot_size=1e-05, min_qty=1e-05, max_qty=9000.0, min_notional=5.0, min_price=0.01,
        max_price=1_000_000.0,
    )
    xrp = rules_from_ccxt_market(markets["XRP/USDT"])  # amount precision 0 -> lot 1
    assert xrp.lot_size == 1.0 and xrp.tick_size == 0.0001
    # matches Binance's own filters in the raw info
    for symbol in ("BTC/USDT", "ETH/USDT", "ADA/USDT", "XRP/USDT", "DOGE/USDT", "BTC/USDT:USDT"):
        market = markets[symbol]
        filters = {f["filterType"]: f for f in market["info"]["filters"]}  # type: ignore[index]
        rules = rules_from_ccxt_market(market)
        assert rules.tick_size == float(filters["PRICE_FILTER"]["tickSize"])
        assert rules.lot_size == float(filters["LOT_SIZE"]["stepSize"])
    assert rules_from_ccxt_market(markets["BTC/USDT"], DECIMAL_PLACES) == btc


@pytest.mark.shared_data
def test_rules_from_recorded_kraken_markets(shared_data: Path) -> None:
    markets = _markets(shared_data, "kraken")
    rules = rules_from_ccxt_market(markets["BTC/USDT"])  # tick-size precision
    assert rules.tick_size == 0.1 and rules.lot_size == 1e-08 and rules.min_qty == 0.0001
    assert rules.min_notional == 0.0 and math.isinf(rules.max_qty)
    assert rules_from_ccxt_market(markets["XRP/USD"]).min_notional == 0.5


def test_ambiguous_precision_needs_mode() -> None:
    market = {"precision": {"price": 1, "amount": 1}, "limits": {}}
    with pytest.raises(ValueError, match="ambiguous"):
        rules_from_ccxt_market(market)
    assert rules_from_ccxt_market(market, TICK_SIZE).tick_size == 1.0
    assert rules_from_ccxt_market(market, DECIMAL_PLACES).tick_size == 0.1
    assert rules_from_ccxt_market({"precision": {}, "limits": {}}) == MarketRules()
