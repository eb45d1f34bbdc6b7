from __future__ import annotations

from wavesquant.risk.state import StateTransition, TradingStateMachine
from wavesquant.types import TradingState as S


def test_transitions_are_recorded_with_reason_time_and_source() -> None:
    m = TradingStateMachine()
    assert m.state is S.ACTIVE and m.history == () and m.last_transition is None
    t = m.set(S.REDUCING, "reject rate 60%", 1_000, "breaker:reject_rate")
    assert t == StateTransition(1_000, S.ACTIVE, S.REDUCING, "reject rate 60%", "breaker:reject_rate")
    m.set(S.HALTED, "daily loss", 2_000, "breaker:daily_loss")
    m.set(S.ACTIVE, "checked by hand", 3_000, "operator")
    assert m.state is S.ACTIVE
    assert [(x.from_state, x.to_state, x.ts_ms) for x in m.history] == [
        (S.ACTIVE, S.REDUCING, 1_000),
        (S.REDUCING, S.HALTED, 2_000),
        (S.HALTED, S.ACTIVE, 3_000),
    ]
    assert m.last_transition == m.history[-1]


def test_setting_the_current_state_records_nothing() -> None:
    m = TradingStateMachine(S.HALTED)
    assert m.set(S.HALTED, "again", 1, "x") is None
    assert m.history == ()


def test_escalate_never_lowers_the_state() -> None:
    m = TradingStateMachine()
    assert m.escalate(S.HALTED, "critical anomaly", 1, "breaker:anomaly") is not None
    assert m.escalate(S.REDUCING, "reject rate", 2, "breaker:reject_rate") is None
    assert m.escalate(S.ACTIVE, "nothing", 3, "breaker") is None
    assert m.state is S.HALTED
    m.set(S.REDUCING, "operator eases", 4, "operator")
    assert m.escalate(S.HALTED, "drawdown", 5, "breaker:drawdown") is not None
    assert m.state is S.HALTED and len(m.history) == 3


def test_manual_halt_and_resume() -> None:
    m = TradingStateMachine()
    t = m.halt("kill switch pressed", 10)
    assert t is not None and t.source == "manual" and m.state is S.HALTED
    t = m.resume("all clear", 20, source="cli")
    assert t is not None and t.source == "cli" and t.from_state is S.HALTED and m.state is S.ACTIVE


def test_allows() -> None:
    m = TradingStateMachine()
    assert m.allows(True) and m.allows(False)
    m.set(S.REDUCING, "r", 1, "x")
    assert m.allows(True) and not m.allows(False)
    m.set(S.HALTED, "h", 2, "x")
    assert not m.allows(True) and not m.allows(False)
