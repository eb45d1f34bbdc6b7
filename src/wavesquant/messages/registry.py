"""The one registry: every message type, its channel, tier and transport, and whether it is event-logged.

Pub/sub carries signals and market data (fire-and-forget). Money travels on streams with consumer groups:
risk decisions, order commands and execution reports. Everything that changes money or lifecycle state is
also appended to the event log stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from wavesquant.core.tiers import Tier
from wavesquant.messages.envelope import Envelope
from wavesquant.messages.market import Bar, OrderBook, TickBatch
from wavesquant.messages.orders import (
    CancelOrder,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderTransition,
    RiskDecision,
)
from wavesquant.messages.signals import (
    ArbitrageOpportunity,
    MarketAnomaly,
    ProbeSignal,
    StatisticalOpportunity,
    TradeSignal,
    TrendAssessment,
    TrendSignal,
)
from wavesquant.messages.system import (
    ControlAck,
    ControlCommand,
    Heartbeat,
    LearningUpdate,
    RiskAlert,
    SignalEvent,
)


class Transport(StrEnum):
    PUBSUB = "pubsub"
    STREAM = "stream"


class Channel(StrEnum):
    """Channel and stream names (without the configurable prefix)."""

    HFT_SIGNALS = "hft_signals"
    FAST_SIGNALS = "fast_signals"
    TACTICAL_SIGNALS = "tactical_signals"
    STRATEGIC_SIGNALS = "strategic_signals"
    MARKET_ANOMALIES = "market_anomalies"
    RISK_ALERTS = "risk_alerts"
    LEARNING_UPDATES = "learning_updates"
    MARKET_TICKS = "market_ticks"
    MARKET_BARS = "market_bars"
    MARKET_BOOKS = "market_books"
    ORDER_INTENTS = "order_intents"
    CONTROL = "control"
    HEARTBEATS = "heartbeats"
    # streams
    RISK_DECISIONS = "risk_decisions"
    ORDERS = "orders"
    EXECUTION_REPORTS = "execution_reports"
    EVENTS = "events"
    DEADLETTER = "deadletter"

    @property
    def transport(self) -> Transport:
        return Transport.STREAM if self in _STREAMS else Transport.PUBSUB


_STREAMS = {Channel.RISK_DECISIONS, Channel.ORDERS, Channel.EXECUTION_REPORTS, Channel.EVENTS, Channel.DEADLETTER}
PUBSUB_CHANNELS = tuple(c for c in Channel if c not in _STREAMS)
STREAMS = tuple(c for c in Channel if c in _STREAMS)


@dataclass(frozen=True, slots=True)
class Route:
    channel: Channel
    tier: Tier
    event_log: bool = False

    @property
    def transport(self) -> Transport:
        return self.channel.transport


ROUTES: dict[type[Envelope], Route] = {
    TickBatch: Route(Channel.MARKET_TICKS, Tier.HFT),
    Bar: Route(Channel.MARKET_BARS, Tier.FAST),
    OrderBook: Route(Channel.MARKET_BOOKS, Tier.HFT),
    ArbitrageOpportunity: Route(Channel.HFT_SIGNALS, Tier.HFT),
    ProbeSignal: Route(Channel.HFT_SIGNALS, Tier.HFT),
    TrendSignal: Route(Channel.FAST_SIGNALS, Tier.FAST),
    StatisticalOpportunity: Route(Channel.FAST_SIGNALS, Tier.FAST),
    TrendAssessment: Route(Channel.TACTICAL_SIGNALS, Tier.TACTICAL),
    MarketAnomaly: Route(Channel.MARKET_ANOMALIES, Tier.TACTICAL),
    OrderIntent: Route(Channel.ORDER_INTENTS, Tier.FAST),
    RiskDecision: Route(Channel.RISK_DECISIONS, Tier.FAST, event_log=True),
    NewOrder: Route(Channel.ORDERS, Tier.FAST, event_log=True),
    CancelOrder: Route(Channel.ORDERS, Tier.FAST, event_log=True),
    ExecutionReport: Route(Channel.EXECUTION_REPORTS, Tier.FAST, event_log=True),
    RiskAlert: Route(Channel.RISK_ALERTS, Tier.TACTICAL, event_log=True),
    LearningUpdate: Route(Channel.LEARNING_UPDATES, Tier.STRATEGIC),
    SignalEvent: Route(Channel.EVENTS, Tier.FAST),
    OrderTransition: Route(Channel.EVENTS, Tier.FAST),
    Heartbeat: Route(Channel.HEARTBEATS, Tier.TACTICAL),
    ControlCommand: Route(Channel.CONTROL, Tier.FAST, event_log=True),
    ControlAck: Route(Channel.CONTROL, Tier.FAST),
}

MESSAGE_TYPES: dict[str, type[Envelope]] = {cls.type_name(): cls for cls in ROUTES}

Message = Annotated[
    Union[tuple(ROUTES)],  # type: ignore[valid-type]  # noqa: UP007 (a union built at runtime)
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(Message)


def route_of(msg: Envelope) -> Route:
    return ROUTES[type(msg)]


def straight_to_risk(msg: Envelope) -> bool:
    """HFT-tier trade signals skip core's hop: risk takes them off their signal channel itself and core only
    records their lifecycle. One hop costs about as much as the HFT tier's whole latency budget."""
    return isinstance(msg, TradeSignal) and ROUTES[type(msg)].tier is Tier.HFT


def decode(raw: bytes | str) -> Envelope:
    """Parse and validate one wire message (JSON). Raises pydantic.ValidationError on anything invalid."""
    return _ADAPTER.validate_json(raw)


def encode(msg: Envelope) -> bytes:
    return msg.__pydantic_serializer__.to_json(msg)


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every message type, keyed by type."""
    return {name: cls.model_json_schema() for name, cls in MESSAGE_TYPES.items()}
