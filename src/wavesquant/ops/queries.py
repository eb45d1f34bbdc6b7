"""Read-only views of a running system, rebuilt from its event log exactly as the agents rebuild their state:
signals through the signal book, orders through the order state machine, positions through the portfolio.

Everything here takes a `Bus` (Redis in production, the embedded bus in tests) and never writes to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from wavesquant.bus.base import Bus
from wavesquant.execution.order_log import OrderRecord, fold
from wavesquant.execution.reports import fill_from_report
from wavesquant.lifecycle.signal_log import replay
from wavesquant.lifecycle.signals import SignalBook, TrackedSignal
from wavesquant.messages import (
    ROUTES,
    CancelOrder,
    Channel,
    ControlCommand,
    Envelope,
    ExecutionReport,
    NewOrder,
    OrderTransition,
    RiskAlert,
    RiskDecision,
    SignalEvent,
    decode,
)
from wavesquant.portfolio.positions import Portfolio
from wavesquant.types import OrderStatus, OrderType, Side, SignalState

PAGE = 1000
PENDING = "pending"  # pseudo signal state: not decided or not finished (generated .. executing)
PENDING_STATES = frozenset({SignalState.GENERATED, SignalState.EVALUATING, SignalState.APPROVED,
                            SignalState.EXECUTING})
SIGNAL_STATE_CHOICES: tuple[str, ...] = (*(s.value for s in SignalState), PENDING)
EVENT_LOG_TYPES: tuple[str, ...] = tuple(sorted(
    cls.type_name() for cls, route in ROUTES.items() if route.event_log or route.channel is Channel.EVENTS
))
_ENTRY_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")


def valid_entry_id(entry_id: str) -> bool:
    """A stream entry id (`ms` or `ms-seq`) or one of the range ends `-` / `+`."""
    return entry_id in ("-", "+") or bool(_ENTRY_ID.match(entry_id))


# raw events ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventEntry:
    entry_id: str
    message: Envelope | None  # None when the payload did not decode
    error: str | None = None  # why it did not decode
    raw: bytes = b""

    @property
    def type(self) -> str:
        return self.message.type if self.message is not None else "invalid"


def decode_entry(entry_id: str, raw: bytes) -> EventEntry:
    try:
        return EventEntry(entry_id, decode(raw), None, raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        return EventEntry(entry_id, None, f"{where}: {first['msg']}"[:300], raw)
    except ValueError as exc:
        return EventEntry(entry_id, None, str(exc).splitlines()[0][:300], raw)


async def iter_event_log(bus: Bus, start: str = "-", end: str = "+", page: int = PAGE) -> AsyncIterator[EventEntry]:
    """Every event-log entry from `start` to `end` (inclusive), in order, read page by page."""
    while True:
        entries = await bus.read_range(Channel.EVENTS, start=start, end=end, count=page)
        for entry_id, raw in entries:
            yield decode_entry(entry_id, raw)
        if len(entries) < page:
            return
        ms, _, seq = entries[-1][0].partition("-")
        start = f"{ms}-{int(seq or 0) + 1}"


async def list_events(bus: Bus, types: Collection[str] | None = None, start: str = "-", end: str = "+",
                      count: int | None = None) -> list[EventEntry]:
    """Event-log entries in order, optionally only of `types` (undecodable entries are listed only when no
    type filter is given) and at most `count` of them."""
    out: list[EventEntry] = []
    wanted = set(types) if types else None
    async for entry in iter_event_log(bus, start, end):
        if wanted is not None and entry.type not in wanted:
            continue
        out.append(entry)
        if count is not None and len(out) >= count:
            break
    return out


async def _messages(bus: Bus, *kinds: type[Envelope]) -> AsyncIterator[Envelope]:
    async for entry in iter_event_log(bus):
        if isinstance(entry.message, kinds):
            yield entry.message


# signals -------------------------------------------------------------------------------------------------
async def signal_book(bus: Bus) -> SignalBook:
    """Every signal's state, replayed from its lifecycle events the way core rebuilds it after a restart."""
    book = SignalBook(capacity=10**9)
    async for msg in _messages(bus, SignalEvent):
        assert isinstance(msg, SignalEvent)
        replay(book, msg)
    return book


def matches_state(signal: TrackedSignal, state: str | None) -> bool:
    if state is None:
        return True
    if state == PENDING:
        return signal.state in PENDING_STATES
    return signal.state.value == state


async def list_signals(bus: Bus, state: str | None = None, limit: int | None = None) -> tuple[list[TrackedSignal], int]:
    """Signals in `state` (a SignalState value or "pending"), newest first, at most `limit`; and how many
    matched in all."""
    if state is not None and state not in SIGNAL_STATE_CHOICES:
        raise ValueError(f"unknown signal state {state!r}; states are: {', '.join(SIGNAL_STATE_CHOICES)}")
    book = await signal_book(bus)
    matched = [s for s in book.signals() if matches_state(s, state)]
    matched.sort(key=lambda s: (s.created_ms, s.updated_ms), reverse=True)
    return (matched if limit is None else matched[:limit]), len(matched)


# orders --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderView:
    client_order_id: str
    strategy_id: str | None
    signal_id: str | None
    symbol: str
    side: Side
    type: OrderType
    quantity: float
    limit_price: float | None
    status: OrderStatus
    filled_quantity: float
    average_price: float | None
    fees: float
    created_ms: int
    updated_ms: int
    transitions: int
    problem: str = ""  # the history did not replay (the status shown is the last one recorded)

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal


async def rebuild_orders(bus: Bus) -> list[OrderView]:
    """Every order the event log knows (by its first transition, which carries the request), replayed through
    the order state machine, oldest first."""
    records: dict[str, OrderRecord] = {}
    async for msg in _messages(bus, OrderTransition):
        assert isinstance(msg, OrderTransition)
        fold(records, msg)
    views = [_view(coid, r) for coid, r in records.items() if r.request is not None]
    return sorted(views, key=lambda v: v.created_ms)


def _view(coid: str, record: OrderRecord) -> OrderView:
    order, problem = record.replay()
    # a history that does not replay: show the last status it recorded
    status = order.status if not problem or not record.history else record.history[-1].to_status
    r = order.request
    return OrderView(
        client_order_id=coid, strategy_id=record.strategy_id or r.strategy_id or None, signal_id=record.signal_id,
        symbol=r.symbol, side=r.side, type=r.type, quantity=r.quantity, limit_price=r.limit_price, status=status,
        filled_quantity=order.filled_qty, average_price=order.avg_fill_price, fees=order.fees,
        created_ms=record.created_ms, updated_ms=max([record.created_ms, *(t.ts_ms for t in record.history)]),
        transitions=len(record.history), problem=problem,
    )


async def list_orders(bus: Bus, open_only: bool = False, limit: int | None = None) -> tuple[list[OrderView], int]:
    """Orders (only non-terminal ones with `open_only`), newest first, at most `limit`; and how many matched."""
    matched = [o for o in await rebuild_orders(bus) if o.is_open or not open_only]
    matched.reverse()
    return (matched if limit is None else matched[:limit]), len(matched)


# positions -----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PositionsView:
    portfolio: Portfolio
    marks: dict[str, float]  # symbol -> price of its latest fill
    fills: int
    last_fill_ms: int | None


async def positions(bus: Bus) -> PositionsView:
    """The portfolio booked from every fill report in the event log (duplicates by fill id ignored), marked
    at each symbol's latest fill price."""
    portfolio = Portfolio()
    marks: dict[str, float] = {}
    fills = 0
    last_ms: int | None = None
    async for msg in _messages(bus, ExecutionReport):
        assert isinstance(msg, ExecutionReport)
        fill = fill_from_report(msg)
        if fill is None or not portfolio.apply(fill, msg.strategy_id or ""):
            continue
        fills += 1
        marks[fill.symbol] = fill.price
        last_ms = msg.ts_ms
    for symbol, price in marks.items():
        portfolio.mark(symbol, price)
    return PositionsView(portfolio, marks, fills, last_ms)


# one line per event ---------------------------------------------------------------------------------------
_ENVELOPE_FIELDS = {"type", "msg_id", "source", "ts_ms", "ts_ns", "expires_at_ms", "schema_version"}


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.8g}"


def describe(msg: Envelope) -> str:
    """One line saying what an event-log message is about."""
    if isinstance(msg, ExecutionReport):
        text = (f"{msg.kind} {msg.client_order_id} {msg.side.value} {msg.symbol} "
                f"{_num(msg.filled_quantity)}/{_num(msg.quantity)} {msg.status.value}")
        if msg.kind == "fill":
            text += f" fill {_num(msg.last_quantity)}@{_num(msg.last_price)} fee {_num(msg.fee)} {msg.fee_currency}"
        return text + (f" ({msg.reason})" if msg.reason else "")
    if isinstance(msg, OrderTransition):
        parts = []
        if msg.request is not None:
            r = msg.request
            limit = f" @ {r['limit_price']}" if r.get("limit_price") is not None else ""
            parts.append(f"created: {r.get('side')} {r.get('quantity')} {r.get('symbol')} {r.get('type')}{limit} "
                         f"strategy={msg.strategy_id or '-'}")
        parts += [f"{t.get('from_status')} -> {t.get('to_status')} ({t.get('event')})" for t in msg.transitions]
        return f"{msg.client_order_id} " + "; ".join(parts)
    if isinstance(msg, SignalEvent):
        return "; ".join(
            f"{s.signal_id} {s.from_state.value if s.from_state else '-'} -> {s.to_state.value} {s.signal_type} "
            f"{s.strategy_id or '-'} {s.symbol or '-'}" + (f" ({s.reason})" if s.reason else "") for s in msg.steps)
    if isinstance(msg, RiskDecision | NewOrder):
        o = msg.order
        head = ("approved" if msg.approved else "blocked") if isinstance(msg, RiskDecision) else "new"
        text = f"{head} {o.client_order_id} {o.side.value} {_num(o.quantity)} {o.symbol} {o.order_type.value}"
        if o.limit_price is not None:
            text += f" @ {_num(o.limit_price)}"
        if isinstance(msg, RiskDecision) and msg.denials:
            text += " [" + ", ".join(d.code for d in msg.denials) + "]"
        return text
    if isinstance(msg, CancelOrder):
        target = ("all" + (f" {msg.symbol}" if msg.symbol else "") + (" flatten" if msg.flatten else "")
                  if msg.all else str(msg.client_order_id))
        return f"cancel {target}" + (f" ({msg.reason})" if msg.reason else "")
    if isinstance(msg, RiskAlert):
        return f"{msg.level} {msg.code} trading={msg.trading_state}: {msg.message}"
    if isinstance(msg, ControlCommand):
        args = " ".join(f"{k}={v}" for k, v in msg.args.items())
        return f"{msg.command} -> {msg.target}" + (f" {args}" if args else "")
    fields = {k: v for k, v in msg.model_dump(mode="json").items() if k not in _ENVELOPE_FIELDS}
    return json.dumps(fields, separators=(",", ":"))[:300]


# following the log ---------------------------------------------------------------------------------------
async def last_entry_id(client: Any, key: str) -> str:
    """Id of the newest entry of the stream `key` ("0-0" when empty or missing)."""
    newest = await client.xrevrange(key, "+", "-", count=1)
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def tail_events(client: Any, key: str, show: Callable[[EventEntry], None],
                      types: Collection[str] | None = None, count: int | None = None, block_ms: int = 1000) -> int:
    """Follow the event-log stream `key` with XREAD from its current end, calling `show` for each new entry
    (of `types`, when given), until `count` were shown (forever without one). Returns how many were shown.

    The start is resolved to a concrete id once, so nothing appended between two blocking reads is missed."""
    last = await last_entry_id(client, key)
    wanted = set(types) if types else None
    shown = 0
    while count is None or shown < count:
        reply = await client.xread({key: last}, block=block_ms, count=100)
        for _, items in reply or []:
            for raw_id, fields in items:
                last = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                payload = fields.get(b"d") or fields.get("d") or b""
                if isinstance(payload, str):
                    payload = payload.encode()
                entry = decode_entry(last, payload)
                if wanted is not None and entry.type not in wanted:
                    continue
                show(entry)
                shown += 1
                if count is not None and shown >= count:
                    return shown
    return shown
