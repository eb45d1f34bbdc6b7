from __future__ import annotations

import numpy as np
import pytest

from wavesquant.market.synthetic import SyntheticMarket


def _market(seed: int = 1, **kw: float) -> SyntheticMarket:
    return SyntheticMarket(["A", "B", "C"], {"A": 100.0, "B": 50.0, "C": 1.0}, seed=seed, **kw)


def test_deterministic_for_a_seed() -> None:
    m1, m2, m3 = _market(1), _market(1), _market(2)
    a = [m1.step(i)[0] for i in range(50)]
    b = [m2.step(i)[0] for i in range(50)]
    c = [m3.step(i)[0] for i in range(50)]
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert not np.array_equal(np.array(a), np.array(c))
    np.testing.assert_array_equal(_market(5).walk(100)[0], _market(5).walk(100)[0])


def test_correlation_and_volatility_match_parameters() -> None:
    m = SyntheticMarket(["A", "B", "C"], [100.0, 100.0, 100.0], seed=3, vol_per_step=1e-3, correlation=0.6)
    prices, sizes, jumps = m.walk(20_000)
    rets = np.diff(np.log(np.vstack([[100.0] * 3, prices])), axis=0)
    corr = np.corrcoef(rets.T)
    assert corr[np.triu_indices(3, 1)] == pytest.approx([0.6] * 3, abs=0.03)
    assert rets.std(axis=0) == pytest.approx([1e-3] * 3, rel=0.03)
    assert not jumps.any()  # jump_probability defaults to 0
    assert (sizes > 0).all() and sizes.mean() == pytest.approx(1.0, rel=0.05)


def test_jumps_occur_at_configured_rate_and_size() -> None:
    m = _market(4, vol_per_step=1e-5, jump_probability=0.01, jump_size=0.05)
    prices, _, jumps = m.walk(10_000)
    assert 0.007 < jumps.mean() < 0.013
    rets = np.abs(np.diff(np.log(prices), axis=0))
    assert (rets[jumps[1:]] > 0.04).all() and (rets[~jumps[1:]] < 0.01).all()


def test_quotes_straddle_mid() -> None:
    m = _market(spread_bps=10.0)
    prices, _ = m.step(0)
    bid, ask = m.quotes()
    np.testing.assert_allclose((bid + ask) / 2, prices)
    np.testing.assert_allclose((ask - bid) / prices, 1e-3)


def test_bars_are_consistent() -> None:
    bars = _market(9).bars(n_bars=20, ticks_per_bar=30, start_ts_ms=0, timeframe_ms=60_000)
    assert bars.shape == (20, 3)
    assert bars["ts_ms"][:, 0].tolist() == [i * 60_000 for i in range(20)]
    assert (bars["high"] >= np.maximum(bars["open"], bars["close"])).all()
    assert (bars["low"] <= np.minimum(bars["open"], bars["close"])).all()
    np.testing.assert_array_equal(bars["open"][1:], bars["close"][:-1])
    assert (bars["volume"] > 0).all()


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="start price"):
        SyntheticMarket(["A", "B"], {"A": 1.0}, seed=0)
    with pytest.raises(ValueError, match="correlation"):
        SyntheticMarket(["A", "B", "C"], [1.0, 1.0, 1.0], seed=0, correlation=-0.6)
    with pytest.raises(ValueError, match="positive"):
        SyntheticMarket(["A"], [0.0], seed=0)
