"""Typed, frozen risk configuration: pre-trade limits and circuit-breaker limits.

Conventions: notionals and exposures are in the account currency (quantity x price, prices as passed to
the risk layer); `*_pct` fields are percent (5.0 = 5 %); rates are fractions (0.5 = 50 %). A pre-trade
limit denies an order that would EXCEED it; a breaker trips when its measure REACHES its limit.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveMs = Annotated[int, Field(gt=0)]


class AnomalySeverity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    AnomalySeverity.LOW: 0,
    AnomalySeverity.MEDIUM: 1,
    AnomalySeverity.HIGH: 2,
    AnomalySeverity.CRITICAL: 3,
}


class RiskLimits(BaseModel):
    """Pre-trade limits. Defaults suit a paper demo with about 100,000 of equity.

    Quantity limits are per symbol because units differ between symbols; `max_order_qty` and
    `max_position_qty` are the defaults for symbols without an override, and None means no quantity limit
    (the notional and exposure limits still apply). A family without an entry in `family_budgets` has no
    family budget (the gross exposure limit still applies).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_qty: Positive | None = None
    max_order_qty_by_symbol: dict[str, Positive] = Field(default_factory=dict)
    max_order_notional: Positive = 10_000.0
    max_position_qty: Positive | None = None
    max_position_qty_by_symbol: dict[str, Positive] = Field(default_factory=dict)
    max_position_per_strategy: Positive = 25_000.0  # notional of one strategy's position in one symbol
    max_gross_exposure: Positive = 100_000.0
    max_net_exposure: Positive = 50_000.0
    family_budgets: dict[str, Positive] = Field(default_factory=dict)  # family -> max gross notional
    price_band_pct: Positive = 5.0  # order price vs last market price
    max_orders_per_second: Annotated[int, Field(gt=0)] = 10  # sliding 1 s window
    duplicate_window_ms: Annotated[int, Field(ge=0)] = 1_000  # 0: only a reused client order id is a duplicate
    max_market_data_age_ms: PositiveMs = 5_000
    max_signal_age_ms: PositiveMs = 5_000
    max_leverage: Positive = 2.0  # gross exposure / equity

    def order_qty_limit(self, symbol: str) -> float | None:
        return self.max_order_qty_by_symbol.get(symbol, self.max_order_qty)

    def position_qty_limit(self, symbol: str) -> float | None:
        return self.max_position_qty_by_symbol.get(symbol, self.max_position_qty)


class BreakerLimits(BaseModel):
    """Circuit-breaker limits: what switches trading to REDUCING or HALTED."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_daily_loss: Positive = 5_000.0  # vs equity at the start of the UTC day
    max_drawdown_pct: Annotated[float, Field(gt=0, le=100)] = 10.0  # vs peak equity
    max_reject_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    reject_window_ms: PositiveMs = 60_000
    reject_min_samples: Annotated[int, Field(ge=1)] = 10  # no reject-rate trip below this many results
    anomaly_window_ms: PositiveMs = 60_000  # how long a reported anomaly keeps its breaker tripped
    reducing_anomaly_severity: AnomalySeverity = AnomalySeverity.HIGH
    halted_anomaly_severity: AnomalySeverity = AnomalySeverity.CRITICAL

    @model_validator(mode="after")
    def _severities_ordered(self) -> BreakerLimits:
        if self.reducing_anomaly_severity.rank > self.halted_anomaly_severity.rank:
            raise ValueError("reducing_anomaly_severity must not be above halted_anomaly_severity")
        return self
