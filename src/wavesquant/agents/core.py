"""core: routes signals by type and tier, keeps every trade signal's lifecycle (event-sourced in the event
log, rebuilt from it on start), watches heartbeats and reports agents that go silent, and coordinates
learning by turning finished signals into per-strategy learning updates.

Routing: a FAST or slower trade signal becomes an order intent for risk; an HFT-tier one goes to risk
directly (risk takes it off its channel) and core only records it."""

from __future__ import annotations

from collections import Counter, OrderedDict, defaultdict
from typing import Any

from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus, Delivery
from wavesquant.config import AGENT_NAMES, Settings
from wavesquant.core.clock import Clock
from wavesquant.lifecycle.signal_log import replay
from wavesquant.lifecycle.signals import SignalBook, SignalTransition
from wavesquant.messages import (
    MAX_SIGNAL_STEPS,
    Channel,
    Envelope,
    ExecutionReport,
    Heartbeat,
    LearningUpdate,
    OrderIntent,
    RiskDecision,
    SignalEvent,
    TradeSignal,
    route_of,
    straight_to_risk,
)
from wavesquant.types import SignalState

SIGNAL_CHANNELS = (Channel.HFT_SIGNALS, Channel.FAST_SIGNALS, Channel.TACTICAL_SIGNALS, Channel.STRATEGIC_SIGNALS)
MAX_EARLY_OUTCOMES = 10_000
ADOPT_AFTER_MS = 2_000  # an outcome whose signal core has not seen by then: core missed the signal


class CoreAgent(Agent):
    name = "core"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        self.book = SignalBook(settings.core.signal_history)
        self.routed: Counter[str] = Counter()  # "<type>@<tier>" -> count
        self.last_seen_ns: dict[str, int] = {}
        self.agent_status: dict[str, str] = {}
        self.silent: set[str] = set()
        self._pending_steps: list[dict[str, Any]] = []  # signal transitions not yet in the event log
        self._learned_fills: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        # decisions and reports that overtook their signal (an HFT signal reaches risk and core at once):
        # signal id -> (first seen ms, outcomes in arrival order), applied when the signal arrives
        self._early: OrderedDict[str, tuple[int, list[RiskDecision | ExecutionReport]]] = OrderedDict()
        # HFT trade signals go straight to risk: core only records them, off the latency path, like the outcomes
        self.on([Channel.HFT_SIGNALS], self.route_signals, off_path=True)
        self.on([c for c in SIGNAL_CHANNELS if c is not Channel.HFT_SIGNALS], self.route_signals)
        self.on([Channel.HEARTBEATS], self.watch_heartbeats)
        self.consume(Channel.RISK_DECISIONS, self.on_risk_decisions, off_path=True)
        self.consume(Channel.EXECUTION_REPORTS, self.on_execution_reports, off_path=True)
        self.loop("signal_routing", self.expire_signals)
        self.loop("agent_health_monitoring", self.check_agent_health)
        self.loop("learning_coordination", self.coordinate_learning)

    async def initialize(self) -> None:
        """Rebuild signal states from the event log (crash-only: start-up and recovery are one path)."""
        replayed = 0
        async for msg in self.replay_event_log():
            if isinstance(msg, SignalEvent):
                replayed += replay(self.book, msg)
        if replayed:
            self.log.info("signals_rebuilt", events=replayed, signals=len(self.book), states=dict(self.book.counts()))

    # routing -----------------------------------------------------------------------------------------------
    async def route_signals(self, batch: list[Envelope]) -> None:
        intents: list[Envelope] = []
        now_ms = self.clock.now_ms()
        arrived: list[str] = []
        for msg in batch:
            self.routed[f"{msg.type}@{route_of(msg).tier.value}"] += 1
            if not isinstance(msg, TradeSignal):
                continue  # informational signals go straight to their subscribers
            spec = msg.order_spec()
            new = self.book.generate(msg.msg_id, msg.type, now_ms, msg.expires_at_ms, msg.strategy_id, msg.symbol,
                                     spec.client_order_id)
            if not new:
                self.counters["duplicate_signals"] += 1
                continue
            self._record(new, msg.expires_at_ms)
            if straight_to_risk(msg):
                self._record(self.book.advance(msg.msg_id, SignalState.EVALUATING, now_ms, "taken by risk"))
            else:
                intents.append(self.message(OrderIntent, order=spec, signal_type=msg.type, signal_ts_ms=msg.ts_ms,
                                            origin_ts_ns=msg.origin_ts_ns, expires_at_ms=msg.expires_at_ms))
                self._record(self.book.advance(msg.msg_id, SignalState.EVALUATING, now_ms, "sent to risk"))
            arrived.append(msg.msg_id)
        for signal_id in arrived:
            for outcome in self._early.pop(signal_id, (0, []))[1]:
                self._apply_outcome(outcome, now_ms)
        # one call writes the streams before the pub/sub: the lifecycle events are in the event log before risk can
        # decide on an intent, so the log shows every routed signal generated before its decision (an intent of
        # the FAST tier can wait one stream write; HFT signals do not come this way)
        await self.bus.publish_many([*self._take_events(), *intents])

    async def on_risk_decisions(self, deliveries: list[Delivery]) -> None:
        now_ms = self.clock.now_ms()
        for d in deliveries:
            if isinstance(d.message, RiskDecision):
                self._apply_outcome(d.message, now_ms)
        await self._flush_events()

    async def on_execution_reports(self, deliveries: list[Delivery]) -> None:
        now_ms = self.clock.now_ms()
        for d in deliveries:
            if isinstance(d.message, ExecutionReport):
                self._apply_outcome(d.message, now_ms)
        await self._flush_events()

    def _apply_outcome(self, msg: RiskDecision | ExecutionReport, now_ms: int) -> None:
        """Advance the signal behind a risk decision or an execution report; one whose signal has not
        arrived yet is kept until it does."""
        signal_id = msg.order.signal_id if isinstance(msg, RiskDecision) else msg.signal_id
        known = self.book.get(signal_id) if signal_id else None
        if known is None and isinstance(msg, ExecutionReport):
            known = self.book.by_client_order_id(msg.client_order_id)
        if known is None:
            if signal_id:
                self._early.setdefault(signal_id, (now_ms, []))[1].append(msg)
                while len(self._early) > MAX_EARLY_OUTCOMES:
                    self._early.popitem(last=False)
                    self.counters["early_outcomes_dropped"] += 1
            return
        if isinstance(msg, RiskDecision):
            if msg.approved:
                self._record(self.book.advance(known.signal_id, SignalState.APPROVED, now_ms, "risk approved"))
            else:
                reason = "; ".join(f"{x.code}" for x in msg.denials)[:200]
                self._record(self.book.advance(known.signal_id, SignalState.BLOCKED, now_ms, reason))
            return
        r = msg
        if r.kind == "fill" and r.last_quantity and r.last_price and r.strategy_id:
            stats = self._learned_fills[r.strategy_id]
            stats["fills"] += 1
            stats["notional"] += r.last_quantity * r.last_price
            stats["fees"] += r.fee
        if r.status.value == "filled":
            target, why = SignalState.EXECUTED, "order filled"
        elif r.kind in ("reject", "expired") or (r.kind == "cancel" and r.filled_quantity == 0):
            target, why = SignalState.EXPIRED, f"order {r.kind}: {r.reason}"[:200]
        elif r.kind == "cancel":
            target, why = SignalState.EXECUTED, "partially filled, rest canceled"
        else:
            target, why = SignalState.EXECUTING, f"order {r.status.value}"
        self._record(self.book.advance(known.signal_id, target, now_ms, why))

    async def expire_signals(self) -> None:
        now_ms = self.clock.now_ms()
        self._record(self.book.expire_due(now_ms))
        self._adopt_orphans(now_ms)
        await self._flush_events()

    def _adopt_orphans(self, now_ms: int) -> None:
        """Outcomes whose signal never reached core (a pub/sub gap while risk got it): record the signal from
        what its order says, so every order still has a complete lifecycle."""
        while self._early:
            signal_id, (seen_ms, outcomes) = next(iter(self._early.items()))
            if now_ms - seen_ms < ADOPT_AFTER_MS:
                return
            del self._early[signal_id]
            first = outcomes[0]
            if isinstance(first, RiskDecision):
                strategy_id, symbol, coid = first.order.strategy_id, first.order.symbol, first.order.client_order_id
            else:
                strategy_id, symbol, coid = first.strategy_id, first.symbol, first.client_order_id
            self._record(self.book.generate(signal_id, "unknown", now_ms, None, strategy_id, symbol, coid))
            self._record(self.book.advance(signal_id, SignalState.EVALUATING, now_ms, "signal not seen by core"))
            for outcome in outcomes:
                self._apply_outcome(outcome, now_ms)
            self.counters["signals_adopted"] += 1
            self.log.warning("signal_adopted", signal_id=signal_id, strategy_id=strategy_id, symbol=symbol)

    # lifecycle events ------------------------------------------------------------------------------------
    def _record(self, transitions: list[SignalTransition], expires_at_ms: int | None = None) -> None:
        for t in transitions:
            sig = self.book.get(t.signal_id)
            exp = expires_at_ms if expires_at_ms is not None else (sig.expires_at_ms if sig else None)
            self._pending_steps.append({
                "signal_id": t.signal_id, "signal_type": t.signal_type, "strategy_id": t.strategy_id,
                "symbol": t.symbol, "from_state": t.from_state, "to_state": t.to_state, "ts_ms": t.ts_ms,
                "reason": t.reason[:200], "signal_expires_at_ms": exp,
            })
            self.counters[f"signals:{t.to_state.value}"] += 1

    def _take_events(self) -> list[Envelope]:
        """The transitions recorded since the last call, as event-log entries of up to MAX_SIGNAL_STEPS each."""
        steps, self._pending_steps = self._pending_steps, []
        return [self.message(SignalEvent, steps=steps[i:i + MAX_SIGNAL_STEPS])
                for i in range(0, len(steps), MAX_SIGNAL_STEPS)]

    async def _flush_events(self) -> None:
        events = self._take_events()
        if events:
            await self.bus.publish_many(events)

    async def on_expired(self, msg: Envelope) -> None:
        if isinstance(msg, TradeSignal):
            self.counters["signals_expired_on_arrival"] += 1

    # health ------------------------------------------------------------------------------------------------
    async def watch_heartbeats(self, batch: list[Envelope]) -> None:
        now = self.clock.now_ns()
        for hb in batch:
            if isinstance(hb, Heartbeat):
                self.last_seen_ns[hb.agent] = now
                self.agent_status[hb.agent] = hb.status
                if hb.agent in self.silent:
                    self.silent.discard(hb.agent)
                    self.log.info("agent_back", agent=hb.agent, status=hb.status)

    async def check_agent_health(self) -> None:
        now = self.clock.now_ns()
        timeout_ns = int(self.settings.core.silence_timeout_s * 1e9)
        for agent in AGENT_NAMES:
            seen = self.last_seen_ns.get(agent)
            if agent == self.name or seen is None:
                continue
            if now - seen > timeout_ns and agent not in self.silent:
                self.silent.add(agent)
                self.log.warning("agent_silent", agent=agent, silent_s=round((now - seen) / 1e9, 1))

    def extra_problems(self) -> list[str]:
        return [f"agent {a} silent" for a in sorted(self.silent)]

    # learning ----------------------------------------------------------------------------------------------
    async def coordinate_learning(self) -> None:
        """Close the loop: every finished signal becomes `learned`, and each strategy gets its outcome stats."""
        now_ms = self.clock.now_ms()
        outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        for state in (SignalState.EXECUTED, SignalState.EXPIRED, SignalState.BLOCKED):
            for sig in self.book.signals(state):
                outcomes[sig.strategy_id or "unknown"][state.value] += 1
                self._record(self.book.advance(sig.signal_id, SignalState.LEARNED, now_ms, f"outcome {state.value}"))
        updates: list[Envelope] = []
        for strategy_id, outcome in outcomes.items():
            metrics = {k: float(v) for k, v in outcome.items()}
            metrics.update(self._learned_fills.pop(strategy_id, {}))
            updates.append(self.message(LearningUpdate, strategy_id=strategy_id, metrics=metrics,
                                        note="signal outcomes since last update"))
        await self.bus.publish_many(updates + self._take_events())
