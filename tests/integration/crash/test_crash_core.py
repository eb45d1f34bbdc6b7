"""Core under kill -9: the signal lifecycle is event-sourced, so a core process killed mid-stream and
restarted must continue every signal from exactly the state the event log had at the kill, never backwards.

Core runs as a real process over the real Redis; the test plays the other agents: it publishes TrendSignals on
fast_signals, and risk decisions / execution reports on their streams. Signals are driven to every state
(evaluating, approved, blocked, executing, executed), a last group of risk decisions is written just before
the SIGKILL (in flight: handled or not, acked or not), then core restarts and gets one stimulus per signal.
"""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
import redis

from support.crash_harness import (
    Supervisor,
    heartbeat_of,
    read_stream,
    sync_redis,
    wait_running,
    write_config,
    xadd,
)
from support.polling import wait_until
from wavesquant.core.ids import client_order_id
from wavesquant.messages import (
    Channel,
    Denial,
    ExecutionReport,
    RiskDecision,
    SignalEvent,
    SignalStep,
    TrendSignal,
    encode,
)
from wavesquant.types import OrderStatus, Side
from wavesquant.types import SignalState as S

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

GROUPS = ("evaluating", "approved", "blocked", "executing", "executed", "late")
PER_GROUP = 6
MAIN_RANK = {S.GENERATED: 0, S.EVALUATING: 1, S.APPROVED: 2, S.EXECUTING: 3, S.EXECUTED: 4}


def _signal(group: str, i: int) -> TrendSignal:
    now_ns = time.time_ns()
    return TrendSignal.create(
        source="strategy_engine",
        ts_ns=now_ns,
        msg_id=f"crashcore-{group}-{i}",
        strategy_id="crash_core",
        exchange="paper",
        symbol="BTC/USDT",
        side=Side.BUY,
        quantity=0.01,
        reference_price=60_000.0,
        expires_at_ms=now_ns // 1_000_000 + 600_000,
    )


def _decision(sig: TrendSignal, approved: bool) -> RiskDecision:
    denials = [] if approved else [Denial(code="max_order_notional", message="crash test block")]
    return RiskDecision.create(
        source="risk", ts_ns=time.time_ns(), order=sig.order_spec(), approved=approved, denials=denials
    )


def _report(sig: TrendSignal, status: OrderStatus) -> ExecutionReport:
    filled = status is OrderStatus.FILLED
    fill: dict[str, object] = (
        {"fill_id": f"{sig.msg_id}-f1", "last_quantity": sig.quantity, "last_price": 60_000.0}
        if filled
        else {}
    )
    return ExecutionReport.create(
        source="execution",
        ts_ns=time.time_ns(),
        kind="fill" if filled else "ack",
        client_order_id=client_order_id(sig.msg_id),
        venue="paper",
        signal_id=sig.msg_id,
        strategy_id=sig.strategy_id,
        symbol=sig.symbol,
        side=sig.side,
        status=status,
        quantity=sig.quantity,
        filled_quantity=sig.quantity if filled else 0.0,
        average_price=60_000.0 if filled else None,
        **fill,
    )


def _events(client: redis.Redis, prefix: str) -> dict[str, list[SignalStep]]:
    out: dict[str, list[SignalStep]] = defaultdict(list)
    for m in read_stream(client, prefix, Channel.EVENTS):
        if isinstance(m, SignalEvent):
            for step in m.steps:
                out[step.signal_id].append(step)
    return out


def _states(client: redis.Redis, prefix: str) -> dict[str, S]:
    return {sid: evs[-1].to_state for sid, evs in _events(client, prefix).items()}


def _publish_signals(client: redis.Redis, prefix: str, signals: list[TrendSignal]) -> None:
    for sig in signals:
        client.publish(f"{prefix}{Channel.FAST_SIGNALS.value}", encode(sig))


def _wait_states(client: redis.Redis, prefix: str, want: dict[str, S], what: str) -> dict[str, S]:
    def reached() -> dict[str, S] | None:
        states = _states(client, prefix)
        return states if all(states.get(sid) is s for sid, s in want.items()) else None

    return wait_until(reached, 20, what, interval=0.05)


def _wait_subscribed(client: redis.Redis, prefix: str) -> None:
    channel = f"{prefix}{Channel.FAST_SIGNALS.value}"
    wait_until(
        lambda: dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0, 20, "core to subscribe"
    )


def test_core_rebuilds_signal_states_after_kill9(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    sigs = {g: [_signal(g, i) for i in range(PER_GROUP)] for g in GROUPS}
    every = [s for g in GROUPS for s in sigs[g]]
    ids = {g: [s.msg_id for s in sigs[g]] for g in GROUPS}

    with sync_redis(redis_url) as client, Supervisor(redis_url, redis_prefix, tmp_path) as sup:
        core = sup.agent("core", write_config(tmp_path / "core.yaml"))
        core.start()
        wait_running(client, core)
        _wait_subscribed(client, redis_prefix)

        # drive the signals to every state
        _publish_signals(client, redis_prefix, every)
        _wait_states(client, redis_prefix, {s.msg_id: S.EVALUATING for s in every}, "every signal evaluating")
        for g in ("approved", "executing", "executed"):
            for s in sigs[g]:
                xadd(client, redis_prefix, Channel.RISK_DECISIONS, _decision(s, approved=True))
        for s in sigs["blocked"]:
            xadd(client, redis_prefix, Channel.RISK_DECISIONS, _decision(s, approved=False))
        for s in sigs["executing"]:
            xadd(client, redis_prefix, Channel.EXECUTION_REPORTS, _report(s, OrderStatus.OPEN))
        for s in sigs["executed"]:
            xadd(client, redis_prefix, Channel.EXECUTION_REPORTS, _report(s, OrderStatus.FILLED))
        want = {
            **{sid: S.EVALUATING for sid in ids["evaluating"] + ids["late"]},
            **{sid: S.APPROVED for sid in ids["approved"]},
            **{sid: S.BLOCKED for sid in ids["blocked"]},
            **{sid: S.EXECUTING for sid in ids["executing"]},
            **{sid: S.EXECUTED for sid in ids["executed"]},
        }
        _wait_states(client, redis_prefix, want, "every signal in its target state")

        # decisions in flight, then SIGKILL: the event log at that moment is the truth core must rebuild
        for s in sigs["late"]:
            xadd(client, redis_prefix, Channel.RISK_DECISIONS, _decision(s, approved=True))
        core.kill9()
        before = _states(client, redis_prefix)
        events_before = {sid: len(evs) for sid, evs in _events(client, redis_prefix).items()}
        assert {sid: before[sid] for sid in want if sid not in ids["late"]} == {
            sid: s for sid, s in want.items() if sid not in ids["late"]
        }
        assert all(before[sid] in (S.EVALUATING, S.APPROVED) for sid in ids["late"])

        core.start()
        wait_running(client, core)
        _wait_subscribed(client, redis_prefix)

        # 1. every signal is known after the restart: re-sent signals are duplicates, none is generated again
        _publish_signals(client, redis_prefix, every)
        wait_until(
            lambda: (
                (hb := heartbeat_of(client, redis_prefix, "core")) is not None
                and hb.pid == core.pid
                and hb.counters.get("duplicate_signals", 0) >= len(every)
            ),
            20,
            "core to count every re-sent signal as a duplicate",
            interval=0.05,
        )

        # 2. one stimulus per signal; the refused ones go first on each stream, so they were handled by the
        #    time the accepted ones show up in the event log
        for s in sigs["blocked"]:  # a late approval must not unblock
            xadd(client, redis_prefix, Channel.RISK_DECISIONS, _decision(s, approved=True))
        for s in sigs["evaluating"]:
            xadd(client, redis_prefix, Channel.RISK_DECISIONS, _decision(s, approved=True))
        for s in sigs["executed"]:  # a stale ack must not move an executed signal back to executing
            xadd(client, redis_prefix, Channel.EXECUTION_REPORTS, _report(s, OrderStatus.OPEN))
        for s in sigs["approved"] + sigs["late"]:
            xadd(client, redis_prefix, Channel.EXECUTION_REPORTS, _report(s, OrderStatus.OPEN))
        for s in sigs["executing"]:
            xadd(client, redis_prefix, Channel.EXECUTION_REPORTS, _report(s, OrderStatus.FILLED))
        after_want = {
            **{sid: S.APPROVED for sid in ids["evaluating"]},
            **{sid: S.EXECUTING for sid in ids["approved"] + ids["late"]},
            **{sid: S.EXECUTED for sid in ids["executing"] + ids["executed"]},
            **{sid: S.BLOCKED for sid in ids["blocked"]},
        }
        after = _wait_states(
            client, redis_prefix, after_want, "every signal to move on from its rebuilt state"
        )
        hb = heartbeat_of(client, redis_prefix, "core")
        core.stop()
        events = _events(client, redis_prefix)

    assert after == after_want
    assert hb is not None and hb.counters.get("signals:generated", 0) == 0, "no signal generated twice"
    for sid, evs in events.items():
        assert evs[0].from_state is None and evs[0].to_state is S.GENERATED, f"{sid}: {evs[0]}"
        assert sum(e.to_state is S.GENERATED for e in evs) == 1, f"{sid} generated twice"
        for prev, cur in pairwise(evs):
            assert cur.from_state is prev.to_state, (
                f"{sid}: {cur.from_state} after {prev.to_state} (not continued)"
            )
            if cur.to_state in MAIN_RANK and prev.to_state in MAIN_RANK:
                assert MAIN_RANK[cur.to_state] > MAIN_RANK[prev.to_state], (
                    f"{sid} went backwards: {prev} -> {cur}"
                )
        if (
            len(evs) > events_before[sid]
        ):  # the first transition after the restart starts where the kill left it
            assert evs[events_before[sid]].from_state is before[sid], (
                f"{sid}: rebuilt {evs[events_before[sid]]}"
            )
    for sid in ids["blocked"] + ids["executed"]:
        assert len(events[sid]) == events_before[sid], f"{sid} moved after the restart: {events[sid][-1]}"
