"""Order-book snapshots from recorded files (Tardis `book_snapshot_N` CSV: asks[i].price, asks[i].amount, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavesquant.market.loaders import DataFileError, _read_csv

_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    ts_ms: int
    bids: np.ndarray  # (n, 2) price, size; best (highest) first
    asks: np.ndarray  # (n, 2) price, size; best (lowest) first


def load_book_snapshots(path: str | Path) -> list[BookSnapshot]:
    """Every snapshot of the file in time order. Empty or non-positive levels are dropped; a snapshot whose
    best bid is not below its best ask is dropped (a crossed book is bad data, not a market)."""
    df = _read_csv(path)
    levels: dict[tuple[str, int], dict[str, str]] = {}
    for col in df.columns:
        m = _LEVEL.match(str(col))
        if m:
            levels.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = str(col)
    if "timestamp" not in df.columns or not levels:
        raise DataFileError(f"{path}: not a book snapshot file (needs timestamp and asks[i].price/amount columns)")
    ts = df["timestamp"].to_numpy(dtype=np.int64) // 1000  # Tardis timestamps are microseconds
    sides = {}
    for side in ("bids", "asks"):
        depth = sorted(i for s, i in levels if s == side)
        prices = df[[levels[(side, i)]["price"] for i in depth]].to_numpy(dtype=np.float64)
        sizes = df[[levels[(side, i)]["amount"] for i in depth]].to_numpy(dtype=np.float64)
        sides[side] = np.stack([prices, sizes], axis=2)  # (rows, depth, 2)
    out = []
    for row in np.argsort(ts, kind="stable"):
        bids, asks = (_clean(sides[s][row], descending=s == "bids") for s in ("bids", "asks"))
        if len(bids) and len(asks) and bids[0, 0] < asks[0, 0]:
            out.append(BookSnapshot(int(ts[row]), bids, asks))
    return out


def _clean(levels: np.ndarray, descending: bool) -> np.ndarray:
    ok = np.isfinite(levels).all(axis=1) & (levels[:, 0] > 0) & (levels[:, 1] > 0)
    kept = levels[ok]
    order = np.argsort(-kept[:, 0] if descending else kept[:, 0], kind="stable")
    return np.ascontiguousarray(kept[order])
