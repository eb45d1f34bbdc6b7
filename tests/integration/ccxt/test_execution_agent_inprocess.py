"""The execution agent's order handling, step by step, in this process: the real agent (built by build_venue
from settings, venue ccxt/binance sandbox, pointed at the loopback by URL) on the embedded bus with a
simulated clock. Its loops are not started; the test calls the loop bodies itself, so "after the third
not-found answer" or "after the cancel timeout" are exact steps, not waits.

The process-level end-to-end test is test_execution_agent_ccxt.py; this file pins down the sequences."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.loopback_exchange import BinanceSpotBook, ExchangeFixtures, LoopbackExchange
from wavesquant.agents.execution import LOST_AFTER_NOT_FOUND, ExecutionAgent
from wavesquant.bus.base import Delivery
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import SimulatedClock
from wavesquant.messages import CancelOrder, Channel, Envelope, ExecutionReport, NewOrder, decode
from wavesquant.messages.orders import OrderSpec
from wavesquant.types import OrderStatus, OrderType, Side

pytestmark = [pytest.mark.shared_data, pytest.mark.timeout(60)]

ORDER_PATH = "/api/v3/order"
CANCEL_TIMEOUT_S = 2.0


@dataclass
class Desk:
    agent: ExecutionAgent
    bus: EmbeddedBus
    clock: SimulatedClock
    server: LoopbackExchange
    book: BinanceSpotBook
    _entry: int = 0

    async def deliver(self, msg: Envelope) -> None:
        """The orders stream hands `msg` to execution (first delivery)."""
        self._entry += 1
        await self.agent.on_orders([Delivery(str(Channel.ORDERS), f"{self._entry}-0", msg, 1)])

    async def reports(self, cid: str) -> list[ExecutionReport]:
        msgs = [decode(raw) for _, raw in await self.bus.read_range(Channel.EXECUTION_REPORTS)]
        return [m for m in msgs if isinstance(m, ExecutionReport) and m.client_order_id == cid]

    def status(self, cid: str) -> OrderStatus:
        order = self.agent.tracker.get(cid)
        assert order is not None, cid
        return order.status

    def creates(self, cid: str) -> int:
        return sum(1 for r in self.server.requests
                   if (r.method, r.path) == ("POST", ORDER_PATH) and r.params.get("newClientOrderId") == cid)


def new_order(cid: str) -> NewOrder:
    spec = OrderSpec(client_order_id=cid, signal_id=f"sig-{cid}", strategy_id="desk", family="test",
                     exchange="binance", symbol="LTC/USDT", side=Side.BUY, quantity=0.2,
                     order_type=OrderType.LIMIT, limit_price=50.0)
    return NewOrder.create(source="risk", ts_ns=time.time_ns(), order=spec)


def cancel_order(cid: str) -> CancelOrder:
    return CancelOrder.create(source="risk", ts_ns=time.time_ns(), client_order_id=cid, symbol="LTC/USDT")


@pytest.fixture
async def desk(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Desk]:
    fixtures = ExchangeFixtures(shared_data / "ccxt_static", "binance")
    book = BinanceSpotBook(fixtures)
    server = LoopbackExchange(fixtures, book)
    api_url = await server.start()
    ccxt: dict[str, object] = {"exchange_id": "binance", "sandbox": True, "api_url": api_url}
    monkeypatch.setenv("WQ_BINANCE_API_KEY", "desk-api-key")
    monkeypatch.setenv("WQ_BINANCE_SECRET", "desk-secret")
    settings = Settings(bus={"backend": "embedded"},
                        execution={"venue": "ccxt", "ccxt": ccxt, "cancel_timeout_s": CANCEL_TIMEOUT_S})
    clock = SimulatedClock(time.time_ns())
    bus = EmbeddedBus(clock=clock)
    await bus.start()
    agent = ExecutionAgent(settings, bus, clock, consumer_id="desk")
    try:
        await agent.initialize()  # connect, rebuild (nothing), reconcile: adopts the recorded open order
        yield Desk(agent, bus, clock, server, book)
    finally:
        await agent.cleanup()
        await bus.close()
        await server.stop()
    assert not server.unmatched, f"requests without a recorded answer: {server.unmatched}"


async def test_forgotten_order_is_lost_at_exactly_the_third_not_found(desk: Desk) -> None:
    await desk.deliver(new_order("wq-desk-gone"))
    assert desk.status("wq-desk-gone") is OrderStatus.OPEN
    desk.book.forget("wq-desk-gone")

    for answer in range(1, LOST_AFTER_NOT_FOUND):
        await desk.agent.reconcile()
        assert desk.status("wq-desk-gone") is OrderStatus.OPEN, f"given up after {answer} not-found answers"
        assert not [r for r in await desk.reports("wq-desk-gone") if r.kind == "reject"]
    await desk.agent.reconcile()
    assert desk.status("wq-desk-gone") is OrderStatus.FAILED
    (lost,) = [r for r in await desk.reports("wq-desk-gone") if r.kind == "reject"]
    assert lost.status is OrderStatus.FAILED and "venue does not know" in lost.reason


async def test_not_found_count_restarts_when_the_venue_sees_the_order_again(desk: Desk) -> None:
    await desk.deliver(new_order("wq-desk-lag"))
    misses = LOST_AFTER_NOT_FOUND - 1
    desk.book.hide("wq-desk-lag", misses)  # the exchange's index lags: "does not exist", then found again
    for _ in range(misses + 1):
        await desk.agent.reconcile()
    desk.book.hide("wq-desk-lag", misses)
    for _ in range(misses):
        await desk.agent.reconcile()
    # reconciliation sees it in the open-orders list, so a lagging by-id index never counts against it
    assert desk.agent.not_found.get("wq-desk-lag", 0) == 0
    assert desk.status("wq-desk-lag") is OrderStatus.OPEN  # never LOST_AFTER_NOT_FOUND in a row
    assert not [r for r in await desk.reports("wq-desk-lag") if r.kind == "reject"]


async def test_cancel_lost_in_the_network_is_sent_again_after_the_cancel_timeout(desk: Desk) -> None:
    await desk.deliver(new_order("wq-desk-cxl"))
    # both tries fail before the exchange sees them (aiohttp repeats a dropped DELETE once by itself)
    desk.server.inject_fault(1, "drop_before", method="DELETE", path=ORDER_PATH)
    desk.server.inject_fault(2, "drop_before", method="DELETE", path=ORDER_PATH)
    await desk.deliver(cancel_order("wq-desk-cxl"))
    assert desk.status("wq-desk-cxl") is OrderStatus.PENDING_CANCEL
    assert desk.book.orders["wq-desk-cxl"]["status"] == "NEW"

    await desk.clock.advance(CANCEL_TIMEOUT_S + 0.5)
    for _ in range(3):
        await desk.agent.recover_stuck_orders()
    assert desk.book.orders["wq-desk-cxl"]["status"] == "CANCELED"
    assert desk.status("wq-desk-cxl") is OrderStatus.CANCELED


async def test_cancel_during_an_unknown_submit_outcome_is_not_forgotten(desk: Desk) -> None:
    desk.server.inject_fault(1, "drop_after", method="POST", path=ORDER_PATH)  # placed, answer lost
    await desk.deliver(new_order("wq-desk-unk"))
    assert desk.status("wq-desk-unk") is OrderStatus.CREATING and "wq-desk-unk" in desk.agent.retry
    await desk.deliver(cancel_order("wq-desk-unk"))

    for _ in range(3):
        await desk.agent.retry_unknown_submits()
        await desk.agent.recover_stuck_orders()
    assert desk.creates("wq-desk-unk") == 1
    assert desk.book.orders["wq-desk-unk"]["status"] == "CANCELED"
    assert desk.status("wq-desk-unk") is OrderStatus.CANCELED
