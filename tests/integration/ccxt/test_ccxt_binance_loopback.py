"""Binance spot through the real ccxt code against a loopback server answering with recorded responses."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog

from wavesquant.execution.reconcile import reconcile
from wavesquant.execution.venues.base import (
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    VenueError,
    VenueUnavailable,
)
from wavesquant.execution.venues.ccxt_venue import CcxtVenue
from wavesquant.execution.venues.rate_limit import LocalRateLimiter, RateBudget
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side

RECORDED_FOREIGN_ORDER = "x-R4BD3S82102a551f8c1642bba06728"  # the recorded open LTC/USDT order


def limit(cid: str, qty: float = 0.2, price: float = 50.0) -> OrderRequest:
    return OrderRequest(cid, "LTC/USDT", Side.BUY, OrderType.LIMIT, qty, price)


async def test_limit_order_lifecycle(binance_env: Any) -> None:
    venue = await binance_env.venue()
    server = binance_env.server

    order = await venue.submit(limit("wq-life-1"))
    assert (order.client_order_id, order.status, order.quantity, order.limit_price) == ("wq-life-1", OrderStatus.OPEN, 0.2, 50.0)

    # ccxt sent exactly what the recorded "Spot limit buy order" request holds, with our client order id
    recorded = next(c for c in server.fixtures.requests["methods"]["createOrder"] if c["description"] == "Spot limit buy order")
    from urllib.parse import parse_qsl

    expected = {k: v for k, v in parse_qsl(recorded["output"]) if k not in server.fixtures.skip_keys}
    (sent,) = [r for r in server.requests if r.method == "POST" and r.path == "/api/v3/order"]
    assert {k: v for k, v in sent.params.items() if k not in server.fixtures.skip_keys} == expected
    assert sent.params["newClientOrderId"] == "wq-life-1"

    fetched = await venue.fetch_order("wq-life-1", "LTC/USDT")
    assert fetched is not None and fetched.venue_order_id == order.venue_order_id

    open_ids = {o.client_order_id for o in await venue.fetch_open_orders("LTC/USDT")}
    assert open_ids == {"wq-life-1", RECORDED_FOREIGN_ORDER}
    assert await venue.fetch_open_orders("BTC/USDT") == []

    canceled = await venue.cancel("wq-life-1", "LTC/USDT")
    # Binance answers a cancel with a new clientOrderId of its own; the venue keeps ours
    assert (canceled.client_order_id, canceled.status) == ("wq-life-1", OrderStatus.CANCELED)
    assert {o.client_order_id for o in await venue.fetch_open_orders("LTC/USDT")} == {RECORDED_FOREIGN_ORDER}

    again = await venue.cancel("wq-life-1", "LTC/USDT")  # Binance: -2011 Unknown order sent
    assert again.status is OrderStatus.CANCELED
    with pytest.raises(OrderNotFound):
        await venue.cancel("wq-never-sent", "LTC/USDT")
    assert await venue.fetch_order("wq-never-sent", "LTC/USDT") is None  # Binance: -2013


async def test_fills_and_balances(binance_env: Any) -> None:
    venue = await binance_env.venue()
    await venue.submit(limit("wq-fill-1", qty=0.3, price=70.0))
    binance_env.book.fill("wq-fill-1", 0.1, maker=True)

    partial = await venue.fetch_order("wq-fill-1", "LTC/USDT")
    assert partial is not None and partial.status is OrderStatus.PARTIALLY_FILLED
    assert partial.filled_quantity == pytest.approx(0.1) and partial.remaining == pytest.approx(0.2)

    fills = {f.fill_id: f for f in await venue.fetch_fills("LTC/USDT")}
    recorded = fills.pop("309520010")  # the recorded trade of an order we never placed
    assert recorded.client_order_id == "" and recorded.liquidity is Liquidity.TAKER
    (ours,) = fills.values()
    assert (ours.client_order_id, ours.quantity, ours.price, ours.side) == ("wq-fill-1", pytest.approx(0.1), 70.0, Side.BUY)
    assert ours.liquidity is Liquidity.MAKER and ours.fee_currency == "USDT" and ours.fee == pytest.approx(0.007)
    # without a symbol the venue asks for each configured symbol (Binance needs one per call)
    assert [f.fill_id for f in await venue.fetch_fills()] == ["309520010", ours.fill_id]

    assert await venue.fetch_balances() == {"BTC": 0.0, "LTC": pytest.approx(0.919741), "ETH": pytest.approx(0.02229833)}
    assert await venue.fetch_positions() == {}  # spot


async def test_disconnect_during_create_then_resubmit_does_not_trade_twice(binance_env: Any) -> None:
    venue = await binance_env.venue()
    server, book = binance_env.server, binance_env.book
    # request 1: "do you know wq-dc-1?", request 2: the create - processed, then the connection drops
    server.inject_fault(2, "drop_after")
    with pytest.raises(VenueUnavailable):
        await venue.submit(limit("wq-dc-1"))
    assert book.created == 1  # the exchange did place it

    order = await venue.submit(limit("wq-dc-1"))  # the retry asks first and gets the existing order
    assert (order.client_order_id, order.status) == ("wq-dc-1", OrderStatus.OPEN)
    assert book.created == 1
    assert server.count("POST", "/api/v3/order") == 1

    # dropped before the exchange saw it: the retry places it, exactly once
    server.inject_fault(2, "drop_before")
    with pytest.raises(VenueUnavailable):
        await venue.submit(limit("wq-dc-2"))
    assert book.created == 1
    assert (await venue.submit(limit("wq-dc-2"))).status is OrderStatus.OPEN
    assert book.created == 2

    # the exchange never answers: timeout -> VenueUnavailable
    server.inject_fault(1, "timeout")
    with pytest.raises(VenueUnavailable, match="RequestTimeout"):
        await venue.fetch_balances()


async def test_rejection_and_duplicate(binance_env: Any) -> None:
    venue = await binance_env.venue()
    binance_env.book.reject_next = (-2010, "Account has insufficient balance for requested action.")
    with pytest.raises(OrderRejected) as info:
        await venue.submit(limit("wq-rej-1"))
    assert info.value.code == "InsufficientFunds"  # ccxt: Binance -2010 + "insufficient balance" text
    assert "insufficient balance" in info.value.message
    assert binance_env.book.created == 0

    # another process placed wq-dup-1 between our check and our create: Binance answers "Duplicate order
    # sent."; the venue checks again and returns the existing order instead of failing
    first = await venue.submit(limit("wq-dup-1"))
    binance_env.book.lagging_queries = 1  # the next query does not see it yet
    again = await venue.submit(limit("wq-dup-1"))
    assert again.venue_order_id == first.venue_order_id
    assert binance_env.book.created == 1
    creates = [r for r in binance_env.server.requests if r.method == "POST" and r.params.get("newClientOrderId") == "wq-dup-1"]
    assert len(creates) == 2  # the second create was refused by the venue as a duplicate

    binance_env.book.reject_next = (-1013, "Filter failure: PRICE_FILTER")
    with pytest.raises(OrderRejected, match="PRICE_FILTER"):
        await venue.submit(limit("wq-rej-2"))

    # not an order problem and not transient: a bare VenueError
    binance_env.book.reject_next = (-1121, "Invalid symbol.")
    with pytest.raises(VenueError, match="BadSymbol") as other:
        await venue.submit(limit("wq-rej-3"))
    assert not isinstance(other.value, (OrderRejected, VenueUnavailable))


async def test_reconciliation_at_restart(binance_env: Any) -> None:
    before = await binance_env.venue()
    kept = await before.submit(limit("wq-rc-kept"))
    await before.submit(limit("wq-rc-unknown-locally"))  # placed, then the process died before recording it
    binance_env.book.fill("wq-rc-kept")

    after = await binance_env.venue()  # the restarted process
    local = {"wq-rc-kept": kept, "wq-rc-never-arrived": limit_order_view("wq-rc-never-arrived")}

    report = await reconcile(local, after, symbol="LTC/USDT", lost_after=2, local_fill_ids=set())
    assert {d.client_order_id for d in report.adopted} == {"wq-rc-unknown-locally", RECORDED_FOREIGN_ORDER}
    (updated,) = report.updated
    assert updated.client_order_id == "wq-rc-kept" and updated.venue is not None
    assert updated.venue.status is OrderStatus.FILLED and updated.venue.filled_quantity == pytest.approx(0.2)
    (missing,) = report.not_found
    assert missing.client_order_id == "wq-rc-never-arrived" and not report.lost
    assert {f.fill_id for f in report.missing_fills} >= {"309520010"}

    # a transient failure is not a "not found" answer (a dropped GET would be retried by aiohttp itself)
    binance_env.server.inject_fault(1, "timeout")
    with pytest.raises(VenueUnavailable):
        await reconcile(local, after, symbol="LTC/USDT", not_found_counts=report.not_found_counts, lost_after=2)

    second = await reconcile(local, after, symbol="LTC/USDT", not_found_counts=report.not_found_counts, lost_after=2)
    (lost,) = second.lost
    assert lost.client_order_id == "wq-rc-never-arrived" and lost.not_found_count == 2


def limit_order_view(cid: str):
    from wavesquant.execution.venues.base import VenueOrder

    return VenueOrder(cid, "", "LTC/USDT", Side.BUY, OrderType.LIMIT, 0.2, 50.0, OrderStatus.OPEN)


async def test_watch_orders_polling_fallback(binance_env: Any) -> None:
    venue = await binance_env.venue()
    await venue.submit(limit("wq-watch-1"))
    updates = venue.watch_orders("LTC/USDT")

    first = {(await anext(updates)).client_order_id for _ in range(2)}
    assert first == {"wq-watch-1", RECORDED_FOREIGN_ORDER}

    binance_env.book.fill("wq-watch-1", 0.05)
    partial = await anext(updates)
    assert (partial.client_order_id, partial.status) == ("wq-watch-1", OrderStatus.PARTIALLY_FILLED)

    binance_env.book.fill("wq-watch-1")  # the rest: it leaves the open set
    final = await anext(updates)
    assert (final.client_order_id, final.status, final.filled_quantity) == ("wq-watch-1", OrderStatus.FILLED, pytest.approx(0.2))
    await updates.aclose()


async def test_api_keys_never_logged(binance_env: Any) -> None:
    api_key = binance_env.credentials.api_key.get_secret_value()
    api_secret = binance_env.credentials.secret.get_secret_value()
    with structlog.testing.capture_logs() as logs:
        venue = await binance_env.venue()
        await venue.submit(limit("wq-log-1"))
        binance_env.server.inject_fault(1, "timeout")
        with pytest.raises(VenueUnavailable) as info:
            await venue.fetch_balances()
        binance_env.book.reject_next = (-2010, "rejected")
        with pytest.raises(OrderRejected):
            await venue.submit(limit("wq-log-2"))
    text = json.dumps(logs, default=str) + str(info.value)
    assert logs and "venue_unavailable" in text
    assert api_key not in text and api_secret not in text
    assert "signature=***" in str(info.value)  # signed query parameters are scrubbed too


async def test_venue_pointed_at_the_loopback_by_url_loads_markets_through_ccxt(binance_env: Any) -> None:
    """Another process cannot `attach`: it gets the loopback's URL (api_url) and loads the markets from the
    recorded exchangeInfo entries through ccxt's own parser - the same markets `attach` loads from the fixture."""
    attached = await binance_env.venue()
    server = binance_env.server
    by_url = CcxtVenue("binance", limiter=LocalRateLimiter(RateBudget(1000, 1)), credentials=binance_env.credentials,
                       websocket=False, timeout_ms=2000, api_url=server.base_url)
    binance_env.venues.append(by_url)
    await by_url.connect()
    assert server.count("GET", "/api/v3/exchangeInfo") == 1
    assert {s for s, m in by_url.exchange.markets.items() if m["spot"]} == \
        {s for s, m in attached.exchange.markets.items() if m["spot"]}
    for symbol in ("LTC/USDT", "BTC/USDT"):
        mine, theirs = by_url.exchange.markets[symbol], attached.exchange.markets[symbol]
        assert mine["precision"]["amount"] == theirs["precision"]["amount"]
        assert mine["precision"]["price"] == theirs["precision"]["price"]
        assert mine["limits"]["amount"]["min"] == theirs["limits"]["amount"]["min"]

    order = await by_url.submit(limit("wq-url-1"))
    assert order.status is OrderStatus.OPEN and binance_env.book.orders["wq-url-1"]["orderId"] == order.venue_order_id
    # the recorded open order is in the book: fetchable by its client order id like ours
    recorded = await by_url.fetch_order(RECORDED_FOREIGN_ORDER, "LTC/USDT")
    assert recorded is not None and recorded.status is OrderStatus.OPEN


async def test_fault_on_one_kind_of_request_only(binance_env: Any) -> None:
    venue = await binance_env.venue()
    server, book = binance_env.server, binance_env.book
    server.inject_fault(1, "drop_after", method="POST", path="/api/v3/order")
    await venue.fetch_open_orders("LTC/USDT")  # other requests pass untouched
    assert await venue.fetch_order("wq-kind-1", "LTC/USDT") is None
    with pytest.raises(VenueUnavailable):
        await venue.submit(limit("wq-kind-1"))  # its GET check passes, its create is processed then dropped
    assert book.created == 1 and book.not_found["wq-kind-1"] == 2
    assert (await venue.submit(limit("wq-kind-1"))).status is OrderStatus.OPEN  # asks first: no second create
    assert server.count("POST", "/api/v3/order") == 1

    book.place("wq-kind-2", side="SELL", quantity=0.5, price=99.0)  # placed by someone else
    placed = await venue.fetch_order("wq-kind-2", "LTC/USDT")
    assert placed is not None and (placed.side, placed.quantity, placed.limit_price) == (Side.SELL, 0.5, 99.0)
    assert book.created == 1  # `created` counts creates sent to the exchange only
