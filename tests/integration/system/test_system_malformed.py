"""Bad input never stops an agent: garbage published by hand on every pub/sub channel and appended to every
consumed stream is dead-lettered by each subscriber / consumer group with the reason and the raw payload,
counted in the heartbeats, and the system keeps running and trading."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from support.agents_procs import SYMBOL, AgentSystem, RedisState
from support.polling import wait_until
from wavesquant.config import AGENT_NAMES
from wavesquant.messages import (
    PUBSUB_CHANNELS,
    Bar,
    Channel,
    Envelope,
    ExecutionReport,
    NewOrder,
    OrderSpec,
    ProbeSignal,
    RiskDecision,
    TickBatch,
    TrendSignal,
)

pytestmark = [pytest.mark.redis, pytest.mark.shared_data]

CONSUMED_STREAMS = (Channel.ORDERS, Channel.EXECUTION_REPORTS, Channel.RISK_DECISIONS)
NOBODY_LISTENS = {Channel.RISK_ALERTS, Channel.LEARNING_UPDATES}  # published for operators and tools only
NOW_NS = time.time_ns()


def _spec(tag: str) -> OrderSpec:
    return OrderSpec(
        client_order_id=f"bad{tag}",
        signal_id=f"bad{tag}",
        strategy_id="garbage",
        family="trend",
        exchange="binance",
        symbol=SYMBOL,
        side="buy",
        quantity=0.01,
        reference_price=50_000.0,
    )


def _valid(channel: str) -> tuple[Envelope, tuple[str | int, ...]]:
    """A valid message for `channel` and the path of a price field in it that must stay positive."""
    stamp: dict[str, Any] = {"source": "garbage", "ts_ns": NOW_NS}
    bar = Bar.create(
        **stamp,
        exchange="binance",
        symbol=SYMBOL,
        timeframe="1m",
        open_ts_ms=NOW_NS // 10**6,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=1.0,
    )
    signal = {
        **stamp,
        "strategy_id": "garbage",
        "exchange": "binance",
        "symbol": SYMBOL,
        "side": "buy",
        "quantity": 0.01,
        "reference_price": 50_000.0,
    }
    by_channel: dict[str, tuple[Envelope, tuple[str | int, ...]]] = {
        Channel.MARKET_BARS: (bar, ("close",)),
        Channel.MARKET_TICKS: (
            TickBatch.create(
                **stamp, exchange="binance", symbols=[SYMBOL], event_ts_ms=[1], prices=[50_000.0], sizes=[1.0]
            ),
            ("prices", 0),
        ),
        Channel.HFT_SIGNALS: (ProbeSignal.create(**signal, tick_ts_ns=NOW_NS), ("reference_price",)),
        Channel.FAST_SIGNALS: (TrendSignal.create(**signal), ("reference_price",)),
        Channel.ORDERS: (NewOrder.create(**stamp, order=_spec("o")), ("order", "reference_price")),
        Channel.RISK_DECISIONS: (
            RiskDecision.create(**stamp, order=_spec("d"), approved=True),
            ("order", "reference_price"),
        ),
        Channel.EXECUTION_REPORTS: (
            ExecutionReport.create(
                **stamp,
                kind="fill",
                client_order_id="badr",
                venue="paper",
                symbol=SYMBOL,
                side="buy",
                status="filled",
                quantity=0.01,
                filled_quantity=0.01,
                average_price=50_000.0,
                fill_id="badr-1",
                last_quantity=0.01,
                last_price=50_000.0,
            ),
            ("last_price",),
        ),
    }
    return by_channel.get(channel, (bar, ("close",)))  # no priced message type of its own: a bar


def garbage(channel: str) -> dict[str, bytes]:
    """Three bad payloads, each unique to the channel: invalid JSON, an unknown type, a negative price."""
    msg, path = _valid(channel)
    data = msg.model_dump(mode="json")
    node: Any = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = -1.0
    unknown = {
        "type": "no_such_type",
        "msg_id": f"unknown-{channel}",
        "source": "garbage",
        "ts_ms": NOW_NS // 10**6,
        "ts_ns": NOW_NS,
    }
    return {
        "invalid_json": b'{"garbage on ' + channel.encode() + b'": ',
        "unknown_type": json.dumps(unknown).encode(),
        "negative_price": json.dumps(data).encode(),
    }


REASONS = {"invalid_json": "Invalid JSON", "unknown_type": "no_such_type", "negative_price": "greater than 0"}
Expected = dict[tuple[str, bytes], tuple[int, str]]  # (channel, raw payload) -> (dead letters, reason part)


def send_garbage(state: RedisState) -> tuple[Expected, dict[str, int], dict[str, int]]:
    """PUBLISH garbage on every pub/sub channel and XADD garbage (and an entry without `d`) to every consumed
    stream. Returns what must be dead-lettered, the receivers per channel and the groups per stream."""
    client = state.client
    expected: Expected = {}
    receivers: dict[str, int] = {}
    for channel in PUBSUB_CHANNELS:
        for kind, payload in garbage(channel).items():
            receivers[channel] = int(client.publish(state.key(channel), payload))
            expected[(channel, payload)] = (receivers[channel], REASONS[kind])
    groups: dict[str, int] = {}
    for stream in CONSUMED_STREAMS:
        groups[stream] = len(client.xinfo_groups(state.key(stream)))
        for kind, payload in garbage(stream).items():
            client.xadd(state.key(stream), {"d": payload})
            expected[(stream, payload)] = (groups[stream], REASONS[kind])
        fields = {b"x": b"no d field on " + stream.encode()}
        client.xadd(state.key(stream), fields)  # type: ignore[arg-type]
        expected[(stream, repr(fields).encode())] = (groups[stream], "no 'd' field")
    return expected, receivers, groups


def _fills_after(state: RedisState, mark: str) -> list[ExecutionReport]:
    return [m for _, m in state.events(mark) if isinstance(m, ExecutionReport) and m.kind == "fill"]


def test_garbage_everywhere_is_dead_lettered_and_nothing_stops(
    system: AgentSystem, state: RedisState
) -> None:
    wait_until(lambda: _fills_after(state, "0-0"), 45, "a first fill (the system trades)")
    dead_mark = state.last_id("deadletter")
    events_mark = state.last_id("events")
    pids = {name: p.popen.pid for name, p in system.procs.items()}
    sent_ms = int(time.time() * 1000)
    expected, receivers, groups = send_garbage(state)
    assert receivers[Channel.CONTROL] == len(AGENT_NAMES), receivers  # every agent listens for control
    assert all(n >= 1 for c, n in receivers.items() if c not in NOBODY_LISTENS), receivers
    assert all(n >= 1 for n in groups.values()), groups  # every consumed stream has a consumer group

    # each subscriber / consumer group parks each payload once, with its channel, reason and raw text
    def parked() -> dict[tuple[str, bytes], list[dict[str, Any]]] | None:
        found: dict[tuple[str, bytes], list[dict[str, Any]]] = {}
        for entry in state.deadletters(dead_mark):
            found.setdefault((entry["channel"], entry["raw"].encode()), []).append(entry)
        return found if all(len(found.get(k, [])) >= n for k, (n, _) in expected.items()) else None

    try:
        found = wait_until(parked, 30, "every garbage payload dead-lettered by every subscriber")
    except AssertionError:
        seen = {(e["channel"], e["raw"][:40]) for e in state.deadletters(dead_mark)}
        raise AssertionError(f"dead letters incomplete; seen (channel, raw) pairs: {sorted(seen)}") from None
    assert set(found) == {k for k, (n, _) in expected.items() if n > 0}, set(found) ^ set(expected)
    for key, entries in found.items():
        count, reason = expected[key]
        assert len(entries) == count, (key, entries)
        assert all(reason in e["reason"] for e in entries), (key, reason, entries[0]["reason"])
        assert all(e["ts_ms"] >= sent_ms - 1000 for e in entries), entries

    # the heartbeats count them: per channel, the agents' invalid counters add up to the dead letters
    want = {ch: sum(n for (c, _), (n, _) in expected.items() if c == ch) for ch in receivers | groups}

    def counted() -> dict[str, int] | None:
        hbs = [state.live_heartbeat(a) for a in AGENT_NAMES]
        totals = {ch: sum(h.counters.get(f"invalid:{ch}", 0) for h in hbs) for ch in want}
        return totals if totals == want else None

    wait_until(counted, 15, f"invalid counters in the heartbeats adding up to {want}")
    for agent in AGENT_NAMES:
        counters = state.live_heartbeat(agent).counters
        assert counters.get(f"invalid:{Channel.CONTROL}") == len(REASONS), (agent, counters)

    # every agent is still the same running process, beating, and the system still trades
    def all_beating() -> bool:
        hbs = {a: state.live_heartbeat(a) for a in AGENT_NAMES}
        return all(
            h.status == "running" and h.ts_ms > sent_ms + 1000 and h.pid == pids[a] for a, h in hbs.items()
        )

    wait_until(all_beating, 15, "fresh 'running' heartbeats from every original agent process")
    assert system.dead() == []
    wait_until(lambda: _fills_after(state, events_mark), 45, "a new fill after the garbage")
