from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavesquant.indicators.moving import EMA, SMA, ema, sma
from wavesquant.market.loaders import load_bars


@pytest.fixture(scope="module")
def closes(shared_data: Path) -> np.ndarray:
    return load_bars(shared_data / "ohlcv" / "binance_BTCUSDT_1m.csv")["close"]


@pytest.mark.shared_data
@pytest.mark.parametrize("n", [1, 2, 20, 200])
def test_sma_incremental_vectorised_and_pandas_agree(closes: np.ndarray, n: int) -> None:
    ref = pd.Series(closes).rolling(n).mean().to_numpy()
    vec = sma(closes, n)
    inc = SMA(n)
    seq = np.array([np.nan if (v := inc.update(float(x))) is None else v for x in closes])
    np.testing.assert_allclose(vec, ref, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(seq, ref, rtol=1e-12, equal_nan=True)
    assert np.isnan(vec[: n - 1]).all() and not np.isnan(vec[n - 1 :]).any()


@pytest.mark.shared_data
@pytest.mark.parametrize("n", [1, 2, 12, 26, 200])
def test_ema_incremental_vectorised_and_pandas_agree(closes: np.ndarray, n: int) -> None:
    ref = pd.Series(closes).ewm(span=n, adjust=False, min_periods=n).mean().to_numpy()
    vec = ema(closes, n)
    inc = EMA(n)
    seq = np.array([np.nan if (v := inc.update(float(x))) is None else v for x in closes])
    np.testing.assert_allclose(vec, ref, rtol=1e-11, equal_nan=True)
    np.testing.assert_allclose(seq, ref, rtol=1e-12, equal_nan=True)
    assert inc.value == pytest.approx(ref[-1], rel=1e-12)


def test_warm_up_and_short_input() -> None:
    s, e = SMA(3), EMA(3)
    assert [s.update(x) for x in (1.0, 2.0, 3.0, 4.0)] == [None, None, 2.0, 3.0]
    assert [e.update(x) for x in (1.0, 2.0)] == [None, None]
    assert e.update(3.0) == 2.25  # alpha 0.5: 1 -> 1.5 -> 2.25
    assert np.isnan(sma(np.array([1.0, 2.0]), 3)).all()
    assert np.isnan(ema(np.array([1.0, 2.0]), 3)).all()
    assert len(ema(np.array([]), 3)) == 0
    with pytest.raises(ValueError):
        SMA(0)
    with pytest.raises(ValueError):
        ema(np.ones(3), 0)


def test_sma_running_sum_does_not_drift() -> None:
    rng = np.random.default_rng(0)
    x = 1e8 + rng.normal(0, 1.0, 50_000)
    s = SMA(7)
    for v in x:
        s.update(float(v))
    assert s.value == pytest.approx(x[-7:].mean(), rel=1e-15, abs=1e-7)
