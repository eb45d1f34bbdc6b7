"""Every wire message type: a valid instance survives encode -> decode unchanged, and the JSON on the wire carries
the envelope fields any Redis client can read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from wavesquant.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    Envelope,
    ExecutionReport,
    LoopStats,
    OrderSpec,
    OrderTransition,
    SignalEvent,
    decode,
    encode,
    json_schemas,
)
from wavesquant.types import SignalState

TS_NS = 1_700_000_000_123_456_789
TS_MS = TS_NS // 1_000_000


def spec(**over: Any) -> OrderSpec:
    fields: dict[str, Any] = {"client_order_id": "wq0123abcd", "signal_id": "sig-1", "strategy_id": "trend_btc",
                                  "family": "trend", "exchange": "binance", "symbol": "BTC/USDT", "side": "buy", "quantity": 0.01}
    return OrderSpec(**{**fields, **over})


LOOP = LoopStats(name="signal_routing", tier="fast", interval_s=0.1, runs=10, failures=1, consecutive_failures=0,
                 overruns=2, last_ms=0.5, mean_ms=0.4, max_ms=3.25)

# (type, fields) pairs: at least one valid instance of every message type, several for types with variants.
SAMPLE_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("tick_batch", {"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT:USDT"],
                        "event_ts_ms": [TS_MS - 2, TS_MS - 1], "prices": [60_000.5, 3_000.25], "sizes": [0.1, 0.0],
                        "bids": [60_000.0, 3_000.0], "asks": [60_001.0, 3_000.25]}),
    ("tick_batch", {"exchange": "kraken", "symbols": ["BTC/USD"], "event_ts_ms": [TS_MS], "prices": [59_999.0],
                        "sizes": [1.5]}),
    ("bar", {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "open_ts_ms": TS_MS - 60_000, "open": 100.0,
                 "high": 110.0, "low": 95.5, "close": 101.25, "volume": 12.5}),
    ("arbitrage_opportunity", {"symbol": "BTC/USDT", "exchanges": ["binance", "kraken"], "price_diff": 12.5,
                                   "max_latency": 50, "execution_priority": 3, "expiry": TS_MS + 500}),
    ("probe_signal", {"strategy_id": "tick_probe", "exchange": "paper", "symbol": "BTC/USDT", "side": "sell",
                          "quantity": 0.001, "reference_price": 60_000.0, "tick_ts_ns": TS_NS - 5}),
    ("trend_signal", {"strategy_id": "trend_btc", "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
                          "quantity": 0.01, "order_type": "limit", "limit_price": 59_950.0, "time_in_force": "ioc",
                          "reference_price": 60_000.0, "confidence": 0.75, "reason": "fast ma crossed slow",
                          "expires_at_ms": TS_MS + 5_000}),
    ("statistical_opportunity", {"pair": ("BTC/USDT", "ETH/USDT"), "z_score": -2.5, "entry_price": 20.0,
                                     "confidence": 0.9, "hold_duration": 300.0}),
    ("trend_assessment", {"exchange": "binance", "symbol": "ETH/USDT", "timeframe": "5m", "direction": -1,
                              "strength": 0.4, "confidence": 0.6}),
    ("market_anomaly", {"severity": "high", "anomaly_type": "price_jump", "affected_assets": ["BTC/USDT"],
                            "confidence": 0.8, "time_to_impact": 30.0, "recommended_actions": ["reduce_exposure"],
                            "magnitude": -6.5}),
    ("order_intent", {"order": spec(), "signal_type": "trend_signal", "signal_ts_ms": TS_MS - 3,
                          "origin_ts_ns": TS_NS - 3_000_000}),
    ("risk_decision", {"order": spec(), "approved": True}),
    ("risk_decision", {"order": spec(), "approved": False, "trading_state": "halted",
                           "denials": [{"code": "max_order_notional", "message": "12000 > 10000"},
                                    {"code": "trading_halted", "message": "halted"}]}),
    ("new_order", {"order": spec(order_type="limit", limit_price=59_000.0, time_in_force="post_only",
                                  reduce_only=True, reference_price=60_000.0), "origin_ts_ns": TS_NS - 1}),
    ("cancel_order", {"client_order_id": "wq0123abcd", "reason": "operator"}),
    ("cancel_order", {"all": True, "symbol": "ETH/USDT", "flatten": True, "reason": "kill switch"}),
    ("execution_report", {"kind": "ack", "client_order_id": "wq0123abcd", "venue_order_id": "v-77", "venue": "paper",
                              "signal_id": "sig-1", "strategy_id": "trend_btc", "symbol": "BTC/USDT", "side": "buy",
                              "status": "open", "quantity": 0.01}),
    ("execution_report", {"kind": "fill", "client_order_id": "wq0123abcd", "venue": "paper", "symbol": "BTC/USDT",
                              "side": "buy", "status": "partially_filled", "quantity": 0.01, "filled_quantity": 0.004,
                              "average_price": 60_010.0, "fill_id": "f1", "last_quantity": 0.004, "last_price": 60_010.0,
                              "fee": -0.01, "fee_currency": "USDT", "liquidity": "maker"}),
    ("order_transition", {"client_order_id": "wq0123abcd", "request": {"symbol": "BTC/USDT", "quantity": 0.01},
                              "strategy_id": "trend_btc", "signal_id": "sig-1"}),
    ("order_transition", {"client_order_id": "wq0123abcd", "transitions": [
        {"from": "creating", "to": "open", "ts_ms": TS_MS, "detail": [1, 2.5]},
        {"from": "open", "to": "filled", "ts_ms": TS_MS + 1, "detail": {"fill_id": "f1"}}]}),
    ("signal_event", {"steps": [
        {"signal_id": "sig-1", "signal_type": "trend_signal", "strategy_id": "trend_btc", "symbol": "BTC/USDT",
         "from_state": None, "to_state": "generated", "ts_ms": TS_MS, "signal_expires_at_ms": TS_MS + 5_000},
        {"signal_id": "sig-1", "signal_type": "trend_signal", "from_state": "evaluating", "to_state": "blocked",
         "ts_ms": TS_MS, "reason": "max_order_notional"}]}),
    ("risk_alert", {"level": "critical", "code": "daily_loss", "message": "daily loss 5100 > 5000",
                        "trading_state": "halted", "symbols": ["BTC/USDT"]}),
    ("learning_update", {"strategy_id": "trend_btc", "metrics": {"pnl": -12.5, "hit_rate": 0.5}, "signal_id": "sig-1",
                             "note": "closed"}),
    ("heartbeat", {"agent": "core", "status": "running", "pid": 1234, "host": "box", "uptime_s": 12.5, "loops": [LOOP],
                       "queue_depths": {"sub0": 3}, "counters": {"pub:heartbeats": 7, "errors:handler": 1},
                       "problems": ["loop x: 5 consecutive failures"]}),
    ("control_command", {"target": "*", "command": "stop", "request_id": "abc123", "args": {"reason": "maintenance"}}),
    ("control_command", {"target": "risk", "command": "resume_trading", "request_id": "r-2"}),
    ("control_ack", {"request_id": "abc123", "agent": "risk", "command": "stop", "ok": True, "status": "stopped"}),
    ("order_book", {"exchange": "binance", "symbol": "BTC/USDT", "event_ts_ms": TS_MS - 1,
                        "bids": [(60_000.0, 1.5), (59_999.5, 0.25)], "asks": [(60_000.5, 2.0), (60_001.0, 0.0)]}),
]


def build(type_name: str, fields: dict[str, Any], source: str = "core", ts_ns: int = TS_NS) -> Envelope:
    return MESSAGE_TYPES[type_name].create(source=source, ts_ns=ts_ns, **fields)


SAMPLES = [build(t, f) for t, f in SAMPLE_FIELDS]


def test_every_registered_type_has_a_sample() -> None:
    assert {type(m).type_name() for m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", SAMPLES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(SAMPLE_FIELDS)])
def test_round_trip_is_equal(msg: Envelope) -> None:
    raw = encode(msg)
    assert isinstance(raw, bytes)
    back = decode(raw)
    assert type(back) is type(msg)
    assert back == msg
    assert encode(back) == raw  # stable: re-encoding gives the same bytes
    assert decode(raw.decode("utf-8")) == msg  # str input too


@pytest.mark.parametrize("msg", SAMPLES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(SAMPLE_FIELDS)])
def test_wire_json_carries_the_envelope(msg: Envelope) -> None:
    wire = json.loads(encode(msg))
    assert wire["type"] == type(msg).type_name()
    assert wire["source"] == "core"
    assert wire["ts_ns"] == TS_NS
    assert wire["ts_ms"] == TS_MS
    assert wire["schema_version"] == SCHEMA_VERSION
    assert 1 <= len(wire["msg_id"]) <= 64


def test_create_stamps_ms_from_ns_and_ids_are_unique() -> None:
    a = build("bar", SAMPLE_FIELDS[2][1])
    b = build("bar", SAMPLE_FIELDS[2][1])
    assert a.ts_ms == TS_MS and a.ts_ns == TS_NS
    assert a.msg_id != b.msg_id
    assert a != b  # distinct messages even with identical content


def test_messages_are_frozen() -> None:
    msg = build("bar", SAMPLE_FIELDS[2][1])
    with pytest.raises(ValidationError, match="frozen"):
        msg.close = 1.0  # type: ignore[misc]
    assert msg.close == 101.25


def test_messages_are_deeply_immutable() -> None:
    ticks = build(*SAMPLE_FIELDS[0])  # a fresh one: a mutation must not leak into the shared samples
    with pytest.raises((TypeError, AttributeError)):
        ticks.prices.append(-1.0)  # type: ignore[attr-defined]


def test_statistical_pair_round_trips_as_a_tuple() -> None:
    msg = next(m for m in SAMPLES if m.type == "statistical_opportunity")
    assert json.loads(encode(msg))["pair"] == ["BTC/USDT", "ETH/USDT"]
    assert decode(encode(msg)).pair == ("BTC/USDT", "ETH/USDT")  # type: ignore[attr-defined]


def test_is_expired_boundaries() -> None:
    msg = build("trend_signal", SAMPLE_FIELDS[5][1])
    assert msg.expires_at_ms == TS_MS + 5_000
    assert not msg.is_expired(TS_MS + 4_999)
    assert msg.is_expired(TS_MS + 5_000)  # expiry instant itself is expired
    assert msg.is_expired(TS_MS + 10_000)
    never = build("bar", SAMPLE_FIELDS[2][1])
    assert not never.is_expired(10**13)


def test_fill_report_fields_survive_round_trip() -> None:
    fill = next(m for m in SAMPLES if isinstance(m, ExecutionReport) and m.kind == "fill")
    back = decode(encode(fill))
    assert isinstance(back, ExecutionReport)
    assert (back.fill_id, back.last_quantity, back.last_price, back.fee, back.liquidity) == (
        "f1", 0.004, 60_010.0, -0.01, "maker")


@pytest.mark.parametrize("msg", SAMPLES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(SAMPLE_FIELDS)])
def test_wire_json_validates_against_the_published_schema(msg: Envelope) -> None:
    import jsonschema

    schema = json_schemas()[type(msg).type_name()]
    jsonschema.validate(json.loads(encode(msg)), schema)
    wire = json.loads(encode(msg))
    wire["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wire, schema)


def test_entries_logged_one_transition_each_are_read_as_one_element_lists() -> None:
    """The event log outlives an upgrade: entries written before transitions were grouped still decode."""
    envelope = {"msg_id": "m1", "source": "core", "ts_ms": TS_MS, "ts_ns": TS_NS}
    signal = decode(json.dumps({**envelope, "type": "signal_event", "signal_id": "sig-1", "signal_type": "trend_signal",
                                "strategy_id": "trend_btc", "from_state": None, "to_state": "generated",
                                "reason": "new", "signal_expires_at_ms": TS_MS + 5_000}))
    assert isinstance(signal, SignalEvent) and signal.ts_ms == TS_MS and len(signal.steps) == 1
    step = signal.steps[0]
    assert (step.signal_id, step.to_state, step.ts_ms, step.reason, step.signal_expires_at_ms) == \
        ("sig-1", SignalState.GENERATED, TS_MS, "new", TS_MS + 5_000)  # the step's time was the entry's
    created = decode(json.dumps({**envelope, "type": "order_transition", "source": "execution",
                                 "client_order_id": "wq1", "transition": {}, "request": {"symbol": "BTC/USDT"}}))
    moved = decode(json.dumps({**envelope, "type": "order_transition", "source": "execution",
                               "client_order_id": "wq1", "transition": {"to_status": "open"}}))
    assert isinstance(created, OrderTransition) and created.transitions == [] and created.request is not None
    assert isinstance(moved, OrderTransition) and moved.transitions == [{"to_status": "open"}]


def test_lifecycle_entries_say_something_and_stay_bounded() -> None:
    with pytest.raises(ValidationError, match="needs a request or at least one transition"):
        build("order_transition", {"client_order_id": "wq1"})
    with pytest.raises(ValidationError):
        build("order_transition", {"client_order_id": "wq1", "transitions": [{"ts_ms": 1}] * 65})
    with pytest.raises(ValidationError):
        build("signal_event", {"steps": []})
    step = {"signal_id": "s", "signal_type": "trend_signal", "from_state": None, "to_state": "generated", "ts_ms": 1}
    with pytest.raises(ValidationError):
        build("signal_event", {"steps": [step] * 257})
