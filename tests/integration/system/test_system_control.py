"""Operating a running system with `wq agent stop|start|pause|resume`: a stopped risk agent stays up, says
so in its heartbeat and lets no order through while signals keep coming; started again, orders flow again. A
paused agent acknowledges, does no work, and picks up where it was when resumed."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import pytest

from support.agents_procs import BARS_PER_SECOND, AgentSystem, RedisState, signal_steps
from support.polling import wait_until
from wavesquant.messages import (
    ControlAck,
    Envelope,
    ExecutionReport,
    Heartbeat,
    NewOrder,
    RiskDecision,
    SignalStep,
    decode,
)

pytestmark = [pytest.mark.redis, pytest.mark.shared_data]


E = TypeVar("E", bound=Envelope)


def _after(events: list[tuple[str, Envelope]], ts_ms: int, kind: type[E]) -> list[E]:
    """Messages of one kind created after `ts_ms`."""
    return [m for _, m in events if isinstance(m, kind) and m.ts_ms > ts_ms]


def _status(state: RedisState, agent: str, status: str) -> bool:
    hb = state.heartbeat(agent)
    return hb is not None and hb.status == status


def _beat_after(state: RedisState, agent: str, ts_ms: int) -> Heartbeat | None:
    hb = state.live_heartbeat(agent)
    return hb if hb.ts_ms > ts_ms else None


def test_stopped_risk_lets_no_order_through_until_started(system: AgentSystem, state: RedisState) -> None:
    wait_until(lambda: _after(state.events(), 0, NewOrder), 45, "a first order (the system trades)")
    out = system.control("stop", "risk")
    assert "risk: stop -> stopped" in out, out
    stopped_ms = int(time.time() * 1000)  # the ack is in: nothing risk creates from now on may be an order
    try:
        wait_until(lambda: _status(state, "risk", "stopped"), 10, "risk's heartbeat to say stopped")
        discarded_before = state.live_heartbeat("risk").counters.get("discarded_inactive", 0)

        def new_signals() -> list[SignalStep]:
            return [s for _, s in signal_steps(state.events()) if s.to_state == "generated" and s.ts_ms > stopped_ms]

        wait_until(lambda: len(new_signals()) >= 5, 30, "5 new signals while risk is stopped")
        events = state.events()
        assert _after(events, stopped_ms, NewOrder) == []
        assert _after(events, stopped_ms, RiskDecision) == []
        assert system.procs["risk"].alive

        def dropping() -> Heartbeat | None:  # the signals' intents reach risk and are dropped
            hb = _beat_after(state, "risk", stopped_ms)
            return hb if hb and hb.counters.get("discarded_inactive", 0) > discarded_before else None

        hb = wait_until(dropping, 10, "risk's heartbeat to count discarded intents")
        assert hb.status == "stopped"
        health = system.wq("agent", "health", "risk")
        assert health.returncode == 0 and "stopped" in health.stdout, health.stdout + health.stderr
    finally:
        out = system.control("start", "risk")
    assert "risk: start -> running" in out, out
    started_ms = int(time.time() * 1000)
    wait_until(lambda: _status(state, "risk", "running"), 10, "risk's heartbeat to say running")
    orders = wait_until(lambda: _after(state.events(), started_ms, NewOrder), 30, "an order after the start")
    coids = {o.order.client_order_id for o in orders}

    def new_fills() -> list[ExecutionReport]:
        reports = _after(state.events(), started_ms, ExecutionReport)
        return [r for r in reports if r.kind == "fill" and r.client_order_id in coids]

    wait_until(new_fills, 30, "a fill of an order placed after the start")


def test_paused_agent_does_no_work_until_resumed(system: AgentSystem, state: RedisState) -> None:
    def assessments() -> tuple[int, int]:
        hb = state.live_heartbeat("intelligence")
        runs = next(loop.runs for loop in hb.loops if loop.name == "trend_intelligence")
        return hb.counters.get("trend_assessments", 0), runs

    wait_until(lambda: assessments()[0] > 0, 30, "intelligence to publish trend assessments")
    out = system.control("pause", "intelligence")
    assert "intelligence: pause -> paused" in out, out
    try:
        wait_until(
            lambda: _status(state, "intelligence", "paused"), 10, "intelligence's heartbeat to say paused"
        )
        paused_at = assessments()
        paused_hb_ms = state.live_heartbeat("intelligence").ts_ms
        time.sleep(2.5)  # more than two trend_intelligence intervals (1 s)
        hb = state.live_heartbeat("intelligence")
        assert hb.status == "paused" and hb.ts_ms > paused_hb_ms  # alive, beating, idle
        assert assessments() == paused_at
    finally:
        out = system.control("resume", "intelligence")
    assert "intelligence: resume -> running" in out, out
    wait_until(
        lambda: _status(state, "intelligence", "running"), 10, "intelligence's heartbeat to say running"
    )
    wait_until(
        lambda: assessments()[0] > paused_at[0] and assessments()[1] > paused_at[1],
        15,
        "trend assessments again after the resume",
    )
    assert system.dead() == []


def test_resumed_replay_goes_on_at_its_rate_without_a_burst(system: AgentSystem, state: RedisState) -> None:
    """Pausing a replay pauses its clock: after `resume` bars go on at bars_per_second, not all at once."""
    acks = state.client.pubsub()
    acks.subscribe(state.key("control"))  # the acks carry the agent's own time of each transition
    try:
        out = system.control("pause", "data_feeds")
        assert "data_feeds: pause -> paused" in out, out
        wait_until(lambda: _status(state, "data_feeds", "paused"), 10, "data_feeds' heartbeat to say paused")
        bars_paused = state.live_heartbeat("data_feeds").counters.get("bars", 0)
        time.sleep(6.0)  # 600 bars' worth of replay time at 100 bars/s
        out = system.control("resume", "data_feeds")
        assert "data_feeds: resume -> running" in out, out
        acked = _acks(acks, "data_feeds", ("pause", "resume"))
    finally:
        acks.close()
    paused_ms, resumed_ms = acked["pause"].ts_ms, acked["resume"].ts_ms
    assert resumed_ms - paused_ms >= 6_000

    def beat_after_resume() -> Heartbeat | None:
        hb = state.live_heartbeat("data_feeds")
        return hb if hb.status == "running" and hb.ts_ms >= resumed_ms + 500 else None

    hb = wait_until(beat_after_resume, 15, "a heartbeat from data_feeds at least 0.5 s after the resume")
    running_s = (hb.ts_ms - resumed_ms) / 1000
    published = hb.counters.get("bars", 0) - bars_paused
    # one more second's worth of slack; a replay that catches up adds the whole pause (>= 6 s worth)
    assert published <= BARS_PER_SECOND * (running_s + 1.0), (published, running_s)


def _acks(pubsub: Any, agent: str, commands: tuple[str, ...]) -> dict[str, ControlAck]:
    """The control acks from `agent` for `commands` the subscription has received, by command."""
    found: dict[str, ControlAck] = {}
    deadline = time.monotonic() + 10
    while not set(commands) <= set(found) and time.monotonic() < deadline:
        raw = pubsub.get_message(timeout=0.2)
        if raw is None or raw["type"] != "message":
            continue
        msg = decode(raw["data"])
        if isinstance(msg, ControlAck) and msg.agent == agent:
            found[msg.command] = msg
    assert set(commands) <= set(found), f"acks from {agent}: {found}"
    return found
