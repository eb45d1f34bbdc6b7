"""The wire contract: every message the agents exchange, one discriminated union, one registry."""

from wavesquant.messages.envelope import SCHEMA_VERSION, Envelope
from wavesquant.messages.market import Bar, OrderBook, TickBatch, prices_of
from wavesquant.messages.orders import (
    CancelOrder,
    Denial,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderSpec,
    OrderTransition,
    RiskDecision,
)
from wavesquant.messages.registry import (
    MESSAGE_TYPES,
    PUBSUB_CHANNELS,
    ROUTES,
    STREAMS,
    Channel,
    Message,
    Route,
    Transport,
    decode,
    encode,
    json_schemas,
    route_of,
    straight_to_risk,
)
from wavesquant.messages.signals import (
    SEVERITY_RANK,
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
    LoopStats,
    RiskAlert,
    SignalEvent,
)

__all__ = [
    "SCHEMA_VERSION", "Envelope", "Bar", "OrderBook", "TickBatch", "prices_of", "CancelOrder", "Denial", "ExecutionReport", "NewOrder",
    "OrderIntent", "OrderSpec", "OrderTransition", "RiskDecision", "MESSAGE_TYPES", "PUBSUB_CHANNELS", "ROUTES", "STREAMS", "Channel",
    "Message", "Route", "Transport", "decode", "encode", "json_schemas", "route_of", "straight_to_risk", "SEVERITY_RANK",
    "ArbitrageOpportunity", "MarketAnomaly", "ProbeSignal", "StatisticalOpportunity", "TradeSignal",
    "TrendAssessment", "TrendSignal", "ControlAck", "ControlCommand", "Heartbeat", "LearningUpdate", "LoopStats",
    "RiskAlert", "SignalEvent",
]
