from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.execution.orders import (
    TRANSITIONS,
    Accepted,
    Canceled,
    CancelRejected,
    CancelRequested,
    Expired,
    FillEvent,
    IllegalTransition,
    Lost,
    Order,
    OrderEvent,
    OrderTracker,
    Rejected,
    Submitted,
    UnknownOrder,
    event_from_dict,
    event_to_dict,
    qty_tol,
)
from wavesquant.execution.venues.base import Fill, OrderRequest
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side

S = OrderStatus


def make_request(cid: str = "c1", qty: float = 1.0) -> OrderRequest:
    return OrderRequest(cid, "BTC/USDT", Side.BUY, OrderType.LIMIT, qty, limit_price=100.0, strategy_id="s1")


def make_fill(fill_id: str, qty: float, price: float = 100.0, cid: str = "c1", venue_id: str = "v1") -> Fill:
    return Fill(cid, venue_id, fill_id, "BTC/USDT", Side.BUY, qty, price, 0.01 * qty, "USDT", Liquidity.MAKER, 5)


def new_order(qty: float = 1.0) -> Order:
    return Order(make_request(qty=qty), created_ts_ms=1000)


def test_happy_path_to_filled_with_history() -> None:
    order = new_order()
    order.apply(Submitted(), 1001)
    order.apply(Accepted("v1"), 1002)
    assert order.status is S.OPEN and order.venue_order_id == "v1"
    order.apply(FillEvent(make_fill("f1", 0.4, 100.0)), 1003)
    assert order.status is S.PARTIALLY_FILLED
    order.apply(FillEvent(make_fill("f2", 0.6, 110.0)), 1004)
    assert order.status is S.FILLED
    assert order.filled_qty == pytest.approx(1.0)
    assert order.avg_fill_price == pytest.approx(0.4 * 100 + 0.6 * 110)
    assert order.fees == pytest.approx(0.01)
    assert [(t.from_status, t.to_status, t.event) for t in order.history] == [
        (S.CREATING, S.CREATING, "Submitted"),
        (S.CREATING, S.OPEN, "Accepted"),
        (S.OPEN, S.PARTIALLY_FILLED, "FillEvent"),
        (S.PARTIALLY_FILLED, S.FILLED, "FillEvent"),
    ]
    assert order.updated_ts_ms == 1004


def test_illegal_transition_raises_and_changes_nothing() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    order.apply(FillEvent(make_fill("f1", 1.0)), 2)
    before = order.to_dict()
    for event in (Canceled(), Rejected("x"), Submitted(), CancelRequested(), Lost(), Expired()):
        with pytest.raises(IllegalTransition):
            order.apply(event, 3)
    assert order.to_dict() == before


def test_duplicate_fill_is_ignored() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    assert order.apply(FillEvent(make_fill("f1", 0.5)), 2) is not None
    assert order.apply(FillEvent(make_fill("f1", 0.5)), 3) is None
    assert order.filled_qty == 0.5 and order.status is S.PARTIALLY_FILLED and len(order.history) == 2


def test_overfill_is_refused() -> None:
    order = new_order()
    order.apply(FillEvent(make_fill("f1", 0.7)), 1)
    with pytest.raises(IllegalTransition, match="over-fill"):
        order.apply(FillEvent(make_fill("f2", 0.4)), 2)
    assert order.filled_qty == 0.7 and order.fill_ids == {"f1"}


def test_fill_within_epsilon_completes_order() -> None:
    order = new_order(qty=0.3)
    order.apply(FillEvent(make_fill("f1", 0.1)), 1)
    order.apply(FillEvent(make_fill("f2", 0.2)), 2)  # 0.1 + 0.2 != 0.3 in float64
    assert order.status is S.FILLED and order.filled_qty <= 0.3 and order.remaining == 0.0


def test_fill_before_accept_implies_open_and_sets_venue_id() -> None:
    order = new_order()
    order.apply(FillEvent(make_fill("f1", 0.5, venue_id="v9")), 1)
    assert order.status is S.PARTIALLY_FILLED and order.venue_order_id == "v9"
    order.apply(Accepted("v9"), 2)  # late ack keeps the state
    assert order.status is S.PARTIALLY_FILLED
    with pytest.raises(IllegalTransition):
        order.apply(Accepted("other"), 3)


def test_fill_of_other_order_is_refused() -> None:
    order = new_order()
    with pytest.raises(IllegalTransition):
        order.apply(FillEvent(make_fill("f1", 0.5, cid="c2")), 1)
    assert order.status is S.CREATING and order.filled_qty == 0.0


def test_cancel_flow_and_fill_race_while_pending_cancel() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    order.apply(CancelRequested(), 2)
    assert order.status is S.PENDING_CANCEL
    order.apply(FillEvent(make_fill("f1", 0.3)), 3)
    assert order.status is S.PENDING_CANCEL and order.filled_qty == 0.3
    order.apply(Canceled(), 4)
    assert order.status is S.CANCELED and order.is_terminal
    # a late fill report after the cancel ack is kept; it completes the order here
    order.apply(FillEvent(make_fill("f2", 0.7)), 5)
    assert order.status is S.FILLED


def test_fill_completing_order_while_pending_cancel_is_filled() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    order.apply(CancelRequested(), 2)
    order.apply(FillEvent(make_fill("f1", 1.0)), 3)
    assert order.status is S.FILLED
    order.apply(CancelRejected("already filled"), 4)
    assert order.status is S.FILLED


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ([Accepted("v1")], S.OPEN),
        ([Accepted("v1"), FillEvent(make_fill("f1", 0.2))], S.PARTIALLY_FILLED),
        ([], S.CREATING),
    ],
)
def test_cancel_rejected_returns_to_previous_state(setup: list[OrderEvent], expected: OrderStatus) -> None:
    order = new_order()
    for i, event in enumerate(setup):
        order.apply(event, i)
    order.apply(CancelRequested(), 10)
    order.apply(CancelRejected("busy"), 11)
    assert order.status is expected


def test_reject_and_lost_fail_the_order() -> None:
    order = new_order()
    order.apply(Submitted(), 1)
    order.apply(Rejected("min_notional"), 2)
    assert order.status is S.FAILED
    lost = new_order()
    lost.apply(Accepted("v1"), 1)
    lost.apply(Lost(), 2)
    assert lost.status is S.FAILED
    with pytest.raises(IllegalTransition):
        lost.apply(FillEvent(make_fill("f1", 0.1)), 3)


def test_reject_after_fill_is_illegal() -> None:
    order = new_order()
    order.apply(FillEvent(make_fill("f1", 0.1)), 1)
    order.apply(CancelRequested(), 2)
    with pytest.raises(IllegalTransition, match="has fills"):
        order.apply(Rejected("late"), 3)


def test_expired_means_canceled() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    order.apply(Expired(), 2)
    assert order.status is S.CANCELED and order.history[-1].event == "Expired"


def test_stuck_in_creating_and_pending_cancel() -> None:
    order = new_order()  # created at 1000
    assert not order.stuck(1500, creation_timeout_ms=1000, cancel_timeout_ms=500)
    assert order.stuck(2001, creation_timeout_ms=1000, cancel_timeout_ms=500)
    order.apply(Submitted(), 1900)  # a re-submit restarts the clock
    assert not order.stuck(2001, creation_timeout_ms=1000, cancel_timeout_ms=500)
    order.apply(Accepted("v1"), 2000)
    assert not order.stuck(10_000, creation_timeout_ms=1000, cancel_timeout_ms=500)
    order.apply(CancelRequested(), 10_000)
    order.apply(FillEvent(make_fill("f1", 0.1)), 10_300)  # a fill does not satisfy the pending cancel
    assert not order.stuck(10_500, creation_timeout_ms=1000, cancel_timeout_ms=500)
    assert order.stuck(10_501, creation_timeout_ms=1000, cancel_timeout_ms=500)


def test_dict_round_trip_is_json_safe_and_replays() -> None:
    order = new_order()
    order.apply(Submitted(), 1)
    order.apply(Accepted("v1"), 2)
    order.apply(FillEvent(make_fill("f1", 0.25, 101.0)), 3)
    order.apply(CancelRequested(), 4)
    order.apply(Canceled(), 5)
    data = json.loads(json.dumps(order.to_dict()))
    rebuilt = Order.from_dict(data)
    assert rebuilt.to_dict() == order.to_dict()
    assert rebuilt.fill_ids == {"f1"} and rebuilt.status is S.CANCELED
    assert rebuilt.status_since_ts_ms == order.status_since_ts_ms


def test_from_dict_rejects_tampered_status() -> None:
    order = new_order()
    order.apply(Accepted("v1"), 1)
    data = order.to_dict()
    data["status"] = "filled"
    with pytest.raises(ValueError):
        Order.from_dict(data)
    data = order.to_dict()
    data["history"][0]["to_status"] = "canceled"
    with pytest.raises(ValueError):
        Order.from_dict(data)


def test_replay_events() -> None:
    order = new_order()
    order.replay([(Accepted("v1"), 1), (FillEvent(make_fill("f1", 1.0)), 2)])
    assert order.status is S.FILLED


def test_event_codec_round_trip() -> None:
    events: list[OrderEvent] = [
        Submitted(), Accepted("v"), Rejected("r"), FillEvent(make_fill("f", 1.0)), CancelRequested(),
        Canceled(), CancelRejected("x"), Expired(), Lost(),
    ]
    for event in events:
        assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event
    with pytest.raises(ValueError):
        event_from_dict({"event": "Bogus"})


def test_tracker() -> None:
    tracker = OrderTracker()
    order = tracker.track(new_order())
    assert tracker.track(new_order()) is order  # same request: idempotent
    with pytest.raises(ValueError):
        tracker.track(Order(make_request(qty=2.0), created_ts_ms=0))
    tracker.track(Order(make_request("c2"), created_ts_ms=0))
    tracker.apply("c1", Accepted("v1"), 5)
    tracker.apply("c2", Rejected("no"), 5)
    assert [o.client_order_id for o in tracker.open_orders()] == ["c1"]
    assert tracker.open_orders("ETH/USDT") == []
    assert [o.client_order_id for o in tracker.stuck_orders(10_000, 1000, 1000)] == []
    tracker.track(Order(make_request("c3"), created_ts_ms=0))
    assert [o.client_order_id for o in tracker.stuck_orders(10_000, 1000, 1000)] == ["c3"]
    with pytest.raises(UnknownOrder):
        tracker.apply("nope", Canceled(), 1)
    assert "c2" in tracker and len(tracker) == 3


def test_tracker_prunes_closed_orders_by_age_and_count_and_never_an_open_one() -> None:
    tracker = OrderTracker()
    for i in range(6):
        tracker.track(Order(make_request(f"c{i}"), created_ts_ms=0))
    tracker.apply("c0", Accepted("v0"), 5)  # stays open
    for i, ended in ((1, 100), (2, 200), (3, 300), (4, 400)):
        tracker.apply(f"c{i}", Rejected("no"), ended)
    assert tracker.prune_closed(ended_before_ms=250, keep_at_most=10) == ["c1", "c2"]
    assert tracker.prune_closed(ended_before_ms=250, keep_at_most=1) == ["c3"]  # count: the newest stays
    assert sorted(o.client_order_id for o in tracker) == ["c0", "c4", "c5"]
    tracker.apply("c5", Rejected("no"), 10_000)
    assert tracker.prune_closed(ended_before_ms=20_000, keep_at_most=10) == ["c4", "c5"]
    assert [o.client_order_id for o in tracker] == ["c0"]
    closed = Order(make_request("c9"), created_ts_ms=0)
    closed.apply(Rejected("no"), 50)
    tracker.track(closed)  # rebuilt already terminal
    assert tracker.prune_closed(ended_before_ms=60, keep_at_most=10) == ["c9"]


# --- properties ------------------------------------------------------------------------------------------

QTY = 1.0


def _events() -> st.SearchStrategy[OrderEvent]:
    fill = st.builds(
        lambda fid, q, p: FillEvent(make_fill(f"f{fid}", q, p)),
        st.integers(0, 8),
        st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7, 1.0]),
        st.floats(90, 110),
    )
    return st.one_of(
        st.just(Submitted()),
        st.sampled_from([Accepted("v1"), Accepted("v2")]),
        st.just(Rejected("r")),
        fill,
        st.just(CancelRequested()),
        st.just(Canceled()),
        st.just(CancelRejected("r")),
        st.just(Expired()),
        st.just(Lost()),
    )


def _check_invariants(order: Order) -> None:
    tol = qty_tol(order.quantity)
    assert 0.0 <= order.filled_qty <= order.quantity + tol
    assert order.status in TRANSITIONS
    if order.status is S.FILLED:
        assert order.filled_qty >= order.quantity - tol
    else:
        assert order.filled_qty < order.quantity - tol
    if order.status is S.OPEN:
        assert order.filled_qty == 0.0 and order.venue_order_id is not None
    if order.status is S.PARTIALLY_FILLED:
        assert order.filled_qty > 0.0
    if order.status is S.CREATING:
        assert order.filled_qty == 0.0
    if order.filled_qty > 0:
        assert order.avg_fill_price is not None and 90 <= order.avg_fill_price <= 110
    assert len(order.fill_ids) == sum(1 for t in order.history if t.event == "FillEvent")
    for prev, nxt in zip(order.history, order.history[1:]):
        assert prev.to_status is nxt.from_status
    for t in order.history:
        assert t.to_status in TRANSITIONS[t.from_status][type(t.to_event())]


@settings(max_examples=300, deadline=None)
@given(st.lists(_events(), max_size=25))
def test_no_event_sequence_reaches_an_illegal_state(events: list[OrderEvent]) -> None:
    order = Order(make_request(qty=QTY), created_ts_ms=0)
    for ts, event in enumerate(events, start=1):
        before = order.to_dict()
        try:
            order.apply(event, ts)
        except IllegalTransition:
            assert order.to_dict() == before  # refused events change nothing
        _check_invariants(order)
    rebuilt = Order.from_dict(json.loads(json.dumps(order.to_dict())))
    assert rebuilt.to_dict() == order.to_dict()
