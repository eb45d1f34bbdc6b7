"""The registry: every type routes to one channel and tier; money travels on streams and is event-logged;
every type has a JSON Schema, also printed by `wq schema`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from wavesquant.cli import app
from wavesquant.core.tiers import Tier
from wavesquant.messages import (
    MESSAGE_TYPES,
    PUBSUB_CHANNELS,
    ROUTES,
    STREAMS,
    Bar,
    CancelOrder,
    Channel,
    ControlCommand,
    ExecutionReport,
    Heartbeat,
    NewOrder,
    OrderTransition,
    RiskDecision,
    SignalEvent,
    TickBatch,
    Transport,
    json_schemas,
    route_of,
)

EXPECTED_STREAMS = {"risk_decisions", "orders", "execution_reports", "events", "deadletter"}
MONEY_TYPES = (RiskDecision, NewOrder, CancelOrder, ExecutionReport)


def test_every_type_routes_to_a_channel_and_tier() -> None:
    assert set(MESSAGE_TYPES.values()) == set(ROUTES)
    for name, cls in MESSAGE_TYPES.items():
        assert cls.type_name() == name
        route = ROUTES[cls]
        assert isinstance(route.channel, Channel)
        assert isinstance(route.tier, Tier)
        assert route.transport is route.channel.transport


def test_type_names_are_unique_and_snake_case() -> None:
    names = [cls.type_name() for cls in ROUTES]
    assert len(names) == len(set(names))
    assert all(n.replace("_", "").isalpha() and n == n.lower() for n in names)


def test_stream_transports_are_exactly_the_money_and_log_streams() -> None:
    assert {c.value for c in STREAMS} == EXPECTED_STREAMS
    assert {c.value for c in Channel if c.transport is Transport.STREAM} == EXPECTED_STREAMS
    assert set(PUBSUB_CHANNELS) | set(STREAMS) == set(Channel)
    assert not set(PUBSUB_CHANNELS) & set(STREAMS)
    for c in PUBSUB_CHANNELS:
        assert c.transport is Transport.PUBSUB


def test_money_types_travel_on_streams_and_are_event_logged() -> None:
    for cls in MONEY_TYPES:
        route = ROUTES[cls]
        assert route.transport is Transport.STREAM, cls
        assert route.event_log, cls
    assert ROUTES[NewOrder].channel is ROUTES[CancelOrder].channel is Channel.ORDERS
    assert ROUTES[RiskDecision].channel is Channel.RISK_DECISIONS
    assert ROUTES[ExecutionReport].channel is Channel.EXECUTION_REPORTS
    assert ROUTES[ControlCommand].event_log  # operator commands are audited


def test_events_are_logged_once_and_market_data_not_at_all() -> None:
    for cls in (SignalEvent, OrderTransition):
        assert ROUTES[cls].channel is Channel.EVENTS
        assert not ROUTES[cls].event_log  # already on the event log: no second copy
    for cls in (TickBatch, Bar, Heartbeat):
        assert ROUTES[cls].transport is Transport.PUBSUB
        assert not ROUTES[cls].event_log
    assert ROUTES[TickBatch].tier is Tier.HFT
    assert not any(r.channel is Channel.DEADLETTER for r in ROUTES.values())  # only the bus writes there


def test_route_of_uses_the_instance_type() -> None:
    bar = Bar.create(source="data_feeds", ts_ns=10**18, exchange="x", symbol="BTC/USDT", timeframe="1m",
                     open_ts_ms=0, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0)
    assert route_of(bar) is ROUTES[Bar]
    assert route_of(bar).channel is Channel.MARKET_BARS


def test_json_schemas_cover_every_type() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(MESSAGE_TYPES)
    for name, schema in schemas.items():
        assert schema["type"] == "object"
        props = schema["properties"]
        assert props["type"]["const"] == name
        assert {"msg_id", "source", "ts_ms", "ts_ns", "expires_at_ms", "schema_version"} <= set(props)
        assert schema.get("additionalProperties") is False
        json.dumps(schema)  # serialisable


def test_wq_schema_prints_every_type_as_json() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == set(MESSAGE_TYPES)
    assert printed == json.loads(json.dumps(json_schemas()))


def test_wq_schema_one_type_and_unknown_type() -> None:
    runner = CliRunner()
    one = runner.invoke(app, ["schema", "risk_decision"])
    assert one.exit_code == 0
    assert list(json.loads(one.stdout)) == ["risk_decision"]
    bad = runner.invoke(app, ["schema", "nosuch"])
    assert bad.exit_code == 2
    assert "unknown message type 'nosuch'" in bad.stderr
    assert "Traceback" not in bad.output
