"""The order state machine (seed 001): one mutable `Order` per client order id, driven by events.

States are `OrderStatus`. Every legal move is listed in `TRANSITIONS`; anything else raises
`IllegalTransition` and leaves the order untouched. Each applied event is recorded in `Order.history`, and the
history alone rebuilds the order (`Order.from_history`), so the state after a restart is a replay of the event
log.

Rules beyond the table:
- fills are idempotent by `fill_id` (a duplicate is ignored, `apply` returns None);
- the filled quantity never exceeds the order quantity (an over-fill is illegal);
- a fill before `Accepted` is legal (fast venue) and implies the venue accepted the order;
- a fill while pending_cancel is legal (the cancel raced the match); it stays pending_cancel unless complete;
- a late fill after the venue reported the order canceled is legal (out-of-order reports); the order stays
  canceled, or becomes filled if that fill completes it;
- `Lost` (the venue repeatedly does not know the order) fails any live order; fills already received stay.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wavesquant.core.segmented import SegmentedDict
from wavesquant.execution.venues.base import Fill, OrderRequest
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce

QTY_EPSILON = 1e-9
"""Relative tolerance for comparing float64 quantities (see `qty_tol`)."""


def qty_tol(reference: float) -> float:
    """Absolute tolerance for comparing quantities of the magnitude of `reference`."""
    return QTY_EPSILON * max(1.0, abs(reference))


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitted:
    """The request was sent to the venue (again, on a retry)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    venue_order_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


@dataclass(frozen=True, slots=True)
class FillEvent:
    fill: Fill


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A cancel was sent to the venue (again, on a retry)."""


@dataclass(frozen=True, slots=True)
class Canceled:
    pass


@dataclass(frozen=True, slots=True)
class CancelRejected:
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The venue ended the order (time in force, IOC remainder); recorded as canceled."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The venue does not know the order after repeated not-found answers."""


OrderEvent = (
    Submitted | Accepted | Rejected | FillEvent | CancelRequested | Canceled | CancelRejected | Expired | Lost
)
EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Submitted, Accepted, Rejected, FillEvent, CancelRequested, Canceled, CancelRejected, Expired, Lost)
}

S = OrderStatus
_FILL_TARGETS = frozenset({S.PARTIALLY_FILLED, S.FILLED})

TRANSITIONS: dict[OrderStatus, dict[type, frozenset[OrderStatus]]] = {
    S.CREATING: {
        Submitted: frozenset({S.CREATING}),
        Accepted: frozenset({S.OPEN}),
        Rejected: frozenset({S.FAILED}),
        FillEvent: _FILL_TARGETS,
        CancelRequested: frozenset({S.PENDING_CANCEL}),
        Canceled: frozenset({S.CANCELED}),
        Expired: frozenset({S.CANCELED}),
        Lost: frozenset({S.FAILED}),
    },
    S.OPEN: {
        Accepted: frozenset({S.OPEN}),
        FillEvent: _FILL_TARGETS,
        CancelRequested: frozenset({S.PENDING_CANCEL}),
        Canceled: frozenset({S.CANCELED}),
        Expired: frozenset({S.CANCELED}),
        Lost: frozenset({S.FAILED}),
    },
    S.PARTIALLY_FILLED: {
        Accepted: frozenset({S.PARTIALLY_FILLED}),
        FillEvent: _FILL_TARGETS,
        CancelRequested: frozenset({S.PENDING_CANCEL}),
        Canceled: frozenset({S.CANCELED}),
        Expired: frozenset({S.CANCELED}),
        Lost: frozenset({S.FAILED}),
    },
    S.PENDING_CANCEL: {
        Accepted: frozenset({S.PENDING_CANCEL}),
        Rejected: frozenset({S.FAILED}),  # only while nothing is filled (checked)
        FillEvent: frozenset({S.PENDING_CANCEL, S.FILLED}),
        CancelRequested: frozenset({S.PENDING_CANCEL}),
        Canceled: frozenset({S.CANCELED}),
        CancelRejected: frozenset({S.CREATING, S.OPEN, S.PARTIALLY_FILLED}),
        Expired: frozenset({S.CANCELED}),
        Lost: frozenset({S.FAILED}),
    },
    S.FILLED: {
        Accepted: frozenset({S.FILLED}),
        CancelRejected: frozenset({S.FILLED}),  # the cancel lost the race against the last fill
    },
    S.CANCELED: {
        Accepted: frozenset({S.CANCELED}),
        FillEvent: frozenset({S.CANCELED, S.FILLED}),  # late fill report
        Canceled: frozenset({S.CANCELED}),
        CancelRejected: frozenset({S.CANCELED}),
        Expired: frozenset({S.CANCELED}),
    },
    S.FAILED: {},
}


class IllegalTransition(Exception):
    """The event is not allowed in the order's current state; the order was not changed."""

    def __init__(self, client_order_id: str, status: OrderStatus, event: OrderEvent, why: str = "") -> None:
        text = f"{client_order_id}: {type(event).__name__} not allowed in {status.value}"
        super().__init__(f"{text} ({why})" if why else text)
        self.client_order_id = client_order_id
        self.status = status
        self.event = event


# --- plain-dict codecs (JSON-safe) ------------------------------------------------------------------------


def _shallow_dict(obj: Any) -> dict[str, Any]:
    """A flat dataclass as a dict (dataclasses.asdict deep-copies, which costs more than it is worth on the
    order path; enums are str subclasses and serialise as their values)."""
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def request_to_dict(request: OrderRequest) -> dict[str, Any]:
    return _shallow_dict(request)


def request_from_dict(data: Mapping[str, Any]) -> OrderRequest:
    return OrderRequest(
        client_order_id=str(data["client_order_id"]),
        symbol=str(data["symbol"]),
        side=Side(data["side"]),
        type=OrderType(data["type"]),
        quantity=float(data["quantity"]),
        limit_price=None if data.get("limit_price") is None else float(data["limit_price"]),
        time_in_force=TimeInForce(data.get("time_in_force", TimeInForce.GTC)),
        reduce_only=bool(data.get("reduce_only", False)),
        strategy_id=str(data.get("strategy_id", "")),
        ts_ms=int(data.get("ts_ms", 0)),
    )


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    return _shallow_dict(fill)


def fill_from_dict(data: Mapping[str, Any]) -> Fill:
    return Fill(
        client_order_id=str(data["client_order_id"]),
        venue_order_id=str(data["venue_order_id"]),
        fill_id=str(data["fill_id"]),
        symbol=str(data["symbol"]),
        side=Side(data["side"]),
        quantity=float(data["quantity"]),
        price=float(data["price"]),
        fee=float(data["fee"]),
        fee_currency=str(data["fee_currency"]),
        liquidity=Liquidity(data["liquidity"]),
        ts_ms=int(data["ts_ms"]),
    )


def event_to_dict(event: OrderEvent) -> dict[str, Any]:
    """`{"event": <class name>, **fields}`; a fill is nested under "fill"."""
    if isinstance(event, FillEvent):
        return {"event": "FillEvent", "fill": fill_to_dict(event.fill)}
    return {"event": type(event).__name__, **_shallow_dict(event)}


def event_from_dict(data: Mapping[str, Any]) -> OrderEvent:
    name = data["event"]
    if name == "FillEvent":
        return FillEvent(fill_from_dict(data["fill"]))
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown order event {name!r}")
    fields = {k: v for k, v in data.items() if k != "event"}
    event: OrderEvent = cls(**fields)
    return event


# --- the order --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    ts_ms: int
    from_status: OrderStatus
    to_status: OrderStatus
    event: str  # event class name
    detail: dict[str, Any]  # the event's fields, enough to rebuild it

    def to_event(self) -> OrderEvent:
        return event_from_dict({**self.detail, "event": self.event})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts_ms": self.ts_ms,
            "from_status": self.from_status.value,
            "to_status": self.to_status.value,
            "event": self.event,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(
            ts_ms=int(data["ts_ms"]),
            from_status=OrderStatus(data["from_status"]),
            to_status=OrderStatus(data["to_status"]),
            event=str(data["event"]),
            detail=dict(data["detail"]),
        )


@dataclass(slots=True)
class Order:
    """Our view of one order. Create it (status creating) and track it before submitting the request."""

    request: OrderRequest
    created_ts_ms: int
    status: OrderStatus = OrderStatus.CREATING
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    fees: float = 0.0
    venue_order_id: str | None = None
    updated_ts_ms: int = 0
    status_since_ts_ms: int = 0  # when the current status was entered (or the submit/cancel last re-sent)
    history: list[Transition] = field(default_factory=list)
    fill_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.history:
            self.updated_ts_ms = self.updated_ts_ms or self.created_ts_ms
            self.status_since_ts_ms = self.status_since_ts_ms or self.created_ts_ms

    # request shortcuts
    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def quantity(self) -> float:
        return self.request.quantity

    @property
    def remaining(self) -> float:
        return max(self.request.quantity - self.filled_qty, 0.0)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def apply(self, event: OrderEvent, ts_ms: int) -> Transition | None:
        """Apply one event. Returns the recorded transition, or None for a duplicate fill (ignored).

        Raises IllegalTransition (nothing changed) when the event is not allowed now.
        """
        if isinstance(event, FillEvent) and event.fill.fill_id in self.fill_ids:
            return None
        allowed = TRANSITIONS[self.status].get(type(event))
        if allowed is None:
            raise IllegalTransition(self.client_order_id, self.status, event)
        target = self._target(event)
        if target not in allowed:
            raise IllegalTransition(self.client_order_id, self.status, event, f"would go to {target.value}")
        transition = Transition(ts_ms, self.status, target, type(event).__name__, _detail(event))
        # every check is done: mutate
        if isinstance(event, Accepted):
            self.venue_order_id = event.venue_order_id
        elif isinstance(event, FillEvent):
            self._add_fill(event.fill)
        if target is not self.status or isinstance(event, (Submitted, CancelRequested)):
            self.status_since_ts_ms = ts_ms
        self.status = target
        self.updated_ts_ms = ts_ms
        self.history.append(transition)
        return transition

    def _target(self, event: OrderEvent) -> OrderStatus:
        """The state `event` leads to, or raise IllegalTransition for a malformed event."""
        status = self.status
        if isinstance(event, (Submitted, CancelRequested)):
            return status if isinstance(event, Submitted) else S.PENDING_CANCEL
        if isinstance(event, Accepted):
            if self.venue_order_id is not None and event.venue_order_id != self.venue_order_id:
                raise IllegalTransition(
                    self.client_order_id, status, event, f"venue order id already {self.venue_order_id}"
                )
            return S.OPEN if status is S.CREATING else status
        if isinstance(event, Rejected):
            if self.filled_qty > 0.0:
                raise IllegalTransition(self.client_order_id, status, event, "order has fills")
            return S.FAILED
        if isinstance(event, FillEvent):
            return self._fill_target(event)
        if isinstance(event, CancelRejected):
            if status is not S.PENDING_CANCEL:
                return status
            if self.filled_qty > 0.0:
                return S.PARTIALLY_FILLED
            return S.OPEN if self.venue_order_id is not None else S.CREATING
        if isinstance(event, (Canceled, Expired)):
            return S.CANCELED
        return S.FAILED  # Lost

    def _fill_target(self, event: FillEvent) -> OrderStatus:
        fill = event.fill
        why = ""
        if fill.client_order_id != self.client_order_id:
            why = f"fill belongs to {fill.client_order_id}"
        elif fill.symbol != self.symbol or fill.side is not self.side:
            why = "fill symbol/side differ from the order's"
        elif not fill.quantity > 0.0 or not fill.price > 0.0:
            why = "fill quantity and price must be positive"
        elif self.venue_order_id is not None and fill.venue_order_id and fill.venue_order_id != self.venue_order_id:
            why = f"fill venue order id {fill.venue_order_id} != {self.venue_order_id}"
        if why:
            raise IllegalTransition(self.client_order_id, self.status, event, why)
        filled = self.filled_qty + fill.quantity
        if filled > self.quantity + qty_tol(self.quantity):
            raise IllegalTransition(
                self.client_order_id, self.status, event, f"over-fill {filled} > {self.quantity}"
            )
        if filled >= self.quantity - qty_tol(self.quantity):
            return S.FILLED
        if self.status in (S.PENDING_CANCEL, S.CANCELED):
            return self.status
        return S.PARTIALLY_FILLED

    def _add_fill(self, fill: Fill) -> None:
        filled = self.filled_qty + fill.quantity
        notional = (self.avg_fill_price or 0.0) * self.filled_qty + fill.price * fill.quantity
        self.avg_fill_price = notional / filled
        self.filled_qty = min(filled, self.quantity)  # absorb float noise within the tolerance
        self.fees += fill.fee
        self.fill_ids.add(fill.fill_id)
        if self.venue_order_id is None and fill.venue_order_id:
            self.venue_order_id = fill.venue_order_id

    def stuck(self, now_ms: int, creation_timeout_ms: int, cancel_timeout_ms: int) -> bool:
        """True if the order waits in creating / pending_cancel longer than allowed: ask the venue, then
        apply what it says (Accepted / fills / Canceled, or Lost after repeated not-found)."""
        waited = now_ms - self.status_since_ts_ms
        if self.status is S.CREATING:
            return waited > creation_timeout_ms
        if self.status is S.PENDING_CANCEL:
            return waited > cancel_timeout_ms
        return False

    # event sourcing
    def replay(self, events: Iterable[tuple[OrderEvent, int]]) -> None:
        """Apply `(event, ts_ms)` pairs in order."""
        for event, ts_ms in events:
            self.apply(event, ts_ms)

    @classmethod
    def from_history(
        cls, request: OrderRequest, created_ts_ms: int, history: Iterable[Transition]
    ) -> Order:
        """Rebuild an order by replaying its recorded transitions; raises ValueError if a replayed
        transition does not land where the record says (corrupt or incompatible log)."""
        order = cls(request=request, created_ts_ms=created_ts_ms)
        for recorded in history:
            event = recorded.to_event()
            if isinstance(event, FillEvent) and event.fill.fill_id in order.fill_ids:
                continue  # the same fill logged twice (a retried event-log write): booked once
            try:
                applied = order.apply(event, recorded.ts_ms)
            except IllegalTransition as exc:
                raise ValueError(f"history does not replay: {exc}") from exc
            if applied is None or applied.to_status is not recorded.to_status:
                raise ValueError(f"{order.client_order_id}: replay diverges at {recorded}")
        return order

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; the history is authoritative, the other fields are for readers."""
        return {
            "request": request_to_dict(self.request),
            "created_ts_ms": self.created_ts_ms,
            "status": self.status.value,
            "filled_qty": self.filled_qty,
            "avg_fill_price": self.avg_fill_price,
            "fees": self.fees,
            "venue_order_id": self.venue_order_id,
            "updated_ts_ms": self.updated_ts_ms,
            "history": [t.to_dict() for t in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Order:
        order = cls.from_history(
            request_from_dict(data["request"]),
            int(data["created_ts_ms"]),
            [Transition.from_dict(t) for t in data["history"]],
        )
        if order.status.value != data.get("status", order.status.value):
            raise ValueError(f"{order.client_order_id}: stored status {data['status']} != replayed {order.status}")
        return order


def _detail(event: OrderEvent) -> dict[str, Any]:
    data = event_to_dict(event)
    del data["event"]
    return data


# --- registry ---------------------------------------------------------------------------------------------


class UnknownOrder(KeyError):
    """No tracked order has this client order id."""


class OrderTracker:
    """Every order we sent or are about to send, by client order id. Track BEFORE submitting, so a crash
    between submit and the venue's answer still leaves an order to recover (creating, then stuck)."""

    def __init__(self) -> None:
        self._orders: SegmentedDict[str, Order] = SegmentedDict()  # closed ones too, until pruned
        self._live: dict[str, Order] = {}  # not yet seen terminal; pruned lazily (terminal is final)
        self._closed: deque[tuple[int, str]] = deque()  # (ended ms, id) of terminal orders, as they were seen

    def track(self, order: Order) -> Order:
        """Register `order`; if its client order id is already tracked with the same request, return the
        tracked one (idempotent); a different request under the same id raises ValueError."""
        known = self._orders.get(order.client_order_id)
        if known is None:
            self._orders[order.client_order_id] = order
            if order.is_terminal:
                self._closed.append((order.updated_ts_ms, order.client_order_id))
            else:
                self._live[order.client_order_id] = order
            return order
        if known.request != order.request:
            raise ValueError(f"client order id {order.client_order_id} already used by another request")
        return known

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def apply(self, client_order_id: str, event: OrderEvent, ts_ms: int) -> Transition | None:
        order = self._orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(client_order_id)
        return order.apply(event, ts_ms)

    def _live_orders(self) -> list[Order]:
        for coid in [c for c, o in self._live.items() if o.is_terminal]:
            self._closed.append((self._live.pop(coid).updated_ts_ms, coid))
        return list(self._live.values())

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders not in a terminal state (creating, open, partially filled, pending cancel)."""
        return [o for o in self._live_orders() if symbol is None or o.symbol == symbol]

    def stuck_orders(self, now_ms: int, creation_timeout_ms: int, cancel_timeout_ms: int) -> list[Order]:
        return [o for o in self._live_orders() if o.stuck(now_ms, creation_timeout_ms, cancel_timeout_ms)]

    def prune_closed(self, ended_before_ms: int, keep_at_most: int) -> list[str]:
        """Forget terminal orders that ended before `ended_before_ms`, and the oldest beyond `keep_at_most`
        (their transitions are in the event log). Costs what it removes, not what is kept."""
        self._live_orders()  # notice the orders that ended since the last look
        removed: list[str] = []
        while self._closed and (self._closed[0][0] < ended_before_ms or len(self._closed) > keep_at_most):
            _, coid = self._closed.popleft()
            order = self._orders.get(coid)
            if order is not None and order.is_terminal:
                del self._orders[coid]
                removed.append(coid)
        return removed

    def __iter__(self) -> Iterator[Order]:
        return iter(list(self._orders.values()))

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders
