"""Construction guards of CcxtVenue (no network: ccxt exchanges are only instantiated)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from wavesquant.execution.venues.ccxt_venue import CcxtVenue, LiveTradingNotConfirmed
from wavesquant.execution.venues.credentials import ExchangeCredentials
from wavesquant.execution.venues.rate_limit import LocalRateLimiter, RateBudget

LIMITER = LocalRateLimiter(RateBudget(100, 1))


async def test_real_money_needs_both_flags() -> None:
    with pytest.raises(LiveTradingNotConfirmed):
        CcxtVenue("binance", limiter=LIMITER, sandbox=False)
    with pytest.raises(LiveTradingNotConfirmed):
        CcxtVenue("binance", limiter=LIMITER, sandbox=False, live=True)
    with pytest.raises(ValueError):
        CcxtVenue("binance", limiter=LIMITER, sandbox=True, live=True)
    venue = CcxtVenue("binance", limiter=LIMITER, sandbox=False, live=True, confirm_live=True, websocket=False)
    assert "testnet" not in str(venue.exchange.urls["api"])
    await venue.close()


async def test_sandbox_uses_the_testnet_urls() -> None:
    venue = CcxtVenue("binance", limiter=LIMITER, websocket=False)
    assert "testnet.binance.vision" in venue.exchange.urls["api"]["private"]
    assert venue.exchange.enableRateLimit is False  # the shared limiter governs
    await venue.close()


def test_exchange_without_sandbox_and_unknown_exchange() -> None:
    with pytest.raises(ValueError, match="no sandbox"):
        CcxtVenue("kraken", limiter=LIMITER, websocket=False)
    with pytest.raises(ValueError, match="no exchange"):
        CcxtVenue("not-an-exchange", limiter=LIMITER, websocket=False)


async def test_websocket_flag_selects_ccxt_pro() -> None:
    creds = ExchangeCredentials(exchange="binance", api_key=SecretStr("k"), secret=SecretStr("s"))
    venue = CcxtVenue("binance", limiter=LIMITER, credentials=creds, websocket=True)
    assert venue.exchange.has.get("watchOrders") is True
    await venue.close()
