"""Loopback exchanges serving ccxt's recorded responses, and CcxtVenues pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from support.loopback_exchange import BinanceSpotBook, ExchangeFixtures, LoopbackExchange
from wavesquant.execution.venues.ccxt_venue import CcxtVenue
from wavesquant.execution.venues.credentials import ExchangeCredentials
from wavesquant.execution.venues.rate_limit import LocalRateLimiter, RateBudget

API_KEY = "loopback-api-key-4f1c2e9a7b"
API_SECRET = "loopback-secret-93b7d1e0c5"


async def no_wait(_: float) -> None:
    """Polling sleep for tests: yield to the loop, never wait on the clock."""


@dataclass
class BinanceEnv:
    server: LoopbackExchange
    book: BinanceSpotBook
    credentials: ExchangeCredentials
    venues: list[CcxtVenue] = field(default_factory=list)

    async def venue(self, **kwargs: object) -> CcxtVenue:
        """A fresh venue (a fresh process, as far as the venue is concerned) on the loopback exchange."""
        options: dict[str, object] = {
            "limiter": LocalRateLimiter(RateBudget(1000, 1)), "credentials": self.credentials,
            "websocket": False, "timeout_ms": 300, "poll_interval_s": 0.0, "sleep": no_wait,
            "symbols": ("LTC/USDT",),
        }
        options.update(kwargs)
        venue = CcxtVenue("binance", **options)  # type: ignore[arg-type]
        self.server.attach(venue.exchange)
        await venue.connect()
        self.venues.append(venue)
        return venue


@pytest.fixture
def credentials() -> ExchangeCredentials:
    return ExchangeCredentials(exchange="binance", api_key=SecretStr(API_KEY), secret=SecretStr(API_SECRET))


@pytest.fixture
async def binance_env(shared_data: Path, credentials: ExchangeCredentials) -> AsyncIterator[BinanceEnv]:
    fixtures = ExchangeFixtures(shared_data / "ccxt_static", "binance")
    book = BinanceSpotBook(fixtures)
    server = LoopbackExchange(fixtures, book)
    await server.start()
    env = BinanceEnv(server, book, credentials)
    try:
        yield env
    finally:
        for venue in env.venues:
            await venue.close()
        await server.stop()
    assert not server.unmatched, f"requests without a recorded answer: {server.unmatched}"


@pytest.fixture
def make_kraken(shared_data: Path) -> Callable[[], ExchangeFixtures]:
    return lambda: ExchangeFixtures(shared_data / "ccxt_static", "kraken")
