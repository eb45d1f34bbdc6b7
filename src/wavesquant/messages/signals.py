"""Signals: intelligence findings (seed formats) and strategy trade signals."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from wavesquant.core.ids import client_order_id
from wavesquant.messages.envelope import Envelope
from wavesquant.messages.fields import (
    MAX_LIST,
    EpochMs,
    FiniteFloat,
    Name,
    PositiveQuantity,
    Price,
    Probability,
    ShortText,
    Symbol,
)
from wavesquant.messages.orders import OrderSpec
from wavesquant.types import OrderType, Side, TimeInForce

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _expiry_into_envelope(data: Any, field: str) -> Any:
    """Seed formats carry their own expiry field; the envelope's expires_at_ms is the earlier of the two, so
    the message can never be acted on after either says it expired."""
    if isinstance(data, dict) and isinstance(data.get(field), int):
        own = data[field]
        envelope = data.get("expires_at_ms")
        data = {**data, "expires_at_ms": own if not isinstance(envelope, int) else min(own, envelope)}
    return data


class ArbitrageOpportunity(Envelope):
    """Seed format: a price discrepancy for `symbol` across `exchanges` (HFT tier)."""

    type: Literal["arbitrage_opportunity"] = "arbitrage_opportunity"
    symbol: Symbol
    exchanges: tuple[Name, ...] = Field(min_length=2, max_length=8)
    price_diff: float = Field(ge=0, allow_inf_nan=False)
    max_latency: int = Field(gt=0, le=60_000, description="ms the opportunity tolerates")
    execution_priority: int = Field(ge=1, le=10)
    expiry: EpochMs

    @model_validator(mode="before")
    @classmethod
    def _mirror_expiry(cls, data: Any) -> Any:
        return _expiry_into_envelope(data, "expiry")

    @model_validator(mode="after")
    def _distinct_exchanges(self) -> Self:
        if len(set(self.exchanges)) != len(self.exchanges):
            raise ValueError("exchanges must be distinct")
        return self


class MarketAnomaly(Envelope):
    """Seed format: an anomaly found by market_conditions."""

    type: Literal["market_anomaly"] = "market_anomaly"
    severity: Severity
    anomaly_type: Name
    affected_assets: tuple[Symbol, ...] = Field(min_length=1, max_length=MAX_LIST)
    confidence: Probability
    time_to_impact: float = Field(ge=0, allow_inf_nan=False, description="seconds")
    recommended_actions: tuple[Name, ...] = Field(default_factory=tuple, max_length=16)
    magnitude: FiniteFloat = 0.0


class StatisticalOpportunity(Envelope):
    """Seed format: a mean-reversion opportunity on a pair."""

    type: Literal["statistical_opportunity"] = "statistical_opportunity"
    pair: tuple[Symbol, Symbol]
    z_score: FiniteFloat
    entry_price: Price
    confidence: Probability
    hold_duration: float = Field(gt=0, allow_inf_nan=False, description="seconds")


class TrendAssessment(Envelope):
    """Intelligence's trend confirmation for one symbol: direction -1/0/+1 with strength and confidence."""

    type: Literal["trend_assessment"] = "trend_assessment"
    exchange: Name
    symbol: Symbol
    timeframe: str = Field(pattern=r"^[1-9][0-9]{0,3}(s|m|h|d)$")
    direction: Literal[-1, 0, 1]
    strength: float = Field(ge=0, allow_inf_nan=False)
    confidence: Probability


class TradeSignal(Envelope):
    """Base of actionable strategy signals: one order the strategy wants. Core turns it into an order intent
    (an HFT-tier one goes to risk directly, see `registry.straight_to_risk`)."""

    type: str
    strategy_id: Name
    family: Name
    exchange: Name
    symbol: Symbol
    side: Side
    quantity: PositiveQuantity
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reference_price: Price
    confidence: Probability = 1.0
    reason: ShortText = ""

    @model_validator(mode="after")
    def _limit_has_price(self) -> Self:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order signal needs limit_price")
        return self

    @property
    def origin_ts_ns(self) -> int:
        """When the market event behind this signal happened (latency is measured from it)."""
        return self.ts_ns

    def order_spec(self) -> OrderSpec:
        """The order this signal asks for; its client order id is derived from the signal id, so whoever
        builds it (core or risk) builds the same order, and a repeat can never trade twice."""
        return OrderSpec(
            client_order_id=client_order_id(self.msg_id), signal_id=self.msg_id, strategy_id=self.strategy_id,
            family=self.family, exchange=self.exchange, symbol=self.symbol, side=self.side,
            quantity=self.quantity, order_type=self.order_type, limit_price=self.limit_price,
            time_in_force=self.time_in_force, reference_price=self.reference_price,
        )


class TrendSignal(TradeSignal):
    type: Literal["trend_signal"] = "trend_signal"
    family: Name = "trend"


class ProbeSignal(TradeSignal):
    """Benchmark-only: the tick_probe strategy's one-order-per-tick signal (HFT tier)."""

    type: Literal["probe_signal"] = "probe_signal"
    family: Name = "probe"
    tick_ts_ns: int = Field(ge=0, description="ts_ns of the tick batch that caused it")

    @property
    def origin_ts_ns(self) -> int:
        return self.tick_ts_ns
