from __future__ import annotations

from dataclasses import replace

import pytest

from wavesquant.execution.reconcile import Resolution, compare
from wavesquant.execution.venues.base import Fill, VenueOrder
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side


def _order(cid: str, status: OrderStatus = OrderStatus.OPEN, filled: float = 0.0, vid: str = "") -> VenueOrder:
    return VenueOrder(cid, vid or f"v-{cid}", "LTC/USDT", Side.BUY, OrderType.LIMIT, 1.0, 50.0, status, filled)


def _fill(fid: str) -> Fill:
    return Fill("a", "v-a", fid, "LTC/USDT", Side.BUY, 1.0, 50.0, 0.05, "USDT", Liquidity.MAKER, 1)


def test_in_sync_is_clean() -> None:
    local = {"a": _order("a")}
    report = compare(local, [_order("a")], {})
    assert report.clean and report.not_found_counts == {}


def test_unknown_venue_order_is_adopted() -> None:
    foreign = _order("x-foreign")
    report = compare({}, [foreign], {})
    (diff,) = report.adopted
    assert diff.resolution is Resolution.ADOPT and diff.venue == foreign


def test_venue_truth_updates_local_order() -> None:
    local = {"a": _order("a"), "b": _order("b")}
    partially = _order("a", OrderStatus.PARTIALLY_FILLED, 0.4)
    filled = _order("b", OrderStatus.FILLED, 1.0)
    report = compare(local, [partially], {"b": filled})
    assert {d.client_order_id: d.venue for d in report.updated} == {"a": partially, "b": filled}
    assert not report.not_found and not report.lost


def test_lost_only_after_n_consecutive_not_found() -> None:
    local = {"a": _order("a")}
    counts: dict[str, int] = {}
    for attempt in (1, 2):
        report = compare(local, [], {"a": None}, not_found_counts=counts, lost_after=3)
        (diff,) = report.not_found
        assert diff.not_found_count == attempt and not report.lost
        counts = dict(report.not_found_counts)
    report = compare(local, [], {"a": None}, not_found_counts=counts, lost_after=3)
    (lost,) = report.lost
    assert lost.client_order_id == "a" and lost.not_found_count == 3
    assert "a" not in report.not_found_counts


def test_found_again_resets_the_count() -> None:
    local = {"a": _order("a")}
    report = compare(local, [], {"a": None}, not_found_counts={"a": 2}, lost_after=3)
    assert report.lost
    report = compare(local, [_order("a")], {}, not_found_counts={"a": 2}, lost_after=3)
    assert report.clean and report.not_found_counts == {}


def test_fills_and_positions() -> None:
    report = compare({}, [], {}, local_fill_ids={"f1"}, venue_fills=[_fill("f1"), _fill("f2")],
                     local_positions={"BTC/USDT:USDT": 0.01}, venue_positions={"BTC/USDT:USDT": 0.009, "ETH": 1.0})
    assert [f.fill_id for f in report.missing_fills] == ["f2"]
    assert [(p.symbol, p.local, p.venue) for p in report.positions] == [("BTC/USDT:USDT", 0.01, 0.009), ("ETH", 0.0, 1.0)]


def test_lost_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        compare({}, [], {}, lost_after=0)


def test_local_orders_may_be_any_order_like_object() -> None:
    local = {"a": replace(_order("a"), venue_order_id="")}
    report = compare(local, [_order("a", OrderStatus.CANCELED)], {})
    assert report.updated[0].venue is not None and report.updated[0].venue.status is OrderStatus.CANCELED
