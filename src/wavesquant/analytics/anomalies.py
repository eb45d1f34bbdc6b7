"""Per-symbol anomaly detectors over a rolling window: price jumps and volume spikes.

Each detector scores the new observation against the window of PREVIOUS observations (so a jump cannot dampen
its own score), then adds it to the window. Severity comes from how far over the threshold the observation is
(ratio = magnitude / threshold):

    ratio < 1.5 -> low, < 2.5 -> medium, < 4 -> high, else critical

and confidence = 1 - 0.5 / ratio**2, i.e. 0.5 just at the threshold, rising towards 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from wavesquant.indicators.rolling import RollingStats

AnomalyType = Literal["price_jump", "volume_spike"]
Severity = Literal["low", "medium", "high", "critical"]

RECOMMENDED_ACTIONS: dict[str, tuple[str, ...]] = {
    "low": ("monitor",),
    "medium": ("monitor", "tighten_limits"),
    "high": ("reduce_exposure",),
    "critical": ("halt_symbol",),
}


@dataclass(frozen=True, slots=True)
class AnomalyFinding:
    anomaly_type: AnomalyType
    symbol: str
    severity: Severity
    confidence: float  # in [0, 1]
    magnitude: float  # |z-score| for price jumps, multiple of the median for volume spikes
    ts_ms: int
    recommended_actions: tuple[str, ...]
    observed: float  # the log-return or the volume that triggered it
    threshold: float


def severity_for(ratio: float) -> Severity:
    if ratio < 1.5:
        return "low"
    if ratio < 2.5:
        return "medium"
    if ratio < 4.0:
        return "high"
    return "critical"


def _finding(
    kind: AnomalyType, symbol: str, magnitude: float, threshold: float, observed: float, ts_ms: int
) -> AnomalyFinding:
    ratio = magnitude / threshold
    severity = severity_for(ratio)
    confidence = min(1.0, max(0.0, 1.0 - 0.5 / (ratio * ratio)))
    return AnomalyFinding(
        kind,
        symbol,
        severity,
        confidence,
        magnitude,
        ts_ms,
        RECOMMENDED_ACTIONS[severity],
        observed,
        threshold,
    )


class PriceJumpDetector:
    """Fires when the latest log-return's |z| against the previous `window` returns reaches `z_threshold` and
    the return itself is at least `min_return` (so a tiny move in a dead-calm market does not fire).
    Non-finite or non-positive prices are ignored."""

    def __init__(
        self, symbol: str, window: int = 60, z_threshold: float = 6.0, min_return: float = 0.005
    ) -> None:
        if z_threshold <= 0 or min_return < 0:
            raise ValueError("z_threshold must be > 0 and min_return >= 0")
        self.symbol = symbol
        self.z_threshold = z_threshold
        self.min_return = min_return
        self._returns = RollingStats(window)
        self._last_price: float | None = None

    def update(self, ts_ms: int, price: float) -> AnomalyFinding | None:
        if not (math.isfinite(price) and price > 0):
            return None
        prev, self._last_price = self._last_price, price
        if prev is None:
            return None
        r = math.log(price / prev)
        z = self._returns.score(r)
        self._returns.update(r)
        if z is None or abs(r) < self.min_return or abs(z) < self.z_threshold:
            return None
        magnitude = abs(z) if math.isfinite(z) else 1e6 * self.z_threshold  # constant window: off the scale
        return _finding("price_jump", self.symbol, magnitude, self.z_threshold, r, ts_ms)


class VolumeSpikeDetector:
    """Fires when volume exceeds `multiple` x the median of the previous `window` volumes. No finding while
    that median is 0 (no reference level). Non-finite or negative volumes are ignored."""

    def __init__(self, symbol: str, window: int = 60, multiple: float = 5.0) -> None:
        if multiple <= 1.0:
            raise ValueError(f"multiple must be > 1, got {multiple}")
        self.symbol = symbol
        self.multiple = multiple
        self._volumes = RollingStats(window)

    def update(self, ts_ms: int, volume: float) -> AnomalyFinding | None:
        if not (math.isfinite(volume) and volume >= 0):
            return None
        median = self._volumes.median if self._volumes.is_warm else None
        self._volumes.update(volume)
        if median is None or median <= 0:
            return None
        ratio = volume / median
        if ratio <= self.multiple:
            return None
        return _finding("volume_spike", self.symbol, ratio, self.multiple, volume, ts_ms)
