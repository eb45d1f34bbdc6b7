from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavesquant.analytics.trend import TrendAssessment, assess_trend
from wavesquant.market.bars import Bar, bars_from_array
from wavesquant.market.loaders import load_bars
from wavesquant.strategies.base import Strategy, StrategyContext, StrategyDecision, build_strategy
from wavesquant.types import Side

SYM = "BTC/USDT"


@pytest.fixture(scope="module")
def btc_5m(shared_data: Path) -> list[Bar]:
    return bars_from_array(load_bars(shared_data / "ohlcv" / "binance_BTCUSDT_5m.csv"), SYM, "5m")


def _replay(
    strategy: Strategy, bars: list[Bar], trend_every: int = 0
) -> tuple[list[StrategyDecision], list[float]]:
    """Feed bars like the engine would, filling every decision at once; returns decisions and positions."""
    pos = 0.0
    decisions: list[StrategyDecision] = []
    positions: list[float] = []
    closes = np.array([b.close for b in bars])
    for i, bar in enumerate(bars):
        if trend_every and i % trend_every == 0:
            strategy.on_trend(SYM, assess_trend(closes[: i + 1], fast=12, slow=48))
        for d in strategy.on_bar(bar, StrategyContext(SYM, pos, bar.close, strategy.trend(SYM))):
            assert d.quantity > 0 and d.symbol == SYM and d.reference_price == bar.close
            pos += d.side.sign * d.quantity
            decisions.append(d)
            positions.append(pos)
    return decisions, positions


def _reference_crossings(bars: list[Bar], fast: int, slow: int, ma: str) -> list[tuple[int, int]]:
    """(close_ts_ms, new sign) of every sign change of fast - slow, computed with pandas."""
    close = pd.Series([b.close for b in bars])
    if ma == "sma":
        f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    else:
        f = close.ewm(span=fast, adjust=False, min_periods=fast).mean()
        s = close.ewm(span=slow, adjust=False, min_periods=slow).mean()
    sign = np.sign(f - s).replace(0.0, np.nan).ffill()
    cross = sign.ne(sign.shift()) & sign.notna() & sign.shift().notna()
    ts = np.array([b.close_ts_ms for b in bars])
    return [(int(ts[i]), int(sign[i])) for i in np.flatnonzero(cross.to_numpy())]


@pytest.mark.shared_data
@pytest.mark.parametrize("ma", ["sma", "ema"])
def test_long_only_decisions_alternate_and_match_pandas_crossings(btc_5m: list[Bar], ma: str) -> None:
    q = 0.25
    strat = build_strategy(
        "ma_crossover", "t", {"symbol": SYM, "fast": 10, "slow": 30, "quantity": q, "ma": ma}
    )
    decisions, positions = _replay(strat, btc_5m)
    crossings = _reference_crossings(btc_5m, 10, 30, ma)
    assert len(crossings) > 100
    # flat at the start, so a leading cross down has nothing to sell
    first_up = next(i for i, (_, sgn) in enumerate(crossings) if sgn > 0)
    expected = crossings[first_up:]
    assert [(d.ts_ms, d.side.sign) for d in decisions] == expected
    sides = [d.side for d in decisions]
    assert all(a is not b for a, b in itertools.pairwise(sides))  # strictly alternating
    assert all(d.quantity == q for d in decisions)  # never doubles up
    assert set(positions) == {q, 0.0}


@pytest.mark.shared_data
def test_long_short_flips_through_full_size(btc_5m: list[Bar]) -> None:
    q = 1.0
    strat = build_strategy(
        "ma_crossover", "ls", {"symbol": SYM, "fast": 20, "slow": 50, "quantity": q, "allow_short": True}
    )
    decisions, positions = _replay(strat, btc_5m)
    assert [(d.ts_ms, d.side.sign) for d in decisions] == _reference_crossings(btc_5m, 20, 50, "sma")
    assert decisions[0].quantity == q
    assert all(d.quantity == 2 * q for d in decisions[1:])  # covers the old side, then opens the new one
    assert set(positions) <= {q, -q}
    assert "crossed" in decisions[0].reason and decisions[0].confidence == 0.5


@pytest.mark.shared_data
def test_confirmation_gates_entries_only(btc_5m: list[Bar]) -> None:
    params = {
        "symbol": SYM,
        "fast": 10,
        "slow": 30,
        "quantity": 1.0,
        "allow_short": True,
        "require_confirmation": True,
        "min_confidence": 0.1,
    }
    confirmed, positions = _replay(build_strategy("ma_crossover", "c", params), btc_5m, trend_every=1)
    unconfirmed, _ = _replay(
        build_strategy("ma_crossover", "u", {**params, "require_confirmation": False}), btc_5m
    )
    assert 0 < len(confirmed) < len(unconfirmed)
    assert set(positions) <= {1.0, 0.0, -1.0}
    closes = np.array([b.close for b in btc_5m])
    close_ts = [b.close_ts_ms for b in btc_5m]
    for d, pos in zip(confirmed, positions, strict=True):
        if pos != 0.0:  # an entry: the trend at that bar must agree with it
            i = close_ts.index(d.ts_ms)
            t = assess_trend(closes[: i + 1], fast=12, slow=48)
            assert t.direction == d.side.sign and t.confidence >= 0.1
            assert d.confidence == t.confidence


def _feed(
    strat: Strategy, closes: list[float], pos: float, start: int = 0, tf: str = "1m"
) -> list[StrategyDecision]:
    out: list[StrategyDecision] = []
    for i, c in enumerate(closes, start=start):
        out += strat.on_bar(Bar(SYM, tf, i * 60_000, c, c, c, c, 1.0), StrategyContext(SYM, pos, c))
    return out


def test_unconfirmed_cross_still_exits() -> None:
    params = {
        "symbol": SYM,
        "fast": 2,
        "slow": 3,
        "quantity": 1.0,
        "allow_short": True,
        "require_confirmation": True,
    }
    # short 1, cross up without any trend assessment: cover to flat, do not go long
    (d,) = _feed(build_strategy("ma_crossover", "x", params), [5.0, 4.0, 3.0, 2.0, 6.0], pos=-1.0)
    assert (d.side, d.quantity) == (Side.BUY, 1.0) and "unconfirmed" in d.reason
    # long 1, cross down with a disagreeing trend: sell to flat, do not go short
    s = build_strategy("ma_crossover", "y", params)
    s.on_trend(SYM, TrendAssessment(1, 3.0, 0.9))
    (d,) = _feed(s, [1.0, 2.0, 3.0, 4.0, 0.5], pos=1.0)
    assert (d.side, d.quantity) == (Side.SELL, 1.0)
    # flat and unconfirmed: nothing at all
    assert _feed(build_strategy("ma_crossover", "z", params), [5.0, 4.0, 3.0, 2.0, 6.0], pos=0.0) == []


def test_never_trades_against_the_signal_or_twice_per_bar() -> None:
    params = {"symbol": SYM, "fast": 2, "slow": 3, "quantity": 1.0, "timeframe": "1m"}
    # already longer than target: the up-cross does not sell the excess
    assert _feed(build_strategy("ma_crossover", "a", params), [5.0, 4.0, 3.0, 2.0, 6.0], pos=2.0) == []
    s = build_strategy("ma_crossover", "b", params)
    assert _feed(s, [5.0, 4.0, 3.0, 2.0], pos=0.0) == []
    # a replayed bar and a bar of another timeframe or symbol are ignored
    assert _feed(s, [6.0], pos=0.0, start=3) == []
    assert _feed(s, [6.0], pos=0.0, start=4, tf="5m") == []
    assert _feed(s, [float("nan")], pos=0.0, start=4) == []  # broken bar: skipped, averages untouched
    assert s.on_bar(Bar("ETH/USDT", "1m", 4 * 60_000, 9, 9, 9, 9, 1), StrategyContext("ETH/USDT", 0.0)) == []
    (d,) = _feed(s, [6.0], pos=0.0, start=4)
    assert d.side is Side.BUY and d.ts_ms == 5 * 60_000
