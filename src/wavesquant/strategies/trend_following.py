"""Moving-average crossover trend follower (kind "ma_crossover").

Per symbol: a fast and a slow moving average of bar closes. A cross is a change of sign of (fast - slow),
ignoring bars where they are exactly equal; the first warm bar only records the sign.
- cross up:   target +quantity (covers a short first: one buy of quantity + |short|);
- cross down: target -quantity when allow_short, else 0 (sells a long).
With require_confirmation, ENTRIES need the latest trend assessment for the symbol to point the same way with
confidence >= min_confidence; exits never wait (on an unconfirmed cross up a short is still covered to flat,
on an unconfirmed cross down a long is still sold to flat). Orders are sized from ctx.position, so a repeated
signal never doubles a position, and a cross only ever buys (up) or sells (down): a position already beyond
the target is left alone rather than traded against the signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavesquant.indicators.moving import EMA, SMA
from wavesquant.market.bars import Bar
from wavesquant.strategies.base import Strategy, StrategyContext, StrategyDecision, register_strategy
from wavesquant.types import Side

# Position differences below this fraction of `quantity` are treated as already at target (float dust).
_DUST = 1e-9


class MovingAverageCrossoverParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: list[str] = Field(min_length=1)
    fast: int = Field(ge=1)
    slow: int = Field(ge=2)
    quantity: float = Field(gt=0, allow_inf_nan=False)
    ma: Literal["sma", "ema"] = "sma"
    timeframe: str | None = None  # act only on bars of this timeframe when set
    require_confirmation: bool = False
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    allow_short: bool = False

    @model_validator(mode="before")
    @classmethod
    def _symbol_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "symbol" in data:
            data = dict(data)
            if "symbols" in data:
                raise ValueError("give either 'symbol' or 'symbols', not both")
            data["symbols"] = [data.pop("symbol")]
        return data

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MovingAverageCrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be < slow ({self.slow})")
        return self


@dataclass(slots=True)
class _SymbolState:
    fast: SMA | EMA
    slow: SMA | EMA
    sign: int = 0  # last nonzero sign of fast - slow, 0 until warm
    last_bar_ts: int | None = None


@register_strategy
class MovingAverageCrossover(Strategy):
    kind = "ma_crossover"
    params_model = MovingAverageCrossoverParams

    def __init__(
        self, strategy_id: str, symbols: Sequence[str], params: MovingAverageCrossoverParams
    ) -> None:
        super().__init__(strategy_id, symbols)
        self.params = params
        ma = SMA if params.ma == "sma" else EMA
        self._state = {s: _SymbolState(ma(params.fast), ma(params.slow)) for s in self.symbols}

    @classmethod
    def from_params(cls, strategy_id: str, params: Any) -> MovingAverageCrossover:
        return cls(strategy_id, params.symbols, params)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[StrategyDecision]:
        st = self._state.get(bar.symbol)
        if st is None or (self.params.timeframe is not None and bar.timeframe != self.params.timeframe):
            return []
        self._check_context(bar.symbol, ctx)
        if not (math.isfinite(bar.close) and bar.close > 0):
            return []  # a broken bar must not poison the averages
        if st.last_bar_ts is not None and bar.open_ts_ms <= st.last_bar_ts:
            return []  # replayed or out-of-order bar: never count a bar twice
        st.last_bar_ts = bar.open_ts_ms
        fast = st.fast.update(bar.close)
        slow = st.slow.update(bar.close)
        if fast is None or slow is None or fast == slow:
            return []
        sign = 1 if fast > slow else -1
        previous, st.sign = st.sign, sign
        if previous == 0 or previous == sign:
            return []
        return self._rebalance(bar, ctx, sign, fast, slow)

    def _confirmed(self, symbol: str, direction: int) -> bool:
        if not self.params.require_confirmation:
            return True
        t = self.trend(symbol)
        return t is not None and t.direction == direction and t.confidence >= self.params.min_confidence

    def _rebalance(
        self, bar: Bar, ctx: StrategyContext, sign: int, fast: float, slow: float
    ) -> list[StrategyDecision]:
        q = self.params.quantity
        pos = ctx.position
        confirmed = self._confirmed(bar.symbol, sign)
        if sign > 0:
            target = q if confirmed else max(pos, 0.0)
        elif self.params.allow_short and confirmed:
            target = -q
        else:
            target = min(pos, 0.0)
        delta = target - pos
        if delta * sign <= _DUST * q:  # at target, or the target lies against the signal: no order
            return []
        t = self.trend(bar.symbol)
        confidence = t.confidence if t is not None and t.direction == sign else 0.5
        cross = "above" if sign > 0 else "below"
        note = "" if confirmed else ", entry unconfirmed: exit only"
        reason = f"{self.params.ma}{self.params.fast} crossed {cross} {self.params.ma}{self.params.slow}" + (
            f" ({fast:.10g} vs {slow:.10g}{note}); position {pos:g} -> {target:g}"
        )
        return [
            StrategyDecision(
                strategy_id=self.strategy_id,
                symbol=bar.symbol,
                side=Side.BUY if delta > 0 else Side.SELL,
                quantity=abs(delta),
                reason=reason,
                reference_price=bar.close,
                confidence=confidence,
                ts_ms=bar.close_ts_ms,
            )
        ]
