"""Pre-trade checks: one approve and one block case per check, with the denial code asserted."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from wavesquant.risk.checks import (
    LastPrice,
    OrderCandidate,
    OrderRateLimiter,
    RiskSnapshot,
    RiskVerdict,
    evaluate,
    is_reducing,
)
from wavesquant.risk.codes import DenialCode as C
from wavesquant.risk.limits import RiskLimits
from wavesquant.risk.open_orders import OpenOrder
from wavesquant.types import OrderType, Side, TradingState

NOW = 1_700_000_000_000
BTC, ETH = "BTC/USDT", "ETH/USDT"

# Loose enough that the base candidate passes; each test tightens the limit it is about.
LIMITS = RiskLimits(
    max_order_qty_by_symbol={BTC: 1.0},
    max_order_notional=10_000.0,
    max_position_qty_by_symbol={BTC: 2.0},
    max_position_per_strategy=25_000.0,
    max_gross_exposure=100_000.0,
    max_net_exposure=50_000.0,
    family_budgets={"trend": 30_000.0},
    price_band_pct=5.0,
    max_orders_per_second=3,
    duplicate_window_ms=1_000,
    max_market_data_age_ms=5_000,
    max_signal_age_ms=2_000,
    max_leverage=2.0,
)

# BTC long 0.2 (10,000), ETH short 3 (-6,000): gross 16,000, net 4,000.
SNAP = RiskSnapshot(
    equity=100_000.0,
    positions={BTC: 0.2, ETH: -3.0},
    strategy_positions={("s1", BTC): 0.2, ("s2", ETH): -3.0},
    last_prices={BTC: LastPrice(50_000.0, NOW - 100), ETH: LastPrice(2_000.0, NOW - 100)},
    strategy_families={"s1": "trend", "s2": "stat_arb"},
)

# Buy 0.1 BTC @ 50,000 = 5,000 notional.
CAND = OrderCandidate(
    client_order_id="o-1",
    signal_id="sig-1",
    strategy_id="s1",
    family="trend",
    symbol=BTC,
    side=Side.BUY,
    quantity=0.1,
    order_type=OrderType.LIMIT,
    limit_price=50_000.0,
    signal_ts_ms=NOW - 50,
    expires_at_ms=NOW + 10_000,
)


def run(
    cand: dict[str, Any] | None = None,
    snap: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    rates: OrderRateLimiter | None = None,
    now_ms: int = NOW,
) -> RiskVerdict:
    return evaluate(
        dataclasses.replace(CAND, **(cand or {})),
        dataclasses.replace(SNAP, **(snap or {})),
        LIMITS.model_copy(update=limits or {}),
        now_ms,
        rates if rates is not None else OrderRateLimiter(),
    )


def assert_approved(verdict: RiskVerdict) -> None:
    assert verdict.approved, [str(d) for d in verdict.denials]
    assert verdict.denials == ()


def assert_blocked(verdict: RiskVerdict, *codes: C) -> None:
    assert not verdict.approved
    assert verdict.codes == set(codes), [str(d) for d in verdict.denials]


def test_base_candidate_is_approved() -> None:
    assert_approved(run())


# --- order size and notional --------------------------------------------------------------------------------


def test_order_size_per_symbol() -> None:
    assert_approved(run(limits={"max_order_qty_by_symbol": {BTC: 0.1}}))
    v = run(cand={"quantity": 0.11}, limits={"max_order_qty_by_symbol": {BTC: 0.1}})
    assert_blocked(v, C.ORDER_SIZE)
    assert v.denials[0].message == "quantity 0.11 > max 0.1 for BTC/USDT"


def test_order_size_default_applies_to_symbols_without_override() -> None:
    eth = {"symbol": ETH, "limit_price": 2_000.0, "quantity": 2.0}
    assert_approved(run(cand=eth, limits={"max_order_qty": 2.0}))
    assert_blocked(run(cand=eth, limits={"max_order_qty": 1.5}), C.ORDER_SIZE)


def test_notional() -> None:
    assert_approved(run(limits={"max_order_notional": 5_000.0}))
    v = run(cand={"limit_price": 50_001.0}, limits={"max_order_notional": 5_000.0})
    assert_blocked(v, C.NOTIONAL)
    assert v.denials[0].message == "notional 5,000.10 > max 5,000.00 for BTC/USDT"


def test_notional_uses_the_higher_of_limit_and_last_price() -> None:
    # Sell limit 49,000 can fill at the 50,000 market: 0.1 x 50,000 = 5,000 counts, not 4,900.
    sell = {"side": Side.SELL, "limit_price": 49_000.0}
    assert_approved(run(cand=sell, limits={"max_order_notional": 5_000.0}))
    assert_blocked(run(cand=sell, limits={"max_order_notional": 4_999.0}), C.NOTIONAL)


def test_market_order_notional_uses_last_price() -> None:
    market = {"order_type": OrderType.MARKET, "limit_price": None}
    assert_approved(run(cand=market, limits={"max_order_notional": 5_000.0}))
    assert_blocked(run(cand=market, limits={"max_order_notional": 4_999.0}), C.NOTIONAL)


# --- positions ----------------------------------------------------------------------------------------------


def test_symbol_position_after_fill() -> None:
    assert_approved(run(limits={"max_position_qty_by_symbol": {BTC: 0.3}}))
    v = run(cand={"quantity": 0.11}, limits={"max_position_qty_by_symbol": {BTC: 0.3}})
    assert_blocked(v, C.POSITION_SYMBOL)
    assert "position after fill 0.31 > max 0.3 for BTC/USDT" in v.denials[0].message


def test_symbol_position_counts_open_same_side_orders() -> None:
    pending = (OpenOrder("o-0", "s9", BTC, Side.BUY, 49_000.0, 0.05),)
    v = run(snap={"open_orders": pending}, limits={"max_position_qty_by_symbol": {BTC: 0.3}})
    assert_blocked(v, C.POSITION_SYMBOL)


def test_symbol_position_allows_shrinking_an_over_limit_position() -> None:
    over = {"positions": {BTC: 0.5, ETH: -3.0}}
    tight = {"max_position_qty_by_symbol": {BTC: 0.3}}
    assert_approved(run(cand={"side": Side.SELL}, snap=over, limits=tight))
    assert_blocked(run(snap=over, limits=tight), C.POSITION_SYMBOL)


def test_strategy_position_notional() -> None:
    # s1 holds 0.2 BTC (10,000); +0.1 -> 15,000.
    assert_approved(run(limits={"max_position_per_strategy": 15_000.0}))
    v = run(cand={"quantity": 0.11}, limits={"max_position_per_strategy": 15_000.0})
    assert_blocked(v, C.POSITION_STRATEGY)
    assert v.denials[0].message == "strategy s1 position after fill 15,500.00 > max 15,000.00 for BTC/USDT"


def test_strategy_position_is_per_strategy() -> None:
    # A fresh strategy s3 only has its own 5,500.
    v = run(cand={"quantity": 0.11, "strategy_id": "s3"}, limits={"max_position_per_strategy": 15_000.0})
    assert_approved(v)


# --- portfolio exposure -------------------------------------------------------------------------------------


def test_gross_exposure() -> None:
    assert_approved(run(limits={"max_gross_exposure": 21_000.0}))
    v = run(cand={"quantity": 0.11}, limits={"max_gross_exposure": 21_000.0})
    assert_blocked(v, C.GROSS_EXPOSURE)
    assert v.denials[0].message == "gross exposure after fill 21,500.00 > max 21,000.00"


def test_gross_exposure_allows_reductions_when_over_limit() -> None:
    assert_approved(run(cand={"side": Side.SELL}, limits={"max_gross_exposure": 10_000.0}))


def test_net_exposure() -> None:
    assert_approved(run(limits={"max_net_exposure": 9_000.0}))
    v = run(cand={"quantity": 0.11}, limits={"max_net_exposure": 9_000.0})
    assert_blocked(v, C.NET_EXPOSURE)
    assert v.denials[0].message == "net exposure after fill 9,500.00 beyond ±9,000.00"


def test_net_exposure_short_side() -> None:
    sell_eth = {"symbol": ETH, "side": Side.SELL, "quantity": 5.0, "limit_price": 2_000.0}
    # net 4,000 - 10,000 = -6,000
    assert_approved(run(cand=sell_eth, limits={"max_net_exposure": 6_000.0}))
    assert_blocked(run(cand=sell_eth, limits={"max_net_exposure": 5_999.0}), C.NET_EXPOSURE)


def test_family_budget() -> None:
    # trend holds 10,000 via s1.
    assert_approved(run(limits={"family_budgets": {"trend": 15_000.0}}))
    v = run(cand={"quantity": 0.11}, limits={"family_budgets": {"trend": 15_000.0}})
    assert_blocked(v, C.FAMILY_BUDGET)
    assert v.denials[0].message == "family trend notional after fill 15,500.00 > budget 15,000.00"


def test_family_budget_adds_up_strategies_of_the_family() -> None:
    other = {"strategy_id": "s3", "quantity": 0.11}  # s3 is trend (from the candidate), s1 too
    assert_blocked(run(cand=other, limits={"family_budgets": {"trend": 15_000.0}}), C.FAMILY_BUDGET)
    # a family without a budget is not limited by one
    assert_approved(run(cand={**other, "family": "news"}, limits={"family_budgets": {"trend": 15_000.0}}))


def test_leverage() -> None:
    # gross after 21,000 / equity 100,000 = 0.21x
    assert_approved(run(limits={"max_leverage": 0.21}))
    v = run(cand={"quantity": 0.12}, limits={"max_leverage": 0.21})
    assert_blocked(v, C.LEVERAGE)
    assert v.denials[0].message == (
        "leverage after fill 0.22x > max 0.21x (gross 22,000.00 / equity 100,000.00)"
    )


def test_leverage_with_no_equity_blocks_increases_only() -> None:
    assert_blocked(run(snap={"equity": 0.0}), C.LEVERAGE)
    assert_approved(run(cand={"side": Side.SELL}, snap={"equity": -10.0}))


def test_margin() -> None:
    assert_approved(run(snap={"available_margin": 5_000.0}))
    v = run(snap={"available_margin": 4_999.0})
    assert_blocked(v, C.MARGIN)
    assert v.denials[0].message == "margin required 5,000.00 > available 4,999.00 at 1x for BTC/USDT"
    assert_approved(run(snap={"available_margin": 2_500.0, "account_leverage": 2.0}))


def test_margin_not_needed_to_reduce() -> None:
    assert_approved(run(cand={"side": Side.SELL}, snap={"available_margin": 0.0}))


# --- price band, market data, signal age --------------------------------------------------------------------


def test_price_band() -> None:
    assert_approved(run(cand={"limit_price": 52_500.0}, limits={"max_order_notional": 1e9}))
    v = run(cand={"limit_price": 52_600.0}, limits={"max_order_notional": 1e9})
    assert_blocked(v, C.PRICE_BAND)
    assert v.denials[0].message == "limit price 52,600 is 5.20% from last 50,000 > band 5.00% for BTC/USDT"
    assert_blocked(run(cand={"side": Side.SELL, "limit_price": 47_400.0}), C.PRICE_BAND)


def test_price_band_market_order_trades_at_last() -> None:
    assert_approved(run(cand={"order_type": OrderType.MARKET, "limit_price": None}))


def test_stale_market_data() -> None:
    assert_approved(run(snap={"last_prices": {**SNAP.last_prices, BTC: LastPrice(50_000.0, NOW - 5_000)}}))
    v = run(snap={"last_prices": {**SNAP.last_prices, BTC: LastPrice(50_000.0, NOW - 5_001)}})
    assert_blocked(v, C.STALE_MARKET_DATA)
    assert v.denials[0].message == "last price for BTC/USDT is 5,001 ms old > max 5,000 ms"


def test_no_market_data() -> None:
    no_btc = {"last_prices": {ETH: SNAP.last_prices[ETH]}}
    assert_blocked(run(snap=no_btc), C.NO_MARKET_DATA)
    market = {"order_type": OrderType.MARKET, "limit_price": None}
    assert_blocked(run(cand=market, snap=no_btc), C.NO_MARKET_DATA)
    nan_btc = {"last_prices": {**SNAP.last_prices, BTC: LastPrice(math.nan, NOW)}}
    assert_blocked(run(snap=nan_btc), C.NO_MARKET_DATA)


def test_missing_price_of_another_held_symbol_blocks_increases_not_reductions() -> None:
    no_eth = {"last_prices": {BTC: SNAP.last_prices[BTC]}}
    v = run(snap=no_eth)
    assert_blocked(v, C.NO_MARKET_DATA)
    assert v.denials[0].message == "no price for held ETH/USDT: portfolio exposure unknown"
    assert_approved(run(cand={"side": Side.SELL}, snap=no_eth))


def test_expired_signal() -> None:
    assert_approved(run(cand={"expires_at_ms": NOW + 1}))
    assert_approved(run(cand={"expires_at_ms": None}))
    v = run(cand={"expires_at_ms": NOW})
    assert_blocked(v, C.EXPIRED_SIGNAL)


def test_stale_signal() -> None:
    assert_approved(run(cand={"signal_ts_ms": NOW - 2_000}))
    v = run(cand={"signal_ts_ms": NOW - 2_001})
    assert_blocked(v, C.STALE_SIGNAL)
    assert v.denials[0].message == "signal sig-1 is 2,001 ms old > max 2,000 ms"


# --- rate, duplicates, self-trade ---------------------------------------------------------------------------


def _other(i: int) -> OrderCandidate:
    return dataclasses.replace(CAND, client_order_id=f"x-{i}", symbol=ETH, quantity=1.0 + i)


def test_order_rate_sliding_window() -> None:
    rates = OrderRateLimiter()
    rates.record(_other(0), NOW - 1_000)  # just outside the 1 s window
    rates.record(_other(1), NOW - 500)
    rates.record(_other(2), NOW - 10)
    assert_approved(run(rates=rates))
    rates.record(_other(3), NOW)
    v = run(rates=rates)
    assert_blocked(v, C.ORDER_RATE)
    assert v.denials[0].message == "order rate 4 in last 1,000 ms > max 3/s"
    assert_approved(run(rates=rates, now_ms=NOW + 501, cand={"signal_ts_ms": NOW}))


def test_duplicate_same_order_within_window() -> None:
    rates = OrderRateLimiter()
    rates.record(dataclasses.replace(CAND, client_order_id="o-0"), NOW - 400)
    v = run(rates=rates)
    assert_blocked(v, C.DUPLICATE_ORDER)
    assert v.denials[0].message == "same s1 buy 0.1 BTC/USDT as o-0 400 ms ago (window 1,000 ms)"
    assert_approved(run(rates=rates, cand={"quantity": 0.12}))
    assert_approved(run(rates=rates, cand={"side": Side.SELL}))
    assert_approved(run(rates=rates, cand={"strategy_id": "s3"}))
    assert_approved(run(rates=rates, now_ms=NOW + 600, cand={"signal_ts_ms": NOW}))


def test_duplicate_client_order_id() -> None:
    rates = OrderRateLimiter()
    rates.record(dataclasses.replace(CAND, symbol=ETH, quantity=9.0), NOW - 30_000)
    v = run(rates=rates)
    assert_blocked(v, C.DUPLICATE_ORDER)
    assert v.denials[0].message == "client_order_id o-1 already used"
    working = (OpenOrder("o-1", "s1", ETH, Side.BUY, 1_900.0, 1.0),)
    assert_blocked(run(snap={"open_orders": working}), C.DUPLICATE_ORDER)


def test_self_trade() -> None:
    resting = (OpenOrder("o-9", "s2", BTC, Side.SELL, 50_000.0, 0.3),)
    v = run(snap={"open_orders": resting})
    assert_blocked(v, C.SELF_TRADE)
    assert v.denials[0].message == "buy @ 50,000 would cross our open sell o-9 @ 50,000 for BTC/USDT"
    assert_approved(run(cand={"limit_price": 49_999.0}, snap={"open_orders": resting}))
    market = {"order_type": OrderType.MARKET, "limit_price": None}
    assert_blocked(run(cand=market, snap={"open_orders": resting}), C.SELF_TRADE)


def test_self_trade_sell_side_and_other_symbols() -> None:
    bid = (OpenOrder("o-9", "s2", BTC, Side.BUY, 49_900.0, 0.3),)
    sell = {"side": Side.SELL}
    assert_blocked(run(cand={**sell, "limit_price": 49_900.0}, snap={"open_orders": bid}), C.SELF_TRADE)
    assert_approved(run(cand={**sell, "limit_price": 49_901.0}, snap={"open_orders": bid}))
    eth_ask = (OpenOrder("o-8", "s2", ETH, Side.SELL, 1.0, 1.0),)
    assert_approved(run(snap={"open_orders": eth_ask}))


# --- trading state ------------------------------------------------------------------------------------------


def test_halted_blocks_everything() -> None:
    v = run(cand={"side": Side.SELL}, snap={"trading_state": TradingState.HALTED})
    assert_blocked(v, C.KILL_SWITCH)


def test_reducing_allows_reducing_and_blocks_increasing() -> None:
    reducing = {"trading_state": TradingState.REDUCING}
    assert_approved(run(cand={"side": Side.SELL}, snap=reducing))
    assert_blocked(run(snap=reducing), C.REDUCING_ONLY)
    # selling 0.3 against a 0.2 long flips it: not reducing
    loose = {"max_order_notional": 1e9}
    flip = run(cand={"side": Side.SELL, "quantity": 0.3}, snap=reducing, limits=loose)
    assert_blocked(flip, C.REDUCING_ONLY)


def test_reducing_counts_pending_reducing_orders() -> None:
    pending = (OpenOrder("o-0", "s1", BTC, Side.SELL, 51_000.0, 0.15),)
    v = run(cand={"side": Side.SELL}, snap={"trading_state": TradingState.REDUCING, "open_orders": pending})
    assert_blocked(v, C.REDUCING_ONLY)


# --- invalid orders -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"quantity": 0.0},
        {"quantity": -0.1},
        {"quantity": math.nan},
        {"quantity": math.inf},
        {"limit_price": None},
        {"limit_price": 0.0},
        {"client_order_id": ""},
        {"reduce_only": True},  # a buy against a long position does not reduce it
    ],
)
def test_invalid_order(changes: dict[str, Any]) -> None:
    v = run(cand=changes)
    assert not v.approved
    assert C.INVALID_ORDER in v.codes


def test_valid_reduce_only_order() -> None:
    assert_approved(run(cand={"side": Side.SELL, "reduce_only": True}))


def test_all_denials_are_collected() -> None:
    rates = OrderRateLimiter()
    rates.record(CAND, NOW - 100)  # same client_order_id
    v = run(
        cand={"quantity": 5.0, "limit_price": 60_000.0, "signal_ts_ms": NOW - 9_000, "expires_at_ms": NOW},
        snap={
            "trading_state": TradingState.HALTED,
            "last_prices": {**SNAP.last_prices, BTC: LastPrice(50_000.0, NOW - 60_000)},
            "open_orders": (OpenOrder("o-9", "s2", BTC, Side.SELL, 55_000.0, 1.0),),
            "available_margin": 1_000.0,
        },
        limits={"max_orders_per_second": 1},
        rates=rates,
    )
    assert not v.approved
    assert v.codes == {
        C.KILL_SWITCH,
        C.EXPIRED_SIGNAL,
        C.STALE_SIGNAL,
        C.STALE_MARKET_DATA,
        C.ORDER_SIZE,
        C.NOTIONAL,
        C.PRICE_BAND,
        C.POSITION_SYMBOL,
        C.POSITION_STRATEGY,
        C.GROSS_EXPOSURE,
        C.NET_EXPOSURE,
        C.FAMILY_BUDGET,
        C.LEVERAGE,
        C.MARGIN,
        C.ORDER_RATE,
        C.DUPLICATE_ORDER,
        C.SELF_TRADE,
    }
    assert len(v.denials) == len(v.codes)


def test_evaluate_does_not_touch_the_rate_limiter() -> None:
    rates = OrderRateLimiter()
    for _ in range(5):
        assert_approved(run(rates=rates))
    assert rates.count_since(NOW - 1_000) == 0


def test_rate_limiter_forgets_after_retention() -> None:
    rates = OrderRateLimiter(retain_ms=2_000)
    rates.record(CAND, NOW)
    assert rates.has_client_order_id("o-1")
    rates.record(_other(1), NOW + 2_000)
    assert not rates.has_client_order_id("o-1")
    assert rates.count_since(NOW - 10_000) == 1
    with pytest.raises(ValueError):
        OrderRateLimiter(retain_ms=999)


@pytest.mark.parametrize(
    ("side", "qty", "position", "expected"),
    [
        (Side.SELL, 0.1, 0.2, True),
        (Side.SELL, 0.2, 0.2, True),
        (Side.SELL, 0.3, 0.2, False),  # flips through zero
        (Side.BUY, 0.1, 0.2, False),
        (Side.BUY, 1.0, -1.0, True),
        (Side.SELL, 1.0, -1.0, False),
        (Side.SELL, 0.1, 0.0, False),
        (Side.SELL, 0.0, 0.2, False),
        (Side.SELL, 0.1 + 0.2, 0.3, True),  # float noise is tolerated
    ],
)
def test_is_reducing(side: Side, qty: float, position: float, expected: bool) -> None:
    assert is_reducing(side, qty, position) is expected


def test_snapshot_rejects_non_positive_account_leverage() -> None:
    with pytest.raises(ValueError):
        RiskSnapshot(equity=1.0, account_leverage=0.0)
