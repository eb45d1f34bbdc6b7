"""Per-market trading rules (tick, lot, minimums): rounding and pre-submit validation with coded reasons."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from wavesquant.execution.venues.base import OrderRequest
from wavesquant.types import OrderType, Side

# ccxt's precision modes (ccxt.base.decimal_to_precision), repeated so importing ccxt is not needed here
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

_GRID_EPS = 1e-9  # relative tolerance, in ticks/lots, for "is on the grid"


class RejectCode(StrEnum):
    """Coded reasons for refusing an order (OrderRejected.code)."""

    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_ORDER = "invalid_order"  # e.g. a limit without price, a post-only market order
    MIN_QTY = "min_qty"
    MAX_QTY = "max_qty"
    LOT_SIZE = "lot_size"
    TICK_SIZE = "tick_size"
    MIN_PRICE = "min_price"
    MAX_PRICE = "max_price"
    MIN_NOTIONAL = "min_notional"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    NO_MARKET_DATA = "no_market_data"
    REDUCE_ONLY = "reduce_only"


def split_symbol(symbol: str) -> tuple[str, str]:
    """ccxt unified symbol -> (base, quote): "BTC/USDT" and "BTC/USDT:USDT" -> ("BTC", "USDT")."""
    base, _, rest = symbol.partition("/")
    return base, rest.split(":", 1)[0]


def _decimals(step: float) -> int:
    """Decimal places of a grid step: 0.01 -> 2, 0.25 -> 2, 5 -> 0."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _grid_index(value: float, step: float) -> float:
    return value / step


def _on_grid(value: float, step: float) -> bool:
    n = _grid_index(value, step)
    return abs(n - round(n)) <= _GRID_EPS * max(1.0, abs(n))


@dataclass(frozen=True, slots=True)
class MarketRules:
    """A step or minimum of 0 means "no constraint"."""

    tick_size: float = 0.0
    lot_size: float = 0.0
    min_qty: float = 0.0
    max_qty: float = math.inf
    min_notional: float = 0.0  # in quote currency
    min_price: float = 0.0
    max_price: float = math.inf

    @property
    def price_precision(self) -> int | None:
        """Decimal places of the tick size, None without a tick."""
        return _decimals(self.tick_size) if self.tick_size > 0 else None

    @property
    def qty_precision(self) -> int | None:
        return _decimals(self.lot_size) if self.lot_size > 0 else None

    def round_price(self, price: float, side: Side | None = None) -> float:
        """Snap a limit price to the tick: a buy rounds down and a sell rounds up, so rounding never makes the
        order more aggressive than asked; side None rounds to the nearest tick."""
        if self.tick_size <= 0 or not math.isfinite(price):
            return price
        n = _grid_index(price, self.tick_size)
        tol = _GRID_EPS * max(1.0, abs(n))
        if side is Side.BUY:
            k = math.floor(n + tol)
        elif side is Side.SELL:
            k = math.ceil(n - tol)
        else:
            k = round(n)
        return round(k * self.tick_size, _decimals(self.tick_size))

    def round_qty(self, quantity: float) -> float:
        """Round a quantity down to the lot size (never trade more than asked)."""
        if self.lot_size <= 0 or not math.isfinite(quantity):
            return quantity
        n = _grid_index(quantity, self.lot_size)
        k = math.floor(n + _GRID_EPS * max(1.0, abs(n)))
        return round(k * self.lot_size, _decimals(self.lot_size))

    def validate(
        self,
        order_type: OrderType,
        quantity: float,
        price: float | None,
        reference_price: float | None = None,
    ) -> RejectCode | None:
        """The first rule the order breaks, or None. `price` is the limit price (None for market orders);
        a market order's notional is checked against `reference_price` when given."""
        if not (math.isfinite(quantity) and quantity > 0.0):
            return RejectCode.INVALID_QUANTITY
        if quantity < self.min_qty * (1.0 - _GRID_EPS):
            return RejectCode.MIN_QTY
        if quantity > self.max_qty * (1.0 + _GRID_EPS):
            return RejectCode.MAX_QTY
        if self.lot_size > 0 and not _on_grid(quantity, self.lot_size):
            return RejectCode.LOT_SIZE
        if order_type is OrderType.LIMIT:
            if price is None:
                return RejectCode.INVALID_ORDER
            if not (math.isfinite(price) and price > 0.0):
                return RejectCode.INVALID_PRICE
            if self.tick_size > 0 and not _on_grid(price, self.tick_size):
                return RejectCode.TICK_SIZE
            if price < self.min_price * (1.0 - _GRID_EPS):
                return RejectCode.MIN_PRICE
            if price > self.max_price * (1.0 + _GRID_EPS):
                return RejectCode.MAX_PRICE
            reference_price = price
        if reference_price is not None and quantity * reference_price < self.min_notional * (1.0 - _GRID_EPS):
            return RejectCode.MIN_NOTIONAL
        return None

    def validate_request(self, request: OrderRequest, reference_price: float | None = None) -> RejectCode | None:
        return self.validate(request.type, request.quantity, request.limit_price, reference_price)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _infer_precision_mode(market: Mapping[str, Any]) -> int:
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    values = {key: _number(precision.get(key)) for key in ("price", "amount")}
    known = {key: v for key, v in values.items() if v is not None}
    if any(v != int(v) for v in known.values()):
        return TICK_SIZE
    if any(v == 0 for v in known.values()):
        return DECIMAL_PLACES
    if not known:
        return TICK_SIZE  # nothing to interpret
    # all integers >= 1: read as tick sizes they must not exceed the market's own minimums
    for key, v in known.items():
        minimum = _number((limits.get(key) or {}).get("min"))
        if minimum is not None and 0 < minimum < v * (1.0 - _GRID_EPS):
            return DECIMAL_PLACES
    raise ValueError(f"ambiguous ccxt precision {dict(precision)}: pass precision_mode (exchange.precisionMode)")


def rules_from_ccxt_market(market: Mapping[str, Any], precision_mode: int | None = None) -> MarketRules:
    """Build rules from a ccxt market definition (`exchange.markets[symbol]`).

    `precision_mode` is the exchange's `precisionMode` (ccxt: DECIMAL_PLACES=2, TICK_SIZE=4). Without it the
    mode is inferred: any fractional precision means tick sizes, a 0 means decimal places, an integer larger
    than the market's own minimum (amount 5 with limits.amount.min 1e-05) means decimal places; anything
    else (e.g. {price: 1, amount: 1}) is ambiguous and raises ValueError.
    """
    precision = market.get("precision") or {}
    mode = _infer_precision_mode(market) if precision_mode is None else precision_mode
    if mode not in (DECIMAL_PLACES, TICK_SIZE):
        raise ValueError(f"unsupported ccxt precision mode {mode}")

    def step(key: str) -> float:
        value = _number(precision.get(key))
        if value is None:
            return 0.0
        if mode == DECIMAL_PLACES:
            return float(Decimal(1).scaleb(-int(value)))
        return value

    limits = market.get("limits") or {}

    def limit(group: str, bound: str, default: float) -> float:
        value = _number((limits.get(group) or {}).get(bound))
        return default if value is None else value

    return MarketRules(
        tick_size=step("price"),
        lot_size=step("amount"),
        min_qty=limit("amount", "min", 0.0),
        max_qty=limit("amount", "max", math.inf),
        min_notional=limit("cost", "min", 0.0),
        min_price=limit("price", "min", 0.0),
        max_price=limit("price", "max", math.inf),
    )
