from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wavesquant.market.loaders import load_quotes, load_trades
from wavesquant.market.ring import RING_DTYPE, RingSet, TickRing, microprice


def _trades(ts: list[int], price: list[float], size: list[float]) -> dict[str, np.ndarray]:
    return {"ts_ms": np.array(ts, np.int64), "price": np.array(price), "size": np.array(size)}


def test_ring_wraps_and_returns_newest_in_order() -> None:
    ring = TickRing(5, "v", "S")
    assert len(ring) == 0 and ring.capacity == 5 and ring.latest() is None and len(ring.last(3)) == 0
    ring.append_batch(_trades([1, 2, 3], [1.0, 2.0, 3.0], [1, 1, 1]))
    ring.append_batch(_trades([4, 5, 6, 7], [4.0, 5.0, 6.0, 7.0], [1, 1, 1, 1]))
    assert len(ring) == 5
    assert ring.last(3)["price"].tolist() == [5.0, 6.0, 7.0]
    assert ring.last(100)["ts_ms"].tolist() == [3, 4, 5, 6, 7]
    # a batch larger than the ring keeps only its newest rows
    ring.append_batch(_trades(list(range(10, 22)), [float(x) for x in range(10, 22)], [1] * 12))
    assert ring.last(5)["ts_ms"].tolist() == [17, 18, 19, 20, 21]
    assert ring.latest().price == 21.0  # type: ignore[union-attr]


def test_ring_forward_fills_quotes_and_trades() -> None:
    ring = TickRing(16)
    ring.append_batch(
        {
            "ts_ms": np.array([1, 2]),
            "bid": np.array([9.0, 9.5]),
            "ask": np.array([10.0, 10.5]),
            "bid_size": np.array([1.0, 2.0]),
            "ask_size": np.array([3.0, 4.0]),
        }
    )
    ring.append_batch(_trades([3], [10.2], [0.5]))
    top = ring.latest()
    assert top is not None
    assert (top.ts_ms, top.price, top.bid, top.ask, top.bid_size, top.ask_size) == (
        3,
        10.2,
        9.5,
        10.5,
        2.0,
        4.0,
    )
    rows = ring.last(3)
    assert np.isnan(rows["price"][:2]).all()  # no trade seen yet
    assert rows["size"].tolist() == [0.0, 0.0, 0.5]
    # a batch with NaN cells fills them from the row before, inside the batch too
    ring.append_batch(
        {"ts_ms": np.array([4, 5]), "bid": np.array([np.nan, 9.7]), "ask": np.array([10.6, np.nan])}
    )
    rows = ring.last(2)
    assert rows["bid"].tolist() == [9.5, 9.7] and rows["ask"].tolist() == [10.6, 10.6]
    with pytest.raises(ValueError, match="ts_ms"):
        ring.append_batch({"price": np.array([1.0])})


@pytest.mark.shared_data
def test_ring_holds_real_ticks_and_quotes(shared_data: Path) -> None:
    trades = load_trades(shared_data / "ticks" / "binance_BTCUSDT_trades_2021-01-08.csv")
    quotes = load_quotes(shared_data / "ticks" / "binance_BTCUSDT_quotes_2021-01-08.csv")
    ring = TickRing(1024, "binance", "BTC/USDT")
    ring.append_batch(quotes)
    ring.append_batch(trades)
    assert len(ring) == 1024
    top = ring.latest()
    assert top is not None
    assert top.price == trades["price"][-1] and top.bid == quotes["bid"][-1] and top.ask == quotes["ask"][-1]
    np.testing.assert_array_equal(ring.last(1024)["price"], trades["price"][-1024:])


def test_ringset_cross_section_mid_microprice_volatility() -> None:
    rs = RingSet(64)
    rs.append_batch(
        "a",
        "X",
        {
            "ts_ms": np.array([1]),
            "bid": np.array([99.0]),
            "ask": np.array([101.0]),
            "bid_size": np.array([3.0]),
            "ask_size": np.array([1.0]),
        },
    )
    rs.append_batch("b", "X", {"ts_ms": np.array([1]), "bid": np.array([10.0]), "ask": np.array([12.0])})
    rs.ring("c", "Y")  # registered, no data yet
    assert rs.keys() == [("a", "X"), ("b", "X"), ("c", "Y")] and len(rs) == 3
    np.testing.assert_allclose(rs.mid()[:2], [100.0, 11.0])
    assert np.isnan(rs.mid()[2])
    mp = rs.microprice()
    assert mp[0] == pytest.approx((99.0 * 1.0 + 101.0 * 3.0) / 4.0)  # heavy bid pushes towards the ask
    assert mp[1] == 11.0  # no sizes: falls back to mid

    rng = np.random.default_rng(7)
    rs2 = RingSet(256)
    vols = {"lo": 1e-4, "hi": 1e-2}
    for sym, vol in vols.items():
        px = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, 300)))
        rs2.append_batch("v", sym, {"ts_ms": np.arange(300), "price": px, "size": np.ones(300)})
    rs2.append_batch("v", "short", {"ts_ms": np.array([1]), "price": np.array([5.0])})
    got = rs2.volatility(200)
    for i, (sym, vol) in enumerate(vols.items()):
        expected = np.diff(np.log(rs2.ring("v", sym).last(201)["price"])).std(ddof=1)
        assert got[i] == pytest.approx(expected, rel=1e-12)
        assert got[i] == pytest.approx(vol, rel=0.2)
    assert np.isnan(got[2])


def test_microprice_formula_vectorised() -> None:
    rows = np.zeros(3, dtype=RING_DTYPE)
    rows["bid"], rows["ask"] = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]
    rows["bid_size"], rows["ask_size"] = [1.0, 0.0, 1.0], [1.0, 0.0, 3.0]
    np.testing.assert_allclose(microprice(rows), [1.5, 2.5, (3.0 * 3.0 + 4.0 * 1.0) / 4.0])
