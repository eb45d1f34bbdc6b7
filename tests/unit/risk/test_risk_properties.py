"""Properties of `evaluate` over random orders and markets."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.risk.checks import LastPrice, OrderCandidate, OrderRateLimiter, RiskSnapshot, evaluate
from wavesquant.risk.codes import DenialCode
from wavesquant.risk.limits import RiskLimits
from wavesquant.types import OrderType, Side, TradingState

NOW = 1_700_000_000_000
SYM = "BTC/USDT"

prices = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False)
quantities = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def cases(draw: st.DrawFn) -> tuple[OrderCandidate, RiskSnapshot, RiskLimits]:
    order_type = draw(st.sampled_from(OrderType))
    last = draw(prices)
    limit_price = draw(prices) if order_type is OrderType.LIMIT else None
    candidate = OrderCandidate(
        client_order_id="o-1",
        signal_id="sig-1",
        strategy_id="s1",
        family="trend",
        symbol=SYM,
        side=draw(st.sampled_from(Side)),
        quantity=draw(quantities),
        order_type=order_type,
        limit_price=limit_price,
        signal_ts_ms=NOW - draw(st.integers(0, 10_000)),
        expires_at_ms=draw(st.none() | st.integers(NOW - 10_000, NOW + 10_000)),
        reduce_only=draw(st.booleans()),
    )
    position = draw(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
    snapshot = RiskSnapshot(
        equity=draw(st.floats(min_value=-1e6, max_value=1e9, allow_nan=False)),
        positions={SYM: position},
        strategy_positions={("s1", SYM): position},
        last_prices={SYM: LastPrice(last, NOW - draw(st.integers(0, 10_000)))},
        trading_state=draw(st.sampled_from(TradingState)),
    )
    limits = RiskLimits(
        max_order_qty=draw(quantities),
        max_order_notional=draw(st.floats(min_value=1.0, max_value=1e9)),
        max_position_qty=draw(st.floats(min_value=1e-3, max_value=1e5)),
        price_band_pct=draw(st.floats(min_value=0.1, max_value=100.0)),
    )
    return candidate, snapshot, limits


@settings(max_examples=300, deadline=None)
@given(cases())
def test_approved_order_never_exceeds_max_qty_or_notional(
    case: tuple[OrderCandidate, RiskSnapshot, RiskLimits],
) -> None:
    candidate, snapshot, limits = case
    verdict = evaluate(candidate, snapshot, limits, NOW, OrderRateLimiter())
    assert verdict.approved == (not verdict.denials)
    if verdict.approved:
        assert limits.max_order_qty is not None
        tol = 1 + 1e-9
        assert candidate.quantity <= limits.max_order_qty * tol
        last = snapshot.last_prices[SYM].price
        worst_price = max(p for p in (candidate.limit_price, last) if p is not None)
        assert candidate.quantity * worst_price <= limits.max_order_notional * tol
        assert snapshot.trading_state is not TradingState.HALTED


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(0, 100_000))
def test_expired_candidate_is_never_approved(
    case: tuple[OrderCandidate, RiskSnapshot, RiskLimits], late_ms: int
) -> None:
    candidate, snapshot, limits = case
    candidate = dataclasses.replace(candidate, expires_at_ms=NOW - late_ms)
    verdict = evaluate(candidate, snapshot, limits, NOW, OrderRateLimiter())
    assert not verdict.approved
    assert DenialCode.EXPIRED_SIGNAL in verdict.codes


@settings(max_examples=200, deadline=None)
@given(quantity=any_floats, limit_price=st.none() | any_floats, last=any_floats, equity=any_floats)
def test_garbage_numbers_never_raise_and_never_approve_invalid_quantities(
    quantity: float, limit_price: float | None, last: float, equity: float
) -> None:
    candidate = OrderCandidate(
        "o-1", "sig-1", "s1", "trend", SYM, Side.BUY, quantity, OrderType.LIMIT, limit_price, NOW
    )
    snapshot = RiskSnapshot(equity=equity, last_prices={SYM: LastPrice(last, NOW)})
    verdict = evaluate(candidate, snapshot, RiskLimits(), NOW, OrderRateLimiter())
    if not (math.isfinite(quantity) and quantity > 0):
        assert not verdict.approved
        assert DenialCode.INVALID_ORDER in verdict.codes
