"""Bring the trade journal up to date from the bus event log, incrementally and idempotently.

Reads the event log after the last entry the journal applied, page by page; each page is applied in one SQLite
transaction together with its last entry id, so an interrupted sync resumes where the last committed page ended
and never applies a page twice. Execution reports give order states and fills; order transitions give each
order's request (its first transition) and the states no report announces (pending_cancel).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from wavesquant.bus.base import Bus
from wavesquant.execution.orders import request_from_dict
from wavesquant.journal.store import JournalFill, TradeJournal
from wavesquant.messages import Channel, Envelope, ExecutionReport, OrderTransition, decode
from wavesquant.types import Liquidity, OrderStatus

log = structlog.get_logger(__name__)

PAGE = 1000


@dataclass(slots=True)
class SyncStats:
    entries: int = 0  # event-log entries read
    applied: int = 0  # execution reports and order transitions applied
    undecodable: int = 0  # entries that are not a valid message (skipped)
    malformed: int = 0  # valid messages whose order request/transition could not be read (skipped)
    new_fills: int = 0
    gap: bool = False  # the log was trimmed past the journal's last entry: some history may be missing
    last_event_id: str | None = None


def next_entry_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id` (an inclusive start for reading what follows it)."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms)}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def sync_journal(journal: TradeJournal, bus: Bus, stats: SyncStats | None = None, page: int = PAGE) -> int:
    """Apply every event-log entry after the journal's last applied one. Returns how many execution reports
    and order transitions were applied; `stats`, when given, receives the details."""
    stats = stats if stats is not None else SyncStats()
    last = journal.last_event_id
    stats.last_event_id = last
    if last is not None:
        stats.gap = await _trimmed_past(bus, last)
        if stats.gap:
            log.warning("journal_gap", last_event_id=last,
                        detail="the event log no longer holds the journal's last entry; history may be missing")
    start = next_entry_id(last) if last is not None else "-"
    while True:
        entries = await bus.read_range(Channel.EVENTS, start=start, count=page)
        if not entries:
            break
        with journal.transaction():
            for _, raw in entries:
                stats.entries += 1
                try:
                    msg = decode(raw)
                except ValueError:  # pydantic.ValidationError is a ValueError
                    stats.undecodable += 1
                    continue
                _apply(journal, msg, stats)
            journal.set_last_event_id(entries[-1][0])
        stats.last_event_id = entries[-1][0]
        start = next_entry_id(entries[-1][0])
        if len(entries) < page:
            break
    if stats.undecodable or stats.malformed:
        log.warning("journal_sync_skipped", undecodable=stats.undecodable, malformed=stats.malformed)
    return stats.applied


async def _trimmed_past(bus: Bus, last: str) -> bool:
    if await bus.read_range(Channel.EVENTS, start=last, end=last, count=1):
        return False
    first = await bus.read_range(Channel.EVENTS, count=1)
    return bool(first) and _id_key(first[0][0]) > _id_key(last)


def _apply(journal: TradeJournal, msg: Envelope, stats: SyncStats) -> None:
    if isinstance(msg, ExecutionReport):
        _apply_report(journal, msg, stats)
        stats.applied += 1
    elif isinstance(msg, OrderTransition):
        try:
            _apply_transition(journal, msg)
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            stats.malformed += 1
            log.warning("journal_bad_transition", client_order_id=msg.client_order_id, error=str(exc)[:200])
            return
        stats.applied += 1


def _apply_report(journal: TradeJournal, r: ExecutionReport, stats: SyncStats) -> None:
    journal.record_order_state(
        client_order_id=r.client_order_id, strategy_id=r.strategy_id, signal_id=r.signal_id, symbol=r.symbol,
        side=r.side.value, quantity=r.quantity, status=r.status.value, filled_quantity=r.filled_quantity,
        average_price=r.average_price, ts_ms=r.ts_ms,
    )
    if r.kind == "fill" and r.fill_id is not None and r.last_quantity and r.last_price is not None:
        fill = JournalFill(
            fill_id=r.fill_id, client_order_id=r.client_order_id, strategy_id=r.strategy_id, symbol=r.symbol,
            side=r.side.value, quantity=r.last_quantity, price=r.last_price, fee=r.fee,
            fee_currency=r.fee_currency, liquidity=(r.liquidity or Liquidity.TAKER).value, ts_ms=r.ts_ms,
        )
        if journal.record_fill(fill):
            stats.new_fills += 1


def _apply_transition(journal: TradeJournal, t: OrderTransition) -> None:
    if t.request is not None:
        request = request_from_dict(t.request)
        journal.record_order_request(
            client_order_id=t.client_order_id, strategy_id=t.strategy_id or request.strategy_id or None,
            signal_id=t.signal_id, symbol=request.symbol, side=request.side.value, type=request.type.value,
            quantity=request.quantity, limit_price=request.limit_price, created_ms=t.ts_ms,
        )
    for step in t.transitions:
        status = OrderStatus(step["to_status"])
        journal.record_status(t.client_order_id, status.value, int(step["ts_ms"]))
