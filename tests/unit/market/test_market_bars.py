from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wavesquant.market.bars import BarAggregator, bars_from_array, ms_to_timeframe, timeframe_to_ms
from wavesquant.market.loaders import load_bars, load_trades


def test_timeframe_round_trip() -> None:
    assert timeframe_to_ms("1m") == 60_000
    assert timeframe_to_ms("5m") == 300_000
    assert timeframe_to_ms("1h") == 3_600_000
    assert timeframe_to_ms("1d") == 86_400_000
    assert timeframe_to_ms("15s") == 15_000
    assert ms_to_timeframe(300_000) == "5m"
    assert ms_to_timeframe(7_200_000) == "2h"
    assert ms_to_timeframe(90_000) == "90s"
    for bad in ("", "m", "0m", "1M", "1y", "1.5h"):
        with pytest.raises(ValueError):
            timeframe_to_ms(bad)


def test_aggregator_builds_and_closes_bars() -> None:
    agg = BarAggregator("1m")
    assert agg.update("A", 60_000, 10.0, 1.0) == []
    assert agg.update("A", 70_000, 12.0, 2.0) == []
    assert agg.update("B", 61_000, 100.0, 5.0) == []
    assert agg.update("A", 100_000, 9.0, 1.0) == []
    (bar,) = agg.update("A", 185_000, 11.0, 1.0)  # skips the 120000 bucket: no empty bar
    assert (bar.symbol, bar.timeframe, bar.open_ts_ms) == ("A", "1m", 60_000)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (10.0, 12.0, 9.0, 9.0, 4.0)
    assert bar.close_ts_ms == 120_000
    # late tick for the closed bar: dropped and counted
    assert agg.update("A", 119_999, 50.0, 1.0) == []
    assert agg.late_ticks == 1
    # timer close: B's bar ended at 120000, A's open bar (180000) has not
    closed = agg.close_due(120_000)
    assert [(b.symbol, b.open_ts_ms, b.close) for b in closed] == [("B", 60_000, 100.0)]
    assert agg.update("B", 100_000, 1.0, 1.0) == [] and agg.late_ticks == 2
    assert agg.update("A", 190_000, float("nan"), 1.0) == [] and agg.update("A", 190_000, 5.0, -1.0) == []
    assert agg.bad_ticks == 2
    (last,) = agg.flush()
    assert (last.symbol, last.open_ts_ms, last.close, last.volume) == ("A", 180_000, 11.0, 1.0)
    assert agg.flush() == []


@pytest.mark.shared_data
def test_aggregated_trades_reproduce_recorded_binance_candles(shared_data: Path) -> None:
    """binance_XRPETH_trades.csv covers the same window as binance_XRPETH_1m.csv: every candle with trades
    must be rebuilt exactly; candles missing from our output are the recorded zero-volume ones."""
    trades = load_trades(shared_data / "ticks" / "binance_XRPETH_trades.csv")
    candles = load_bars(shared_data / "ohlcv" / "binance_XRPETH_1m.csv")
    agg = BarAggregator(60_000)
    built = agg.update_batch("XRP/ETH", trades["ts_ms"], trades["price"], trades["size"]) + agg.flush()
    assert agg.late_ticks == 0
    by_ts = {b.open_ts_ms: b for b in built}
    traded = candles[candles["volume"] > 0]
    assert len(built) == len(traded) > 2000
    for row in traded:
        b = by_ts[int(row["ts_ms"])]
        assert (b.open, b.high, b.low, b.close) == (row["open"], row["high"], row["low"], row["close"])
        assert b.volume == pytest.approx(row["volume"], rel=1e-9)


def test_bars_from_array() -> None:
    arr = np.zeros(
        2,
        dtype=[
            ("ts_ms", "i8"),
            ("open", "f8"),
            ("high", "f8"),
            ("low", "f8"),
            ("close", "f8"),
            ("volume", "f8"),
        ],
    )
    arr["ts_ms"] = [0, 60_000]
    arr["close"] = [1.5, 2.5]
    bars = bars_from_array(arr, "X/Y", "1m")
    assert [(b.open_ts_ms, b.close, b.symbol) for b in bars] == [(0, 1.5, "X/Y"), (60_000, 2.5, "X/Y")]
    assert isinstance(bars[0].open_ts_ms, int) and isinstance(bars[0].close, float)
