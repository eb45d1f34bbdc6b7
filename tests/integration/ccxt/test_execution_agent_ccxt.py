"""The execution agent end to end on a ccxt venue: `wq agent run execution` as its own process over the real
Redis, trading Binance (sandbox configuration) through the real ccxt code against the loopback exchange,
which answers in Binance's recorded wire formats and keeps a stateful order book.

The test plays risk: it XADDs NewOrder / CancelOrder entries onto `<prefix>orders` and reads what execution
wrote to `<prefix>execution_reports` and the event log `<prefix>events`; the loopback tells what the
exchange saw. The loopback server runs in the test's event loop, so every wait here is an asyncio poll.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from redis.asyncio import Redis

from support.loopback_exchange import BinanceSpotBook, ExchangeFixtures, LoopbackExchange
from wavesquant.agents.execution import LOST_AFTER_NOT_FOUND
from wavesquant.messages import (
    CancelOrder,
    Channel,
    Envelope,
    ExecutionReport,
    Heartbeat,
    NewOrder,
    OrderTransition,
    decode,
    encode,
)
from wavesquant.messages.orders import OrderSpec
from wavesquant.types import OrderStatus, OrderType, Side

pytestmark = [pytest.mark.redis, pytest.mark.shared_data, pytest.mark.timeout(150)]

T = TypeVar("T")
WQ = Path(sys.executable).with_name("wq")
RECORDED_OPEN_ORDER = "x-R4BD3S82102a551f8c1642bba06728"  # the recorded open LTC/USDT order, in the book from the start
ORDER_PATH = "/api/v3/order"
WAIT_S = 30.0


def new_order(cid: str, side: Side = Side.BUY, qty: float = 0.2, price: float = 50.0) -> NewOrder:
    spec = OrderSpec(client_order_id=cid, signal_id=f"sig-{cid}", strategy_id="e2e", family="test",
                     exchange="binance", symbol="LTC/USDT", side=side, quantity=qty, order_type=OrderType.LIMIT,
                     limit_price=price)
    return NewOrder.create(source="risk", ts_ns=time.time_ns(), order=spec)


def cancel_order(cid: str) -> CancelOrder:
    return CancelOrder.create(source="risk", ts_ns=time.time_ns(), client_order_id=cid, symbol="LTC/USDT",
                              reason="e2e cancel")


@dataclass
class ExecutionProcess:
    """One `wq agent run execution` at a time, plus what it wrote to Redis and what the exchange saw."""

    server: LoopbackExchange
    book: BinanceSpotBook
    redis: Redis
    prefix: str
    config: Path
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    # -- the process -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        assert self.proc is None, "already running"
        log = self.workdir / f"execution-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
                [str(WQ), "agent", "run", "execution", "--config", str(self.config)], cwd=self.workdir,
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        pid = self.proc.pid
        await self.wait_for(lambda: self._running_heartbeat(pid), "the execution agent to report running")

    async def _running_heartbeat(self, pid: int) -> Heartbeat | None:
        raw = await self.redis.get(f"{self.prefix}status:execution")
        hb = decode(raw) if raw else None
        return hb if isinstance(hb, Heartbeat) and hb.pid == pid and hb.status == "running" else None

    async def stop(self) -> None:
        """SIGTERM (a graceful stop, as docker stop does), SIGKILL if it does not exit within 20 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # keep serving the loopback while the agent shuts down
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.logs:
            return "(no log)"
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])

    async def wait_for(self, condition: Callable[[], Awaitable[T] | T], what: str, timeout: float = WAIT_S) -> T:
        """Poll `condition` (plain or async) until it gives something truthy; fail naming `what`, with the
        agent's log."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"execution exited ({self.proc.returncode}) while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    # -- Redis ---------------------------------------------------------------------------------------------------
    async def send(self, *msgs: Envelope) -> None:
        for msg in msgs:
            await self.redis.xadd(f"{self.prefix}{Channel.ORDERS}", {"d": encode(msg)})

    async def _read(self, stream: Channel) -> list[Envelope]:
        return [decode(fields[b"d"]) for _, fields in await self.redis.xrange(f"{self.prefix}{stream}")]

    async def reports(self, cid: str, kind: str | None = None) -> list[ExecutionReport]:
        return [m for m in await self._read(Channel.EXECUTION_REPORTS)
                if isinstance(m, ExecutionReport) and m.client_order_id == cid and kind in (None, m.kind)]

    async def transitions(self, cid: str) -> list[OrderTransition]:
        return [m for m in await self._read(Channel.EVENTS)
                if isinstance(m, OrderTransition) and m.client_order_id == cid]

    async def report(self, cid: str, kind: str) -> ExecutionReport:
        async def one() -> ExecutionReport | None:
            found = await self.reports(cid, kind)
            return found[0] if found else None

        return await self.wait_for(one, f"a {kind!r} report for {cid}")

    async def heartbeat_counter(self, name: str) -> int:
        raw = await self.redis.get(f"{self.prefix}status:execution")
        hb = decode(raw) if raw else None
        return int(hb.counters.get(name, 0)) if isinstance(hb, Heartbeat) else 0

    # -- the exchange's side -----------------------------------------------------------------------------------
    def creates(self, cid: str) -> int:
        return sum(1 for r in self.server.requests
                   if (r.method, r.path) == ("POST", ORDER_PATH) and r.params.get("newClientOrderId") == cid)

    def open_orders_polls(self) -> int:
        return self.server.count("GET", "/api/v3/openOrders")


def _environment(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WQ_")}  # nothing from the developer's shell
    env.update({
        "WQ_BINANCE_API_KEY": "loopback-e2e-api-key",
        "WQ_BINANCE_SECRET": "loopback-e2e-secret",
        "WQ_CONSUMER_ID": "execution-e2e",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _config(path: Path, redis_url: str, prefix: str, api_url: str) -> Path:
    ccxt: dict[str, Any] = {"exchange_id": "binance", "sandbox": True, "api_url": api_url}
    config = {
        "bus": {"backend": "redis", "url": redis_url, "prefix": prefix},
        "logging": {"level": "info"},
        "heartbeat": {"interval_s": 0.25, "ttl_s": 30},
        "execution": {"venue": "ccxt", "ccxt": ccxt, "loops": {"strategic_execution": 1.0}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def execution(shared_data: Path, redis_url: str, redis_prefix: str,
                    tmp_path: Path) -> AsyncIterator[ExecutionProcess]:
    fixtures = ExchangeFixtures(shared_data / "ccxt_static", "binance")
    book = BinanceSpotBook(fixtures)
    server = LoopbackExchange(fixtures, book)
    api_url = await server.start()
    redis = Redis.from_url(redis_url)
    harness = ExecutionProcess(server, book, redis, redis_prefix,
                               _config(tmp_path / "execution.yaml", redis_url, redis_prefix, api_url),
                               _environment(api_url), tmp_path)
    try:
        yield harness
    finally:
        await harness.stop()
        await redis.aclose()
        await server.stop()
    assert not server.unmatched, f"requests without a recorded answer: {server.unmatched}"


async def test_orders_are_acked_canceled_and_adopted_at_restart(execution: ExecutionProcess) -> None:
    ex, book = execution, execution.book
    await ex.start()
    # start-up reconciliation adopted the open order the exchange already had (the recorded one)
    (adopted_first, *_) = await ex.transitions(RECORDED_OPEN_ORDER)
    assert adopted_first.request is not None and adopted_first.request["client_order_id"] == RECORDED_OPEN_ORDER

    await ex.send(new_order("wq-e2e-a"), new_order("wq-e2e-b", Side.SELL, qty=0.1, price=120.0))
    for cid, side, qty, price in (("wq-e2e-a", "BUY", 0.2, 50.0), ("wq-e2e-b", "SELL", 0.1, 120.0)):
        ack = await ex.report(cid, "ack")
        placed = book.orders[cid]
        assert (ack.status, ack.venue, ack.symbol, ack.quantity) == (OrderStatus.OPEN, "binance", "LTC/USDT", qty)
        assert ack.venue_order_id == placed["orderId"] and ack.strategy_id == "e2e" and ack.signal_id == f"sig-{cid}"
        assert (placed["side"], float(placed["origQty"]), float(placed["price"])) == (side, qty, price)
        assert ex.creates(cid) == 1  # exactly one create per client order id

    await ex.send(cancel_order("wq-e2e-a"))
    canceled = await ex.report("wq-e2e-a", "cancel")
    assert canceled.status is OrderStatus.CANCELED and canceled.reason == "e2e cancel"
    assert book.orders["wq-e2e-a"]["status"] == "CANCELED"
    deletes = [r for r in ex.server.requests if (r.method, r.path) == ("DELETE", ORDER_PATH)]
    assert [r.params.get("origClientOrderId") for r in deletes] == ["wq-e2e-a"]

    # execution is down; meanwhile an order appears on the exchange that no local state knows (e.g. placed by
    # a predecessor that crashed before logging it)
    await ex.stop()
    created_before = book.created
    book.place("wq-e2e-foreign", side="BUY", quantity=0.3, price=45.0)
    await ex.start()

    adoption = await ex.transitions("wq-e2e-foreign")
    assert adoption and adoption[0].request is not None
    assert (adoption[0].request["side"], adoption[0].request["quantity"], adoption[0].request["limit_price"]) == \
        ("buy", 0.3, 45.0)
    assert any(t["event"] == "Accepted" and t["to_status"] == "open" for e in adoption for t in e.transitions)
    foreign_ack = await ex.report("wq-e2e-foreign", "ack")
    assert foreign_ack.venue_order_id == book.orders["wq-e2e-foreign"]["orderId"]

    # the restart resent nothing and re-adopted nothing it already knew from the event log
    assert book.created == created_before
    assert ex.creates("wq-e2e-a") == ex.creates("wq-e2e-b") == 1
    for cid in ("wq-e2e-a", "wq-e2e-b", RECORDED_OPEN_ORDER):
        assert sum(1 for t in await ex.transitions(cid) if t.request is not None) == 1, cid
    assert len(await ex.reports("wq-e2e-b", "ack")) == 1


async def test_order_the_venue_forgets_is_lost_only_after_repeated_not_found(execution: ExecutionProcess) -> None:
    ex, book = execution, execution.book
    await ex.start()
    await ex.send(new_order("wq-e2e-gone"))
    await ex.report("wq-e2e-gone", "ack")
    asked_before = book.not_found["wq-e2e-gone"]  # the submit asked once before it created the order
    book.forget("wq-e2e-gone")

    lost = await ex.report("wq-e2e-gone", "reject")
    assert lost.status is OrderStatus.FAILED and "venue does not know" in lost.reason
    # no query is left in flight: the order is final, so the next reconciliation passes leave it alone
    polls = ex.open_orders_polls()
    await ex.wait_for(lambda: ex.open_orders_polls() >= polls + 2, "two more reconciliation passes")
    # lost after exactly that many "does not exist" answers, not before
    assert book.not_found["wq-e2e-gone"] - asked_before == LOST_AFTER_NOT_FOUND
    events = [t["event"] for e in await ex.transitions("wq-e2e-gone") for t in e.transitions]
    assert events == ["Submitted", "Accepted", "Lost"]
    assert ex.creates("wq-e2e-gone") == 1  # a lost order is given up, never re-sent


async def test_disconnect_during_create_is_adopted_without_a_second_create(execution: ExecutionProcess) -> None:
    ex, book = execution, execution.book
    await ex.start()
    # the exchange places the order, then the connection drops before ccxt reads the answer
    ex.server.inject_fault(1, "drop_after", method="POST", path=ORDER_PATH)
    await ex.send(new_order("wq-e2e-drop"))

    ack = await ex.report("wq-e2e-drop", "ack")
    assert ack.status is OrderStatus.OPEN and ack.venue_order_id == book.orders["wq-e2e-drop"]["orderId"]
    assert ex.creates("wq-e2e-drop") == 1 and book.created == 1
    # Submitted once, the outcome unknown (order kept in creating), then Accepted from what the venue said
    events = [(t["event"], t["to_status"]) for e in await ex.transitions("wq-e2e-drop") for t in e.transitions]
    assert events == [("Submitted", "creating"), ("Accepted", "open")]
    await ex.wait_for(lambda: ex.heartbeat_counter("submit_unknown_outcome"),
                      "the heartbeat to count the unknown submit outcome")
    assert await ex.heartbeat_counter("submit_unknown_outcome") == 1


async def test_fill_at_the_exchange_is_reported_once(execution: ExecutionProcess) -> None:
    """A resting order filled at the exchange: the agent follows the venue's order updates (websocket where
    offered, polling here) and reports the fill once, with the exchange's price."""
    ex, book = execution, execution.book
    await ex.start()
    await ex.send(new_order("wq-e2e-fill", qty=0.2, price=50.0))
    await ex.report("wq-e2e-fill", "ack")
    book.fill("wq-e2e-fill")
    fill = await ex.report("wq-e2e-fill", "fill")
    assert fill.status is OrderStatus.FILLED and fill.filled_quantity == pytest.approx(0.2)
    assert fill.last_price == pytest.approx(50.0) and fill.strategy_id == "e2e"
    await asyncio.sleep(1.5)  # a reconciliation pass runs meanwhile (strategic loop: 1 s): nothing is booked twice
    fills = await ex.reports("wq-e2e-fill", "fill")
    assert sum(f.last_quantity or 0.0 for f in fills) == pytest.approx(0.2)
