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


async def test_api_url_override_is_sandbox_only_and_keeps_paths() -> None:
    with pytest.raises(ValueError, match="sandbox only"):
        CcxtVenue("binance", limiter=LIMITER, sandbox=False, live=True, confirm_live=True, websocket=False,
                  api_url="http://127.0.0.1:9")
    for bad in ("127.0.0.1:9", "ftp://127.0.0.1:9", "http://127.0.0.1:9/api", "http://127.0.0.1:9?x=1"):
        with pytest.raises(ValueError, match="api_url"):
            CcxtVenue("binance", limiter=LIMITER, websocket=False, api_url=bad)
    venue = CcxtVenue("binance", limiter=LIMITER, websocket=True, api_url="http://127.0.0.1:9")
    api = venue.exchange.urls["api"]
    assert api["private"] == "http://127.0.0.1:9/api/v3" and api["dapiPublic"] == "http://127.0.0.1:9/dapi/v1"
    assert api["ws"]["spot"] == "wss://stream.testnet.binance.vision/ws"  # websocket endpoints are left alone
    assert venue.limiter is LIMITER
    await venue.close()
