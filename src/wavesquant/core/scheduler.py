"""Drift-free timed loops with overrun counting and run-time stats.

A loop runs at start + k * interval. If a run takes longer than the interval, the missed slots are skipped
(counted as overruns) and the loop resumes on its grid; it never bursts to catch up. An exception is logged,
counted and the loop keeps its schedule; too many consecutive failures mark the loop (and so its agent)
degraded until it succeeds again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from wavesquant.core.clock import Clock
from wavesquant.core.tiers import Tier

log = structlog.get_logger(__name__)

MIN_SLEEP_S = 0.001  # under uvloop a shorter asyncio.sleep returns at once and would busy-spin a core


@dataclass(slots=True)
class LoopStats:
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    overruns: int = 0
    last_s: float = 0.0
    total_s: float = 0.0
    max_s: float = 0.0
    last_error: str = ""

    @property
    def mean_s(self) -> float:
        return self.total_s / self.runs if self.runs else 0.0


@dataclass(slots=True)
class TimedLoop:
    name: str
    tier: Tier
    interval_s: float
    body: Callable[[], Awaitable[None]]
    max_consecutive_failures: int = 5
    stats: LoopStats = field(default_factory=LoopStats)

    def __post_init__(self) -> None:
        if self.interval_s < MIN_SLEEP_S:
            raise ValueError(f"loop {self.name}: interval {self.interval_s}s is below {MIN_SLEEP_S}s")

    @property
    def degraded(self) -> bool:
        return self.stats.consecutive_failures >= self.max_consecutive_failures

    async def run(self, clock: Clock, is_active: Callable[[], bool] = lambda: True) -> None:
        """Run forever on the drift-free grid; `is_active()` False skips the body (paused agent) but keeps time."""
        interval_ns = int(self.interval_s * 1e9)
        start_ns = clock.now_ns()
        slot = 1
        while True:
            await clock.sleep_until_ns(start_ns + slot * interval_ns)
            if is_active():
                await self._run_once()
            now = clock.now_ns()
            next_slot = (now - start_ns) // interval_ns + 1
            if next_slot > slot + 1:
                self.stats.overruns += next_slot - slot - 1
            slot = max(slot + 1, next_slot)

    async def _run_once(self) -> None:
        t0 = time.perf_counter()  # run-time measurement only, never a trading decision
        try:
            await self.body()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a loop survives its own exceptions
            self.stats.failures += 1
            self.stats.consecutive_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.error("loop_failed", loop=self.name, error=self.stats.last_error,
                      consecutive=self.stats.consecutive_failures, exc_info=self.stats.consecutive_failures == 1)
        else:
            self.stats.consecutive_failures = 0
        finally:
            elapsed = time.perf_counter() - t0
            s = self.stats
            s.runs += 1
            s.last_s = elapsed
            s.total_s += elapsed
            s.max_s = max(s.max_s, elapsed)
