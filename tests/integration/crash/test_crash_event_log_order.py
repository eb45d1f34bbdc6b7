"""The event log must hold each order's transitions in the order they happened: a restart replays it
(`Order.from_history`) and refuses a history that does not replay, then recreates the order from scratch and
re-reports what the venue says (the crash tests saw repeated cancel and fill reports after that).

Here the execution agent runs in process against the real Redis with two realistic delays injected: the
venue answers a submit after 100 ms (a real exchange takes that long), and Redis is slow (300 ms) to accept
the bus's first stream-writer connection. The agent's hft loop flushes pending events every 10 ms while the
submit is in flight, so the write carrying `Submitted` starts first and waits for that connection; the write
carrying `Accepted`, made once the venue answered, must not overtake it. This is what happens to the first
order after every (re)start: the stream-writer connection is opened lazily, by whichever flush comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from support.crash_harness import new_order
from wavesquant.agents.execution import ExecutionAgent
from wavesquant.bus.rawconn import Connector, ProtocolFactory, RespConnection, tcp_connector
from wavesquant.bus.redis_bus import RedisBus
from wavesquant.bus.resp import parse_redis_url
from wavesquant.config import BusSettings, Settings
from wavesquant.core.clock import LiveClock
from wavesquant.execution.orders import Order, Transition, request_from_dict
from wavesquant.execution.venues.base import OrderRequest, VenueOrder
from wavesquant.messages import Channel, OrderTransition, decode, encode
from wavesquant.types import Side

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def _slow_submit(
    submit: Callable[[OrderRequest], Awaitable[VenueOrder]],
) -> Callable[[OrderRequest], Awaitable[VenueOrder]]:
    async def slow(request: OrderRequest) -> VenueOrder:
        await asyncio.sleep(0.1)
        return await submit(request)

    return slow


def _slow_first_stream_writer(url: str) -> Connector:
    """TCP to Redis, but the first stream-writer connection ("<name>-xadd") is accepted 300 ms late."""
    connect = tcp_connector(parse_redis_url(url), 5.0)
    delayed: list[str] = []

    async def connector(factory: ProtocolFactory) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        transport, protocol = await connect(factory)
        if isinstance(protocol, RespConnection) and protocol.name.endswith("-xadd") and not delayed:
            delayed.append(protocol.name)
            await asyncio.sleep(0.3)
        return transport, protocol

    return connector


async def _transitions(bus: RedisBus, coid: str) -> list[OrderTransition]:
    out = []
    for _, raw in await bus.read_range(Channel.EVENTS):
        msg = decode(raw)
        if isinstance(msg, OrderTransition) and msg.client_order_id == coid:
            out.append(msg)
    return out


async def test_event_log_keeps_order_transitions_in_order_when_flushes_overlap(
    redis_url: str, redis_prefix: str
) -> None:
    settings = Settings(bus=BusSettings(backend="redis", url=redis_url, prefix=redis_prefix))
    bus = RedisBus(
        redis_url,
        prefix=redis_prefix,
        client_name="crash-order-test",
        connector=_slow_first_stream_writer(redis_url),
    )
    await bus.start()
    agent = ExecutionAgent(settings, bus, LiveClock())
    agent.venue.submit = _slow_submit(agent.venue.submit)  # type: ignore[method-assign]
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            while agent.status != "running":
                await asyncio.sleep(0.01)
        order = new_order(
            "ordered-1", "BTC/USDT", Side.BUY, 0.01, limit_price=30_000.0
        )  # rests: no price needed
        await bus.append_raw(Channel.ORDERS, encode(order))
        deadline = time.monotonic() + 10
        while True:
            logged = await _transitions(bus, "ordered-1")
            events = [t["event"] for m in logged for t in m.transitions]
            if "Submitted" in events and "Accepted" in events or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        agent.shutdown()
        await asyncio.wait_for(task, 10)
        await bus.close()

    assert events[:2] == ["Submitted", "Accepted"], f"transitions in log order: {events}"
    request = next(m.request for m in logged if m.request is not None)
    assert request is not None
    rebuilt = Order.from_history(
        request_from_dict(request),
        logged[0].ts_ms,
        [Transition.from_dict(t) for m in logged for t in m.transitions],
    )
    assert rebuilt.status.value == "open"
