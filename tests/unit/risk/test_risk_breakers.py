from __future__ import annotations

import pytest
from pydantic import ValidationError

from wavesquant.risk.breakers import DAY_MS, BreakerName, BreakerTrip, CircuitBreakers
from wavesquant.risk.limits import AnomalySeverity, BreakerLimits
from wavesquant.types import TradingState as S

DAY0 = 19_700 * DAY_MS  # a UTC midnight
LIMITS = BreakerLimits(
    max_daily_loss=1_000.0,
    max_drawdown_pct=10.0,
    max_reject_rate=0.5,
    reject_window_ms=10_000,
    reject_min_samples=4,
    anomaly_window_ms=5_000,
)


def names(trips: list[BreakerTrip]) -> set[BreakerName]:
    return {t.name for t in trips}


def test_nothing_trips_without_observations() -> None:
    assert CircuitBreakers(LIMITS).evaluate(DAY0) == []


def test_daily_loss_halts_with_numbers() -> None:
    b = CircuitBreakers(LIMITS)
    b.on_equity(DAY0 + 1_000, 100_000.0)
    b.on_equity(DAY0 + 2_000, 99_000.01)
    assert b.evaluate(DAY0 + 2_000) == []
    b.on_equity(DAY0 + 3_000, 99_000.0)
    assert b.evaluate(DAY0 + 3_000) == [
        BreakerTrip(
            BreakerName.DAILY_LOSS,
            S.HALTED,
            "daily loss 1,000.00 >= max 1,000.00 (day start equity 100,000.00, now 99,000.00)",
        )
    ]


def test_daily_loss_resets_on_the_next_utc_day() -> None:
    b = CircuitBreakers(LIMITS.model_copy(update={"max_drawdown_pct": 50.0}))
    b.on_equity(DAY0 + 1_000, 100_000.0)
    b.on_equity(DAY0 + DAY_MS - 1, 98_500.0)
    assert names(b.evaluate(DAY0 + DAY_MS - 1)) == {BreakerName.DAILY_LOSS}
    b.on_equity(DAY0 + DAY_MS, 98_400.0)  # first observation of day 1 is its start
    assert b.day_start_equity == 98_400.0
    assert b.evaluate(DAY0 + DAY_MS) == []
    b.on_equity(DAY0 + DAY_MS + 5, 97_400.0)
    assert names(b.evaluate(DAY0 + DAY_MS + 5)) == {BreakerName.DAILY_LOSS}


def test_older_equity_observations_are_ignored() -> None:
    b = CircuitBreakers(LIMITS)
    b.on_equity(DAY0 + 2_000, 100_000.0)
    b.on_equity(DAY0 + 1_000, 50_000.0)
    assert b.equity == 100_000.0
    with pytest.raises(ValueError):
        b.on_equity(DAY0 + 3_000, float("nan"))


def test_drawdown_from_peak_halts_with_numbers() -> None:
    b = CircuitBreakers(LIMITS.model_copy(update={"max_daily_loss": 1e9}))
    b.on_equity(DAY0 - 5 * DAY_MS, 100_000.0)
    b.on_equity(DAY0 - 4 * DAY_MS, 120_000.0)
    b.on_equity(DAY0, 108_001.0)
    assert b.peak_equity == 120_000.0
    assert b.evaluate(DAY0) == []
    b.on_equity(DAY0 + 1, 108_000.0)
    assert b.evaluate(DAY0 + 1) == [
        BreakerTrip(
            BreakerName.DRAWDOWN,
            S.HALTED,
            "drawdown 10.00% >= max 10.00% (peak equity 120,000.00, now 108,000.00)",
        )
    ]


def test_reject_rate_reduces_after_min_samples_within_window() -> None:
    b = CircuitBreakers(LIMITS)
    b.on_order_result(DAY0 + 0, True)
    b.on_order_result(DAY0 + 1, True)
    b.on_order_result(DAY0 + 2, True)
    assert b.evaluate(DAY0 + 2) == []  # 3 samples < min 4
    b.on_order_result(DAY0 + 3, False)
    assert b.evaluate(DAY0 + 3) == [
        BreakerTrip(
            BreakerName.REJECT_RATE,
            S.REDUCING,
            "reject rate 75.00% (3/4 in last 10,000 ms) >= max 50.00%",
        )
    ]
    # once the old rejects leave the window there are too few samples
    assert b.evaluate(DAY0 + 10_001) == []


def test_reject_rate_below_limit_does_not_trip() -> None:
    b = CircuitBreakers(LIMITS)
    for i, rejected in enumerate([True, False, False, False, True, False]):
        b.on_order_result(DAY0 + i, rejected)
    assert b.evaluate(DAY0 + 10) == []  # 2/6


def test_anomaly_severity_maps_to_configured_state() -> None:
    b = CircuitBreakers(LIMITS)
    b.on_anomaly(DAY0, AnomalySeverity.MEDIUM)
    assert b.evaluate(DAY0) == []
    b.on_anomaly(DAY0 + 1, "high")
    (trip,) = b.evaluate(DAY0 + 1)
    assert (trip.name, trip.target_state) == (BreakerName.ANOMALY, S.REDUCING)
    assert trip.reason == "high anomaly in last 5,000 ms (>= high switches to reducing)"
    b.on_anomaly(DAY0 + 2, AnomalySeverity.CRITICAL)
    (trip,) = b.evaluate(DAY0 + 2)
    assert trip.target_state is S.HALTED
    assert b.evaluate(DAY0 + 5_002) == []  # all out of the window


def test_anomaly_thresholds_are_configurable() -> None:
    limits = LIMITS.model_copy(
        update={
            "reducing_anomaly_severity": AnomalySeverity.MEDIUM,
            "halted_anomaly_severity": AnomalySeverity.HIGH,
        }
    )
    b = CircuitBreakers(limits)
    b.on_anomaly(DAY0, AnomalySeverity.MEDIUM)
    assert [t.target_state for t in b.evaluate(DAY0)] == [S.REDUCING]
    b.on_anomaly(DAY0, AnomalySeverity.HIGH)
    assert [t.target_state for t in b.evaluate(DAY0)] == [S.HALTED]


def test_several_breakers_trip_together() -> None:
    b = CircuitBreakers(LIMITS)
    b.on_equity(DAY0, 10_000.0)
    b.on_equity(DAY0 + 1, 8_000.0)
    for i in range(4):
        b.on_order_result(DAY0 + i, True)
    b.on_anomaly(DAY0, AnomalySeverity.HIGH)
    assert names(b.evaluate(DAY0 + 10)) == set(BreakerName)


def test_breaker_limits_validation() -> None:
    with pytest.raises(ValidationError):
        BreakerLimits(reducing_anomaly_severity=AnomalySeverity.CRITICAL, halted_anomaly_severity="high")
    with pytest.raises(ValidationError):
        BreakerLimits(max_drawdown_pct=150.0)
    with pytest.raises(ValidationError):
        BreakerLimits(max_reject_rate=0.0)
