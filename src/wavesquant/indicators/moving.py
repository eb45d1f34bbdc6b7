"""Simple and exponential moving averages: incremental classes and vectorised array functions.

The incremental and vectorised forms agree to floating-point precision:
- SMA(n): mean of the newest n values; None/NaN until n values were seen (pandas `rolling(n).mean()`).
- EMA(n): alpha = 2/(n+1), seeded with the first value, y_t = y_{t-1} + alpha*(x_t - y_{t-1}); reported once n
  values were seen (pandas `ewm(span=n, adjust=False, min_periods=n).mean()`).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _check_period(n: int) -> None:
    if n < 1:
        raise ValueError(f"period must be >= 1, got {n}")


class SMA:
    def __init__(self, n: int) -> None:
        _check_period(n)
        self.n = n
        self._window: deque[float] = deque(maxlen=n)
        self._sum = 0.0
        self._since_resum = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if len(self._window) == self.n:
            self._sum -= self._window[0]
        self._window.append(x)
        self._sum += x
        self._since_resum += 1
        if self._since_resum >= self.n:  # bound rounding drift of the running sum
            self._sum = math.fsum(self._window)
            self._since_resum = 0
        self.value = self._sum / self.n if len(self._window) == self.n else None
        return self.value


class EMA:
    def __init__(self, n: int) -> None:
        _check_period(n)
        self.n = n
        self.alpha = 2.0 / (n + 1)
        self._state: float | None = None
        self._count = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self._state = x if self._state is None else self._state + self.alpha * (x - self._state)
        self._count += 1
        self.value = self._state if self._count >= self.n else None
        return self.value


def sma(arr: np.ndarray, n: int) -> np.ndarray:
    """Rolling mean, same length as `arr`, NaN for the first n-1 entries."""
    _check_period(n)
    x = np.asarray(arr, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        out[n - 1 :] = sliding_window_view(x, n).mean(axis=1)
    return out


def _ema_raw(x: np.ndarray, alpha: float) -> np.ndarray:
    """y_0 = x_0, y_t = d*y_{t-1} + alpha*x_t with d = 1-alpha, in closed form per block:
    y_{s+j} = d^(j+1) y_{s-1} + alpha * d^j * sum_{i<=j} x_{s+i} d^-i. Blocks are short enough that d^-i
    neither overflows nor loses precision, so the only Python loop is over blocks."""
    d = 1.0 - alpha
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    if d == 0.0:
        return x.copy()
    block = int(min(512, max(1, math.floor(200.0 / -math.log10(d)))))  # d^-block <= 1e200
    j = np.arange(block, dtype=np.float64)
    pow_d = d**j  # d^j
    inv_pow_d = d**-j  # d^-j
    prev = x[0]  # so that y_0 = d*x_0 + alpha*x_0 = x_0
    for start in range(0, len(x), block):
        seg = x[start : start + block]
        m = len(seg)
        acc = np.cumsum(seg * inv_pow_d[:m])
        out[start : start + m] = pow_d[:m] * (d * prev + alpha * acc)
        prev = out[start + m - 1]
    return out


def ema(arr: np.ndarray, n: int) -> np.ndarray:
    """EMA with span n (see module doc), same length as `arr`, NaN for the first n-1 entries."""
    _check_period(n)
    x = np.asarray(arr, dtype=np.float64)
    out = _ema_raw(x, 2.0 / (n + 1))
    out[: n - 1] = np.nan
    return out
