"""Kraken through the real ccxt code, static replay only (no stateful order book for Kraken yet)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from support.loopback_exchange import ExchangeFixtures, LoopbackExchange
from wavesquant.execution.venues.ccxt_venue import CcxtVenue
from wavesquant.execution.venues.credentials import ExchangeCredentials
from wavesquant.execution.venues.rate_limit import LocalRateLimiter, RateBudget
from wavesquant.types import OrderStatus, OrderType, Side


async def test_kraken_open_orders_replayed(make_kraken: Callable[[], ExchangeFixtures]) -> None:
    fixtures = make_kraken()
    credentials = ExchangeCredentials(exchange="kraken", api_key=SecretStr("kraken-loopback-key"), secret=SecretStr("c2VjcmV0"))
    async with LoopbackExchange(fixtures) as server:
        # Kraken has no sandbox: this is a "live" venue, pointed at the loopback
        venue = CcxtVenue("kraken", limiter=LocalRateLimiter(RateBudget(100, 1)), credentials=credentials,
                          sandbox=False, live=True, confirm_live=True, websocket=False, timeout_ms=300)
        try:
            server.attach(venue.exchange)
            await venue.connect()
            (order,) = await venue.fetch_open_orders()
        finally:
            await venue.close()
    # the first recorded OpenOrders answer: a take-profit market order
    assert (order.venue_order_id, order.symbol, order.side) == ("OXCZ7B-EMVZQ-MTJTQJ", "LTC/USDT", Side.SELL)
    assert (order.type, order.status, order.quantity) == (OrderType.MARKET, OrderStatus.OPEN, 0.1)
    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", "/0/private/OpenOrders")
    assert set(sent.params) == {"nonce"}  # exactly the recorded request body, whose nonce varies
    assert not server.unmatched
