"""risk: pre-trade validation of every order intent (all checks, coded reasons), positions from execution
reports, circuit breakers, the trading state (ACTIVE / REDUCING / HALTED) and the kill switch.

Approved orders leave on the `orders` stream together with the decision, in one pipelined write. A halt (by
breaker or `wq kill`) cancels every open order; `--flatten` also closes positions."""

from __future__ import annotations

from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus, Delivery
from wavesquant.config import Settings
from wavesquant.core.clock import Clock
from wavesquant.execution.order_log import OrderRecord, fold
from wavesquant.execution.reports import fill_from_report
from wavesquant.messages import (
    CancelOrder,
    Channel,
    ControlCommand,
    Denial,
    Envelope,
    ExecutionReport,
    Heartbeat,
    MarketAnomaly,
    NewOrder,
    OrderIntent,
    OrderSpec,
    OrderTransition,
    RiskAlert,
    RiskDecision,
    TradeSignal,
    prices_of,
    straight_to_risk,
)
from wavesquant.portfolio.positions import Portfolio
from wavesquant.risk.breakers import CircuitBreakers
from wavesquant.risk.checks import LastPrice, OrderCandidate, OrderRateLimiter, RiskSnapshot, evaluate
from wavesquant.risk.open_orders import OpenOrder, OpenOrders
from wavesquant.risk.state import TradingStateMachine
from wavesquant.types import TradingState

UNACKED_GRACE_MS = 5_000


class RiskAgent(Agent):
    name = "risk"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        self.cfg = settings.risk
        self.portfolio = Portfolio()
        self.last_prices: dict[str, LastPrice] = {}
        self.open_orders = OpenOrders()
        self.families: dict[str, str] = {}
        self.rates = OrderRateLimiter(retain_ms=max(60_000, self.cfg.limits.duplicate_window_ms))
        self.state = TradingStateMachine()
        self.breakers = CircuitBreakers(self.cfg.breakers)
        self.unacked: dict[str, int] = {}  # approved, not yet acknowledged by execution -> expires_at_ms
        self.decisions = {"approved": 0, "blocked": 0}
        self.on([Channel.ORDER_INTENTS, Channel.HFT_SIGNALS], self.validate_intents)
        self.on([Channel.MARKET_TICKS, Channel.MARKET_BARS, Channel.MARKET_BOOKS], self.on_market)
        self.on([Channel.MARKET_ANOMALIES], self.on_anomalies)
        # reports only move an order's exposure from the open orders (counted at approval) to the positions, so
        # reading them once per batching window never lets exposure go uncounted: off the latency path
        self.consume(Channel.EXECUTION_REPORTS, self.on_reports, off_path=True)
        self.loop("ultra_fast_protection", self.check_breakers)
        self.loop("pre_trade_validation", self.expire_unacked)
        self.loop("portfolio_monitoring", self.monitor_portfolio)

    async def initialize(self) -> None:
        """Positions from every fill in the event log, open orders from the order log: a restarted risk
        agent judges new orders against the real book, not an empty one."""
        records: dict[str, OrderRecord] = {}
        fills = 0
        async for msg in self.replay_event_log():
            if isinstance(msg, ExecutionReport):
                fill = fill_from_report(msg)
                if fill is not None and self.portfolio.apply(fill, msg.strategy_id or ""):
                    fills += 1
                    self.last_prices.setdefault(fill.symbol, LastPrice(fill.price, 0))  # stale: marks only
            elif isinstance(msg, OrderTransition):
                fold(records, msg)
        for coid, record in records.items():
            if record.request is None:
                continue
            order, _ = record.replay()
            if not order.is_terminal:
                r = order.request
                self.open_orders.put(OpenOrder(coid, record.strategy_id or r.strategy_id, r.symbol, r.side,
                                               r.limit_price, order.remaining))
        for symbol, lp in self.last_prices.items():
            self.portfolio.mark(symbol, lp.price)
        if fills or self.open_orders:
            self.log.info("risk_state_rebuilt", fills=fills, open_orders=len(self.open_orders),
                          positions={p.symbol: p.quantity for p in self.portfolio.net_positions()})

    # pre-trade -------------------------------------------------------------------------------------------
    def snapshot(self) -> RiskSnapshot:
        """Positions and equity as of now; the open orders are the live index, so orders approved earlier in
        the same batch count against the later ones."""
        totals = self.portfolio.totals()
        return RiskSnapshot(
            equity=self.cfg.starting_equity + totals["total_pnl"],
            positions={p.symbol: p.quantity for p in self.portfolio.net_positions()},
            strategy_positions={(p.strategy_id or "", p.symbol): p.quantity for p in self.portfolio.positions()},
            last_prices=self.last_prices, open_orders=self.open_orders,
            trading_state=self.state.state, strategy_families=self.families,
        )

    async def validate_intents(self, batch: list[Envelope]) -> None:
        """Order intents from core, and HFT-tier trade signals taken straight off their channel."""
        now_ms = self.clock.now_ms()
        snapshot = self.snapshot()
        out: list[Envelope] = []
        for msg in batch:
            if isinstance(msg, OrderIntent):
                o, signal_ts_ms, origin_ts_ns = msg.order, msg.signal_ts_ms, msg.origin_ts_ns
            elif isinstance(msg, TradeSignal) and straight_to_risk(msg):
                o, signal_ts_ms, origin_ts_ns = msg.order_spec(), msg.ts_ms, msg.origin_ts_ns
                if o.client_order_id in self.open_orders or self.rates.has_client_order_id(o.client_order_id):
                    self.counters["duplicate_signals"] += 1  # a repeat of one already approved: not a new order
                    continue
            else:
                continue
            self._decide(o, signal_ts_ms, origin_ts_ns, msg.expires_at_ms, snapshot, now_ms, out)
        if out:
            await self.bus.publish_many(out)

    def _decide(self, o: OrderSpec, signal_ts_ms: int, origin_ts_ns: int | None, expires_at_ms: int | None,
                snapshot: RiskSnapshot, now_ms: int, out: list[Envelope]) -> None:
        candidate = OrderCandidate(
            client_order_id=o.client_order_id, signal_id=o.signal_id, strategy_id=o.strategy_id, family=o.family,
            symbol=o.symbol, side=o.side, quantity=o.quantity, order_type=o.order_type, limit_price=o.limit_price,
            signal_ts_ms=signal_ts_ms, expires_at_ms=expires_at_ms, reduce_only=o.reduce_only,
        )
        verdict = evaluate(candidate, snapshot, self.cfg.limits, now_ms, self.rates)
        if verdict.approved:
            self.rates.record(candidate, now_ms)
            self.families[o.strategy_id] = o.family
            self.open_orders.put(OpenOrder(o.client_order_id, o.strategy_id, o.symbol, o.side, o.limit_price,
                                           o.quantity))
            if expires_at_ms is not None:
                self.unacked[o.client_order_id] = expires_at_ms
            out.append(self.message(RiskDecision, order=o, approved=True, trading_state=self.state.state.value))
            out.append(self.message(NewOrder, order=o, origin_ts_ns=origin_ts_ns, expires_at_ms=expires_at_ms))
            self.decisions["approved"] += 1
        else:
            denials = [Denial(code=d.code.value, message=d.message[:200]) for d in verdict.denials][:64]
            out.append(self.message(RiskDecision, order=o, approved=False, denials=denials,
                                    trading_state=self.state.state.value))
            self.decisions["blocked"] += 1
            for d in verdict.denials:
                self.counters[f"denied:{d.code.value}"] += 1

    # market data, reports, anomalies ---------------------------------------------------------------------
    async def on_market(self, batch: list[Envelope]) -> None:
        for msg in batch:
            for symbol, price in prices_of(msg):
                self.last_prices[symbol] = LastPrice(price, msg.ts_ms)
                self.portfolio.mark(symbol, price)

    async def on_reports(self, deliveries: list[Delivery]) -> None:
        now_ms = self.clock.now_ms()
        for d in deliveries:
            r = d.message
            if not isinstance(r, ExecutionReport):
                continue
            first = self.unacked.pop(r.client_order_id, None) is not None  # this order's first report
            fill = fill_from_report(r)
            if fill is not None:
                self.portfolio.apply(fill, r.strategy_id or "")
            if r.kind == "reject":
                self.breakers.on_order_result(now_ms, rejected=True)
            elif r.kind == "ack" or (first and r.kind in ("fill", "cancel")):  # accepted, and filled or canceled at once
                self.breakers.on_order_result(now_ms, rejected=False)
            if r.status.is_terminal:
                self.open_orders.pop(r.client_order_id, None)
            elif r.client_order_id in self.open_orders:
                self.open_orders.put(self.open_orders[r.client_order_id]._replace(
                    remaining=max(r.quantity - r.filled_quantity, 0.0)))

    async def on_anomalies(self, batch: list[Envelope]) -> None:
        for msg in batch:
            if isinstance(msg, MarketAnomaly):
                self.breakers.on_anomaly(self.clock.now_ms(), msg.severity)

    # protection loops --------------------------------------------------------------------------------------
    async def check_breakers(self) -> None:
        now_ms = self.clock.now_ms()
        for trip in self.breakers.evaluate(now_ms):
            before = self.state.state
            if self.state.escalate(trip.target_state, trip.reason, now_ms, f"breaker:{trip.name}") is not None:
                await self._state_changed(before, trip.reason, f"breaker_{trip.name}")

    async def expire_unacked(self) -> None:
        """Forget approved orders execution never acknowledged before their expiry (it will refuse them as
        expired), so they stop counting against position and exposure limits."""
        now_ms = self.clock.now_ms()
        for coid, expires_at_ms in list(self.unacked.items()):
            if now_ms >= expires_at_ms + UNACKED_GRACE_MS:
                self.unacked.pop(coid, None)
                self.open_orders.pop(coid, None)
                self.counters["unacked_expired"] += 1

    async def monitor_portfolio(self) -> None:
        equity = self.cfg.starting_equity + self.portfolio.totals()["total_pnl"]
        self.breakers.on_equity(self.clock.now_ms(), equity)

    async def _state_changed(self, before: TradingState, reason: str, code: str, flatten: bool = False) -> None:
        after = self.state.state
        level = "critical" if after is TradingState.HALTED else ("warning" if after is TradingState.REDUCING else "info")
        msgs: list[Envelope] = [self.message(RiskAlert, level=level, code=code[:64], message=reason[:2000],
                                             trading_state=after.value)]
        if after is TradingState.HALTED:
            msgs.append(self.message(CancelOrder, all=True, flatten=flatten, reason=reason[:200]))
        self.log.warning("trading_state_changed", before=before.value, after=after.value, reason=reason)
        await self.bus.publish_many(msgs)

    async def on_control(self, cmd: ControlCommand) -> tuple[bool, str] | None:
        now_ms = self.clock.now_ms()
        before = self.state.state
        if cmd.command == "kill":
            flatten = cmd.args.get("flatten", "false") == "true"
            self.state.halt(f"kill switch by {cmd.source}", now_ms, cmd.source)
            await self._state_changed(before, f"kill switch by {cmd.source}", "kill_switch", flatten=flatten)
            return True, f"trading halted{' and flattening' if flatten else ''}; open orders canceled"
        if cmd.command == "resume_trading":
            self.state.resume(f"resumed by {cmd.source}", now_ms, cmd.source)
            if before is not TradingState.ACTIVE:
                await self._state_changed(before, f"resumed by {cmd.source}", "resume_trading")
            return True, "trading active"
        return None

    def heartbeat(self) -> Heartbeat:
        self.counters["trading_halted"] = int(self.state.state is TradingState.HALTED)
        self.counters["trading_reducing"] = int(self.state.state is TradingState.REDUCING)
        return super().heartbeat()
