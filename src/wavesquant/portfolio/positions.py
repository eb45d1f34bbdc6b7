"""Positions and PnL from fills, average-cost method.

Kept per (strategy_id, symbol) and per symbol net. Signed quantity (long > 0), average entry price, realised PnL
(on reductions and flips, NET of fees: a fee lowers realised PnL when paid), fees paid, unrealised PnL
quantity x (mark - average entry). Idempotent by fill_id.

Identity: realised + unrealised = sum over fills of (-side * qty * price - fee) + net quantity * mark.

Fees are counted in the symbol's quote currency: a fee in the base currency is valued at the fill price; a fee
in any other currency (e.g. BNB) cannot be valued here and is only summed in `other_fees`.

Per-strategy realised PnL does not add up to the net per symbol when strategies trade against each other
(each strategy has its own cost basis); totals use the per-symbol net.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wavesquant.execution.market_rules import split_symbol
from wavesquant.execution.orders import qty_tol
from wavesquant.execution.venues.base import Fill


@dataclass(slots=True)
class Position:
    symbol: str
    strategy_id: str | None  # None for the per-symbol net position
    quantity: float = 0.0
    avg_entry_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    last_price: float | None = None  # of the latest fill

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0.0

    def apply(self, sign: int, quantity: float, price: float, fee: float) -> float:
        """Book one fill (sign +1 buy / -1 sell, fee in quote currency); returns the realised PnL change."""
        before = self.realized_pnl
        self.fees += fee
        self.realized_pnl -= fee
        self.last_price = price
        held = self.quantity
        new_qty = held + sign * quantity
        if held == 0.0 or held * sign > 0:  # open or add
            self.avg_entry_price = (abs(held) * self.avg_entry_price + quantity * price) / abs(new_qty)
        else:  # reduce, close or flip
            closed = min(quantity, abs(held))
            direction = 1.0 if held > 0 else -1.0
            self.realized_pnl += closed * (price - self.avg_entry_price) * direction
            if abs(new_qty) <= qty_tol(max(abs(held), quantity)):
                new_qty = 0.0
                self.avg_entry_price = 0.0
            elif new_qty * held < 0:
                self.avg_entry_price = price  # flipped: the remainder opened at this fill's price
        self.quantity = new_qty
        return self.realized_pnl - before

    def unrealized_pnl(self, mark: float | None) -> float:
        """quantity x (mark - average entry); 0 when flat or without any price."""
        price = mark if mark is not None else self.last_price
        if self.quantity == 0.0 or price is None:
            return 0.0
        return self.quantity * (price - self.avg_entry_price)

    def to_dict(self, mark: float | None) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy_id": self.strategy_id,
            "quantity": self.quantity,
            "avg_entry_price": self.avg_entry_price,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "mark": mark if mark is not None else self.last_price,
            "unrealized_pnl": self.unrealized_pnl(mark),
        }


class Portfolio:
    def __init__(self) -> None:
        self._by_strategy: dict[tuple[str, str], Position] = {}
        self._by_symbol: dict[str, Position] = {}
        self._marks: dict[str, float] = {}
        self._fill_ids: set[str] = set()
        self.other_fees: dict[str, float] = {}

    def apply(self, fill: Fill, strategy_id: str = "") -> bool:
        """Book a fill for `strategy_id` (the strategy of the fill's order). False if already booked."""
        if fill.fill_id in self._fill_ids:
            return False
        if not (fill.quantity > 0.0 and fill.price > 0.0):
            raise ValueError(f"fill {fill.fill_id}: quantity and price must be positive")
        base, quote = split_symbol(fill.symbol)
        if fill.fee_currency == quote:
            fee = fill.fee
        elif fill.fee_currency == base:
            fee = fill.fee * fill.price
        else:
            fee = 0.0
            self.other_fees[fill.fee_currency] = self.other_fees.get(fill.fee_currency, 0.0) + fill.fee
        key = (strategy_id, fill.symbol)
        strategy_position = self._by_strategy.get(key)
        if strategy_position is None:
            strategy_position = self._by_strategy[key] = Position(fill.symbol, strategy_id)
        net = self._by_symbol.get(fill.symbol)
        if net is None:
            net = self._by_symbol[fill.symbol] = Position(fill.symbol, None)
        sign = fill.side.sign
        strategy_position.apply(sign, fill.quantity, fill.price, fee)
        net.apply(sign, fill.quantity, fill.price, fee)
        self._fill_ids.add(fill.fill_id)
        return True

    def mark(self, symbol: str, price: float) -> None:
        """Set the price unrealised PnL is measured at (without a mark: the latest fill price)."""
        self._marks[symbol] = price

    def position(self, symbol: str, strategy_id: str | None = None) -> Position | None:
        """The net position of `symbol`, or one strategy's."""
        if strategy_id is None:
            return self._by_symbol.get(symbol)
        return self._by_strategy.get((strategy_id, symbol))

    def positions(self) -> list[Position]:
        """Per (strategy_id, symbol)."""
        return list(self._by_strategy.values())

    def net_positions(self) -> list[Position]:
        return list(self._by_symbol.values())

    def unrealized_pnl(self, symbol: str, strategy_id: str | None = None) -> float:
        position = self.position(symbol, strategy_id)
        return 0.0 if position is None else position.unrealized_pnl(self._marks.get(symbol))

    def totals(self) -> dict[str, float]:
        realized = sum(p.realized_pnl for p in self._by_symbol.values())
        unrealized = sum(p.unrealized_pnl(self._marks.get(p.symbol)) for p in self._by_symbol.values())
        fees = sum(p.fees for p in self._by_symbol.values())
        return {
            "realized_pnl": realized,
            "unrealized_pnl": unrealized,
            "total_pnl": realized + unrealized,
            "fees": fees,
        }

    def snapshot(self) -> dict[str, Any]:
        """Plain, JSON-safe dict of every position and the totals."""
        return {
            "positions": [p.to_dict(self._marks.get(p.symbol)) for p in self._by_strategy.values()],
            "net": {s: p.to_dict(self._marks.get(s)) for s, p in self._by_symbol.items()},
            "totals": self.totals(),
            "other_fees": dict(self.other_fees),
            "marks": dict(self._marks),
        }
