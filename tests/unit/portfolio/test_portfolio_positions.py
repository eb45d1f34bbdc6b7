from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.execution.venues.base import Fill
from wavesquant.portfolio.positions import Portfolio, Position
from wavesquant.types import Liquidity, Side

SYM = "BTC/USDT"
_n = 0


def fill(side: Side, qty: float, price: float, fee: float = 0.0, symbol: str = SYM, fee_currency: str = "USDT",
         fill_id: str | None = None) -> Fill:
    global _n
    _n += 1
    return Fill("c", "v", fill_id or f"f{_n}", symbol, side, qty, price, fee, fee_currency, Liquidity.TAKER, _n)


def test_average_cost_realised_and_unrealised() -> None:
    p = Portfolio()
    p.apply(fill(Side.BUY, 1.0, 100.0, fee=0.1), "s1")
    p.apply(fill(Side.BUY, 1.0, 110.0, fee=0.1), "s1")
    pos = p.position(SYM, "s1")
    assert pos is not None and pos.quantity == 2.0 and pos.avg_entry_price == 105.0
    assert pos.realized_pnl == pytest.approx(-0.2) and pos.fees == pytest.approx(0.2)
    p.apply(fill(Side.SELL, 0.5, 120.0), "s1")
    assert pos.quantity == 1.5 and pos.avg_entry_price == 105.0
    assert pos.realized_pnl == pytest.approx(0.5 * 15.0 - 0.2)
    p.mark(SYM, 100.0)
    assert p.unrealized_pnl(SYM, "s1") == pytest.approx(1.5 * -5.0)
    totals = p.totals()
    assert totals["total_pnl"] == pytest.approx(7.5 - 0.2 - 7.5)


def test_flip_and_close() -> None:
    pos = Position(SYM, None)
    pos.apply(+1, 1.0, 100.0, 0.0)
    realised = pos.apply(-1, 3.0, 90.0, 0.0)  # close 1 at -10, open short 2 at 90
    assert realised == pytest.approx(-10.0) and pos.quantity == -2.0 and pos.avg_entry_price == 90.0
    pos.apply(+1, 2.0, 80.0, 0.0)  # short covered at +10 each
    assert pos.is_flat and pos.avg_entry_price == 0.0 and pos.realized_pnl == pytest.approx(10.0)
    assert pos.unrealized_pnl(123.0) == 0.0


def test_close_within_epsilon_is_flat() -> None:
    pos = Position(SYM, "s")
    pos.apply(+1, 0.1, 100.0, 0.0)
    pos.apply(+1, 0.2, 100.0, 0.0)
    pos.apply(-1, 0.3, 100.0, 0.0)  # 0.1 + 0.2 - 0.3 != 0 in float64
    assert pos.is_flat and pos.quantity == 0.0


def test_idempotent_by_fill_id_and_per_strategy_vs_net() -> None:
    p = Portfolio()
    f = fill(Side.BUY, 1.0, 100.0)
    assert p.apply(f, "a") is True
    assert p.apply(f, "a") is False
    p.apply(fill(Side.SELL, 1.0, 110.0), "b")  # b goes short against a's long
    a, b, net = p.position(SYM, "a"), p.position(SYM, "b"), p.position(SYM)
    assert a is not None and b is not None and net is not None
    assert (a.quantity, b.quantity) == (1.0, -1.0)
    assert net.is_flat and net.realized_pnl == pytest.approx(10.0)
    p.mark(SYM, 120.0)
    assert a.unrealized_pnl(120.0) + b.unrealized_pnl(120.0) == pytest.approx(10.0)
    assert p.totals()["total_pnl"] == pytest.approx(10.0)
    assert len(p.positions()) == 2 and len(p.net_positions()) == 1


def test_fee_currencies() -> None:
    p = Portfolio()
    p.apply(fill(Side.BUY, 1.0, 100.0, fee=0.001, fee_currency="BTC"))  # base fee valued at fill price
    p.apply(fill(Side.BUY, 1.0, 100.0, fee=0.05, fee_currency="BNB"))
    net = p.position(SYM)
    assert net is not None and net.fees == pytest.approx(0.1)
    assert p.other_fees == {"BNB": 0.05}


def test_unrealised_without_mark_uses_last_fill_and_snapshot_is_json() -> None:
    p = Portfolio()
    p.apply(fill(Side.BUY, 2.0, 100.0), "s")
    p.apply(fill(Side.BUY, 2.0, 110.0), "s")
    assert p.unrealized_pnl(SYM) == pytest.approx(4.0 * (110.0 - 105.0))
    assert p.unrealized_pnl("ETH/USDT") == 0.0
    snap = json.loads(json.dumps(p.snapshot()))
    assert snap["positions"][0]["strategy_id"] == "s" and snap["net"][SYM]["quantity"] == 4.0
    assert snap["totals"]["unrealized_pnl"] == pytest.approx(20.0)


def test_invalid_fill_is_refused() -> None:
    with pytest.raises(ValueError):
        Portfolio().apply(fill(Side.BUY, 0.0, 100.0))


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.sampled_from([0.1, 0.2, 0.3, 0.5, 1.0, 2.5]),
        st.floats(50.0, 150.0),
        st.floats(0.0, 1.0),
        st.sampled_from(["a", "b"]),
        st.sampled_from([SYM, "ETH/USDT"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(fills_strategy, st.floats(50.0, 150.0), st.floats(50.0, 150.0))
def test_pnl_identity_matches_cash_flow(
    trades: list[tuple[Side, float, float, float, str, str]], mark_btc: float, mark_eth: float
) -> None:
    p = Portfolio()
    marks = {SYM: mark_btc, "ETH/USDT": mark_eth}
    cash: dict[tuple[str, str], float] = {}
    held: dict[tuple[str, str], float] = {}
    for side, qty, price, fee, strategy, symbol in trades:
        f = fill(side, qty, price, fee, symbol=symbol)
        p.apply(f, strategy)
        p.apply(f, strategy)  # duplicate: ignored
        for key in ((strategy, symbol), ("*", symbol)):
            cash[key] = cash.get(key, 0.0) - side.sign * qty * price - fee
            held[key] = held.get(key, 0.0) + side.sign * qty
    for symbol, mark in marks.items():
        p.mark(symbol, mark)
    for (strategy, symbol), flow in cash.items():
        expected = flow + held[(strategy, symbol)] * marks[symbol]
        pos = p.position(symbol, None if strategy == "*" else strategy)
        assert pos is not None
        assert pos.quantity == pytest.approx(held[(strategy, symbol)], abs=1e-9)
        got = pos.realized_pnl + pos.unrealized_pnl(marks[symbol])
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)
    total = sum(flow + held[key] * marks[key[1]] for key, flow in cash.items() if key[0] == "*")
    assert p.totals()["total_pnl"] == pytest.approx(total, rel=1e-9, abs=1e-6)
