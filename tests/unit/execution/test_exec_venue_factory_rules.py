"""The paper venue takes tick, lot and minimum rules from a ccxt markets file (real Binance definitions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.execution.venue_factory import build_venue, load_market_rules
from wavesquant.execution.venues.base import OrderRejected, OrderRequest
from wavesquant.execution.venues.paper import PaperVenue
from wavesquant.types import OrderType, Side


def test_rules_come_from_the_markets_file(shared_data: Path) -> None:
    rules = load_market_rules(shared_data / "ccxt_static" / "markets" / "binance.json")
    btc = rules["BTC/USDT"]
    assert btc.tick_size == pytest.approx(0.01) and btc.lot_size == pytest.approx(1e-05)


async def test_paper_venue_rejects_what_the_exchange_would(shared_data: Path) -> None:
    settings = Settings(execution={"paper": {"markets_file": str(shared_data / "ccxt_static/markets/binance.json")}})
    venue = build_venue(settings, EmbeddedBus(), LiveClock())
    assert isinstance(venue, PaperVenue)
    await venue.connect()
    await venue.on_quote("BTC/USDT", 1_000, 60_000.0, 60_000.01, 1.0, 1.0)
    with pytest.raises(OrderRejected) as off_tick:
        await venue.submit(OrderRequest("t1", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.001, limit_price=59_000.005))
    assert off_tick.value.code == "tick_size"
    with pytest.raises(OrderRejected) as off_lot:
        await venue.submit(OrderRequest("t2", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.0000123, limit_price=59_000.0))
    assert off_lot.value.code in ("lot_size", "min_qty", "min_notional")
    placed = await venue.submit(OrderRequest("t3", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.001, limit_price=59_000.0))
    assert placed.status.value == "open"


def test_unreadable_markets_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "markets.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_market_rules(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_market_rules(tmp_path / "missing.json")
