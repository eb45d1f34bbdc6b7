"""The wire contract refuses what would hurt money: bad prices and sizes, malformed symbols, unbounded input,
inconsistent market data and orders, stale expiries, unknown types, extra fields and future schema versions."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from wavesquant.messages import (
    ArbitrageOpportunity,
    Bar,
    CancelOrder,
    ExecutionReport,
    MarketAnomaly,
    OrderSpec,
    RiskDecision,
    TickBatch,
    TrendSignal,
    decode,
    encode,
)
from wavesquant.messages.envelope import Envelope

TS_NS = 1_700_000_000_000_000_000
TS_MS = TS_NS // 1_000_000


def make(cls: type[Envelope], base: dict[str, Any], **over: Any) -> Envelope:
    return cls.create(source="core", ts_ns=TS_NS, **{**base, **over})


def error_locs(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


BAR = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "open_ts_ms": TS_MS, "open": 100.0, "high": 110.0,
           "low": 90.0, "close": 105.0, "volume": 3.0}
TICKS = {"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"], "event_ts_ms": [TS_MS, TS_MS],
             "prices": [100.0, 10.0], "sizes": [1.0, 2.0]}
SPEC = {"client_order_id": "wq1", "signal_id": "s1", "strategy_id": "trend_btc", "family": "trend", "exchange": "paper",
            "symbol": "BTC/USDT", "side": "buy", "quantity": 1.0}
REPORT = {"kind": "ack", "client_order_id": "wq1", "venue": "paper", "symbol": "BTC/USDT", "side": "buy", "status": "open",
              "quantity": 1.0}
ANOMALY = {"severity": "low", "anomaly_type": "volume_spike", "affected_assets": ["BTC/USDT"], "confidence": 0.5,
               "time_to_impact": 1.0}
ARB = {"symbol": "BTC/USDT", "exchanges": ["binance", "kraken"], "price_diff": 1.0, "max_latency": 10,
           "execution_priority": 1, "expiry": TS_MS + 100}
SIGNAL = {"strategy_id": "trend_btc", "exchange": "paper", "symbol": "BTC/USDT", "side": "buy", "quantity": 1.0,
              "reference_price": 100.0}


def test_bases_are_valid() -> None:
    for cls, base in ((Bar, BAR), (TickBatch, TICKS), (ExecutionReport, REPORT), (MarketAnomaly, ANOMALY),
                      (ArbitrageOpportunity, ARB), (TrendSignal, SIGNAL)):
        assert make(cls, base).source == "core"
    assert OrderSpec(**SPEC).quantity == 1.0


# prices and sizes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_prices_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError) as e:
        make(TrendSignal, SIGNAL, reference_price=bad)
    assert "reference_price" in error_locs(e.value)
    with pytest.raises(ValidationError) as e:
        make(TickBatch, TICKS, prices=[100.0, bad])
    assert "prices.1" in error_locs(e.value)
    with pytest.raises(ValidationError):
        OrderSpec(**SPEC, order_type="limit", limit_price=bad)


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf])
def test_bad_sizes_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError) as e:
        make(TickBatch, TICKS, sizes=[bad, 1.0])
    assert "sizes.0" in error_locs(e.value)
    with pytest.raises(ValidationError) as e:
        make(Bar, BAR, volume=bad)
    assert "volume" in error_locs(e.value)
    with pytest.raises(ValidationError):
        OrderSpec(**{**SPEC, "quantity": bad})


def test_zero_order_quantity_is_refused_but_zero_tick_size_is_not() -> None:
    with pytest.raises(ValidationError):
        OrderSpec(**{**SPEC, "quantity": 0.0})
    with pytest.raises(ValidationError):
        make(ExecutionReport, REPORT, quantity=0.0)
    assert make(TickBatch, TICKS, sizes=[0.0, 0.0]).sizes == (0.0, 0.0)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_literals_are_refused_at_decode(literal: str) -> None:
    raw = encode(make(Bar, BAR)).decode().replace('"close":105.0', f'"close":{literal}')
    assert literal in raw
    with pytest.raises(ValidationError):
        decode(raw)


def test_negative_fee_rebate_is_allowed_but_not_nan() -> None:
    assert make(ExecutionReport, REPORT, fee=-0.25).fee == -0.25
    with pytest.raises(ValidationError):
        make(ExecutionReport, REPORT, fee=math.nan)


# symbols and text ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["btcusdt", "btc/usdt", "BTC-USDT", "BTCUSDT", "BTC/", "/USDT", "BTC/USDT:",
                                 "A" * 21 + "/USDT", "BTC/" + "U" * 21, "BTC /USDT", ""])
def test_bad_symbols_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as e:
        make(Bar, BAR, symbol=bad)
    assert "symbol" in error_locs(e.value)
    with pytest.raises(ValidationError):
        make(TickBatch, TICKS, symbols=["BTC/USDT", bad])


@pytest.mark.parametrize("good", ["BTC/USDT", "ETH/USDT:USDT", "1000PEPE/USDT", "A" * 20 + "/" + "B" * 20])
def test_good_symbols_are_accepted(good: str) -> None:
    assert make(Bar, BAR, symbol=good).symbol == good


@pytest.mark.parametrize("bad", ["Core", "1core", "core agent", "c" * 65, ""])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        MarketAnomaly.create(source=bad, ts_ns=TS_NS, **ANOMALY)


def test_over_long_strings_are_refused() -> None:
    assert make(TrendSignal, SIGNAL, reason="x" * 200).reason == "x" * 200
    with pytest.raises(ValidationError) as e:
        make(TrendSignal, SIGNAL, reason="x" * 201)
    assert "reason" in error_locs(e.value)
    with pytest.raises(ValidationError):
        make(ExecutionReport, REPORT, client_order_id="c" * 65)
    with pytest.raises(ValidationError):
        make(ExecutionReport, REPORT, venue_order_id="v" * 201)


def test_over_long_tick_batch_is_refused() -> None:
    n = 10_000
    full = make(TickBatch, TICKS, symbols=["BTC/USDT"] * n, event_ts_ms=[TS_MS] * n, prices=[1.0] * n,
                sizes=[1.0] * n)
    assert len(full) == n  # the maximum itself is fine
    n += 1
    with pytest.raises(ValidationError) as e:
        make(TickBatch, TICKS, symbols=["BTC/USDT"] * n, event_ts_ms=[TS_MS] * n, prices=[1.0] * n,
             sizes=[1.0] * n)
    assert {"symbols", "prices", "sizes", "event_ts_ms"} <= error_locs(e.value)


def test_empty_tick_batch_is_refused() -> None:
    with pytest.raises(ValidationError):
        make(TickBatch, TICKS, symbols=[], event_ts_ms=[], prices=[], sizes=[])


def test_over_long_lists_are_refused() -> None:
    assert len(make(MarketAnomaly, ANOMALY, recommended_actions=["hedge"] * 16).recommended_actions) == 16
    with pytest.raises(ValidationError) as e:
        make(MarketAnomaly, ANOMALY, recommended_actions=["hedge"] * 17)
    assert "recommended_actions" in error_locs(e.value)
    with pytest.raises(ValidationError):
        make(MarketAnomaly, ANOMALY, affected_assets=["BTC/USDT"] * 65)
    with pytest.raises(ValidationError):
        make(ArbitrageOpportunity, ARB, exchanges=[f"ex{i}" for i in range(9)])


# market data consistency -----------------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["event_ts_ms", "prices", "sizes", "bids", "asks"])
def test_misaligned_tick_columns_are_refused(column: str) -> None:
    base = {**TICKS, "bids": [99.0, 9.0], "asks": [101.0, 11.0]}
    short = {**base, column: base[column][:1]}
    with pytest.raises(ValidationError, match=f"{column} has 1 entries, symbols has 2"):
        make(TickBatch, short)


def test_crossed_quote_is_refused_but_locked_is_fine() -> None:
    with pytest.raises(ValidationError, match="crossed"):
        make(TickBatch, TICKS, bids=[99.0, 10.5], asks=[101.0, 10.0])
    assert make(TickBatch, TICKS, bids=[100.0, 10.0], asks=[100.0, 10.0]).bids == (100.0, 10.0)


@pytest.mark.parametrize("over", [{"low": 101.0}, {"high": 104.0}, {"low": 106.0, "high": 110.0},
                                  {"high": 99.0, "low": 90.0}, {"low": 120.0, "high": 110.0}])
def test_inconsistent_ohlc_is_refused(over: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="inconsistent OHLC"):
        make(Bar, BAR, **over)


def test_flat_bar_is_fine_and_timeframe_is_checked() -> None:
    flat = make(Bar, BAR, open=5.0, high=5.0, low=5.0, close=5.0, volume=0.0)
    assert flat.high == flat.low
    for bad in ("0m", "1y", "m1", "10000m", ""):
        with pytest.raises(ValidationError):
            make(Bar, BAR, timeframe=bad)


# expiry ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [0, -1, -60_000])
def test_expiry_not_after_creation_is_refused(delta: int) -> None:
    with pytest.raises(ValidationError, match="not after ts_ms"):
        make(TrendSignal, SIGNAL, expires_at_ms=TS_MS + delta)
    assert make(TrendSignal, SIGNAL, expires_at_ms=TS_MS + 1).expires_at_ms == TS_MS + 1


def test_arbitrage_expiry_is_mirrored_into_the_envelope() -> None:
    arb = make(ArbitrageOpportunity, ARB)
    assert arb.expires_at_ms == arb.expiry == TS_MS + 100  # type: ignore[attr-defined]
    assert arb.is_expired(TS_MS + 100) and not arb.is_expired(TS_MS + 99)
    wire = json.loads(encode(arb))
    del wire["expires_at_ms"]  # a seed-format producer sends only `expiry`
    back = decode(json.dumps(wire))
    assert back.expires_at_ms == TS_MS + 100
    wire["expires_at_ms"] = None
    assert decode(json.dumps(wire)).expires_at_ms == TS_MS + 100


def test_arbitrage_envelope_expiry_never_outlives_the_seed_expiry() -> None:
    try:
        arb = make(ArbitrageOpportunity, ARB, expires_at_ms=TS_MS + 60_000)  # expiry is TS_MS + 100
    except ValidationError:
        return  # refusing it is fine too
    assert arb.is_expired(TS_MS + 100)


@pytest.mark.parametrize("delta", [0, -1, -5_000])
def test_arbitrage_expiry_in_the_past_is_refused(delta: int) -> None:
    with pytest.raises(ValidationError, match="not after ts_ms"):
        make(ArbitrageOpportunity, ARB, expiry=TS_MS + delta)


def test_arbitrage_exchanges_must_be_distinct() -> None:
    with pytest.raises(ValidationError, match="distinct"):
        make(ArbitrageOpportunity, ARB, exchanges=["binance", "binance"])


# orders ----------------------------------------------------------------------------------------------------
def test_risk_decision_verdict_and_denials_must_agree() -> None:
    denial = {"code": "max_order_notional", "message": "too big"}
    with pytest.raises(ValidationError, match="approved decision carries no denials"):
        make(RiskDecision, {"order": OrderSpec(**SPEC)}, approved=True, denials=[denial])
    with pytest.raises(ValidationError, match="blocked decision needs at least one denial"):
        make(RiskDecision, {"order": OrderSpec(**SPEC)}, approved=False)
    blocked = make(RiskDecision, {"order": OrderSpec(**SPEC)}, approved=False, denials=[denial])
    assert blocked.denials[0].code == "max_order_notional"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        make(RiskDecision, {"order": OrderSpec(**SPEC)}, approved=False, denials=[{"code": "Bad Code", "message": ""}])


def test_order_spec_price_must_match_order_type() -> None:
    with pytest.raises(ValidationError, match="limit order needs limit_price"):
        OrderSpec(**SPEC, order_type="limit")
    with pytest.raises(ValidationError, match="market order takes no limit_price"):
        OrderSpec(**SPEC, order_type="market", limit_price=100.0)
    assert OrderSpec(**SPEC, order_type="limit", limit_price=100.0).limit_price == 100.0
    with pytest.raises(ValidationError):
        OrderSpec(**SPEC, order_type="stop")
    with pytest.raises(ValidationError):
        OrderSpec(**{**SPEC, "side": "long"})


def test_limit_trade_signal_needs_a_price() -> None:
    with pytest.raises(ValidationError, match="limit order signal needs limit_price"):
        make(TrendSignal, SIGNAL, order_type="limit")


def test_execution_report_consistency() -> None:
    with pytest.raises(ValidationError, match="exceeds quantity"):
        make(ExecutionReport, REPORT, filled_quantity=1.5)
    assert make(ExecutionReport, REPORT, filled_quantity=1.0).filled_quantity == 1.0
    with pytest.raises(ValidationError, match="fill report needs"):
        make(ExecutionReport, REPORT, kind="fill", filled_quantity=0.5)
    with pytest.raises(ValidationError, match="fill report needs"):
        make(ExecutionReport, REPORT, kind="fill", fill_id="f1", last_quantity=0.5)
    fill = make(ExecutionReport, REPORT, kind="fill", filled_quantity=0.5, fill_id="f1", last_quantity=0.5,
                last_price=100.0)
    assert fill.kind == "fill"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        make(ExecutionReport, REPORT, kind="partial")


def test_cancel_order_needs_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        CancelOrder.create(source="risk", ts_ns=TS_NS)
    with pytest.raises(ValidationError, match="exactly one"):
        CancelOrder.create(source="risk", ts_ns=TS_NS, client_order_id="wq1", all=True)
    assert CancelOrder.create(source="risk", ts_ns=TS_NS, client_order_id="wq1").all is False
    assert CancelOrder.create(source="risk", ts_ns=TS_NS, all=True, symbol="BTC/USDT").symbol == "BTC/USDT"


# the envelope on the wire ----------------------------------------------------------------------------------
def wire_bar(**over: Any) -> dict[str, Any]:
    return {**json.loads(encode(make(Bar, BAR))), **over}


def test_unknown_or_missing_type_is_refused() -> None:
    for wire in (wire_bar(type="nosuch"), wire_bar(type=None), wire_bar(type=7)):
        with pytest.raises(ValidationError):
            decode(json.dumps(wire))
    without = wire_bar()
    del without["type"]
    with pytest.raises(ValidationError):
        decode(json.dumps(without))


def test_extra_fields_are_refused_at_every_level() -> None:
    with pytest.raises(ValidationError) as e:
        decode(json.dumps(wire_bar(surprise=1)))
    assert any(err["type"] == "extra_forbidden" for err in e.value.errors())
    intent = make(RiskDecision, {"order": OrderSpec(**SPEC)}, approved=True)
    wire = json.loads(encode(intent))
    wire["order"]["leverage"] = 100
    with pytest.raises(ValidationError) as e:
        decode(json.dumps(wire))
    assert any(err["type"] == "extra_forbidden" for err in e.value.errors())
    with pytest.raises(ValidationError):
        make(Bar, BAR, surprise=1)


@pytest.mark.parametrize("version", [2, 99, 0, -1])
def test_schema_version_outside_the_known_range_is_refused(version: int) -> None:
    with pytest.raises(ValidationError) as e:
        decode(json.dumps(wire_bar(schema_version=version)))
    assert "schema_version" in {str(err["loc"][-1]) for err in e.value.errors()}
    assert decode(json.dumps(wire_bar(schema_version=1))).schema_version == 1


@pytest.mark.parametrize("field,value", [("ts_ms", -1), ("ts_ns", -1), ("ts_ms", 10**14), ("msg_id", ""),
                                         ("msg_id", "has space"), ("msg_id", "x" * 65), ("source", "Bad")])
def test_bad_envelope_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        decode(json.dumps(wire_bar(**{field: value})))


def test_wrong_json_types_are_not_coerced_from_structures() -> None:
    for over in ({"open": [1.0]}, {"symbol": ["BTC/USDT"]}, {"volume": {"v": 1}}):
        with pytest.raises(ValidationError):
            decode(json.dumps(wire_bar(**over)))


def test_order_book_must_be_sorted_and_uncrossed() -> None:
    from wavesquant.messages import OrderBook

    def book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> OrderBook:
        return OrderBook.create(source="data_feeds", ts_ns=1_700_000_000_000_000_000, exchange="binance",
                                symbol="BTC/USDT", event_ts_ms=1_700_000_000_000, bids=bids, asks=asks)

    assert book([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)]).mid == 100.5
    with pytest.raises(ValidationError, match="crossed book"):
        book([(101.0, 1.0)], [(100.0, 1.0)])
    with pytest.raises(ValidationError, match="bids must be strictly descending"):
        book([(99.0, 1.0), (100.0, 1.0)], [(101.0, 1.0)])
    with pytest.raises(ValidationError, match="asks must be strictly ascending"):
        book([(99.0, 1.0)], [(102.0, 1.0), (101.0, 1.0)])
    with pytest.raises(ValidationError):
        book([(-1.0, 1.0)], [(101.0, 1.0)])  # a price must be positive
    with pytest.raises(ValidationError):
        book([(99.0, -1.0)], [(101.0, 1.0)])  # a size must not be negative
