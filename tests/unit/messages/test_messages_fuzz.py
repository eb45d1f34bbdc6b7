"""decode() on hostile input: whatever arrives on a channel, the only possible failure is a validation error,
which the bus turns into a dead letter. Nothing else may escape (an agent must never crash on input)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wavesquant.messages import MESSAGE_TYPES, Bar, Envelope, decode, encode

TYPES = sorted(MESSAGE_TYPES)
VALID_BAR = json.loads(encode(Bar.create(source="data_feeds", ts_ns=1_700_000_000_000_000_000, exchange="binance",
                                         symbol="BTC/USDT", timeframe="1m", open_ts_ms=0, open=1.0, high=2.0,
                                         low=0.5, close=1.5, volume=3.0)))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(TYPES), st.sampled_from(["BTC/USDT", "btcusdt", "", "NaN", "buy", "limit", "fill"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6),
                               st.dictionaries(st.text(max_size=12), children, max_size=6)),
    max_leaves=8,
)
FIELD_NAMES = sorted({n for cls in MESSAGE_TYPES.values() for n in cls.model_fields} - {"type"})
messageish = st.builds(
    lambda type_, fields: {"type": type_, **fields},
    st.one_of(st.sampled_from(TYPES), scalars),
    st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), json_values, max_size=6),
)


def _decode_only_fails_validly(raw: bytes | str) -> Envelope | None:
    """The decoded message, or None when it was refused; anything but a validation error fails the test."""
    try:
        msg = decode(raw)
    except (ValidationError, ValueError):
        return None
    assert isinstance(msg, Envelope)  # if it decodes, it is a real validated message
    assert decode(encode(msg)) == msg
    return msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    _decode_only_fails_validly(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messageish)
def test_random_message_shaped_json(data: dict[str, Any]) -> None:
    _decode_only_fails_validly(json.dumps(data, allow_nan=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID_BAR)), json_values)
def test_one_field_of_a_valid_message_replaced(field: str, value: Any) -> None:
    _decode_only_fails_validly(json.dumps({**VALID_BAR, field: value}, allow_nan=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=400))
def test_valid_message_with_garbage_spliced_in(garbage: bytes, at: int) -> None:
    raw = json.dumps(VALID_BAR).encode()
    at = min(at, len(raw))
    msg = _decode_only_fails_validly(raw[:at] + garbage + raw[at:])
    assert msg is None or msg.type == "bar"  # garbage never turns a bar into another kind of message


def test_deep_nesting_and_huge_numbers_fail_validly() -> None:
    for raw in (b"[" * 10_000, b'{"type":"bar","open":' + b"[" * 5_000, b"9" * 5_000, b'"\\ud800"', b"\x00",
                json.dumps({**VALID_BAR, "open": 10**400}).encode()):
        assert _decode_only_fails_validly(raw) is None
