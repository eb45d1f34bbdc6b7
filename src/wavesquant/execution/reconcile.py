"""Reconciliation: compare our view of open orders, fills and positions with the venue's; the venue wins.

Resolutions per order:

* ADOPT: the venue has an open order we do not track (e.g. placed before a crash) - start tracking it;
* UPDATE: we have it open, the venue reports another status or filled quantity - take the venue's;
* NOT_FOUND: we have it open, the venue does not know it - counted, nothing changes yet (a freshly placed
  order can be invisible for a moment, and "not found" answers may be transient);
* LOST: the venue did not know it `lost_after` times in a row - give it up.

The consecutive not-found counts are explicit state: pass the previous report's `not_found_counts` into the
next run. A transient venue failure (VenueUnavailable) is never counted as "not found": it propagates.
`compare` is pure; `reconcile` gathers the venue's truth through the Venue interface and calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from wavesquant.execution.venues.base import Fill, Venue, VenueOrder
from wavesquant.types import OrderStatus


class LocalOrder(Protocol):
    """What reconciliation needs of a locally tracked order (VenueOrder satisfies it)."""

    @property
    def client_order_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def status(self) -> OrderStatus: ...
    @property
    def filled_quantity(self) -> float: ...


class Resolution(StrEnum):
    ADOPT = "adopt"
    UPDATE = "update"
    NOT_FOUND = "not_found"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class OrderDiff:
    client_order_id: str
    symbol: str
    resolution: Resolution
    venue: VenueOrder | None  # the venue's view (None for NOT_FOUND / LOST)
    not_found_count: int = 0


@dataclass(frozen=True, slots=True)
class PositionDiff:
    symbol: str
    local: float
    venue: float


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    orders: tuple[OrderDiff, ...] = ()
    missing_fills: tuple[Fill, ...] = ()  # venue fills we have not recorded
    positions: tuple[PositionDiff, ...] = ()
    not_found_counts: Mapping[str, int] = field(default_factory=dict)  # feed into the next run

    def _with(self, resolution: Resolution) -> list[OrderDiff]:
        return [d for d in self.orders if d.resolution is resolution]

    @property
    def adopted(self) -> list[OrderDiff]:
        return self._with(Resolution.ADOPT)

    @property
    def updated(self) -> list[OrderDiff]:
        return self._with(Resolution.UPDATE)

    @property
    def not_found(self) -> list[OrderDiff]:
        return self._with(Resolution.NOT_FOUND)

    @property
    def lost(self) -> list[OrderDiff]:
        return self._with(Resolution.LOST)

    @property
    def clean(self) -> bool:
        return not (self.orders or self.missing_fills or self.positions)


def _order_key(order: VenueOrder) -> str:
    return order.client_order_id or order.venue_order_id


def _differs(local: LocalOrder, venue: VenueOrder) -> bool:
    return local.status != venue.status or abs(local.filled_quantity - venue.filled_quantity) > 1e-12


def compare(
    local_open: Mapping[str, LocalOrder],
    venue_open: Sequence[VenueOrder],
    venue_lookups: Mapping[str, VenueOrder | None],
    *,
    not_found_counts: Mapping[str, int] | None = None,
    lost_after: int = 3,
    local_fill_ids: Iterable[str] | None = None,
    venue_fills: Sequence[Fill] = (),
    local_positions: Mapping[str, float] | None = None,
    venue_positions: Mapping[str, float] | None = None,
    position_tolerance: float = 1e-9,
) -> ReconcileReport:
    """Pure comparison. `venue_lookups` holds the venue's answer for each local open order missing from
    `venue_open` (None = the venue does not know it). Fills/positions are compared only when the local side
    is given."""
    if lost_after < 1:
        raise ValueError("lost_after must be at least 1")
    counts_before = dict(not_found_counts or {})
    counts: dict[str, int] = {}
    diffs: list[OrderDiff] = []
    venue_by_key = {_order_key(o): o for o in venue_open}

    for key, venue_order in venue_by_key.items():
        if key not in local_open:
            diffs.append(OrderDiff(key, venue_order.symbol, Resolution.ADOPT, venue_order))

    for cid, local in local_open.items():
        venue_order = venue_by_key.get(cid)
        if venue_order is None:
            venue_order = venue_lookups.get(cid)
        if venue_order is None:
            count = counts_before.get(cid, 0) + 1
            if count >= lost_after:
                diffs.append(OrderDiff(cid, local.symbol, Resolution.LOST, None, count))
            else:
                counts[cid] = count
                diffs.append(OrderDiff(cid, local.symbol, Resolution.NOT_FOUND, None, count))
        elif _differs(local, venue_order):
            diffs.append(OrderDiff(cid, local.symbol, Resolution.UPDATE, venue_order))

    missing: tuple[Fill, ...] = ()
    if local_fill_ids is not None:
        known = set(local_fill_ids)
        missing = tuple(f for f in venue_fills if f.fill_id not in known)

    positions: list[PositionDiff] = []
    if local_positions is not None and venue_positions is not None:
        for symbol in sorted(set(local_positions) | set(venue_positions)):
            mine, theirs = local_positions.get(symbol, 0.0), venue_positions.get(symbol, 0.0)
            if abs(mine - theirs) > position_tolerance:
                positions.append(PositionDiff(symbol, mine, theirs))

    return ReconcileReport(tuple(diffs), missing, tuple(positions), counts)


async def reconcile(
    local_open: Mapping[str, LocalOrder],
    venue: Venue,
    *,
    not_found_counts: Mapping[str, int] | None = None,
    lost_after: int = 3,
    symbol: str | None = None,
    local_fill_ids: Iterable[str] | None = None,
    fills_since_ms: int | None = None,
    local_positions: Mapping[str, float] | None = None,
) -> ReconcileReport:
    """Ask `venue` for its truth (open orders, each missing local order by client id, and fills/positions
    when the local side is given) and compare. VenueUnavailable propagates: nothing is counted then."""
    venue_open = await venue.fetch_open_orders(symbol)
    open_keys = {_order_key(o) for o in venue_open}
    lookups: dict[str, VenueOrder | None] = {}
    for cid, local in local_open.items():
        if cid not in open_keys:
            lookups[cid] = await venue.fetch_order(cid, local.symbol)
    venue_fills: list[Fill] = []
    if local_fill_ids is not None:
        venue_fills = await venue.fetch_fills(symbol, fills_since_ms)
    venue_positions = await venue.fetch_positions() if local_positions is not None else None
    return compare(
        local_open,
        venue_open,
        lookups,
        not_found_counts=not_found_counts,
        lost_after=lost_after,
        local_fill_ids=local_fill_ids,
        venue_fills=venue_fills,
        local_positions=local_positions,
        venue_positions=venue_positions,
    )
