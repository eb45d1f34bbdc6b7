from __future__ import annotations

import itertools

from wavesquant.market.bars import Bar
from wavesquant.strategies.base import StrategyContext, build_strategy
from wavesquant.types import Side


def test_every_tick_becomes_an_alternating_tiny_order() -> None:
    probe = build_strategy("tick_probe", "probe", {"symbols": ["A/B", "C/D"], "quantity": 0.001})
    pos = {"A/B": 0.0, "C/D": 0.0}
    sides: dict[str, list[Side]] = {"A/B": [], "C/D": []}
    for i in range(100):
        sym = "A/B" if i % 3 else "C/D"
        (d,) = probe.on_tick(sym, i, 100.0 + i, 0.1, StrategyContext(sym, pos[sym], 100.0))
        assert d.quantity == 0.001 and d.reference_price == 100.0 + i and d.ts_ms == i
        assert d.strategy_id == "probe" and d.symbol == sym
        pos[sym] += d.side.sign * d.quantity
        sides[sym].append(d.side)
        assert -0.001 - 1e-12 <= pos[sym] <= 0.001 + 1e-12
    for seq in sides.values():
        assert all(a != b for a, b in itertools.pairwise(seq))  # strictly alternating per symbol
        assert seq[0] is Side.BUY
    assert probe.on_tick("X/Y", 1, 1.0, 1.0, StrategyContext("X/Y", 0.0)) == []
    assert probe.on_bar(Bar("A/B", "1m", 0, 1, 1, 1, 1, 1), StrategyContext("A/B", 0.0)) == []


def test_probe_reduces_a_drifted_position() -> None:
    probe = build_strategy("tick_probe", "probe", {"symbol": "A/B", "quantity": 0.01})
    (first,) = probe.on_tick("A/B", 0, 1.0, 1.0, StrategyContext("A/B", 0.0))
    assert first.side is Side.BUY
    # the buy's fill arrived twice (or another buy leaked): position +0.02 -> the probe keeps selling
    (d1,) = probe.on_tick("A/B", 1, 1.0, 1.0, StrategyContext("A/B", 0.02))
    (d2,) = probe.on_tick("A/B", 2, 1.0, 1.0, StrategyContext("A/B", 0.01))
    assert (d1.side, d2.side) == (Side.SELL, Side.SELL)
    (d3,) = probe.on_tick("A/B", 3, 1.0, 1.0, StrategyContext("A/B", 0.0))
    assert d3.side is Side.BUY
