"""Portfolio exposure from signed positions and mark prices.

Notional of a position = |quantity| x mark price. Gross exposure sums the notionals, net exposure sums the
signed values (long positive, short negative). A non-zero position without a mark price cannot be valued:
these functions raise `MissingPrice` rather than silently under-stating exposure.
"""

from __future__ import annotations

from collections.abc import Mapping


class MissingPrice(KeyError):
    """A non-zero position in a symbol that has no mark price."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.symbol = symbol


def _mark(symbol: str, prices: Mapping[str, float]) -> float:
    price = prices.get(symbol)
    if price is None:
        raise MissingPrice(symbol)
    return price


def gross_exposure(positions: Mapping[str, float], prices: Mapping[str, float]) -> float:
    """Sum over symbols of |quantity| x price."""
    return sum(abs(q) * _mark(s, prices) for s, q in positions.items() if q != 0.0)


def net_exposure(positions: Mapping[str, float], prices: Mapping[str, float]) -> float:
    """Sum over symbols of signed quantity x price (positive = net long)."""
    return sum(q * _mark(s, prices) for s, q in positions.items() if q != 0.0)


def family_exposure(
    strategy_positions: Mapping[tuple[str, str], float],
    strategy_families: Mapping[str, str],
    prices: Mapping[str, float],
) -> dict[str, float]:
    """Gross notional per strategy family from positions keyed by (strategy_id, symbol).

    Positions of strategies missing from `strategy_families` belong to no family and are left out.
    """
    out: dict[str, float] = {}
    for (strategy_id, symbol), q in strategy_positions.items():
        family = strategy_families.get(strategy_id)
        if family is None or q == 0.0:
            continue
        out[family] = out.get(family, 0.0) + abs(q) * _mark(symbol, prices)
    return out
