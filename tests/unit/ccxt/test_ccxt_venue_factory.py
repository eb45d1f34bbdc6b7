"""build_venue for execution.venue: ccxt (no network: venues are built, never connected)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.bus.redis_bus import RedisBus
from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.execution.live import (
    CONFIRM_ENV,
    LiveTradingRefused,
    forget_live_confirmations,
    require_live_confirmation,
)
from wavesquant.execution.venue_factory import build_venue
from wavesquant.execution.venues.ccxt_venue import CcxtVenue
from wavesquant.execution.venues.credentials import MissingCredentialError, key_id
from wavesquant.execution.venues.rate_limit import LocalRateLimiter, SharedRateLimiter

API_KEY = "factory-test-api-key"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (CONFIRM_ENV, "WQ_BINANCE_API_KEY_FILE", "WQ_BINANCE_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WQ_BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("WQ_BINANCE_SECRET", "factory-test-secret")
    forget_live_confirmations()
    yield
    forget_live_confirmations()


@pytest.fixture
async def built() -> AsyncIterator[list[Any]]:
    venues: list[Any] = []
    yield venues
    for venue in venues:
        await venue.close()


def ccxt_settings(**ccxt: Any) -> Settings:
    return Settings(execution={"venue": "ccxt", "ccxt": {"exchange_id": "binance", **ccxt}})


def build(settings: Settings, built: list[Any], bus: Any = None) -> CcxtVenue:
    venue = build_venue(settings, bus or EmbeddedBus(), LiveClock())
    built.append(venue)
    assert isinstance(venue, CcxtVenue)
    return venue


async def test_sandbox_by_default_with_env_credentials_and_a_local_budget(built: list[Any]) -> None:
    venue = build(ccxt_settings(), built)
    assert venue.sandbox and venue.name == "binance"
    assert "testnet.binance.vision" in venue.exchange.urls["api"]["private"]
    assert venue.exchange.apiKey == API_KEY
    assert isinstance(venue.limiter, LocalRateLimiter)  # embedded bus: one process
    assert venue.limiter.budget.capacity == 20 and venue.limiter.budget.per_seconds == 1  # ccxt: 50 ms apart


async def test_redis_bus_shares_the_budget_per_api_key(built: list[Any], fake_redis: Any) -> None:
    bus = RedisBus("redis://127.0.0.1:6379/0", prefix="wqfactory:", client=fake_redis)
    venue = build(ccxt_settings(), built, bus)
    assert isinstance(venue.limiter, SharedRateLimiter)
    assert venue.limiter.key == f"wqfactory:ratelimit:binance:{key_id(API_KEY)}"
    assert API_KEY not in venue.limiter.key


def test_missing_credentials_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WQ_BINANCE_SECRET")
    with pytest.raises(MissingCredentialError, match="WQ_BINANCE_SECRET") as info:
        build_venue(ccxt_settings(), EmbeddedBus(), LiveClock())
    assert isinstance(info.value, ValueError)  # the CLI shows it as one line


def test_unknown_exchange_and_exchange_without_sandbox() -> None:
    with pytest.raises(ValueError, match="no exchange 'nope'"):
        build_venue(ccxt_settings(exchange_id="nope"), EmbeddedBus(), LiveClock())
    with pytest.raises(ValueError, match="no sandbox for kraken"):
        build_venue(ccxt_settings(exchange_id="kraken"), EmbeddedBus(), LiveClock())


@pytest.mark.parametrize(
    ("ccxt", "message"),
    [
        ({"sandbox": False, "live": True}, "needs the --live flag"),
        ({"sandbox": False, "live": False}, "trades real money"),
        ({"sandbox": True, "live": True}, "contradict"),
    ],
)
def test_real_money_is_refused_without_confirmation(ccxt: dict[str, bool], message: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIRM_ENV, "binance")  # the preset alone is not the --live flag
    with pytest.raises(LiveTradingRefused, match=message):
        build_venue(ccxt_settings(**ccxt), EmbeddedBus(), LiveClock())


async def test_confirmed_live_venue_trades_off_the_sandbox(built: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ccxt_settings(sandbox=False, live=True)
    require_live_confirmation(settings, True, lambda _: "binance", env={})
    venue = build(settings, built)
    assert not venue.sandbox
    assert "testnet" not in str(venue.exchange.urls["api"])

    redirected = ccxt_settings(sandbox=False, live=True, api_url="http://127.0.0.1:9")
    with pytest.raises(LiveTradingRefused, match="refused with real money"):  # a redirected API never gets live keys
        build_venue(redirected, EmbeddedBus(), LiveClock())


async def test_api_url_override_keeps_every_path(built: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    venue = build(ccxt_settings(api_url="http://127.0.0.1:8765"), built)
    api = venue.exchange.urls["api"]
    assert api["private"] == "http://127.0.0.1:8765/api/v3"
    assert api["fapiPublic"] == "http://127.0.0.1:8765/fapi/v1"
    assert all(u.startswith("http://127.0.0.1:8765/") for u in api.values() if isinstance(u, str))

    with pytest.raises(ValueError, match="api_url"):  # a host only: the exchange's paths are kept
        ccxt_settings(api_url="http://127.0.0.1:8765/api")
