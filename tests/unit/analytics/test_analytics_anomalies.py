from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from wavesquant.analytics.anomalies import (
    AnomalyFinding,
    PriceJumpDetector,
    VolumeSpikeDetector,
    severity_for,
)
from wavesquant.market.loaders import load_bars
from wavesquant.market.synthetic import SyntheticMarket

CRASH_START = 1621418400000  # 2021-05-19 10:00 UTC
CRASH_END = 1621432800000  # 2021-05-19 14:00 UTC
CALM_START = 1619654400000  # 2021-04-29 00:00 UTC
CALM_END = 1619913600000  # 2021-05-02 00:00 UTC (three calm days)


def _run_prices(bars: np.ndarray, det: PriceJumpDetector) -> list[AnomalyFinding]:
    out = []
    for ts, close in zip(bars["ts_ms"].tolist(), bars["close"].tolist(), strict=True):
        f = det.update(ts, close)
        if f is not None:
            out.append(f)
    return out


def _run_volumes(bars: np.ndarray, det: VolumeSpikeDetector) -> list[AnomalyFinding]:
    out = []
    for ts, vol in zip(bars["ts_ms"].tolist(), bars["volume"].tolist(), strict=True):
        f = det.update(ts, vol)
        if f is not None:
            out.append(f)
    return out


@pytest.fixture(scope="module")
def btc_1m(shared_data: Path) -> np.ndarray:
    return load_bars(shared_data / "ohlcv" / "binance_BTCUSDT_1m.csv")


@pytest.mark.shared_data
def test_price_jump_fires_on_2021_05_19_crash_ethbtc_5m(shared_data: Path) -> None:
    bars = load_bars(shared_data / "ohlcv" / "binance_ETHBTC_5m.csv")
    found = _run_prices(bars, PriceJumpDetector("ETH/BTC", window=60, z_threshold=6.0, min_return=0.005))
    crash = [f for f in found if CRASH_START <= f.ts_ms < CRASH_END]
    assert crash, "the detector must fire during the 2021-05-19 crash"
    first = crash[0]
    assert first.ts_ms == 1621428600000  # the 12:50 bar: ETH/BTC -7.7% in five minutes
    assert first.anomaly_type == "price_jump" and first.symbol == "ETH/BTC"
    assert first.observed == pytest.approx(-0.0768, abs=1e-3)
    assert first.magnitude >= 6.0 * 1.5 and first.severity in ("medium", "high", "critical")
    assert 0.5 <= first.confidence <= 1.0
    # over ~85 days of 5m bars the detector stays rare: well under one finding a day
    assert len(found) < 40


@pytest.mark.shared_data
def test_price_jump_fires_on_crash_and_stays_quiet_when_calm_btc_1m(btc_1m: np.ndarray) -> None:
    crash = btc_1m[(btc_1m["ts_ms"] >= CRASH_START - 3_600_000) & (btc_1m["ts_ms"] < CRASH_END)]
    found = _run_prices(crash, PriceJumpDetector("BTC/USDT", window=60, z_threshold=6.0, min_return=0.005))
    in_crash = [f for f in found if f.ts_ms >= CRASH_START]
    assert in_crash and abs(in_crash[0].observed) > 0.02  # a >2% one-minute move in the crash hours

    calm = btc_1m[(btc_1m["ts_ms"] >= CALM_START - 3_600_000) & (btc_1m["ts_ms"] < CALM_END)]
    quiet = _run_prices(calm, PriceJumpDetector("BTC/USDT", window=60, z_threshold=6.0, min_return=0.005))
    assert len(quiet) <= 1  # 4320 calm minutes


@pytest.mark.shared_data
def test_volume_spike_fires_on_crash_and_is_rare_when_calm(btc_1m: np.ndarray) -> None:
    crash = btc_1m[(btc_1m["ts_ms"] >= CRASH_START - 3_600_000) & (btc_1m["ts_ms"] < CRASH_END)]
    found = [
        f for f in _run_volumes(crash, VolumeSpikeDetector("BTC/USDT", 60, 8.0)) if f.ts_ms >= CRASH_START
    ]
    assert found and found[0].anomaly_type == "volume_spike"
    assert found[0].magnitude > 8.0 and found[0].observed > 0
    calm = btc_1m[(btc_1m["ts_ms"] >= CALM_START - 3_600_000) & (btc_1m["ts_ms"] < CALM_END)]
    quiet = _run_volumes(calm, VolumeSpikeDetector("BTC/USDT", 60, 8.0))
    assert len(quiet) < 0.01 * len(calm)


def test_detector_finds_synthetic_jumps_without_false_alarms() -> None:
    m = SyntheticMarket(["A"], [100.0], seed=11, vol_per_step=1e-3, jump_probability=0.002, jump_size=0.02)
    prices, _, jumps = m.walk(20_000)
    det = PriceJumpDetector("A", window=100, z_threshold=6.0, min_return=0.005)
    hits = {f.ts_ms for ts, p in enumerate(prices[:, 0].tolist()) if (f := det.update(ts, p)) is not None}
    real = {int(i) for i in np.flatnonzero(jumps[:, 0]) if i > 100}
    assert len(real) > 20
    assert hits == real


def test_severity_confidence_and_actions() -> None:
    assert [severity_for(r) for r in (1.0, 1.49, 1.5, 2.49, 2.5, 3.99, 4.0, 100.0)] == [
        "low", "low", "medium", "medium", "high", "high", "critical", "critical"
    ]  # fmt: skip
    det = VolumeSpikeDetector("S", window=5, multiple=2.0)
    for i in range(5):
        assert det.update(i, 10.0) is None
    assert det.update(5, 20.0) is None  # exactly 2x is not over the multiple
    low = det.update(6, 25.0)
    assert low is not None and low.severity == "low" and low.recommended_actions == ("monitor",)
    assert low.magnitude == 2.5 and low.confidence == pytest.approx(1 - 0.5 / 1.25**2)
    crit = det.update(7, 1000.0)
    assert crit is not None and crit.severity == "critical" and crit.recommended_actions == ("halt_symbol",)
    assert crit.confidence > 0.99
    high = VolumeSpikeDetector("S", 3, 2.0)
    for i in range(3):
        high.update(i, 1.0)
    f = high.update(3, 6.0)
    assert f is not None and f.severity == "high" and f.recommended_actions == ("reduce_exposure",)


def test_price_jump_edge_cases() -> None:
    det = PriceJumpDetector("S", window=3, z_threshold=3.0, min_return=0.01)
    assert det.update(0, 100.0) is None
    for ts, p in enumerate([100.0, 100.0, 100.0], start=1):
        assert det.update(ts, p) is None
    # bad prices are ignored and do not break the series
    assert det.update(4, math.nan) is None and det.update(5, -1.0) is None
    tiny = det.update(6, 100.5)  # 0.5% < min_return: no finding even though the window is flat
    assert tiny is None
    det2 = PriceJumpDetector("S", window=3, z_threshold=3.0, min_return=0.01)
    for ts in range(4):
        det2.update(ts, 100.0)
    f = det2.update(4, 90.0)  # flat window, -10.5%: off the scale
    assert f is not None and f.severity == "critical" and f.observed == pytest.approx(math.log(0.9))
    with pytest.raises(ValueError):
        PriceJumpDetector("S", z_threshold=0.0)
    with pytest.raises(ValueError):
        VolumeSpikeDetector("S", multiple=1.0)
