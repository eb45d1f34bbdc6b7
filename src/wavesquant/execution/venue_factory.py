"""Building the configured venue for the execution agent.

``execution.venue: paper`` gives the paper venue. ``execution.venue: ccxt`` gives a `CcxtVenue` for
``execution.ccxt.exchange_id``: credentials from ``WQ_<EXCHANGE>_API_KEY`` / ``_SECRET`` (or ``..._FILE``),
one request budget per (exchange, api key) shared by every process through Redis when the bus is Redis, and
the exchange's sandbox unless live trading was configured AND confirmed for this process (`execution.live`).

Every problem the operator can fix raises a ValueError subclass with a one-line message (the CLI prints it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavesquant.bus.base import Bus
from wavesquant.config import CcxtVenueSettings, Settings
from wavesquant.core.clock import Clock
from wavesquant.execution.live import CONFIRM_ENV, LiveTradingRefused, is_live_confirmed
from wavesquant.execution.market_rules import MarketRules, rules_from_ccxt_market
from wavesquant.execution.matching import FeeSchedule, MatchingEngine
from wavesquant.execution.venues.base import Venue
from wavesquant.execution.venues.paper import PaperVenue
from wavesquant.execution.venues.paper_store import InMemoryPaperStore, PaperStore, RedisPaperStore
from wavesquant.execution.venues.rate_limit import (
    LocalRateLimiter,
    RateBudget,
    RateLimiter,
    SharedRateLimiter,
)


def load_market_rules(path: Path) -> dict[str, MarketRules]:
    """Per-symbol paper-trading rules from a ccxt markets file (e.g. one saved from `exchange.markets`)."""
    try:
        markets = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"execution.paper.markets_file {path}: cannot read ccxt markets ({exc})") from None
    if not isinstance(markets, dict):
        raise ValueError(f"execution.paper.markets_file {path}: expected a JSON object of symbol -> market")
    return {symbol: rules_from_ccxt_market(market) for symbol, market in markets.items()}


def build_venue(settings: Settings, bus: Bus, clock: Clock) -> Venue:
    cfg = settings.execution
    if cfg.venue == "paper":
        p = cfg.paper
        store: PaperStore = InMemoryPaperStore(keep_fills=p.history)
        client: Any = getattr(bus, "client", None)
        if p.persist and client is not None:
            store = RedisPaperStore(client, key_prefix=f"{bus.prefix}paper:",
                                    transaction=getattr(bus, "transaction", None),
                                    begin_transaction=getattr(bus, "begin_transaction", None), keep_fills=p.history)
        engine = MatchingEngine(FeeSchedule(maker=p.maker_fee, taker=p.taker_fee),
                                rules=load_market_rules(p.markets_file) if p.markets_file else None,
                                latency_ms=p.latency_ms)
        return PaperVenue(engine=engine, store=store, starting_balances=p.balances, clock=clock.now_ms,
                          history=p.history)
    return build_ccxt_venue(settings, bus)


@dataclass(frozen=True, slots=True)
class ExchangeFacts:
    """What ccxt says about an exchange before we connect: its request spacing and required credentials."""

    rate_limit_ms: float
    needs_password: bool
    has_sandbox: bool


def exchange_facts(exchange_id: str) -> ExchangeFacts:
    import ccxt  # only a ccxt venue pays for importing it

    cls = getattr(ccxt, exchange_id, None)
    if cls is None or exchange_id not in ccxt.exchanges:
        raise ValueError(f"execution.ccxt.exchange_id: ccxt has no exchange {exchange_id!r}")
    exchange = cls()
    return ExchangeFacts(
        rate_limit_ms=float(exchange.rateLimit or 1000.0),
        needs_password=bool(exchange.requiredCredentials.get("password")),
        has_sandbox=bool(exchange.urls.get("test")),
    )


def check_live_settings(c: CcxtVenueSettings) -> bool:
    """True for a confirmed real-money venue, False for the sandbox; LiveTradingRefused otherwise."""
    if c.sandbox and not c.live:
        return False
    if c.sandbox and c.live:
        raise LiveTradingRefused("execution.ccxt: live: true needs sandbox: false "
                                 "(they contradict each other)")
    if not c.live:
        raise LiveTradingRefused("execution.ccxt.sandbox is false, which trades real money: also set "
                                 "live: true and start with --live, or set sandbox: true")
    if not is_live_confirmed(c.exchange_id):
        raise LiveTradingRefused(
            f"execution.ccxt.live is true: real money on {c.exchange_id} needs the --live flag and the "
            f"operator's confirmation (type the exchange id, or set {CONFIRM_ENV}={c.exchange_id})"
        )
    return True


def rate_budget(c: CcxtVenueSettings, facts: ExchangeFacts) -> RateBudget:
    """`execution.ccxt.rate_limit_per_s` requests per second (bursts up to one second's worth); default:
    the spacing ccxt documents for the exchange (binance: 50 ms -> 20 per second)."""
    per_s = c.rate_limit_per_s or 1000.0 / facts.rate_limit_ms
    return RateBudget(capacity=max(float(per_s), 1.0), per_seconds=1.0)


def rate_limiter(bus: Bus, exchange_id: str, key_id: str, budget: RateBudget) -> RateLimiter:
    """Shared through Redis when the bus is Redis (every process and host draws on one budget per api key),
    else in this process."""
    from wavesquant.bus.redis_bus import RedisBus

    if isinstance(bus, RedisBus):
        return SharedRateLimiter(bus.client, exchange_id, key_id, budget, prefix=bus.prefix)
    return LocalRateLimiter(budget)


def api_url_override(c: CcxtVenueSettings) -> str | None:
    return c.api_url.strip() if c.api_url else None


def build_ccxt_venue(settings: Settings, bus: Bus) -> Venue:
    from wavesquant.execution.venues.ccxt_venue import CcxtVenue
    from wavesquant.execution.venues.credentials import ExchangeCredentials

    c = settings.execution.ccxt
    facts = exchange_facts(c.exchange_id)
    live = check_live_settings(c)
    if not live and not facts.has_sandbox:
        raise ValueError(f"execution.ccxt: ccxt has no sandbox for {c.exchange_id}; paper-trade it instead "
                         f"(execution.venue: paper)")
    api_url = api_url_override(c)
    if live and api_url is not None:
        raise LiveTradingRefused("execution.ccxt.api_url redirects the exchange API: refused with real money")
    credentials = ExchangeCredentials.from_env(c.exchange_id, require_password=facts.needs_password)
    limiter = rate_limiter(bus, c.exchange_id, credentials.key_id, rate_budget(c, facts))
    return CcxtVenue(
        c.exchange_id,
        limiter=limiter,
        credentials=credentials,
        sandbox=not live,
        live=live,
        confirm_live=live,
        market_type=c.market_type,
        symbols=tuple(c.symbols),
        websocket=c.websocket and api_url is None,
        timeout_ms=c.timeout_ms,
        api_url=api_url,
    )
