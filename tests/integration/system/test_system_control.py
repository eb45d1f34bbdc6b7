"""Operating a running system with `wq agent stop|start|pause|resume`: a stopped risk agent stays up, says
so in its heartbeat and lets no order through while signals keep coming; started again, orders flow again. A
paused agent acknowledges, does no work, and picks up where it was when resumed."""

from __future__ import annotations

import time

import pytest

from support.agents_procs import AgentSystem, RedisState, wait_until
from wavesquant.messages import Envelope, ExecutionReport, NewOrder, RiskDecision, SignalEvent

pytestmark = [pytest.mark.redis, pytest.mark.shared_data]


def _after(events: list[tuple[str, Envelope]], ts_ms: int, kind: type[Envelope]) -> list[Envelope]:
    return [m for _, m in events if isinstance(m, kind) and m.ts_ms > ts_ms]


def _status(state: RedisState, agent: str, status: str) -> bool:
    hb = state.heartbeat(agent)
    return hb is not None and hb.status == status


def test_stopped_risk_lets_no_order_through_until_started(system: AgentSystem, state: RedisState) -> None:
    wait_until(lambda: _after(state.events(), 0, NewOrder), 45, "a first order (the system trades)")
    out = system.control("stop", "risk")
    assert "risk: stop -> stopped" in out, out
    stopped_ms = int(time.time() * 1000)  # the ack is in: nothing risk creates from now on may be an order
    try:
        wait_until(lambda: _status(state, "risk", "stopped"), 10, "risk's heartbeat to say stopped")
        discarded_before = state.heartbeat("risk").counters.get("discarded_inactive", 0)  # type: ignore[union-attr]
        signals = wait_until(lambda: len(s := [m for m in _after(state.events(), stopped_ms, SignalEvent)
                                               if m.to_state == "generated"]) >= 5 and s,
                             30, "5 new signals while risk is stopped")
        events = state.events()
        assert _after(events, stopped_ms, NewOrder) == []
        assert _after(events, stopped_ms, RiskDecision) == []
        assert system.procs["risk"].alive
        hb = state.heartbeat("risk")
        assert hb is not None and hb.status == "stopped" and hb.ts_ms > stopped_ms
        assert hb.counters.get("discarded_inactive", 0) > discarded_before  # the intents came and were dropped
        health = system.wq("agent", "health", "risk")
        assert health.returncode == 0 and "stopped" in health.stdout, health.stdout + health.stderr
        assert len(signals) >= 5
    finally:
        out = system.control("start", "risk")
    assert "risk: start -> running" in out, out
    started_ms = int(time.time() * 1000)
    wait_until(lambda: _status(state, "risk", "running"), 10, "risk's heartbeat to say running")
    orders = wait_until(lambda: _after(state.events(), started_ms, NewOrder), 30, "a new order after the start")
    coids = {o.order.client_order_id for o in orders if isinstance(o, NewOrder)}
    wait_until(lambda: [m for m in _after(state.events(), started_ms, ExecutionReport)
                        if isinstance(m, ExecutionReport) and m.kind == "fill" and m.client_order_id in coids],
               30, "a fill of an order placed after the start")


def test_paused_agent_does_no_work_until_resumed(system: AgentSystem, state: RedisState) -> None:
    def assessments() -> tuple[int, int]:
        hb = state.heartbeat("intelligence")
        assert hb is not None
        runs = next(loop.runs for loop in hb.loops if loop.name == "trend_intelligence")
        return hb.counters.get("trend_assessments", 0), runs

    wait_until(lambda: assessments()[0] > 0, 30, "intelligence to publish trend assessments")
    out = system.control("pause", "intelligence")
    assert "intelligence: pause -> paused" in out, out
    try:
        wait_until(lambda: _status(state, "intelligence", "paused"), 10, "intelligence's heartbeat to say paused")
        paused_at = assessments()
        paused_hb_ms = state.heartbeat("intelligence").ts_ms  # type: ignore[union-attr]
        time.sleep(2.5)  # more than two trend_intelligence intervals (1 s)
        hb = state.heartbeat("intelligence")
        assert hb is not None and hb.status == "paused" and hb.ts_ms > paused_hb_ms  # alive, beating, idle
        assert assessments() == paused_at
    finally:
        out = system.control("resume", "intelligence")
    assert "intelligence: resume -> running" in out, out
    wait_until(lambda: _status(state, "intelligence", "running"), 10, "intelligence's heartbeat to say running")
    wait_until(lambda: assessments()[0] > paused_at[0] and assessments()[1] > paused_at[1], 15,
               "trend assessments again after the resume")
    assert system.dead() == []
