"""Restarted risk and strategy_engine agents rebuild positions (and risk its open orders) from the event log."""

from __future__ import annotations

import asyncio
import time

from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.execution.orders import Accepted, Order, request_to_dict
from wavesquant.execution.venues.base import OrderRequest
from wavesquant.messages import ExecutionReport, OrderTransition
from wavesquant.runtime import Runtime
from wavesquant.types import OrderStatus, OrderType, Side


def fill_report(coid: str, fill_id: str, side: str, qty: float, price: float, strategy: str) -> ExecutionReport:
    return ExecutionReport.create(
        source="execution", ts_ns=time.time_ns(), kind="fill", client_order_id=coid, venue="paper", symbol="BTC/USDT",
        side=side, status=OrderStatus.FILLED, quantity=qty, filled_quantity=qty, average_price=price,
        fill_id=fill_id, last_quantity=qty, last_price=price, fee=0.0, fee_currency="USDT", strategy_id=strategy,
    )


async def test_risk_and_strategy_engine_rebuild_from_the_event_log() -> None:
    settings = Settings(strategy_engine={"strategies": [
        {"id": "trend_btc", "kind": "ma_crossover", "params": {"symbols": ["BTC/USDT"], "fast": 3, "slow": 8,
                                                             "quantity": 0.5}}]})
    bus = EmbeddedBus(clock=LiveClock())
    await bus.start()
    fill = fill_report("wq-a", "f-1", "buy", 0.5, 60_000.0, "trend_btc")
    # a resting limit order that is still open
    request = OrderRequest("wq-open", "BTC/USDT", Side.SELL, OrderType.LIMIT, 0.2, limit_price=70_000.0,
                           strategy_id="trend_btc")
    order = Order(request=request, created_ts_ms=1)
    accepted = order.apply(Accepted("v-1"), 2)
    assert accepted is not None
    created = OrderTransition.create(source="execution", ts_ns=time.time_ns(), client_order_id="wq-open",
                                     request=request_to_dict(request), strategy_id="trend_btc")
    opened = OrderTransition.create(source="execution", ts_ns=time.time_ns(), client_order_id="wq-open",
                                    transitions=[accepted.to_dict()], strategy_id="trend_btc")
    await bus.publish_many([fill, fill, created, opened])  # the same fill twice: booked once

    rt = Runtime(settings, ["risk", "strategy_engine"], bus=bus)  # the restarted agents
    run = asyncio.create_task(rt.run(0.3))
    await asyncio.sleep(0.1)
    risk, engine = rt.agent("risk"), rt.agent("strategy_engine")
    net = {p.symbol: p.quantity for p in risk.portfolio.net_positions()}  # type: ignore[attr-defined]
    assert net == {"BTC/USDT": 0.5}
    assert list(risk.open_orders) == ["wq-open"]  # type: ignore[attr-defined]
    assert risk.open_orders["wq-open"].remaining == 0.2  # type: ignore[attr-defined]
    position = engine.portfolio.position("BTC/USDT", "trend_btc")  # type: ignore[attr-defined]
    assert position is not None and position.quantity == 0.5
    assert await run == 0
