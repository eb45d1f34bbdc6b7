"""Circuit breakers: portfolio-level conditions that switch trading to REDUCING or HALTED.

Feed observations in (`on_equity`, `on_order_result`, `on_anomaly`), then ask `evaluate(ts_ms)` for the
breakers tripped at that time. Evaluation changes nothing and reports a breaker for as long as its condition
holds; the caller applies the trips to a `TradingStateMachine` with `escalate` (no-op when already there),
and only an operator resumes trading.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from wavesquant.risk.codes import money
from wavesquant.risk.limits import AnomalySeverity, BreakerLimits
from wavesquant.types import TradingState

DAY_MS = 86_400_000


class BreakerName(StrEnum):
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    REJECT_RATE = "reject_rate"
    ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class BreakerTrip:
    name: BreakerName
    target_state: TradingState
    reason: str


class CircuitBreakers:
    """Daily loss and drawdown -> HALTED; reject rate -> REDUCING; anomalies -> as configured by severity.

    Day start equity is the first equity observed in each UTC day (by ts_ms); peak equity is the highest seen.
    Equity observations older than the newest one are ignored.
    """

    def __init__(self, limits: BreakerLimits) -> None:
        self.limits = limits
        self._equity: float | None = None
        self._equity_ts_ms: int | None = None
        self._day: int | None = None
        self._day_start_equity: float | None = None
        self._peak_equity: float | None = None
        self._results: deque[tuple[int, bool]] = deque()
        self._rejects = 0  # rejected results in self._results
        self._anomalies: deque[tuple[int, AnomalySeverity]] = deque()

    @property
    def equity(self) -> float | None:
        return self._equity

    @property
    def day_start_equity(self) -> float | None:
        return self._day_start_equity

    @property
    def peak_equity(self) -> float | None:
        return self._peak_equity

    def on_equity(self, ts_ms: int, equity: float) -> None:
        if not math.isfinite(equity):
            raise ValueError(f"equity must be finite, got {equity}")
        if self._equity_ts_ms is not None and ts_ms < self._equity_ts_ms:
            return
        day = ts_ms // DAY_MS
        if day != self._day:
            self._day = day
            self._day_start_equity = equity
        self._equity = equity
        self._equity_ts_ms = ts_ms
        self._peak_equity = equity if self._peak_equity is None else max(self._peak_equity, equity)

    def on_order_result(self, ts_ms: int, rejected: bool) -> None:
        self._results.append((ts_ms, rejected))
        self._rejects += rejected
        self._expire_results(ts_ms)

    def _expire_results(self, ts_ms: int) -> None:
        horizon = ts_ms - self.limits.reject_window_ms
        while self._results and self._results[0][0] <= horizon:
            self._rejects -= self._results.popleft()[1]

    def on_anomaly(self, ts_ms: int, severity: AnomalySeverity | str) -> None:
        self._anomalies.append((ts_ms, AnomalySeverity(severity)))
        horizon = ts_ms - self.limits.anomaly_window_ms
        while self._anomalies and self._anomalies[0][0] <= horizon:
            self._anomalies.popleft()

    def evaluate(self, ts_ms: int) -> list[BreakerTrip]:
        trips = [self._daily_loss(), self._drawdown(), self._reject_rate(ts_ms), self._anomaly(ts_ms)]
        return [t for t in trips if t is not None]

    def _daily_loss(self) -> BreakerTrip | None:
        if self._equity is None or self._day_start_equity is None:
            return None
        loss = self._day_start_equity - self._equity
        limit = self.limits.max_daily_loss
        if loss < limit:
            return None
        return BreakerTrip(
            BreakerName.DAILY_LOSS,
            TradingState.HALTED,
            f"daily loss {money(loss)} >= max {money(limit)} "
            f"(day start equity {money(self._day_start_equity)}, now {money(self._equity)})",
        )

    def _drawdown(self) -> BreakerTrip | None:
        if self._equity is None or self._peak_equity is None or self._peak_equity <= 0.0:
            return None
        drawdown_pct = (self._peak_equity - self._equity) / self._peak_equity * 100.0
        limit = self.limits.max_drawdown_pct
        if drawdown_pct < limit:
            return None
        return BreakerTrip(
            BreakerName.DRAWDOWN,
            TradingState.HALTED,
            f"drawdown {drawdown_pct:.2f}% >= max {limit:.2f}% "
            f"(peak equity {money(self._peak_equity)}, now {money(self._equity)})",
        )

    def _reject_rate(self, ts_ms: int) -> BreakerTrip | None:
        window = self.limits.reject_window_ms
        self._expire_results(ts_ms)  # O(1) amortised: counts are kept as results come and go
        samples, rejects = len(self._results), self._rejects
        if samples < self.limits.reject_min_samples:
            return None
        rate = rejects / samples
        limit = self.limits.max_reject_rate
        if rate < limit:
            return None
        return BreakerTrip(
            BreakerName.REJECT_RATE,
            TradingState.REDUCING,
            f"reject rate {rate:.2%} ({rejects}/{samples} in last {window:,} ms) >= max {limit:.2%}",
        )

    def _anomaly(self, ts_ms: int) -> BreakerTrip | None:
        window = self.limits.anomaly_window_ms
        recent = [s for t, s in self._anomalies if t > ts_ms - window]
        if not recent:
            return None
        worst = max(recent, key=lambda s: s.rank)
        if worst.rank >= self.limits.halted_anomaly_severity.rank:
            target, level = TradingState.HALTED, self.limits.halted_anomaly_severity
        elif worst.rank >= self.limits.reducing_anomaly_severity.rank:
            target, level = TradingState.REDUCING, self.limits.reducing_anomaly_severity
        else:
            return None
        return BreakerTrip(
            BreakerName.ANOMALY,
            target,
            f"{worst} anomaly in last {window:,} ms (>= {level} switches to {target})",
        )
