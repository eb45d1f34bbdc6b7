"""The isolated strategy-instance contract, and the registry that builds instances from validated params.

A strategy instance sees only what it is given: bars and ticks of its own symbols, and a read-only
`StrategyContext` per call (its own position in the symbol, the last price, the latest trend assessment). It
returns `StrategyDecision`s; it never places orders itself. Every instance owns all of its state, so two
instances (even of one kind with the same params) never influence each other.

Adding a kind: subclass `Strategy`, set `kind` and `params_model` (a pydantic model, extra fields forbidden),
implement `from_params`, and decorate the class with `@register_strategy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from wavesquant.analytics.trend import TrendAssessment
from wavesquant.market.bars import Bar
from wavesquant.types import Side


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What the engine tells a strategy about one symbol at the time of a call."""

    symbol: str
    position: float  # signed quantity this strategy instance holds in `symbol` (base units)
    last_price: float | None = None
    trend: TrendAssessment | None = None


@dataclass(frozen=True, slots=True)
class StrategyDecision:
    strategy_id: str
    symbol: str
    side: Side
    quantity: float  # > 0, base units
    reason: str
    reference_price: float
    confidence: float  # in [0, 1]
    ts_ms: int = 0  # event time of the bar/tick that caused it


class Strategy(ABC):
    kind: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]

    def __init__(self, strategy_id: str, symbols: Sequence[str]) -> None:
        if not strategy_id:
            raise ValueError("strategy_id must not be empty")
        if not symbols:
            raise ValueError(f"strategy {strategy_id!r} needs at least one symbol")
        self.strategy_id = strategy_id
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self._trends: dict[str, TrendAssessment] = {}

    @classmethod
    @abstractmethod
    def from_params(cls, strategy_id: str, params: Any) -> Strategy:
        """Build an instance from an already validated `params_model` instance."""

    @abstractmethod
    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[StrategyDecision]: ...

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, size: float, ctx: StrategyContext
    ) -> list[StrategyDecision]:
        return []

    def on_trend(self, symbol: str, assessment: TrendAssessment) -> None:
        """Store the newest trend assessment for one of this strategy's symbols (others are ignored)."""
        if symbol in self.symbols:
            self._trends[symbol] = assessment

    def trend(self, symbol: str) -> TrendAssessment | None:
        return self._trends.get(symbol)

    @staticmethod
    def _check_context(symbol: str, ctx: StrategyContext) -> None:
        """A context for another symbol would size orders from the wrong position: refuse it loudly."""
        if ctx.symbol != symbol:
            raise ValueError(f"context is for {ctx.symbol!r} but the event is for {symbol!r}")


STRATEGY_TYPES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    existing = STRATEGY_TYPES.get(cls.kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"strategy kind {cls.kind!r} is already registered by {existing.__name__}")
    STRATEGY_TYPES[cls.kind] = cls
    return cls


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = [f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def build_strategy(kind: str, strategy_id: str, params: dict[str, Any]) -> Strategy:
    """A new, independent instance of `kind`; ValueError naming the problem on unknown kind or bad params."""
    cls = STRATEGY_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown strategy kind {kind!r}; known: {', '.join(sorted(STRATEGY_TYPES))}")
    try:
        validated = cls.params_model.model_validate(params)
    except ValidationError as exc:
        raise ValueError(f"bad params for {kind} strategy {strategy_id!r}: {_first_error(exc)}") from None
    return cls.from_params(strategy_id, validated)


# The built-in kinds register themselves on import; importing them here makes STRATEGY_TYPES complete for
# anyone who imports this module. (They import this module first, which is complete by this line.)
from wavesquant.strategies import tick_probe as _tick_probe  # noqa: F401
from wavesquant.strategies import trend_following as _trend_following  # noqa: F401
