"""Our working orders, indexed for the pre-trade checks.

The checks ask three things of every candidate: is this client order id already working, how much do our
working orders on the candidate's side add to the position (per symbol, and per strategy), and does one of
our resting orders on the other side cross it. A flat list answers each by a scan of every open order, so a
backlog of working orders made every new order slower; here each answer costs O(1), or O(resting limit
orders in one symbol and side) for the crossing test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from wavesquant.types import Side


class OpenOrder(NamedTuple):
    """One of our working orders; `price` is None for a market order still working."""

    client_order_id: str
    strategy_id: str
    symbol: str
    side: Side
    price: float | None
    remaining: float


class _Pending:
    """Sum of `remaining` over a group of orders; exactly 0.0 once the group is empty (no float residue)."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0

    def add(self, qty: float) -> None:
        self.count += 1
        self.total += qty

    def remove(self, qty: float) -> None:
        self.count -= 1
        self.total = self.total - qty if self.count else 0.0


class OpenOrders(Mapping[str, OpenOrder]):
    """client order id -> OpenOrder, with per-(symbol, side) and per-(strategy, symbol, side) pending
    quantities and the resting limit orders per (symbol, side). Orders with nothing remaining count nowhere."""

    def __init__(self, orders: Iterable[OpenOrder] = ()) -> None:
        self._orders: dict[str, OpenOrder] = {}
        self._by_side: dict[tuple[str, Side], _Pending] = {}
        self._by_strategy: dict[tuple[str, str, Side], _Pending] = {}
        self._resting: dict[tuple[str, Side], dict[str, float]] = {}
        for order in orders:
            self.put(order)

    # Mapping ---------------------------------------------------------------------------------------------
    def __getitem__(self, client_order_id: str) -> OpenOrder:
        return self._orders[client_order_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._orders)

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    # changes ---------------------------------------------------------------------------------------------
    def put(self, order: OpenOrder) -> None:
        """Add the order, or replace what we knew of it (e.g. a smaller remaining after a partial fill)."""
        self.pop(order.client_order_id)
        self._orders[order.client_order_id] = order
        if not order.remaining > 0:
            return
        self._by_side.setdefault((order.symbol, order.side), _Pending()).add(order.remaining)
        key = (order.strategy_id, order.symbol, order.side)
        self._by_strategy.setdefault(key, _Pending()).add(order.remaining)
        if order.price is not None:
            self._resting.setdefault((order.symbol, order.side), {})[order.client_order_id] = order.price

    def pop(self, client_order_id: str, default: OpenOrder | None = None) -> OpenOrder | None:  # type: ignore[override]
        order = self._orders.pop(client_order_id, None)
        if order is None:
            return default
        if order.remaining > 0:
            _drop(self._by_side, (order.symbol, order.side), order.remaining)
            _drop(self._by_strategy, (order.strategy_id, order.symbol, order.side), order.remaining)
            resting = self._resting.get((order.symbol, order.side))
            if resting is not None:
                resting.pop(client_order_id, None)
                if not resting:
                    del self._resting[(order.symbol, order.side)]
        return order

    # questions the checks ask ----------------------------------------------------------------------------
    def pending(self, symbol: str, side: Side, strategy_id: str | None = None) -> float:
        """Unsigned quantity still working on `side` of `symbol` (of one strategy when given)."""
        group = self._by_side.get((symbol, side)) if strategy_id is None else \
            self._by_strategy.get((strategy_id, symbol, side))
        return group.total if group is not None else 0.0

    def crossing(self, symbol: str, side: Side, limit_price: float | None) -> OpenOrder | None:
        """Our resting order on the other side that an order on `side` (market when `limit_price` is None)
        would trade against: the most aggressive one, or None."""
        other = Side.SELL if side is Side.BUY else Side.BUY
        resting = self._resting.get((symbol, other))
        if not resting:
            return None
        if other is Side.SELL:
            coid = min(resting, key=resting.__getitem__)  # our lowest ask
            crosses = limit_price is None or limit_price >= resting[coid]
        else:
            coid = max(resting, key=resting.__getitem__)  # our highest bid
            crosses = limit_price is None or limit_price <= resting[coid]
        return self._orders[coid] if crosses else None


def _drop(groups: dict, key: tuple, qty: float) -> None:
    group = groups[key]
    group.remove(qty)
    if not group.count:
        del groups[key]
