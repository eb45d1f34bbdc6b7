from __future__ import annotations

import dataclasses

import pytest

from wavesquant.analytics.trend import TrendAssessment
from wavesquant.market.bars import Bar
from wavesquant.strategies.base import (
    STRATEGY_TYPES,
    Strategy,
    StrategyContext,
    StrategyDecision,
    build_strategy,
    register_strategy,
)
from wavesquant.strategies.tick_probe import TickProbe
from wavesquant.strategies.trend_following import MovingAverageCrossover

PARAMS = {"symbol": "BTC/USDT", "fast": 2, "slow": 3, "quantity": 0.5}


def _bar(i: int, close: float, symbol: str = "BTC/USDT") -> Bar:
    return Bar(symbol, "1m", i * 60_000, close, close, close, close, 1.0)


def test_registry_has_builtin_kinds() -> None:
    assert STRATEGY_TYPES["ma_crossover"] is MovingAverageCrossover
    assert STRATEGY_TYPES["tick_probe"] is TickProbe


def test_build_strategy_validates_params() -> None:
    s = build_strategy("ma_crossover", "trend-1", PARAMS)
    assert isinstance(s, MovingAverageCrossover)
    assert s.strategy_id == "trend-1" and s.symbols == ("BTC/USDT",)
    multi = build_strategy(
        "ma_crossover",
        "t2",
        {**{k: v for k, v in PARAMS.items() if k != "symbol"}, "symbols": ["A/B", "C/D", "A/B"]},
    )
    assert multi.symbols == ("A/B", "C/D")
    with pytest.raises(ValueError, match=r"unknown strategy kind 'nope'; known: ma_crossover, tick_probe"):
        build_strategy("nope", "x", {})
    cases = [
        ({**PARAMS, "fast": 3}, "fast \\(3\\) must be < slow \\(3\\)"),
        ({**PARAMS, "quantity": 0}, "quantity"),
        ({**PARAMS, "quantity": float("nan")}, "quantity"),
        ({**PARAMS, "leverage": 10}, "leverage: Extra inputs are not permitted"),
        ({k: v for k, v in PARAMS.items() if k != "fast"}, "fast: Field required"),
        ({**PARAMS, "symbols": ["X/Y"]}, "either 'symbol' or 'symbols'"),
        ({**PARAMS, "symbol": None, "symbols": None}, "symbol"),
    ]
    for params, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as info:
            build_strategy("ma_crossover", "bad", params)
        assert "bad params for ma_crossover strategy 'bad'" in str(info.value)
    with pytest.raises(ValueError, match="quantity"):
        build_strategy("tick_probe", "p", {"symbol": "A/B", "quantity": -1})


def test_instances_are_isolated() -> None:
    params = dict(PARAMS)
    a = build_strategy("ma_crossover", "a", params)
    b = build_strategy("ma_crossover", "b", params)
    params["quantity"] = 99.0  # the caller's dict is not shared either
    flat = StrategyContext("BTC/USDT", position=0.0)
    # drive only `a` through a rising cross
    decisions = []
    for i, c in enumerate([5.0, 4.0, 3.0, 2.0, 6.0, 9.0]):
        decisions += a.on_bar(_bar(i, c), flat)
    assert [(d.strategy_id, d.side, d.quantity) for d in decisions] == [("a", "buy", 0.5)]
    # `b` saw nothing: the same bars now are its first bars, so it has no prior sign and emits nothing
    assert [d for i, c in enumerate([2.0, 6.0, 9.0]) for d in b.on_bar(_bar(i + 3, c), flat)] == []
    a.on_trend("BTC/USDT", TrendAssessment(1, 2.0, 0.8))
    a.on_trend("ETH/USDT", TrendAssessment(-1, 2.0, 0.8))  # not its symbol: ignored
    assert a.trend("BTC/USDT") == TrendAssessment(1, 2.0, 0.8)
    assert a.trend("ETH/USDT") is None and b.trend("BTC/USDT") is None


def test_context_for_another_symbol_is_refused() -> None:
    s = build_strategy("ma_crossover", "a", PARAMS)
    with pytest.raises(ValueError, match="context is for 'ETH/USDT'"):
        s.on_bar(_bar(0, 1.0), StrategyContext("ETH/USDT", 0.0))
    p = build_strategy("tick_probe", "p", {"symbol": "BTC/USDT", "quantity": 1.0})
    with pytest.raises(ValueError, match="but the event is for 'BTC/USDT'"):
        p.on_tick("BTC/USDT", 0, 1.0, 1.0, StrategyContext("ETH/USDT", 0.0))


def test_context_and_decision_are_read_only() -> None:
    ctx = StrategyContext("X/Y", 1.0, 10.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.position = 5.0  # type: ignore[misc]
    d = StrategyDecision("s", "X/Y", "buy", 1.0, "r", 10.0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.quantity = 2.0  # type: ignore[misc]


def test_register_rejects_a_second_class_for_a_kind() -> None:
    class Other(TickProbe):
        kind = "tick_probe"

    with pytest.raises(ValueError, match="already registered"):
        register_strategy(Other)
    assert STRATEGY_TYPES["tick_probe"] is TickProbe


def test_strategy_requires_id_and_symbols() -> None:
    with pytest.raises(ValueError, match="strategy_id"):
        TickProbe("", ["A/B"], 1.0)
    with pytest.raises(ValueError, match="at least one symbol"):
        TickProbe("p", [], 1.0)
    assert issubclass(TickProbe, Strategy)
