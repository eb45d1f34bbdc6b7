"""The portfolio-wide trading state (ACTIVE / REDUCING / HALTED) with its transition history.

`set` refuses nothing: any state may follow any other, by hand or by a breaker, and every change is recorded.
Automatic sources (circuit breakers) should use `escalate`, which never lowers the state, so a REDUCING trip
can not undo a HALT; only `resume` / `set` (an operator) lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wavesquant.types import TradingState

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(frozen=True, slots=True)
class StateTransition:
    ts_ms: int
    from_state: TradingState
    to_state: TradingState
    reason: str
    source: str


class TradingStateMachine:
    def __init__(self, initial: TradingState = TradingState.ACTIVE) -> None:
        self._state = initial
        self._history: list[StateTransition] = []

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def history(self) -> tuple[StateTransition, ...]:
        return tuple(self._history)

    @property
    def last_transition(self) -> StateTransition | None:
        return self._history[-1] if self._history else None

    def set(self, state: TradingState, reason: str, ts_ms: int, source: str) -> StateTransition | None:
        """Move to `state`; returns the recorded transition, or None (nothing recorded) if already there."""
        if state is self._state:
            return None
        transition = StateTransition(ts_ms, self._state, state, reason, source)
        self._history.append(transition)
        self._state = state
        return transition

    def escalate(self, state: TradingState, reason: str, ts_ms: int, source: str) -> StateTransition | None:
        """Move to `state` only if it is more restrictive than the current state."""
        if _SEVERITY[state] <= _SEVERITY[self._state]:
            return None
        return self.set(state, reason, ts_ms, source)

    def halt(self, reason: str, ts_ms: int, source: str = "manual") -> StateTransition | None:
        return self.set(TradingState.HALTED, reason, ts_ms, source)

    def resume(self, reason: str, ts_ms: int, source: str = "manual") -> StateTransition | None:
        return self.set(TradingState.ACTIVE, reason, ts_ms, source)

    def allows(self, candidate_is_reducing: bool) -> bool:
        """ACTIVE allows everything, REDUCING only reducing orders, HALTED nothing."""
        if self._state is TradingState.ACTIVE:
            return True
        if self._state is TradingState.REDUCING:
            return candidate_is_reducing
        return False
