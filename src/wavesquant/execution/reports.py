"""Mapping between execution reports on the wire and the execution domain's fills and orders."""

from __future__ import annotations

from wavesquant.execution.orders import Order
from wavesquant.execution.venues.base import Fill
from wavesquant.messages import ExecutionReport
from wavesquant.messages.orders import ReportKind
from wavesquant.types import Liquidity


def fill_from_report(r: ExecutionReport) -> Fill | None:
    """The fill a fill report carries (None for other kinds)."""
    if r.kind != "fill" or r.fill_id is None or r.last_quantity is None or r.last_price is None:
        return None
    return Fill(
        client_order_id=r.client_order_id, venue_order_id=r.venue_order_id, fill_id=r.fill_id, symbol=r.symbol,
        side=r.side, quantity=r.last_quantity, price=r.last_price, fee=r.fee, fee_currency=r.fee_currency,
        liquidity=r.liquidity or Liquidity.TAKER, ts_ms=r.ts_ms,
    )


def report_fields(order: Order, kind: ReportKind, venue: str, fill: Fill | None = None,
                  reason: str = "") -> dict[str, object]:
    """Fields of an ExecutionReport describing our `order` now (and `fill`, for a fill report)."""
    fields: dict[str, object] = {
        "kind": kind, "client_order_id": order.client_order_id, "venue_order_id": (order.venue_order_id or "")[:200],
        "venue": venue, "symbol": order.symbol, "side": order.side, "status": order.status, "quantity": order.quantity,
        "filled_quantity": min(order.filled_qty, order.quantity), "average_price": order.avg_fill_price or None,
        "reason": reason[:200],
    }
    if fill is not None:
        fields.update(fill_id=fill.fill_id[:200], last_quantity=fill.quantity, last_price=fill.price, fee=fill.fee,
                      fee_currency=fill.fee_currency[:200], liquidity=fill.liquidity)
    return fields
