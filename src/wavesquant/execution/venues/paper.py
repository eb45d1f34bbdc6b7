"""The paper venue: the Venue interface over the MatchingEngine, with state kept in a PaperStore.

Like an exchange, it outlives its clients: every order, fill, balance and position change is committed to the
store (one atomic commit per call), and `connect` reloads them, so a restarted venue knows its orders and never
fills one twice. Like an exchange's order history, its memory is bounded: it remembers every open order and the
latest `history` closed orders and fills (memory and store stay flat however long it trades; at 1,000 orders/s
the default 100,000 is over a minute and a half, far beyond any redelivery or order expiry). Market data (not
persisted) must be fed again after a restart.

Balances use spot semantics: a buy adds base and pays quote, a sell the reverse, fees are paid in the fee
currency; no funds check is made (balances may go negative). Positions are the signed net base quantity per
symbol from the fills.

Time: `clock()` (ms) if given, else event time: the latest market data or request timestamp seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from numpy.typing import ArrayLike
from redis.exceptions import RedisError

from wavesquant.core.segmented import SegmentedDict
from wavesquant.execution.market_rules import RejectCode, split_symbol
from wavesquant.execution.matching import MatchingEngine, PaperOrder
from wavesquant.execution.orders import qty_tol
from wavesquant.execution.venues.base import (
    Fill,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    Venue,
    VenueError,
    VenueOrder,
    VenueUnavailable,
)
from wavesquant.execution.venues.paper_store import (
    DEFAULT_KEEP_FILLS,
    InMemoryPaperStore,
    PaperCommit,
    PaperStore,
)


class PaperVenue(Venue):
    def __init__(
        self,
        engine: MatchingEngine | None = None,
        store: PaperStore | None = None,
        starting_balances: Mapping[str, float] | None = None,
        clock: Callable[[], int] | None = None,
        name: str = "paper",
        history: int = DEFAULT_KEEP_FILLS,
    ) -> None:
        self.name = name
        self.engine = engine or MatchingEngine()
        self._store: PaperStore = store or InMemoryPaperStore(keep_fills=history)
        self._starting_balances = dict(starting_balances or {})
        self._clock = clock
        self._event_ts_ms = 0
        self._lock = asyncio.Lock()
        self._connected = False
        self._history = history
        self._fills: SegmentedDict[str, Fill] = SegmentedDict()  # the latest `history` by fill id, oldest first
        self._closed: SegmentedDict[str, None] = SegmentedDict()  # closed orders remembered, oldest first
        self._balances: dict[str, float] = {}
        self._positions: dict[str, float] = {}
        self._dirty_orders: dict[str, PaperOrder] = {}
        self._unsaved_fills: list[Fill] = []
        self._forgotten: list[str] = []  # closed orders dropped from memory, not yet from the store
        # commits sent by submit_many(settle_later=True), with what they carry, until `settle` awaits them
        self._unsettled: list[tuple[Awaitable[None], _Carried]] = []

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Load the stored state (once); a fresh store starts from `starting_balances`."""
        async with self._lock:
            if self._connected:
                return
            snapshot = await self._store.load()
            orders = [PaperOrder.from_dict(o) for o in snapshot.orders]
            self.engine.restore(orders)
            closed = sorted((o for o in orders if o.status.is_terminal), key=lambda o: (o.updated_ts_ms, o.seq))
            self._closed.update((o.client_order_id, None) for o in closed)
            self._balances = dict(self._starting_balances if snapshot.balances is None else snapshot.balances)
            for fill in snapshot.fills:
                self._remember_fill(fill)
            if snapshot.positions is not None:
                self._positions = dict(snapshot.positions)
            else:  # a store from before positions were stored kept every fill: sum them
                for fill in snapshot.fills:
                    self._add_to_position(fill)
            self._forget_beyond_history()
            self._connected = True

    async def close(self) -> None:
        """Settle commits in flight and flush anything a failed commit left unsaved (best effort), then
        disconnect."""
        with contextlib.suppress(VenueUnavailable):
            await self.settle()
        async with self._lock:
            if self._connected and (self._dirty_orders or self._unsaved_fills or self._forgotten):
                with contextlib.suppress(VenueUnavailable):
                    await self._flush()
            self._connected = False

    # --- orders -------------------------------------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> VenueOrder:
        """Idempotent by client order id; reduce-only is checked here against the current position."""
        (result,) = await self.submit_many([request])
        if isinstance(result, VenueError):
            raise result
        return result

    async def submit_many(
        self, requests: list[OrderRequest], settle_later: bool = False
    ) -> list[VenueOrder | VenueError]:
        """Several submits in one engine pass and one store commit; each request gets its order or the error
        a lone submit would have raised. A failed commit makes every accepted one's outcome unknown.

        settle_later: send the commit but do not wait for it; the caller publishes what it learned (on the
        same bus connection, so it lands after the commit) and then awaits `settle()`. Saves a round trip on
        the order path."""
        async with self._lock:
            self._require_connected()
            results: list[VenueOrder | VenueError] = []
            try:
                for request in requests:
                    results.append(self._submit_one(request))
            finally:
                try:
                    await self._commit(settle_later)
                except VenueUnavailable as exc:
                    results = [r if isinstance(r, OrderRejected) else exc for r in results]
            return results

    async def settle(self) -> None:
        """Wait for the commits `submit_many(settle_later=True)` sent. Raises VenueUnavailable when one failed;
        what it carried stays unsaved and goes with the next commit."""
        unsettled, self._unsettled = self._unsettled, []
        failure: Exception | None = None
        for outcome, carried in unsettled:
            try:
                await outcome
            except (TimeoutError, RedisError, OSError) as exc:
                self._keep_unsaved(carried)
                failure = failure or exc
        if failure is not None:
            raise VenueUnavailable(f"{self.name}: state not persisted ({failure}); will retry") from failure

    def _submit_one(self, request: OrderRequest) -> VenueOrder | VenueError:
        ts = self._now(request.ts_ms)
        self.engine.advance(ts)
        self._absorb()
        try:
            if request.reduce_only and self.engine.get(request.client_order_id) is None:
                self._check_reduce_only(request)
            order, _ = self.engine.submit(request, ts)
        except OrderRejected as exc:
            if exc.code == RejectCode.NO_MARKET_DATA.value:
                # an exchange always has a price: ours only lacks one until the first tick after a (re)start,
                # so this is "try again shortly", not a rejection
                return VenueUnavailable(f"{self.name}: no price for {request.symbol} yet")
            return exc
        return order

    async def cancel_many(self, orders: list[tuple[str, str]]) -> list[VenueOrder]:
        """Cancel several orders in one engine pass and one store commit (the kill switch). Orders the
        venue does not know are skipped."""
        async with self._lock:
            self._require_connected()
            ts = self._now()
            out: list[VenueOrder] = []
            try:
                for client_order_id, symbol in orders:
                    known = self.engine.get(client_order_id)
                    if known is None or known.symbol != symbol:
                        continue
                    order, _ = self.engine.cancel(client_order_id, ts)
                    out.append(order)
            finally:
                await self._commit()
            return out

    async def cancel(self, client_order_id: str, symbol: str) -> VenueOrder:
        async with self._lock:
            self._require_connected()
            known = self.engine.get(client_order_id)
            if known is None or known.symbol != symbol:
                raise OrderNotFound(f"{client_order_id} ({symbol})")
            try:
                order, _ = self.engine.cancel(client_order_id, self._now())
            finally:
                await self._commit()
            return order

    async def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        self._require_connected()
        order = self.engine.get(client_order_id)
        return order if order is not None and order.symbol == symbol else None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        self._require_connected()
        return self.engine.open_orders(symbol)

    async def fetch_fills(self, symbol: str | None = None, since_ms: int | None = None) -> list[Fill]:
        self._require_connected()
        return [
            f
            for f in self._fills.values()
            if (symbol is None or f.symbol == symbol) and (since_ms is None or f.ts_ms >= since_ms)
        ]

    async def fetch_balances(self) -> dict[str, float]:
        self._require_connected()
        return dict(self._balances)

    async def fetch_positions(self) -> dict[str, float]:
        self._require_connected()
        return {s: q for s, q in self._positions.items() if abs(q) > qty_tol(q)}

    def last_price(self, symbol: str) -> float | None:
        return self.engine.last_price(symbol)

    # --- market data (passed to the engine; resulting fills are persisted) -----------------------------------

    async def on_book(self, symbol: str, ts_ms: int, bids: ArrayLike, asks: ArrayLike) -> list[Fill]:
        return await self._feed(ts_ms, self.engine.on_book, symbol, ts_ms, bids, asks)

    async def on_quote(
        self, symbol: str, ts_ms: int, bid: float, ask: float, bid_size: float, ask_size: float
    ) -> list[Fill]:
        return await self._feed(ts_ms, self.engine.on_quote, symbol, ts_ms, bid, ask, bid_size, ask_size)

    async def on_trade(self, symbol: str, ts_ms: int, price: float, size: float) -> list[Fill]:
        return await self._feed(ts_ms, self.engine.on_trade, symbol, ts_ms, price, size)

    async def on_ticks(self, symbols: Sequence[str], ts_ms: int, prices: Sequence[float], sizes: Sequence[float],
                       bids: Sequence[float] | None = None, asks: Sequence[float] | None = None) -> list[Fill]:
        """A batch of ticks (quote when bids/asks are given, then the trade) in one pass and one commit."""

        def feed() -> list[Fill]:
            fills: list[Fill] = []
            for i, symbol in enumerate(symbols):
                if bids is not None and asks is not None:
                    fills += self.engine.on_quote(symbol, ts_ms, bids[i], asks[i], math.nan, math.nan)
                fills += self.engine.on_trade(symbol, ts_ms, prices[i], sizes[i])
            return fills

        return await self._feed(ts_ms, feed)

    async def on_bar(
        self, symbol: str, ts_ms: int, open: float, high: float, low: float, close: float, volume: float
    ) -> list[Fill]:
        return await self._feed(ts_ms, self.engine.on_bar, symbol, ts_ms, open, high, low, close, volume)

    # --- internals ----------------------------------------------------------------------------------------

    async def _feed(self, ts_ms: int, handler: Callable[..., list[Fill]], *args: Any) -> list[Fill]:
        async with self._lock:
            self._require_connected()
            self._event_ts_ms = max(self._event_ts_ms, ts_ms)
            try:
                return handler(*args)
            finally:
                await self._commit()

    def _require_connected(self) -> None:
        if not self._connected:
            raise VenueUnavailable(f"{self.name}: not connected")

    def _now(self, request_ts_ms: int = 0) -> int:
        if self._clock is not None:
            return int(self._clock())
        self._event_ts_ms = max(self._event_ts_ms, request_ts_ms)
        return self._event_ts_ms

    def _check_reduce_only(self, request: OrderRequest) -> None:
        position = self._positions.get(request.symbol, 0.0)
        reduces = position * request.side.sign < 0
        if not reduces or request.quantity > abs(position) + qty_tol(position):
            raise OrderRejected(
                RejectCode.REDUCE_ONLY.value,
                f"{request.client_order_id}: {request.side.value} {request.quantity} does not reduce {position}",
            )

    def _absorb(self) -> None:
        """Take the engine's changes: book new fills into fills, balances and positions; mark orders dirty."""
        changed, fills = self.engine.drain_changes()
        for order in changed:
            self._dirty_orders[order.client_order_id] = order
            if order.status.is_terminal and order.client_order_id not in self._closed:
                self._closed[order.client_order_id] = None
        for fill in fills:
            if fill.fill_id in self._fills:
                continue
            self._remember_fill(fill)
            self._unsaved_fills.append(fill)
            self._book(fill)
        self._forget_beyond_history()

    def _remember_fill(self, fill: Fill) -> None:
        if len(self._fills) >= self._history:
            self._fills.pop_oldest()
        self._fills[fill.fill_id] = fill

    def _forget_beyond_history(self) -> None:
        """Closed orders beyond the latest `history` leave memory now and the store with the next commit."""
        while len(self._closed) > self._history:
            client_order_id, _ = self._closed.pop_oldest()
            self.engine.forget(client_order_id)
            self._forgotten.append(client_order_id)

    async def _commit(self, settle_later: bool = False) -> None:
        """Absorb the engine's changes, then persist everything not yet saved (one atomic store commit)."""
        self._absorb()
        if self._dirty_orders or self._unsaved_fills or self._forgotten:
            await self._flush(settle_later)

    async def _flush(self, settle_later: bool = False) -> None:
        carried = _Carried(self._dirty_orders, self._unsaved_fills, self._forgotten)
        self._dirty_orders, self._unsaved_fills, self._forgotten = {}, [], []
        change = PaperCommit([o.to_dict() for o in carried.orders.values()], carried.fills, self._balances,
                             self._positions, carried.forgotten)
        try:
            outcome = await self._store.begin_commit(change)
            if settle_later:
                self._unsettled.append((outcome, carried))
                return
            await outcome
        except (TimeoutError, RedisError, OSError) as exc:
            self._keep_unsaved(carried)
            raise VenueUnavailable(f"{self.name}: state not persisted ({exc}); will retry") from exc

    def _keep_unsaved(self, carried: _Carried) -> None:
        """Put back what a failed commit carried (a newer change of the same order, if any, is kept)."""
        for client_order_id, order in carried.orders.items():
            self._dirty_orders.setdefault(client_order_id, order)
        self._unsaved_fills[:0] = carried.fills
        self._forgotten[:0] = carried.forgotten

    def _book(self, fill: Fill) -> None:
        base, quote = split_symbol(fill.symbol)
        sign = fill.side.sign
        self._balances[base] = self._balances.get(base, 0.0) + sign * fill.quantity
        self._balances[quote] = self._balances.get(quote, 0.0) - sign * fill.quantity * fill.price
        self._balances[fill.fee_currency] = self._balances.get(fill.fee_currency, 0.0) - fill.fee
        self._add_to_position(fill)

    def _add_to_position(self, fill: Fill) -> None:
        self._positions[fill.symbol] = self._positions.get(fill.symbol, 0.0) + fill.side.sign * fill.quantity


@dataclass(frozen=True, slots=True)
class _Carried:
    """What one store commit carries, to put back if it fails."""

    orders: dict[str, PaperOrder]
    fills: list[Fill]
    forgotten: list[str]
