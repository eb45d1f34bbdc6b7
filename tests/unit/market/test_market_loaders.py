from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavesquant.market.bars import BAR_DTYPE
from wavesquant.market.loaders import (
    QUOTE_DTYPE,
    TICK_DTYPE,
    DataFileError,
    load_bars,
    load_bars_with_report,
    load_quotes,
    load_quotes_with_report,
    load_trades,
    symbol_from_filename,
)


@pytest.mark.shared_data
def test_load_bars_matches_pandas(shared_data: Path) -> None:
    path = shared_data / "ohlcv" / "binance_BTCUSDT_5m.csv"
    bars, report = load_bars_with_report(path)
    ref = pd.read_csv(path)
    assert bars.dtype == BAR_DTYPE
    assert report.rows_read == len(ref) == report.rows_kept == len(bars)
    assert report.dropped == {}
    np.testing.assert_array_equal(bars["ts_ms"], ref["timestamp_ms"].to_numpy())
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(bars[col], ref[col].to_numpy(np.float64))
    assert (np.diff(bars["ts_ms"]) > 0).all()


@pytest.mark.shared_data
def test_load_bars_without_volume_column_gives_nan_volume(shared_data: Path) -> None:
    bars = load_bars(shared_data / "ohlcv" / "fxcm_GBPUSD_1m_bid.csv")
    assert len(bars) == 30117
    assert np.isnan(bars["volume"]).all()
    assert np.isfinite(bars["close"]).all()


def test_load_bars_drops_and_counts_bad_rows_and_sorts(tmp_path: Path) -> None:
    path = tmp_path / "x_BTCUSDT_1m.csv"
    path.write_text(
        "timestamp_ms,open,high,low,close,volume\n"
        "180000,10,11,9,10.5,1\n"
        "60000,10,11,9,10,2\n"
        "120000,nan,11,9,10,1\n"  # non-finite
        "120000,10,11,9,10,3\n"  # valid twin of a bad row: kept
        "240000,0,11,9,10,1\n"  # non-positive
        "300000,10,9,11,10,1\n"  # high < low
        "360000,10,11,9,inf,1\n"  # non-finite
        "180000,10,11,9,10,1\n"  # duplicate of a valid ts
        "420000,10,11,9,10,-1\n"  # negative volume
    )
    bars, report = load_bars_with_report(path)
    assert bars["ts_ms"].tolist() == [60000, 120000, 180000]
    assert bars["volume"].tolist() == [2.0, 3.0, 1.0]
    assert bars["close"][-1] == 10.5  # first of the duplicate pair is kept
    assert report.rows_read == 9 and report.rows_kept == 3 and report.rows_dropped == 6
    assert report.dropped == {"non_finite": 2, "non_positive": 2, "inconsistent_ohlc": 1, "duplicate_ts": 1}


def test_missing_file_and_wrong_columns_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"nope\.csv: file not found"):
        load_bars(tmp_path / "nope.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("time,price\n1,2\n")
    with pytest.raises(DataFileError) as info:
        load_bars(wrong)
    msg = str(info.value)
    assert "wrong.csv" in msg and "timestamp_ms" in msg and "\n" not in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(DataFileError, match="missing column timestamp_ms or timestamp"):
        load_trades(wrong)
    no_price = tmp_path / "no_price.csv"
    no_price.write_text("timestamp_ms,size\n1,2\n")
    with pytest.raises(DataFileError, match=r"no_price\.csv: missing column price"):
        load_trades(no_price)


@pytest.mark.shared_data
def test_load_trades_sides_and_order(shared_data: Path) -> None:
    path = shared_data / "ticks" / "binance_BTCUSDT_trades_2021-01-08.csv"
    ticks = load_trades(path)
    ref = pd.read_csv(path)
    assert ticks.dtype == TICK_DTYPE and len(ticks) == len(ref)
    assert (np.diff(ticks["ts_ms"]) >= 0).all()
    expected_side = np.where(ref["side"] == "buy", 1, -1)
    np.testing.assert_array_equal(ticks["side"], expected_side)
    # taker sold exactly when the buyer was the maker
    np.testing.assert_array_equal(ticks["side"] == -1, ref["is_buyer_maker"].to_numpy(bool))
    np.testing.assert_array_equal(ticks["price"], ref["price"].to_numpy())
    np.testing.assert_array_equal(ticks["size"], ref["size"].to_numpy())


@pytest.mark.shared_data
def test_load_trades_tardis_microsecond_timestamps(shared_data: Path) -> None:
    ticks = load_trades(shared_data / "ticks" / "tardis_samples" / "bitmex_trades_XBTUSD.csv")
    assert len(ticks) == 10
    assert ticks["ts_ms"][0] == 1583020803145  # 1583020803145000 us
    assert ticks["size"][0] == 2152.0 and ticks["side"][0] == -1


def test_load_trades_unknown_side_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "timestamp_ms,side,price,size\n2,buy,10,1\n1,,10,1\n3,SELL,10,1\n4,buy,-1,1\n5,buy,10,0\n"
    )
    ticks = load_trades(path)
    assert ticks["ts_ms"].tolist() == [1, 2, 3]
    assert ticks["side"].tolist() == [0, 1, -1]


@pytest.mark.shared_data
def test_load_quotes_with_and_without_sizes(shared_data: Path) -> None:
    q = load_quotes(shared_data / "ticks" / "binance_BTCUSDT_quotes_2021-01-08.csv")
    assert q.dtype == QUOTE_DTYPE and len(q) == 451
    assert (q["bid"] <= q["ask"]).all() and np.isfinite(q["bid_size"]).all()
    fx, report = load_quotes_with_report(shared_data / "ticks" / "truefx_USDJPY_quotes.csv")
    assert len(fx) == 1000 and report.rows_dropped == 0
    assert np.isnan(fx["bid_size"]).all() and np.isnan(fx["ask_size"]).all()
    assert fx["bid"][0] == 86.655 and fx["ask"][0] == 86.728


def test_load_quotes_drops_crossed(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("timestamp_ms,bid,ask\n1,10,11\n2,11,10\n3,10,10\n")
    q, report = load_quotes_with_report(path)
    assert q["ts_ms"].tolist() == [1, 3]
    assert report.dropped == {"crossed": 1}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("binance_BTCUSDT_1m.csv", ("binance", "BTC/USDT", "1m")),
        ("binance_ETHBTC_5m.csv", ("binance", "ETH/BTC", "5m")),
        ("bittrex_DASHBTC_5m.csv", ("bittrex", "DASH/BTC", "5m")),
        ("binance_futures_XRPUSDT-PERP_5m.csv", ("binance_futures", "XRP/USDT:USDT", "5m")),
        ("binance_futures_XRPUSDT-PERP_mark_1h.csv", ("binance_futures", "XRP/USDT:USDT", "1h")),
        ("ftx_BTC-PERP_1m.csv", ("ftx", "BTC/USD:USD", "1m")),
        ("fxcm_GBPUSD_1m_bid.csv", ("fxcm", "GBP/USD", "1m")),
        ("truefx_USDJPY_quotes.csv", ("truefx", "USD/JPY", None)),
        ("binance_BTCUSDT_trades_2021-01-08.csv", ("binance", "BTC/USDT", None)),
        ("bittrex_ETHBTC_30m.csv", ("bittrex", "ETH/BTC", "30m")),
    ],
)
def test_symbol_from_filename(name: str, expected: tuple[str, str, str | None]) -> None:
    assert symbol_from_filename(name) == expected


def test_symbol_from_filename_rejects_unknown() -> None:
    with pytest.raises(ValueError, match=r"ORCL_daily\.csv"):
        symbol_from_filename("ORCL_daily.csv")
