"""The signal lifecycle: generated -> evaluating -> approved | blocked -> executing -> executed | expired -> learned.

Pure and event-sourced: every accepted transition is returned as a `SignalTransition` the caller appends to
the event log, and `SignalBook.apply_transition` rebuilds the same state from that log after a restart.
Reports can arrive out of order (an execution ack before the risk decision): a forward jump along the main
path is accepted and records the skipped states as implied. A signal core expired whose order nevertheless
reached the venue moves on to executing/executed (the venue is the truth). Anything else is refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from wavesquant.core.segmented import SegmentedDict
from wavesquant.types import SignalState as S

_MAIN_PATH = (S.GENERATED, S.EVALUATING, S.APPROVED, S.EXECUTING, S.EXECUTED)
_RANK = {state: i for i, state in enumerate(_MAIN_PATH)}


class IllegalSignalTransition(ValueError):
    pass


def path_to(current: S, target: S) -> list[S]:
    """The states to pass through from `current` to `target` (target last), or raise if not allowed."""
    if current in _RANK and target in _RANK and _RANK[target] > _RANK[current]:
        return list(_MAIN_PATH[_RANK[current] + 1 : _RANK[target] + 1])
    if target is S.BLOCKED and current in (S.GENERATED, S.EVALUATING):
        return [S.BLOCKED] if current is S.EVALUATING else [S.EVALUATING, S.BLOCKED]
    if target is S.EXPIRED and current in (S.GENERATED, S.EVALUATING, S.APPROVED, S.EXECUTING):
        return [S.EXPIRED]
    if target is S.LEARNED and current in (S.EXECUTED, S.EXPIRED, S.BLOCKED):
        return [S.LEARNED]
    if current is S.EXPIRED and target in (S.EXECUTING, S.EXECUTED):
        # core expired it while risk's approval was still on its way, but the order did reach the venue:
        # the venue is the truth
        return [target]
    raise IllegalSignalTransition(f"{current} -> {target} is not a legal signal transition")


@dataclass(frozen=True, slots=True)
class SignalTransition:
    signal_id: str
    from_state: S | None
    to_state: S
    ts_ms: int
    reason: str = ""
    signal_type: str = ""
    strategy_id: str | None = None
    symbol: str | None = None


@dataclass(slots=True)
class TrackedSignal:
    signal_id: str
    signal_type: str
    strategy_id: str | None
    symbol: str | None
    state: S
    created_ms: int
    expires_at_ms: int | None
    updated_ms: int
    client_order_id: str | None = None
    history: list[SignalTransition] = field(default_factory=list)


class SignalBook:
    """Every signal's current state and history, bounded to the most recent `capacity` signals."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._signals: SegmentedDict[str, TrackedSignal] = SegmentedDict()
        self._by_order: SegmentedDict[str, str] = SegmentedDict()
        self._waiting: dict[str, None] = {}  # generated or evaluating, oldest first: candidates for expiry
        self.refused = 0

    def __len__(self) -> int:
        return len(self._signals)

    def get(self, signal_id: str) -> TrackedSignal | None:
        return self._signals.get(signal_id)

    def by_client_order_id(self, client_order_id: str) -> TrackedSignal | None:
        sid = self._by_order.get(client_order_id)
        return self._signals.get(sid) if sid else None

    def signals(self, state: S | None = None) -> list[TrackedSignal]:
        return [s for s in self._signals.values() if state is None or s.state is state]

    def counts(self) -> Counter[str]:
        return Counter(s.state.value for s in self._signals.values())

    def generate(self, signal_id: str, signal_type: str, ts_ms: int, expires_at_ms: int | None,
                 strategy_id: str | None = None, symbol: str | None = None,
                 client_order_id: str | None = None) -> list[SignalTransition]:
        """Record a new signal. A signal id seen before yields no transition (duplicate delivery)."""
        if signal_id in self._signals:
            return []
        t = SignalTransition(signal_id, None, S.GENERATED, ts_ms, "", signal_type, strategy_id, symbol)
        self._insert(TrackedSignal(signal_id, signal_type, strategy_id, symbol, S.GENERATED, ts_ms, expires_at_ms,
                                   ts_ms, client_order_id, [t]))
        return [t]

    def advance(self, signal_id: str, target: S, ts_ms: int, reason: str = "") -> list[SignalTransition]:
        """Move a signal to `target`, through implied states if needed. Returns the transitions applied;
        [] for an unknown signal, a repeat of the current state, or a refused (illegal) transition."""
        sig = self._signals.get(signal_id)
        if sig is None or sig.state is target:
            return []
        try:
            steps = path_to(sig.state, target)
        except IllegalSignalTransition:
            self.refused += 1
            return []
        out = []
        for i, state in enumerate(steps):
            note = reason if i == len(steps) - 1 else f"implied by {target.value}"
            t = SignalTransition(signal_id, sig.state, state, ts_ms, note, sig.signal_type, sig.strategy_id, sig.symbol)
            sig.state, sig.updated_ms = state, ts_ms
            sig.history.append(t)
            out.append(t)
        self._track_waiting(sig)
        return out

    def apply_transition(self, t: SignalTransition, expires_at_ms: int | None = None,
                         client_order_id: str | None = None) -> None:
        """Replay one logged transition (state rebuild after a restart)."""
        sig = self._signals.get(t.signal_id)
        if sig is None:
            sig = TrackedSignal(t.signal_id, t.signal_type, t.strategy_id, t.symbol, t.to_state, t.ts_ms,
                                expires_at_ms, t.ts_ms, client_order_id, [])
            self._insert(sig)
        sig.state, sig.updated_ms = t.to_state, t.ts_ms
        if client_order_id and not sig.client_order_id:
            sig.client_order_id = client_order_id
            self._by_order[client_order_id] = sig.signal_id
        sig.history.append(t)
        self._track_waiting(sig)

    def _track_waiting(self, sig: TrackedSignal) -> None:
        if sig.state in (S.GENERATED, S.EVALUATING):
            self._waiting[sig.signal_id] = None
        else:
            self._waiting.pop(sig.signal_id, None)

    def expire_due(self, now_ms: int) -> list[SignalTransition]:
        """Expire signals still waiting for risk (generated/evaluating) past their expiry. Approved and
        executing signals are left to execution, which reports expiry itself when it refuses a stale order."""
        out: list[SignalTransition] = []
        for sid in list(self._waiting):
            sig = self._signals[sid]
            if sig.expires_at_ms is not None and now_ms >= sig.expires_at_ms:
                out += self.advance(sig.signal_id, S.EXPIRED, now_ms, "expired before a risk decision")
        return out

    def _insert(self, sig: TrackedSignal) -> None:
        self._signals[sig.signal_id] = sig
        self._track_waiting(sig)
        if sig.client_order_id:
            self._by_order[sig.client_order_id] = sig.signal_id
        while len(self._signals) > self.capacity:
            _, old = self._signals.pop_oldest()
            self._waiting.pop(old.signal_id, None)
            if old.client_order_id:
                self._by_order.pop(old.client_order_id, None)
