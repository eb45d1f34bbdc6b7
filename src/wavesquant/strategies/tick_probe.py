"""TickProbe (kind "tick_probe"): a benchmark-only strategy that turns every tick into a tiny order.

It alternates buy and sell of a fixed `quantity` per symbol so its position stays near zero; if the position
it is told about has drifted to +-quantity or beyond (fills lagging or lost), the next order reduces it
instead of following the alternation. Used by the latency benchmark to push one order per tick through the
pipeline.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavesquant.market.bars import Bar
from wavesquant.strategies.base import Strategy, StrategyContext, StrategyDecision, register_strategy
from wavesquant.types import Side


class TickProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: list[str] = Field(min_length=1)
    quantity: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _symbol_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "symbol" in data:
            data = dict(data)
            if "symbols" in data:
                raise ValueError("give either 'symbol' or 'symbols', not both")
            data["symbols"] = [data.pop("symbol")]
        return data


@register_strategy
class TickProbe(Strategy):
    kind = "tick_probe"
    params_model = TickProbeParams

    def __init__(self, strategy_id: str, symbols: list[str], quantity: float) -> None:
        super().__init__(strategy_id, symbols)
        self.quantity = quantity
        self._next_side: dict[str, Side] = {s: Side.BUY for s in self.symbols}

    @classmethod
    def from_params(cls, strategy_id: str, params: Any) -> TickProbe:
        return cls(strategy_id, params.symbols, params.quantity)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[StrategyDecision]:
        return []

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, size: float, ctx: StrategyContext
    ) -> list[StrategyDecision]:
        side = self._next_side.get(symbol)
        if side is None:
            return []
        self._check_context(symbol, ctx)
        if ctx.position >= self.quantity:
            side = Side.SELL
        elif ctx.position <= -self.quantity:
            side = Side.BUY
        self._next_side[symbol] = side.opposite
        return [
            StrategyDecision(
                strategy_id=self.strategy_id,
                symbol=symbol,
                side=side,
                quantity=self.quantity,
                reason="tick_probe",
                reference_price=price,
                confidence=1.0,
                ts_ms=ts_ms,
            )
        ]
