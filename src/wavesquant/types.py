"""Plain domain enums shared by the wire contract and the pure domain libraries."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    POST_ONLY = "post_only"


class OrderStatus(StrEnum):
    """Order lifecycle states (seed 001)."""

    CREATING = "creating"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.FAILED)


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class TradingState(StrEnum):
    """Portfolio-wide trading state switched by circuit breakers or by hand."""

    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that reduce exposure
    HALTED = "halted"


class SignalState(StrEnum):
    GENERATED = "generated"
    EVALUATING = "evaluating"
    APPROVED = "approved"
    BLOCKED = "blocked"
    EXECUTING = "executing"
    EXECUTED = "executed"
    EXPIRED = "expired"
    LEARNED = "learned"

    @property
    def is_terminal(self) -> bool:
        return self in (SignalState.BLOCKED, SignalState.EXPIRED, SignalState.LEARNED)
