from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavesquant.analytics.trend import NEUTRAL, TrendAssessment, assess_trend
from wavesquant.market.loaders import load_bars


def test_straight_lines() -> None:
    up = assess_trend(100.0 + np.arange(300.0), fast=12, slow=26)
    assert up.direction == 1 and up.confidence == pytest.approx(1.0)
    # an EMA lags (n-1)/2 bars on a line; rel 1e-3 leaves room for the seed the 5-span tail still remembers
    assert up.strength == pytest.approx((26 - 12) / 2, rel=1e-3)
    down = assess_trend(1000.0 - 2.0 * np.arange(300.0), fast=12, slow=26)
    assert down.direction == -1 and down.confidence == pytest.approx(1.0)
    assert down.strength == pytest.approx(7.0, rel=1e-3)


def test_flat_short_and_bad_input_is_neutral() -> None:
    assert assess_trend(np.full(200, 5.0), 5, 20) == NEUTRAL
    assert assess_trend(np.arange(20.0), 5, 20) == NEUTRAL  # fewer than slow + fast + 1 closes
    x = 100.0 + np.arange(200.0)
    x[-3] = np.nan
    assert assess_trend(x, 5, 20) == NEUTRAL
    with pytest.raises(ValueError):
        assess_trend(x, 20, 20)


def test_noise_gives_low_confidence_and_is_scale_free() -> None:
    rng = np.random.default_rng(1)
    confs = []
    for _ in range(50):
        walk = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
        a = assess_trend(walk, 10, 40)
        b = assess_trend(walk * 1000.0, 10, 40)
        assert a.direction == b.direction
        assert a.strength == pytest.approx(b.strength, rel=1e-9)
        assert a.confidence == pytest.approx(b.confidence, rel=1e-9)
        assert 0.0 <= a.confidence <= 1.0 and a.strength >= 0.0
        confs.append(a.confidence)
    assert np.mean(confs) < 0.35
    trending = 100.0 * np.exp(np.cumsum(rng.normal(0.004, 0.01, 400)))
    assert assess_trend(trending, 10, 40).direction == 1
    assert assess_trend(trending, 10, 40).confidence > np.mean(confs)


@pytest.mark.shared_data
def test_real_crash_reads_as_downtrend_and_matches_pandas(shared_data: Path) -> None:
    bars = load_bars(shared_data / "ohlcv" / "binance_BTCUSDT_5m.csv")
    closes = bars["close"][bars["ts_ms"] < 1621429200000]  # up to 2021-05-19 13:00 UTC
    a = assess_trend(closes, fast=12, slow=48)
    assert isinstance(a, TrendAssessment) and a.direction == -1 and a.confidence > 0.2
    # reference from pandas on the same tail the function uses
    tail = pd.Series(closes[-(48 * 5 + 12 + 1) :])
    ef = tail.ewm(span=12, adjust=False).mean().iloc[-1]
    es = tail.ewm(span=48, adjust=False).mean().iloc[-1]
    recent = tail.iloc[-49:].to_numpy()
    mean_move = np.abs(np.diff(recent)).mean()
    assert a.strength == pytest.approx(abs(ef - es) / mean_move, rel=1e-9)
    er = abs(recent[-1] - recent[0]) / np.abs(np.diff(recent)).sum()
    assert a.confidence == pytest.approx(er, rel=1e-9)  # all three signs agree on the way down
