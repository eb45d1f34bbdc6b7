"""The money path: order intents (core -> risk), risk decisions, order commands (risk -> execution, on a
stream) and execution reports (execution -> everyone, on a stream)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavesquant.messages.envelope import Envelope
from wavesquant.messages.fields import (
    MAX_LIST,
    EpochMs,
    Identifier,
    Name,
    PositiveQuantity,
    Price,
    Quantity,
    ShortText,
    Symbol,
)
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce


class OrderSpec(BaseModel):
    """What to trade; shared by intents and new-order commands. The client order id is derived from the signal,
    so the same signal can never produce two orders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: Identifier
    signal_id: Identifier
    strategy_id: Name
    family: Name
    exchange: Name
    symbol: Symbol
    side: Side
    quantity: PositiveQuantity
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    reference_price: Price | None = None

    @model_validator(mode="after")
    def _limit_has_price(self) -> Self:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a market order takes no limit_price")
        return self


class OrderIntent(Envelope):
    """Core's request to risk: trade this for that signal."""

    type: Literal["order_intent"] = "order_intent"
    order: OrderSpec
    signal_type: Name
    signal_ts_ms: EpochMs
    origin_ts_ns: int | None = Field(default=None, ge=0, description="ts_ns of the market event behind it")


class Denial(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Name
    message: ShortText


class RiskDecision(Envelope):
    """Risk's verdict on one intent: approved, or blocked with every coded reason."""

    type: Literal["risk_decision"] = "risk_decision"
    order: OrderSpec
    approved: bool
    denials: tuple[Denial, ...] = Field(default_factory=tuple, max_length=MAX_LIST)
    trading_state: Name = "active"

    @model_validator(mode="after")
    def _blocked_has_reason(self) -> Self:
        if not self.approved and not self.denials:
            raise ValueError("a blocked decision needs at least one denial")
        if self.approved and self.denials:
            raise ValueError("an approved decision carries no denials")
        return self


class NewOrder(Envelope):
    """Risk -> execution, on the `orders` stream: place this approved order (at most once)."""

    type: Literal["new_order"] = "new_order"
    order: OrderSpec
    origin_ts_ns: int | None = Field(default=None, ge=0)


class CancelOrder(Envelope):
    """Cancel one order by client order id, or every open order (optionally of one symbol) when `all` is set."""

    type: Literal["cancel_order"] = "cancel_order"
    client_order_id: Identifier | None = None
    symbol: Symbol | None = None
    all: bool = False
    flatten: bool = Field(default=False, description="with all: also close every position")
    reason: ShortText = ""

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.all == (self.client_order_id is not None):
            raise ValueError("give exactly one of client_order_id or all=true")
        return self


ReportKind = Literal["ack", "fill", "cancel", "reject", "expired", "status"]


class ExecutionReport(Envelope):
    """Execution -> everyone, on the `execution_reports` stream. `filled_quantity` is cumulative; a fill report
    also carries the fill itself (last_*, fill_id, fee). Every report carries the order's venue id and status,
    so an order the venue fills, cancels or expires as it accepts it gets that report alone; an `ack` is sent
    for an order that rests."""

    type: Literal["execution_report"] = "execution_report"
    kind: ReportKind
    client_order_id: Identifier
    venue_order_id: ShortText = ""
    venue: Name
    signal_id: Identifier | None = None
    strategy_id: Name | None = None
    symbol: Symbol
    side: Side
    status: OrderStatus
    quantity: PositiveQuantity
    filled_quantity: Quantity = 0.0
    average_price: Price | None = None
    fill_id: ShortText | None = None
    last_quantity: Quantity | None = None
    last_price: Price | None = None
    fee: float = Field(default=0.0, allow_inf_nan=False)
    fee_currency: ShortText = ""
    liquidity: Liquidity | None = None
    reason: ShortText = ""
    origin_ts_ns: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.filled_quantity > self.quantity * (1 + 1e-9):
            raise ValueError(f"filled_quantity {self.filled_quantity} exceeds quantity {self.quantity}")
        if self.kind == "fill" and (self.fill_id is None or self.last_quantity is None or self.last_price is None):
            raise ValueError("a fill report needs fill_id, last_quantity and last_price")
        return self


MAX_TRANSITIONS_PER_ENTRY = 64


class OrderTransition(Envelope):
    """An order's state-machine transitions as execution recorded them, in order: one entry per order per
    flush of its reports (an order filled at once is one entry, not four). The event log of these rebuilds
    every order after a restart. The order's first entry carries its request (and may have no transition yet).

    An entry written before transitions were grouped (`transition`: one dict) is read as a one-element list."""

    type: Literal["order_transition"] = "order_transition"
    client_order_id: Identifier
    transitions: list[Annotated[dict[str, Any], Field(max_length=16)]] = Field(
        default_factory=list, max_length=MAX_TRANSITIONS_PER_ENTRY)
    request: dict[str, Any] | None = Field(default=None, max_length=32)
    strategy_id: Name | None = None
    signal_id: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_transition_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "transition" in data and "transitions" not in data:
            data = dict(data)
            single = data.pop("transition")
            data["transitions"] = [single] if single else []
        return data

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if not self.transitions and self.request is None:
            raise ValueError("an order_transition entry needs a request or at least one transition")
        return self
