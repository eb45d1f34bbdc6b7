"""Loaders for the recorded CSV formats of shared/data (bars, trades, top-of-book quotes).

Every loader returns a numpy structured array sorted by timestamp (stable, so same-millisecond rows keep file
order). Rows that cannot be traded on (non-finite or non-positive prices, crossed quotes, ...) are dropped and
counted in a `LoadReport`; the `*_with_report` functions return it next to the array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wavesquant.market.bars import BAR_DTYPE

TICK_DTYPE = np.dtype([("ts_ms", np.int64), ("price", np.float64), ("size", np.float64), ("side", np.int8)])
QUOTE_DTYPE = np.dtype(
    [
        ("ts_ms", np.int64),
        ("bid", np.float64),
        ("ask", np.float64),
        ("bid_size", np.float64),
        ("ask_size", np.float64),
    ]
)

# Longest first so "USDT" wins over "USD".
KNOWN_QUOTES: tuple[str, ...] = (
    "USDT", "BUSD", "USDC", "USD", "BTC", "ETH", "BNB", "EUR", "GBP", "JPY", "CHF", "AUD", "TRY",
)  # fmt: skip


class DataFileError(ValueError):
    """A data file is missing or not in an expected format. The message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    path: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped for it

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept


def _read_csv(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    try:
        return pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFileError(f"{p}: not a readable CSV ({first})") from exc


def _optional(df: pd.DataFrame, *candidates: str) -> str | None:
    """The first of `candidates` that is a column of `df`."""
    return next((name for name in candidates if name in df.columns), None)


def _require(df: pd.DataFrame, path: str | Path, *candidates: str) -> str:
    name = _optional(df, *candidates)
    if name is None:
        raise DataFileError(
            f"{path}: missing column {' or '.join(candidates)} (has: {','.join(map(str, df.columns))})"
        )
    return name


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    """Column as float64; unparseable cells become NaN (and are then dropped as non-finite)."""
    values: np.ndarray = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    return values


def _timestamps_ms(df: pd.DataFrame, path: str | Path) -> np.ndarray:
    """Epoch ms from `timestamp_ms`, or from Tardis-style `timestamp` in microseconds."""
    col = _require(df, path, "timestamp_ms", "timestamp")
    raw = pd.to_numeric(df[col], errors="coerce")
    if raw.isna().any():
        bad = int(raw.isna().to_numpy().argmax())
        raise DataFileError(f"{path}: non-numeric {col} at data row {bad + 1}")
    ts: np.ndarray = raw.to_numpy(dtype=np.int64)
    return ts if col == "timestamp_ms" else ts // 1_000


def _finish(
    arr: np.ndarray, reasons: dict[str, np.ndarray], path: str | Path
) -> tuple[np.ndarray, LoadReport]:
    """Drop rows failing any reason (counted under the first one they fail), sort stably by ts_ms."""
    dropped: dict[str, int] = {}
    already = np.zeros(len(arr), dtype=bool)
    for reason, bad in reasons.items():
        n = int(np.count_nonzero(bad & ~already))
        if n:
            dropped[reason] = n
        already |= bad
    out = arr[~already]
    out = out[np.argsort(out["ts_ms"], kind="stable")]
    return out, LoadReport(str(path), len(arr), len(out), dropped)


def load_bars_with_report(path: str | Path) -> tuple[np.ndarray, LoadReport]:
    """BAR_DTYPE array from `timestamp_ms,open,high,low,close[,volume]`; volume is NaN where the file has none
    (e.g. FXCM bid/ask or mark-price files). Duplicate timestamps keep the first row."""
    df = _read_csv(path)
    for col in ("timestamp_ms", "open", "high", "low", "close"):
        _require(df, path, col)
    arr = np.empty(len(df), dtype=BAR_DTYPE)
    arr["ts_ms"] = _timestamps_ms(df, path)
    for col in ("open", "high", "low", "close"):
        arr[col] = _numeric(df, col)
    arr["volume"] = _numeric(df, "volume") if "volume" in df.columns else np.nan
    o, h, lo, c, v = arr["open"], arr["high"], arr["low"], arr["close"], arr["volume"]
    px = np.stack([o, h, lo, c])
    non_finite = ~np.isfinite(px).all(axis=0) | np.isinf(v)
    with np.errstate(invalid="ignore"):
        non_positive = (px <= 0).any(axis=0) | (v < 0)
        inconsistent = (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (h < lo)
    bad = non_finite | non_positive | inconsistent
    # Duplicates among the otherwise valid rows only, so a bad first row does not take a good twin with it.
    valid_idx = np.flatnonzero(~bad)
    order = valid_idx[np.argsort(arr["ts_ms"][valid_idx], kind="stable")]
    duplicate = np.zeros(len(arr), dtype=bool)
    duplicate[order[1:]] = arr["ts_ms"][order][1:] == arr["ts_ms"][order][:-1]
    reasons = {
        "non_finite": non_finite,
        "non_positive": non_positive,
        "inconsistent_ohlc": inconsistent,
        "duplicate_ts": duplicate,
    }
    return _finish(arr, reasons, path)


def load_bars(path: str | Path) -> np.ndarray:
    return load_bars_with_report(path)[0]


_SIDES = {"buy": 1, "b": 1, "sell": -1, "s": -1}


def load_trades_with_report(path: str | Path) -> tuple[np.ndarray, LoadReport]:
    """TICK_DTYPE array from trade files (`timestamp_ms|timestamp, [side,] price, size|amount`).

    side: +1 buy, -1 sell (taker side), 0 when absent or unrecognised."""
    df = _read_csv(path)
    ts = _timestamps_ms(df, path)
    price_col = _require(df, path, "price")
    size_col = _require(df, path, "size", "amount")
    side_col = _optional(df, "side")
    arr = np.empty(len(df), dtype=TICK_DTYPE)
    arr["ts_ms"] = ts
    arr["price"] = _numeric(df, price_col)
    arr["size"] = _numeric(df, size_col)
    if side_col is None:
        arr["side"] = 0
    else:
        arr["side"] = df[side_col].astype(str).str.strip().str.lower().map(_SIDES).fillna(0).to_numpy(np.int8)
    p, s = arr["price"], arr["size"]
    with np.errstate(invalid="ignore"):
        reasons = {
            "non_finite": ~np.isfinite(p) | ~np.isfinite(s),
            "non_positive": (p <= 0) | (s <= 0),
        }
    return _finish(arr, reasons, path)


def load_trades(path: str | Path) -> np.ndarray:
    return load_trades_with_report(path)[0]


def load_quotes_with_report(path: str | Path) -> tuple[np.ndarray, LoadReport]:
    """QUOTE_DTYPE array from top-of-book files (`bid|bid_price, ask|ask_price[, bid_size|bid_amount, ...]`).

    Sizes are NaN when the file has none (TrueFX). Crossed quotes (bid > ask) are dropped; locked (bid == ask)
    quotes are kept."""
    df = _read_csv(path)
    ts = _timestamps_ms(df, path)
    bid_col = _require(df, path, "bid", "bid_price")
    ask_col = _require(df, path, "ask", "ask_price")
    bsz_col = _optional(df, "bid_size", "bid_amount")
    asz_col = _optional(df, "ask_size", "ask_amount")
    arr = np.empty(len(df), dtype=QUOTE_DTYPE)
    arr["ts_ms"] = ts
    arr["bid"] = _numeric(df, bid_col)
    arr["ask"] = _numeric(df, ask_col)
    arr["bid_size"] = _numeric(df, bsz_col) if bsz_col else np.nan
    arr["ask_size"] = _numeric(df, asz_col) if asz_col else np.nan
    b, a, bs, as_ = arr["bid"], arr["ask"], arr["bid_size"], arr["ask_size"]
    with np.errstate(invalid="ignore"):
        reasons = {
            "non_finite": ~np.isfinite(b) | ~np.isfinite(a) | np.isinf(bs) | np.isinf(as_),
            "non_positive": (b <= 0) | (a <= 0) | (bs < 0) | (as_ < 0),
            "crossed": b > a,
        }
    return _finish(arr, reasons, path)


def load_quotes(path: str | Path) -> np.ndarray:
    return load_quotes_with_report(path)[0]


_DATA_KIND_TOKENS = frozenset({"trades", "quotes", "book", "snapshot", "ohlcv"})
_TIMEFRAME_TOKEN = re.compile(r"^[1-9][0-9]*[smhdw]$")
_PAIR_TOKEN = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)?(-PERP)?$")


def _split_pair(pair: str) -> tuple[str, str] | None:
    if "-" in pair:
        base, _, quote = pair.partition("-")
        return (base, quote) if base and quote else None
    for quote in KNOWN_QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return None


def symbol_from_filename(name: str | Path) -> tuple[str, str, str | None]:
    """Best-effort (venue, ccxt unified symbol, timeframe or None) from a data file name.

    `binance_BTCUSDT_1m.csv` -> ("binance", "BTC/USDT", "1m"); `binance_futures_XRPUSDT-PERP_5m.csv` ->
    ("binance_futures", "XRP/USDT:USDT", "5m"); `ftx_BTC-PERP_1m.csv` -> ("ftx", "BTC/USD:USD", "1m") (a perp
    without a quote currency is USD-margined); `truefx_USDJPY_quotes.csv` -> ("truefx", "USD/JPY", None).
    Raises ValueError when no token looks like a pair of a known quote currency."""
    stem = Path(name).name.split(".", 1)[0]
    tokens = stem.split("_")
    for i, token in enumerate(tokens):
        if i == 0 or not _PAIR_TOKEN.match(token):
            continue
        perp = token.endswith("-PERP")
        pair = token[: -len("-PERP")] if perp else token
        if perp and pair.isalnum() and _split_pair(pair) is None:
            base, quote = pair, "USD"
        else:
            split = _split_pair(pair)
            if split is None:
                continue
            base, quote = split
        symbol = f"{base}/{quote}:{quote}" if perp else f"{base}/{quote}"
        timeframe = next((t for t in tokens[i + 1 :] if _TIMEFRAME_TOKEN.match(t)), None)
        venue = "_".join(t for t in tokens[:i] if t not in _DATA_KIND_TOKENS and not t.isdigit())  # "_25": depth
        return venue, symbol, timeframe
    raise ValueError(f"cannot find a venue and pair in file name {Path(name).name!r}")
