from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavesquant.indicators.rolling import RollingStats, rolling_zscore
from wavesquant.market.loaders import load_bars


@pytest.mark.shared_data
def test_rolling_stats_match_pandas_on_real_returns(shared_data: Path) -> None:
    closes = load_bars(shared_data / "ohlcv" / "binance_ETHBTC_5m.csv")["close"][-3000:]
    rets = np.diff(np.log(closes))
    n = 50
    s = pd.Series(rets)
    ref_mean = s.rolling(n).mean().to_numpy()
    ref_std = s.rolling(n).std().to_numpy()
    ref_med = s.rolling(n).median().to_numpy()
    ref_z = ((s - s.rolling(n).mean()) / s.rolling(n).std()).to_numpy()
    rs = RollingStats(n)
    inc_z = np.full(len(rets), np.nan)
    for i, r in enumerate(rets):
        rs.update(float(r))
        if i >= n - 1:
            assert rs.mean == pytest.approx(ref_mean[i], rel=1e-9, abs=1e-15)
            assert rs.std == pytest.approx(ref_std[i], rel=1e-9)
            assert rs.median == pytest.approx(ref_med[i], rel=1e-12, abs=1e-18)
            inc_z[i] = rs.zscore  # type: ignore[assignment]
    np.testing.assert_allclose(inc_z, ref_z, rtol=1e-8, atol=1e-10, equal_nan=True)
    np.testing.assert_allclose(rolling_zscore(rets, n), ref_z, rtol=1e-8, atol=1e-10, equal_nan=True)


def test_warm_up_values_and_score() -> None:
    rs = RollingStats(4)
    assert rs.mean is None and rs.std is None and rs.median is None and rs.latest is None
    for x in (1.0, 2.0, 3.0):
        rs.update(x)
    assert rs.zscore is None and rs.score(10.0) is None and not rs.is_warm
    assert rs.mean == 2.0 and rs.median == 2.0 and rs.values().tolist() == [1.0, 2.0, 3.0]
    rs.update(4.0)
    rs.update(5.0)  # window is now 2,3,4,5
    assert rs.values().tolist() == [2.0, 3.0, 4.0, 5.0] and rs.latest == 5.0
    std = float(np.std([2, 3, 4, 5], ddof=1))
    assert rs.zscore == pytest.approx((5.0 - 3.5) / std)
    assert rs.score(10.0) == pytest.approx((10.0 - 3.5) / std)
    assert len(rs) == 4  # score did not add


def test_constant_window() -> None:
    rs = RollingStats(3)
    for _ in range(3):
        rs.update(2.0)
    assert rs.zscore is None
    assert rs.score(2.0) == 0.0
    assert rs.score(3.0) == math.inf and rs.score(1.0) == -math.inf
    assert np.isnan(rolling_zscore(np.full(5, 2.0), 3)).all()
    with pytest.raises(ValueError):
        RollingStats(1)
