from __future__ import annotations

import pytest
from pydantic import ValidationError

from wavesquant.risk.exposure import MissingPrice, family_exposure, gross_exposure, net_exposure
from wavesquant.risk.limits import RiskLimits

PRICES = {"BTC/USDT": 50_000.0, "ETH/USDT": 2_000.0}


def test_gross_and_net_exposure() -> None:
    positions = {"BTC/USDT": 0.5, "ETH/USDT": -10.0}
    assert gross_exposure(positions, PRICES) == 45_000.0
    assert net_exposure(positions, PRICES) == 5_000.0
    assert gross_exposure({}, PRICES) == 0.0


def test_missing_price_for_a_held_symbol_raises() -> None:
    with pytest.raises(MissingPrice) as err:
        gross_exposure({"XRP/USDT": 100.0}, PRICES)
    assert err.value.symbol == "XRP/USDT"
    assert net_exposure({"XRP/USDT": 0.0}, PRICES) == 0.0  # flat: no price needed


def test_family_exposure() -> None:
    positions = {
        ("s1", "BTC/USDT"): 0.1,
        ("s2", "BTC/USDT"): -0.1,
        ("s3", "ETH/USDT"): 2.0,
        ("s9", "ETH/USDT"): 1.0,  # no family
    }
    families = {"s1": "trend", "s2": "trend", "s3": "stat_arb"}
    assert family_exposure(positions, families, PRICES) == {"trend": 10_000.0, "stat_arb": 4_000.0}


def test_risk_limits_lookups_and_validation() -> None:
    limits = RiskLimits(max_order_qty=5.0, max_order_qty_by_symbol={"BTC/USDT": 0.5}, max_position_qty=None)
    assert limits.order_qty_limit("BTC/USDT") == 0.5
    assert limits.order_qty_limit("ETH/USDT") == 5.0
    assert limits.position_qty_limit("ETH/USDT") is None
    with pytest.raises(ValidationError):
        limits.max_order_notional = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        RiskLimits(max_order_notional=-1.0)
    with pytest.raises(ValidationError):
        RiskLimits(max_order_notional=float("inf"))
    with pytest.raises(ValidationError):
        RiskLimits(max_order_qty_by_symbol={"BTC/USDT": 0.0})
    with pytest.raises(ValidationError):
        RiskLimits(max_leverge=3.0)  # type: ignore[call-arg]
    assert RiskLimits.model_validate_json(limits.model_dump_json()) == limits
