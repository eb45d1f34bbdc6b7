"""The open-order index answers what a scan of every open order would, in O(1)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.risk.open_orders import OpenOrder, OpenOrders
from wavesquant.types import Side

BTC, ETH = "BTC/USDT", "ETH/USDT"


def test_pending_per_side_and_strategy() -> None:
    book = OpenOrders([
        OpenOrder("a", "s1", BTC, Side.BUY, 100.0, 0.5),
        OpenOrder("b", "s2", BTC, Side.BUY, None, 0.25),
        OpenOrder("c", "s1", BTC, Side.SELL, 110.0, 1.0),
        OpenOrder("d", "s1", ETH, Side.BUY, 10.0, 3.0),
    ])
    assert book.pending(BTC, Side.BUY) == 0.75
    assert book.pending(BTC, Side.BUY, "s1") == 0.5
    assert book.pending(BTC, Side.SELL) == 1.0
    assert book.pending(ETH, Side.SELL) == 0.0
    assert "b" in book and len(book) == 4 and book["d"].remaining == 3.0


def test_replacing_and_removing_leave_no_float_residue() -> None:
    book = OpenOrders()
    book.put(OpenOrder("a", "s1", BTC, Side.BUY, 100.0, 0.1))
    book.put(OpenOrder("b", "s1", BTC, Side.BUY, 100.0, 0.2))
    book.put(book["a"]._replace(remaining=0.05))  # partial fill
    assert abs(book.pending(BTC, Side.BUY) - 0.25) < 1e-12
    assert book.pop("a") is not None and book.pop("b") is not None
    assert book.pending(BTC, Side.BUY) == 0.0  # exactly zero, not 2.7e-17
    assert book.pop("a") is None and len(book) == 0


def test_an_order_with_nothing_remaining_counts_nowhere() -> None:
    book = OpenOrders([OpenOrder("a", "s1", BTC, Side.SELL, 100.0, 0.0)])
    assert "a" in book
    assert book.pending(BTC, Side.SELL) == 0.0
    assert book.crossing(BTC, Side.BUY, None) is None


def test_crossing_finds_our_most_aggressive_resting_order() -> None:
    book = OpenOrders([
        OpenOrder("ask-hi", "s1", BTC, Side.SELL, 105.0, 1.0),
        OpenOrder("ask-lo", "s1", BTC, Side.SELL, 101.0, 1.0),
        OpenOrder("bid", "s1", BTC, Side.BUY, 99.0, 1.0),
        OpenOrder("mkt", "s1", BTC, Side.SELL, None, 1.0),  # a working market order rests nowhere
    ])
    assert book.crossing(BTC, Side.BUY, None).client_order_id == "ask-lo"  # type: ignore[union-attr]
    assert book.crossing(BTC, Side.BUY, 101.0).client_order_id == "ask-lo"  # type: ignore[union-attr]
    assert book.crossing(BTC, Side.BUY, 100.99) is None
    assert book.crossing(BTC, Side.SELL, 99.0).client_order_id == "bid"  # type: ignore[union-attr]
    assert book.crossing(BTC, Side.SELL, 99.5) is None
    assert book.crossing(ETH, Side.BUY, None) is None
    book.pop("ask-lo")
    assert book.crossing(BTC, Side.BUY, 101.0) is None


_orders = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sampled_from(["s1", "s2"]),
        st.sampled_from([BTC, ETH]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.one_of(st.none(), st.sampled_from([99.0, 100.0, 101.0])),
        st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0]),
        st.booleans(),  # True: remove instead of put
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_orders)
def test_index_matches_a_scan_of_every_order(ops: list) -> None:
    book = OpenOrders()
    plain: dict[str, OpenOrder] = {}
    for coid, strategy, symbol, side, price, qty, remove in ops:
        if remove:
            assert (book.pop(coid) is None) == (plain.pop(coid, None) is None)
        else:
            book.put(plain.setdefault(coid, OpenOrder(coid, strategy, symbol, side, price, qty))._replace(remaining=qty))
            plain[coid] = book[coid]
    assert set(book) == set(plain)
    for symbol in (BTC, ETH):
        for side in (Side.BUY, Side.SELL):
            live = [o for o in plain.values() if o.symbol == symbol and o.side is side and o.remaining > 0]
            assert abs(book.pending(symbol, side) - sum(o.remaining for o in live)) < 1e-9
            for strategy in ("s1", "s2"):
                want = sum(o.remaining for o in live if o.strategy_id == strategy)
                assert abs(book.pending(symbol, side, strategy) - want) < 1e-9
            other = [o for o in plain.values() if o.symbol == symbol and o.side is not side and o.remaining > 0
                     and o.price is not None]
            for limit in (None, 99.5, 100.0, 100.5):
                crossing = [o for o in other if limit is None or (limit >= o.price if side is Side.BUY
                                                                  else limit <= o.price)]
                assert (book.crossing(symbol, side, limit) is None) == (not crossing)
