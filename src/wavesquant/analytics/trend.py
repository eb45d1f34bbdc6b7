"""Trend confirmation from a close series: direction, strength and confidence.

Method (all on the newest data, vectorised):
- spread = EMA(fast) - EMA(slow) at the last bar; its sign is the candidate direction.
- slope  = EMA(slow) now minus EMA(slow) `fast` bars ago; the slow average must move the same way, else the
  direction is 0 (no confirmed trend: e.g. a fresh cross against a still-falling slow average).
- net    = close now minus close `slow` bars ago.
- efficiency ratio ER = |net| / sum(|close changes|) over those `slow` bars, in [0, 1]: 1 is a straight line,
  near 0 is chop.
- direction = sign(spread) when sign(slope) agrees, else 0.
- strength  = |spread| / mean(|close changes| over the slow window): the EMA gap in units of the average bar
  move (>= 0; a straight line of any slope scores (slow - fast) / 2).
- confidence = ER * (number of spread/slope/net signs agreeing with the direction) / 3, and 0 without a
  direction.
With fewer than slow + fast + 1 closes (or non-finite data in the window) the assessment is neutral (0, 0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wavesquant.indicators.moving import ema


@dataclass(frozen=True, slots=True)
class TrendAssessment:
    direction: int  # +1 up, -1 down, 0 none
    strength: float  # >= 0
    confidence: float  # in [0, 1]


NEUTRAL = TrendAssessment(0, 0.0, 0.0)


def assess_trend(closes: np.ndarray, fast: int = 12, slow: int = 26) -> TrendAssessment:
    if not 1 <= fast < slow:
        raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
    c = np.asarray(closes, dtype=np.float64)
    if len(c) < slow + fast + 1:
        return NEUTRAL
    # An EMA has infinite memory; use enough history for the slow one to forget its seed (~5 spans).
    c = c[-(slow * 5 + fast + 1) :]
    if not np.isfinite(c).all():
        return NEUTRAL
    ema_fast = ema(c, fast)
    ema_slow = ema(c, slow)
    spread = ema_fast[-1] - ema_slow[-1]
    slope = ema_slow[-1] - ema_slow[-1 - fast]
    recent = c[-(slow + 1) :]
    changes = np.diff(recent)
    net = recent[-1] - recent[0]
    path = np.abs(changes).sum()
    signs = np.sign([spread, slope, net])
    direction = int(signs[0]) if signs[0] != 0 and signs[0] == signs[1] else 0
    if direction == 0:
        return TrendAssessment(0, 0.0, 0.0)
    er = abs(net) / path if path > 0 else 0.0
    mean_move = path / slow
    strength = abs(spread) / mean_move if mean_move > 0 else 0.0
    agree = int(np.count_nonzero(signs == direction))
    confidence = float(min(1.0, max(0.0, er * agree / 3.0)))
    return TrendAssessment(direction, float(strength), confidence)
