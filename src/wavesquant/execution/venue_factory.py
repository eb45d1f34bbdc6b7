"""Building the configured venue for the execution agent."""

from __future__ import annotations

from typing import Any

from wavesquant.bus.base import Bus
from wavesquant.config import Settings
from wavesquant.core.clock import Clock
from wavesquant.execution.matching import FeeSchedule, MatchingEngine
from wavesquant.execution.venues.base import Venue
from wavesquant.execution.venues.paper import PaperVenue
from wavesquant.execution.venues.paper_store import InMemoryPaperStore, PaperStore, RedisPaperStore


def build_venue(settings: Settings, bus: Bus, clock: Clock) -> Venue:
    cfg = settings.execution
    if cfg.venue == "paper":
        p = cfg.paper
        store: PaperStore = InMemoryPaperStore()
        client: Any = getattr(bus, "client", None)
        if p.persist and client is not None:
            store = RedisPaperStore(client, key_prefix=f"{bus.prefix}paper:")
        engine = MatchingEngine(FeeSchedule(maker=p.maker_fee, taker=p.taker_fee), latency_ms=p.latency_ms)
        return PaperVenue(engine=engine, store=store, starting_balances=p.balances, clock=clock.now_ms)
    from wavesquant.execution.venues.ccxt_venue import CcxtVenue

    c = cfg.ccxt
    return CcxtVenue.from_settings(c, bus=bus)  # type: ignore[attr-defined]
