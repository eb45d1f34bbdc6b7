"""Preallocated tick ring buffers for the HFT path, and vectorised cross-sections over many of them.

Each row of a ring is the full market state after one event: `price` is the last trade price, `bid`/`ask` and
their sizes the current top of book, `size` the traded size of that event (0 for a quote-only event). A batch
may carry trades only, quotes only or both: missing fields (or NaN cells) are forward-filled from the previous
row, so `latest()` is always the newest complete state. All of it is numpy; no Python loop per tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RING_DTYPE = np.dtype(
    [
        ("ts_ms", np.int64),
        ("price", np.float64),
        ("size", np.float64),
        ("bid", np.float64),
        ("ask", np.float64),
        ("bid_size", np.float64),
        ("ask_size", np.float64),
    ]
)
_FILLED = ("price", "bid", "ask", "bid_size", "ask_size")


@dataclass(frozen=True, slots=True)
class TopOfBook:
    ts_ms: int
    price: float
    bid: float
    ask: float
    bid_size: float
    ask_size: float


def _empty_rows(n: int) -> np.ndarray:
    rows = np.empty(n, dtype=RING_DTYPE)
    rows["ts_ms"] = 0
    for name in RING_DTYPE.names[1:]:  # type: ignore[index]
        rows[name] = np.nan
    return rows


def _ffill(col: np.ndarray, prev: float) -> np.ndarray:
    """Forward-fill NaNs in `col`, seeded with `prev` (vectorised)."""
    vals = np.concatenate(([prev], col))
    idx = np.where(np.isnan(vals), 0, np.arange(len(vals)))
    np.maximum.accumulate(idx, out=idx)
    filled: np.ndarray = vals[idx][1:]
    return filled


class TickRing:
    """Fixed-capacity ring of RING_DTYPE rows for one (venue, symbol)."""

    def __init__(self, capacity: int, venue: str = "", symbol: str = "") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.venue = venue
        self.symbol = symbol
        self._buf = _empty_rows(capacity)
        self._head = 0  # next write position
        self._count = 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def __len__(self) -> int:
        return self._count

    def append_batch(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> None:
        """Append events in order. `batch` is a structured array or a mapping of equal-length columns with
        `ts_ms` and any subset of the other RING_DTYPE fields (e.g. a TICK_DTYPE or QUOTE_DTYPE array)."""
        names = batch.dtype.names if isinstance(batch, np.ndarray) else tuple(batch.keys())
        if not names or "ts_ms" not in names:
            raise ValueError("a tick batch needs a ts_ms column")
        n = len(batch["ts_ms"])
        if n == 0:
            return
        rows = _empty_rows(n)
        for name in RING_DTYPE.names:  # type: ignore[union-attr]
            if name in names:
                rows[name] = batch[name]
        prev = self._buf[(self._head - 1) % self.capacity] if self._count else None
        for name in _FILLED:
            rows[name] = _ffill(rows[name], float(prev[name]) if prev is not None else np.nan)
        np.nan_to_num(rows["size"], copy=False, nan=0.0)
        if n > self.capacity:
            rows = rows[-self.capacity :]
            n = self.capacity
        idx = (self._head + np.arange(n)) % self.capacity
        self._buf[idx] = rows
        self._head = int((self._head + n) % self.capacity)
        self._count = min(self._count + n, self.capacity)

    def last(self, n: int) -> np.ndarray:
        """A copy of the newest min(n, len) rows, oldest first."""
        n = max(0, min(n, self._count))
        idx = (self._head - n + np.arange(n)) % self.capacity
        return self._buf[idx]

    def latest(self) -> TopOfBook | None:
        if not self._count:
            return None
        r = self._buf[(self._head - 1) % self.capacity]
        return TopOfBook(
            int(r["ts_ms"]),
            float(r["price"]),
            float(r["bid"]),
            float(r["ask"]),
            float(r["bid_size"]),
            float(r["ask_size"]),
        )

    def latest_row(self) -> np.ndarray:
        """The newest row as a length-1 array (all NaN, ts 0, when empty)."""
        if not self._count:
            return _empty_rows(1)
        row: np.ndarray = self._buf[[(self._head - 1) % self.capacity]]
        return row


def mid(rows: np.ndarray) -> np.ndarray:
    m: np.ndarray = (rows["bid"] + rows["ask"]) * 0.5
    return m


def microprice(rows: np.ndarray) -> np.ndarray:
    """(bid*ask_size + ask*bid_size) / (bid_size + ask_size); the mid where sizes are unknown or both zero."""
    bs, as_ = rows["bid_size"], rows["ask_size"]
    total = bs + as_
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = (rows["bid"] * as_ + rows["ask"] * bs) / total
    ok = np.isfinite(mp) & (total > 0)
    return np.where(ok, mp, mid(rows))


def reference_price(rows: np.ndarray) -> np.ndarray:
    """Mid where a two-sided book is known, else the last trade price."""
    m = mid(rows)
    return np.where(np.isfinite(m), m, rows["price"])


class RingSet:
    """TickRings keyed by (venue, symbol), in registration order; cross-sections return one value per key."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rings: dict[tuple[str, str], TickRing] = {}

    def ring(self, venue: str, symbol: str) -> TickRing:
        """The ring of (venue, symbol), created on first use."""
        key = (venue, symbol)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = TickRing(self.capacity, venue, symbol)
        return ring

    def append_batch(self, venue: str, symbol: str, batch: np.ndarray | Mapping[str, np.ndarray]) -> None:
        self.ring(venue, symbol).append_batch(batch)

    def keys(self) -> list[tuple[str, str]]:
        return list(self._rings)

    def __len__(self) -> int:
        return len(self._rings)

    def latest_rows(self) -> np.ndarray:
        """RING_DTYPE array: the newest row of every ring, in `keys()` order."""
        if not self._rings:
            return _empty_rows(0)
        return np.concatenate([r.latest_row() for r in self._rings.values()])

    def mid(self) -> np.ndarray:
        return mid(self.latest_rows())

    def microprice(self) -> np.ndarray:
        return microprice(self.latest_rows())

    def volatility(self, window: int) -> np.ndarray:
        """Per key: sample std (ddof=1) of the log changes of the reference price over its newest `window`
        events (per-event, not annualised). NaN where fewer than two valid changes exist."""
        if window < 2:
            raise ValueError(f"volatility window must be >= 2, got {window}")
        k = len(self._rings)
        prices = np.full((k, window + 1), np.nan)
        for i, r in enumerate(self._rings.values()):
            rows = r.last(window + 1)
            if len(rows):
                prices[i, window + 1 - len(rows) :] = reference_price(rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            rets = np.diff(np.log(prices), axis=1)
        valid = np.isfinite(rets)
        cnt = valid.sum(axis=1)
        r0 = np.where(valid, rets, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = r0.sum(axis=1) / cnt
            dev = np.where(valid, rets - mean[:, None], 0.0)
            var = (dev * dev).sum(axis=1) / (cnt - 1)
        return np.where(cnt >= 2, np.sqrt(var), np.nan)
