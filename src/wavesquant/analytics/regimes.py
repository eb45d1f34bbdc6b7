"""Bar-window measures for market conditions: supply/demand imbalance, volatility regime shifts, stuck prices."""

from __future__ import annotations

import numpy as np


def volume_imbalance(opens: np.ndarray, closes: np.ndarray, volumes: np.ndarray) -> float:
    """Signed share of volume traded in up bars minus down bars, in [-1, 1] (0 when there is no volume)."""
    total = float(np.sum(volumes))
    if total <= 0:
        return 0.0
    return float(np.sum(np.sign(closes - opens) * volumes) / total)


def volatility_ratio(closes: np.ndarray, short: int, long: int) -> float | None:
    """Realised volatility of the last `short` log-returns over that of the last `long` (None without enough
    data or with a flat long window). Above ~2 the market has entered a more volatile regime."""
    if short < 2 or long <= short or len(closes) < long + 1:
        return None
    r = np.diff(np.log(closes[-(long + 1):]))
    long_vol = float(np.std(r))
    if long_vol == 0.0:
        return None
    return float(np.std(r[-short:]) / long_vol)


def stuck_price(closes: np.ndarray, volumes: np.ndarray, n: int) -> bool:
    """True when the last `n` closes are all equal while volume keeps trading: a frozen or broken feed."""
    if len(closes) < n:
        return False
    tail = closes[-n:]
    return bool(np.all(tail == tail[0]) and np.sum(volumes[-n:]) > 0)


def spread_zscore(a: np.ndarray, b: np.ndarray, window: int) -> tuple[float, float] | None:
    """z-score of the latest log-price spread log(a) - beta*log(b) over `window` points, with beta fitted by
    least squares on that window. Returns (z, beta) or None without enough data or with a flat spread."""
    if len(a) < window or len(b) < window or window < 10:
        return None
    la, lb = np.log(a[-window:]), np.log(b[-window:])
    var_b = float(np.var(lb))
    if var_b == 0.0:
        return None
    beta = float(np.cov(la, lb, bias=True)[0, 1] / var_b)
    spread = la - beta * lb
    sd = float(np.std(spread))
    if sd == 0.0:
        return None
    return float((spread[-1] - spread.mean()) / sd), beta
