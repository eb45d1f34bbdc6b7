"""intelligence: strategy-specific analysis. Cross-venue price discrepancies (arbitrage, HFT), pair spread
z-scores (statistical), trend confirmation per symbol (trend), cross-asset volatility (macro)."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

from wavesquant.agents.base import Agent
from wavesquant.analytics.regimes import spread_zscore
from wavesquant.analytics.trend import assess_trend
from wavesquant.bus.base import Bus
from wavesquant.config import Settings
from wavesquant.core.clock import Clock
from wavesquant.messages import (
    ArbitrageOpportunity,
    Bar,
    Channel,
    Envelope,
    StatisticalOpportunity,
    TickBatch,
    TrendAssessment,
)

ARB_MIN_BPS = 10.0  # cross-venue discrepancy worth reporting
ARB_TTL_MS = 500
STAT_WINDOW = 120
STAT_Z = 2.0


class IntelligenceAgent(Agent):
    name = "intelligence"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        self.cfg = settings.intelligence
        self.closes: dict[tuple[str, str, str], deque[float]] = {}  # (exchange, symbol, timeframe) -> closes
        self.fresh: set[tuple[str, str, str]] = set()
        self.top: dict[str, dict[str, float]] = {}  # symbol -> exchange -> latest price
        self.top_dirty = False
        self.on([Channel.MARKET_BARS], self.on_bars)
        # ticks only update the top of book that the arbitrage loop reads every 10 ms: off the latency path
        self.on([Channel.MARKET_TICKS], self.on_ticks, off_path=True)
        self.loop("arbitrage_intelligence", self.find_arbitrage)
        self.loop("statistical_intelligence", self.find_pair_dislocations)
        self.loop("trend_intelligence", self.assess_trends)
        self.loop("macro_intelligence", self.summarise_macro)

    async def on_bars(self, batch: list[Envelope]) -> None:
        for bar in batch:
            if isinstance(bar, Bar):
                key = (bar.exchange, bar.symbol, bar.timeframe)
                q = self.closes.get(key)
                if q is None:
                    q = self.closes[key] = deque(maxlen=self.cfg.history)
                q.append(bar.close)
                self.fresh.add(key)

    async def on_ticks(self, batch: list[Envelope]) -> None:
        for tb in batch:
            if isinstance(tb, TickBatch):
                for symbol, price in zip(tb.symbols, tb.prices):
                    self.top.setdefault(symbol, {})[tb.exchange] = price
                self.top_dirty = True

    async def find_arbitrage(self) -> None:
        if not self.top_dirty:
            return
        self.top_dirty = False
        now = self.clock.now_ms()
        msgs: list[Envelope] = []
        for symbol, venues in self.top.items():
            if len(venues) < 2:
                continue
            names = list(venues)
            prices = np.fromiter(venues.values(), float)
            lo, hi = int(prices.argmin()), int(prices.argmax())
            diff = float(prices[hi] - prices[lo])
            if diff / float(prices.mean()) * 1e4 >= ARB_MIN_BPS:
                msgs.append(self.message(ArbitrageOpportunity, symbol=symbol, exchanges=[names[lo], names[hi]],
                                         price_diff=diff, max_latency=ARB_TTL_MS, execution_priority=5,
                                         expiry=now + ARB_TTL_MS))
        if msgs:
            await self.bus.publish_many(msgs)

    async def find_pair_dislocations(self) -> None:
        series = {k: np.fromiter(v, float) for k, v in self.closes.items() if len(v) >= STAT_WINDOW}
        msgs: list[Envelope] = []
        for (ka, a), (kb, b) in itertools.combinations(sorted(series.items()), 2):
            if ka[0] != kb[0] or ka[2] != kb[2]:
                continue  # same venue and timeframe only
            n = min(len(a), len(b))
            result = spread_zscore(a[-n:], b[-n:], STAT_WINDOW)
            if result is None or abs(result[0]) < STAT_Z:
                continue
            z, _ = result
            msgs.append(self.message(StatisticalOpportunity, pair=(ka[1], kb[1]), z_score=z, entry_price=float(a[-1]),
                                     confidence=min(1.0, abs(z) / 4.0), hold_duration=STAT_WINDOW / 2))
        if msgs:
            await self.bus.publish_many(msgs)

    async def assess_trends(self) -> None:
        msgs: list[Envelope] = []
        for key in sorted(self.fresh):
            exchange, symbol, timeframe = key
            a = assess_trend(np.fromiter(self.closes[key], float), self.cfg.trend_fast, self.cfg.trend_slow)
            msgs.append(self.message(TrendAssessment, exchange=exchange, symbol=symbol, timeframe=timeframe,
                                     direction=a.direction, strength=a.strength, confidence=a.confidence))
        self.fresh.clear()
        if msgs:
            await self.bus.publish_many(msgs)
            self.counters["trend_assessments"] += len(msgs)

    async def summarise_macro(self) -> None:
        vols = {k[1]: float(np.std(np.diff(np.log(np.fromiter(v, float)))))
                for k, v in self.closes.items() if len(v) > 20}
        if vols:
            self.log.info("macro_volatility", per_bar_vol={s: round(v, 6) for s, v in sorted(vols.items())})
