"""The four timing tiers and the allowed interval range of each."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    HFT = "hft"  # 1-10 ms, event-driven
    FAST = "fast"  # 100 ms - 1 s
    TACTICAL = "tactical"  # 1 - 60 s
    STRATEGIC = "strategic"  # 1 min - 1 h

    @property
    def interval_range_s(self) -> tuple[float, float]:
        return _RANGES[self]


_RANGES: dict[Tier, tuple[float, float]] = {
    Tier.HFT: (0.001, 0.010),
    Tier.FAST: (0.100, 1.0),
    Tier.TACTICAL: (1.0, 60.0),
    Tier.STRATEGIC: (60.0, 3600.0),
}
