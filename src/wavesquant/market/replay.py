"""Replay of recorded files in event-time order at a chosen speed (rows per second of wall or simulated time)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ReplaySeries:
    exchange: str
    symbol: str
    timeframe: str | None  # bars: the file's timeframe; ticks: None
    rows: np.ndarray  # BAR_DTYPE or TICK_DTYPE / QUOTE_DTYPE, sorted by ts_ms


class ReplayCursor:
    """Merges several series by timestamp and hands out the next rows in order.

    `take(n)` returns (series index, row) pairs; ties keep file order. With `loop=True` the replay restarts
    from the beginning when it runs out (timestamps then repeat: consumers that need monotonic event time
    should not loop)."""

    def __init__(self, series: list[ReplaySeries], loop: bool = False) -> None:
        if not series:
            raise ValueError("replay needs at least one series")
        self.series = series
        self.loop = loop
        ts = np.concatenate([s.rows["ts_ms"] for s in series])
        which = np.concatenate([np.full(len(s.rows), i, dtype=np.int32) for i, s in enumerate(series)])
        pos = np.concatenate([np.arange(len(s.rows), dtype=np.int64) for s in series])
        order = np.lexsort((which, ts))
        self._which = which[order]
        self._pos = pos[order]
        self._next = 0
        self.passes = 0

    def __len__(self) -> int:
        return len(self._which)

    @property
    def finished(self) -> bool:
        return not self.loop and self._next >= len(self._which)

    @property
    def position(self) -> int:
        return self._next

    def take(self, n: int) -> list[tuple[int, np.void]]:
        out: list[tuple[int, np.void]] = []
        while n > 0 and len(self._which):
            if self._next >= len(self._which):
                if not self.loop:
                    break
                self._next = 0
                self.passes += 1
            end = min(self._next + n, len(self._which))
            for w, p in zip(self._which[self._next:end].tolist(), self._pos[self._next:end].tolist()):
                out.append((w, self.series[w].rows[p]))
            n -= end - self._next
            self._next = end
        return out


class RateGate:
    """How many rows are due at `per_second` (carries the fractional remainder). Time the caller did not
    ask for (a paused agent, a stalled loop) is not made up later: at most `max_catchup_s` of it counts, so
    a replay resumes at its rate instead of bursting through the rows it "missed"."""

    def __init__(self, per_second: float, max_catchup_s: float = 0.25) -> None:
        self.per_second = per_second
        self.max_catchup_s = max_catchup_s
        self._credit = 0.0
        self._last_ns: int | None = None

    def due(self, now_ns: int, cap: int = 100_000) -> int:
        if self._last_ns is None:
            self._last_ns = now_ns
            return 0
        elapsed_s = min((now_ns - self._last_ns) / 1e9, self.max_catchup_s)
        self._last_ns = now_ns
        self._credit = min(self._credit + max(elapsed_s, 0.0) * self.per_second, float(cap))
        n = int(self._credit)
        self._credit -= n
        return n
