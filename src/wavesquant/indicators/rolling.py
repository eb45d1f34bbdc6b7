"""Rolling window statistics: an incremental `RollingStats` and a vectorised `rolling_zscore`.

Conventions follow pandas: std is the sample std (ddof=1); `zscore` of the latest value is taken against the
window that includes it, like `(s - s.rolling(n).mean()) / s.rolling(n).std()`. `score(x)` instead scores a
new value against the current window without adding it (what a detector wants: is x unusual given the past?).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class RollingStats:
    """Stores the newest n values in a preallocated array; statistics are computed exactly with numpy on
    demand (O(n) each, no running-sum drift)."""

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"window must be >= 2, got {n}")
        self.n = n
        self._buf = np.empty(n, dtype=np.float64)
        self._head = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def is_warm(self) -> bool:
        return self._count == self.n

    def update(self, x: float) -> None:
        self._buf[self._head] = x
        self._head = (self._head + 1) % self.n
        self._count = min(self._count + 1, self.n)

    def values(self) -> np.ndarray:
        """The window, oldest first (a copy)."""
        if self._count < self.n:
            return self._buf[: self._count].copy()
        return np.roll(self._buf, -self._head)

    def _window(self) -> np.ndarray:
        return self._buf if self._count == self.n else self._buf[: self._count]

    @property
    def latest(self) -> float | None:
        return float(self._buf[(self._head - 1) % self.n]) if self._count else None

    @property
    def mean(self) -> float | None:
        return float(self._window().mean()) if self._count else None

    @property
    def std(self) -> float | None:
        return float(self._window().std(ddof=1)) if self._count >= 2 else None

    @property
    def median(self) -> float | None:
        return float(np.median(self._window())) if self._count else None

    @property
    def zscore(self) -> float | None:
        """z of the latest value against the full window including it; None until warm or when std is 0."""
        if not self.is_warm:
            return None
        std = self.std
        if not std:
            return None
        return float((self._buf[(self._head - 1) % self.n] - self._buf.mean()) / std)

    def score(self, x: float) -> float | None:
        """z of `x` against the current (warm) window, without adding it. ±inf when the window is constant and
        x differs from it; None until warm."""
        if not self.is_warm:
            return None
        mean = float(self._buf.mean())
        std = float(self._buf.std(ddof=1))
        diff = x - mean
        if std > 0:
            return diff / std
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def rolling_zscore(arr: np.ndarray, n: int) -> np.ndarray:
    """z of each value against the newest n values including it (ddof=1); NaN for the first n-1 and where the
    window is constant."""
    if n < 2:
        raise ValueError(f"window must be >= 2, got {n}")
    x = np.asarray(arr, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        win = sliding_window_view(x, n)
        std = win.std(axis=1, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (x[n - 1 :] - win.mean(axis=1)) / std
        out[n - 1 :] = np.where(std > 0, z, np.nan)
    return out
