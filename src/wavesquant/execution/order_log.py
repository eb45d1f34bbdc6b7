"""Orders from the event log: fold `order_transition` entries into per-order records and replay each through
the order state machine (execution rebuilds its book from this at start; `wq orders` shows it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wavesquant.execution.orders import Order, Transition, request_from_dict
from wavesquant.execution.venues.base import OrderRequest
from wavesquant.messages import OrderTransition


@dataclass(slots=True)
class OrderRecord:
    request: OrderRequest | None = None  # from the order's first entry
    created_ms: int = 0
    strategy_id: str | None = None
    signal_id: str | None = None
    history: list[Transition] = field(default_factory=list)
    problem: str = ""  # an entry could not be read

    def replay(self) -> tuple[Order, str]:
        """The order rebuilt from its history, and a problem ("" when the history replays cleanly). A
        history that does not replay yields the order as first created, with the reason."""
        assert self.request is not None
        try:
            return Order.from_history(self.request, self.created_ms, self.history), self.problem
        except ValueError as exc:
            return Order(request=self.request, created_ts_ms=self.created_ms), self.problem or str(exc)[:200]


def fold(records: dict[str, OrderRecord], msg: OrderTransition) -> None:
    """Add one logged entry (its request and transitions) to its order's record."""
    record = records.setdefault(msg.client_order_id, OrderRecord())
    try:
        if msg.request is not None and record.request is None:
            record.request = request_from_dict(msg.request)
            record.created_ms = msg.ts_ms
        record.history.extend([Transition.from_dict(t) for t in msg.transitions])  # all of the entry, or none
    except (KeyError, TypeError, ValueError) as exc:
        record.problem = record.problem or f"unreadable transition: {exc}"[:200]
    record.strategy_id = record.strategy_id or msg.strategy_id
    record.signal_id = record.signal_id or msg.signal_id
