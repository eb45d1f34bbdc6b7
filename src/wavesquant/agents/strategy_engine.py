"""strategy_engine: runs isolated strategy instances on bars, ticks and trend assessments, turns their
decisions into trade signals, follows each instance's positions from execution reports, and suspends
strategies on symbols hit by a critical market anomaly.

A decision's order is "in flight" from its signal until execution reports it done (or the signal expires);
the strategy sees position + in-flight quantity, so it never doubles up while an order is on its way."""

from __future__ import annotations

from dataclasses import dataclass

from wavesquant.agents.base import Agent
from wavesquant.analytics.trend import TrendAssessment as Trend
from wavesquant.bus.base import Bus, Delivery
from wavesquant.config import Settings
from wavesquant.core.clock import Clock
from wavesquant.core.ids import client_order_id
from wavesquant.execution.reports import fill_from_report
from wavesquant.market.bars import Bar as DomainBar
from wavesquant.messages import (
    Bar,
    Channel,
    Envelope,
    ExecutionReport,
    LearningUpdate,
    MarketAnomaly,
    ProbeSignal,
    RiskDecision,
    TickBatch,
    TrendAssessment,
    TrendSignal,
)
from wavesquant.portfolio.positions import Portfolio
from wavesquant.strategies.base import Strategy, StrategyContext, StrategyDecision, build_strategy
from wavesquant.strategies.tick_probe import TickProbe

SUSPEND_ON_CRITICAL_S = 300.0
IN_FLIGHT_GRACE_MS = 10_000


@dataclass(slots=True)
class _InFlight:
    strategy_id: str
    symbol: str
    signed_qty: float
    expires_at_ms: int


class StrategyEngineAgent(Agent):
    name = "strategy_engine"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        self.cfg = settings.strategy_engine
        self.strategies: list[Strategy] = []
        self.exchanges: dict[str, str | None] = {}
        for spec in self.cfg.strategies:
            self.strategies.append(build_strategy(spec.kind, spec.id, spec.params))
            self.exchanges[spec.id] = spec.exchange
        self.tick_strategies = [s for s in self.strategies if isinstance(s, TickProbe)]
        self.portfolio = Portfolio()
        self.last_price: dict[str, float] = {}
        self.in_flight: dict[str, _InFlight] = {}  # client order id -> order on its way
        self.in_flight_qty: dict[tuple[str, str], float] = {}  # (strategy, symbol) -> signed qty in flight
        self.suspended_until_ms: dict[str, int] = {}  # symbol -> time
        self.signals_sent = 0
        self.on([Channel.MARKET_BARS], self.on_bars)
        if self.tick_strategies:
            self.on([Channel.MARKET_TICKS], self.on_ticks)
        self.on([Channel.TACTICAL_SIGNALS], self.on_assessments)
        self.on([Channel.MARKET_ANOMALIES], self.on_anomalies)
        self.consume(Channel.EXECUTION_REPORTS, self.on_reports, off_path=True)
        self.consume(Channel.RISK_DECISIONS, self.on_decisions, off_path=True)
        self.loop("strategy_application", self.expire_in_flight)
        self.loop("strategy_optimization", self.review_suspensions)
        self.loop("performance_monitoring", self.publish_performance)
        self.loop("composition_trigger_monitor", self.log_composition)

    async def initialize(self) -> None:
        """Each strategy's position from every fill in the event log, so a restarted engine does not
        believe it is flat and trade again."""
        for_strategies = {s.strategy_id for s in self.strategies}
        async for msg in self.replay_event_log():
            if isinstance(msg, ExecutionReport) and msg.strategy_id in for_strategies:
                fill = fill_from_report(msg)
                if fill is not None:
                    self.portfolio.apply(fill, msg.strategy_id or "")

    # inputs ------------------------------------------------------------------------------------------------
    def _context(self, strategy: Strategy, symbol: str) -> StrategyContext:
        pos = self.portfolio.position(symbol, strategy.strategy_id)
        qty = (pos.quantity if pos else 0.0) + self.in_flight_qty.get((strategy.strategy_id, symbol), 0.0)
        return StrategyContext(symbol, qty, self.last_price.get(symbol), strategy.trend(symbol))

    def _set_in_flight(self, coid: str, flight: _InFlight | None) -> None:
        """Add, change or (None) remove one order in flight, keeping the per (strategy, symbol) sums."""
        old = self.in_flight.pop(coid, None)
        if old is not None:
            key = (old.strategy_id, old.symbol)
            self.in_flight_qty[key] = self.in_flight_qty.get(key, 0.0) - old.signed_qty
            if abs(self.in_flight_qty[key]) < 1e-12:
                del self.in_flight_qty[key]
        if flight is not None:
            self.in_flight[coid] = flight
            key = (flight.strategy_id, flight.symbol)
            self.in_flight_qty[key] = self.in_flight_qty.get(key, 0.0) + flight.signed_qty

    def _tradable(self, strategy: Strategy, exchange: str, symbol: str) -> bool:
        wanted = self.exchanges.get(strategy.strategy_id)
        return symbol in strategy.symbols and (wanted is None or wanted == exchange) and \
            self.suspended_until_ms.get(symbol, 0) <= self.clock.now_ms()

    async def on_bars(self, batch: list[Envelope]) -> None:
        signals: list[Envelope] = []
        for bar in batch:
            if not isinstance(bar, Bar):
                continue
            self.last_price[bar.symbol] = bar.close
            domain = DomainBar(bar.symbol, bar.timeframe, bar.open_ts_ms, bar.open, bar.high, bar.low, bar.close,
                               bar.volume)
            for strategy in self.strategies:
                if self._tradable(strategy, bar.exchange, bar.symbol):
                    decisions = strategy.on_bar(domain, self._context(strategy, bar.symbol))
                    signals += self._signals(decisions, bar.exchange, TrendSignal)
        if signals:
            await self.bus.publish_many(signals)

    async def on_ticks(self, batch: list[Envelope]) -> None:
        signals: list[Envelope] = []
        for tb in batch:
            if not isinstance(tb, TickBatch):
                continue
            for symbol, ts, price, size in zip(tb.symbols, tb.event_ts_ms, tb.prices, tb.sizes):
                self.last_price[symbol] = price
                for strategy in self.tick_strategies:
                    if self._tradable(strategy, tb.exchange, symbol):
                        decisions = strategy.on_tick(symbol, ts, price, size, self._context(strategy, symbol))
                        signals += self._signals(decisions, tb.exchange, ProbeSignal, tick_ts_ns=tb.ts_ns)
        if signals:
            await self.bus.publish_many(signals)

    def _signals(self, decisions: list[StrategyDecision], exchange: str, cls: type[TrendSignal | ProbeSignal],
                 **extra: object) -> list[Envelope]:
        out: list[Envelope] = []
        ttl_ms = int(self.cfg.signal_ttl_s * 1000)
        for d in decisions:
            now_ms = self.clock.now_ms()
            sig = self.message(cls, strategy_id=d.strategy_id, exchange=exchange, symbol=d.symbol, side=d.side,
                               quantity=d.quantity, reference_price=d.reference_price, confidence=d.confidence,
                               reason=d.reason[:200], expires_at_ms=now_ms + ttl_ms, **extra)
            self._set_in_flight(client_order_id(sig.msg_id),
                                _InFlight(d.strategy_id, d.symbol, d.side.sign * d.quantity, now_ms + ttl_ms))
            out.append(sig)
        self.signals_sent += len(out)
        self.counters["signals"] += len(out)
        return out

    async def on_assessments(self, batch: list[Envelope]) -> None:
        for msg in batch:
            if isinstance(msg, TrendAssessment):
                trend = Trend(msg.direction, msg.strength, msg.confidence)
                for strategy in self.strategies:
                    strategy.on_trend(msg.symbol, trend)

    async def on_anomalies(self, batch: list[Envelope]) -> None:
        for msg in batch:
            if isinstance(msg, MarketAnomaly) and msg.severity == "critical":
                until = self.clock.now_ms() + int(SUSPEND_ON_CRITICAL_S * 1000)
                for symbol in msg.affected_assets:
                    self.suspended_until_ms[symbol] = until
                self.log.warning("strategies_suspended", symbols=msg.affected_assets, anomaly=msg.anomaly_type,
                                 seconds=SUSPEND_ON_CRITICAL_S)

    async def on_decisions(self, deliveries: list[Delivery]) -> None:
        """A blocked order never goes out: release its in-flight quantity at once."""
        for d in deliveries:
            if isinstance(d.message, RiskDecision) and not d.message.approved:
                self._set_in_flight(d.message.order.client_order_id, None)

    async def on_reports(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            r = d.message
            if not isinstance(r, ExecutionReport):
                continue
            fill = fill_from_report(r)
            if fill is not None and r.strategy_id:
                self.portfolio.apply(fill, r.strategy_id)
            if r.status.is_terminal:
                self._set_in_flight(r.client_order_id, None)
            elif r.client_order_id in self.in_flight:
                f = self.in_flight[r.client_order_id]
                remaining = r.side.sign * max(r.quantity - r.filled_quantity, 0.0)
                self._set_in_flight(r.client_order_id, _InFlight(f.strategy_id, f.symbol, remaining, f.expires_at_ms))

    # loops -------------------------------------------------------------------------------------------------
    async def expire_in_flight(self) -> None:
        """Release in-flight quantity of signals that died without a report (blocked or expired in risk)."""
        now_ms = self.clock.now_ms()
        for coid, f in list(self.in_flight.items()):
            if now_ms >= f.expires_at_ms + IN_FLIGHT_GRACE_MS:
                self._set_in_flight(coid, None)

    async def review_suspensions(self) -> None:
        now_ms = self.clock.now_ms()
        for symbol, until in list(self.suspended_until_ms.items()):
            if until <= now_ms:
                del self.suspended_until_ms[symbol]
                self.log.info("strategies_resumed", symbol=symbol)

    async def publish_performance(self) -> None:
        for symbol, price in self.last_price.items():
            self.portfolio.mark(symbol, price)
        msgs: list[Envelope] = []
        for strategy in self.strategies:
            positions = [p for p in self.portfolio.positions() if p.strategy_id == strategy.strategy_id]
            realized = sum(p.realized_pnl for p in positions)
            unrealized = sum(self.portfolio.unrealized_pnl(p.symbol, strategy.strategy_id) for p in positions)
            msgs.append(self.message(LearningUpdate, strategy_id=strategy.strategy_id, metrics={
                "realized_pnl": realized, "unrealized_pnl": unrealized,
                "fees": sum(p.fees for p in positions),
                "in_flight": float(sum(1 for f in self.in_flight.values() if f.strategy_id == strategy.strategy_id)),
            }, note="performance"))
        if msgs:
            await self.bus.publish_many(msgs)

    async def log_composition(self) -> None:
        self.log.info("strategy_composition", strategies=[s.strategy_id for s in self.strategies],
                      suspended=sorted(self.suspended_until_ms), signals=self.signals_sent)
