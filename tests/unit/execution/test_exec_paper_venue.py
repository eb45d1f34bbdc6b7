from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from wavesquant.execution.matching import FeeSchedule, MatchingEngine
from wavesquant.execution.orders import fill_to_dict
from wavesquant.execution.venues.base import (
    Fill,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    VenueUnavailable,
)
from wavesquant.execution.venues.paper import PaperVenue
from wavesquant.execution.venues.paper_store import (
    InMemoryPaperStore,
    PaperCommit,
    PaperStore,
    RedisPaperStore,
)
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce

SYM = "BTC/USDT"
FEES = FeeSchedule(maker=0.001, taker=0.002)


def buy_limit(cid: str, qty: float, price: float, **kw: Any) -> OrderRequest:
    return OrderRequest(cid, SYM, Side.BUY, OrderType.LIMIT, qty, limit_price=price, **kw)


async def new_venue(store: PaperStore, latency_ms: int = 0) -> PaperVenue:
    venue = PaperVenue(MatchingEngine(FEES, latency_ms=latency_ms), store, {"USDT": 10_000.0})
    await venue.connect()
    return venue


async def test_submit_fill_balances_positions() -> None:
    venue = await new_venue(InMemoryPaperStore())
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    order = await venue.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 2.0))
    assert order.status is OrderStatus.FILLED and order.average_price == 101.0
    balances = await venue.fetch_balances()
    assert balances["BTC"] == 2.0
    assert balances["USDT"] == pytest.approx(10_000.0 - 202.0 - 0.002 * 202.0)
    assert await venue.fetch_positions() == {SYM: 2.0}
    fills = await venue.fetch_fills()
    assert [f.fill_id for f in fills] == ["paper-m1-1"] and fills[0].ts_ms == 1_000
    assert await venue.fetch_fills(since_ms=1_001) == [] and await venue.fetch_fills("ETH/USDT") == []
    assert venue.last_price(SYM) == 100.0


async def test_idempotent_submit_cancel_fetch() -> None:
    venue = await new_venue(InMemoryPaperStore())
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    first = await venue.submit(buy_limit("l1", 1.0, 95.0))
    assert first.status is OrderStatus.OPEN
    assert await venue.submit(buy_limit("l1", 1.0, 95.0)) == first
    assert [o.client_order_id for o in await venue.fetch_open_orders(SYM)] == ["l1"]
    assert await venue.fetch_order("l1", SYM) == first
    assert await venue.fetch_order("l1", "ETH/USDT") is None
    assert await venue.fetch_order("zz", SYM) is None
    with pytest.raises(OrderNotFound):
        await venue.cancel("zz", SYM)
    with pytest.raises(OrderNotFound):
        await venue.cancel("l1", "ETH/USDT")
    canceled = await venue.cancel("l1", SYM)
    assert canceled.status is OrderStatus.CANCELED and await venue.fetch_open_orders() == []


async def test_rejections_and_reduce_only() -> None:
    venue = await new_venue(InMemoryPaperStore())
    # no price yet (e.g. just after a restart): "try again", not a rejection, and nothing is recorded
    with pytest.raises(VenueUnavailable, match="no price"):
        await venue.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0))
    assert await venue.fetch_order("m1", SYM) is None
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    with pytest.raises(OrderRejected) as exc:
        await venue.submit(OrderRequest("r1", SYM, Side.SELL, OrderType.MARKET, 1.0, reduce_only=True))
    assert exc.value.code == "reduce_only"
    await venue.submit(OrderRequest("m2", SYM, Side.BUY, OrderType.MARKET, 1.0))
    with pytest.raises(OrderRejected):
        await venue.submit(OrderRequest("r2", SYM, Side.SELL, OrderType.MARKET, 1.5, reduce_only=True))
    reduced = await venue.submit(OrderRequest("r3", SYM, Side.SELL, OrderType.MARKET, 1.0, reduce_only=True))
    assert reduced.status is OrderStatus.FILLED and await venue.fetch_positions() == {}


async def test_not_connected_is_unavailable() -> None:
    venue = PaperVenue(store=InMemoryPaperStore())
    with pytest.raises(VenueUnavailable):
        await venue.fetch_balances()


async def test_rejected_submit_still_persists_fills_of_orders_going_live() -> None:
    store = InMemoryPaperStore()
    venue = await new_venue(store, latency_ms=10)
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    await venue.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0, ts_ms=1_000))
    with pytest.raises(OrderRejected):  # time moves to 1_020: m1 goes live and fills, then this is refused
        await venue.submit(OrderRequest("bad", SYM, Side.BUY, OrderType.LIMIT, 1.0, ts_ms=1_020))
    assert [f.ts_ms for f in await venue.fetch_fills()] == [1_010]
    restarted = await new_venue(store)
    assert [f.fill_id for f in await restarted.fetch_fills()] == ["paper-m1-1"]


async def _restart_scenario(make_store: Any) -> int:
    """Orders, fills and balances survive a venue restart on the same store; nothing fills twice."""
    venue = await new_venue(make_store())
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    await venue.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0))
    await venue.submit(buy_limit("l1", 2.0, 98.0))
    await venue.submit(buy_limit("l2", 1.0, 97.0, time_in_force=TimeInForce.POST_ONLY))
    await venue.cancel("l2", SYM)
    partial = await venue.on_trade(SYM, 2_000, 97.5, 0.5)  # through l1's price: 0.5 filled
    assert [(f.client_order_id, f.quantity, f.liquidity) for f in partial] == [("l1", 0.5, Liquidity.MAKER)]
    balances = await venue.fetch_balances()
    fills = await venue.fetch_fills()
    await venue.close()

    restarted = await new_venue(make_store())
    assert await restarted.fetch_balances() == pytest.approx(balances)
    assert await restarted.fetch_fills() == fills
    assert await restarted.fetch_positions() == {SYM: 1.5}
    assert (await restarted.fetch_order("m1", SYM)).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert (await restarted.fetch_order("l2", SYM)).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    l1 = await restarted.fetch_order("l1", SYM)
    assert l1 is not None and l1.status is OrderStatus.PARTIALLY_FILLED and l1.filled_quantity == 0.5
    # a retried submit is not placed again, market data only fills what is left
    assert (await restarted.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0))).fills == tuple(
        f for f in fills if f.client_order_id == "m1"
    )
    new = await restarted.on_trade(SYM, 3_000, 90.0, 100.0)
    assert [(f.fill_id, f.quantity) for f in new] == [("paper-l1-2", 1.5)]
    assert await restarted.on_trade(SYM, 3_001, 90.0, 100.0) == []
    await restarted.close()
    return len(new)  # fills the restarted venue made: only what was left of l1

    third = await new_venue(make_store())
    assert len(await third.fetch_fills()) == len(fills) + 1
    assert await third.fetch_positions() == {SYM: 3.0}
    assert await third.fetch_open_orders() == []


async def test_restart_on_in_memory_store() -> None:
    store = InMemoryPaperStore()
    assert await _restart_scenario(lambda: store) == 1  # one fill after the restart: the rest of l1


async def test_restart_on_fake_redis(fake_redis: Any) -> None:
    assert await _restart_scenario(lambda: RedisPaperStore(fake_redis, "t:paper:")) == 1


@pytest.fixture
async def real_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_restart_on_real_redis(real_redis: aioredis.Redis, redis_prefix: str) -> None:
    await _restart_scenario(lambda: RedisPaperStore(real_redis, f"{redis_prefix}paper:"))
    assert await real_redis.hlen(f"{redis_prefix}paper:orders") == 3


@pytest.mark.redis
async def test_restart_on_real_redis_through_the_bus_transaction(real_redis: aioredis.Redis, redis_url: str,
                                                                 redis_prefix: str) -> None:
    """The deployment path: the store writes with the bus's raw MULTI/EXEC (same connection as the event log)."""
    from wavesquant.bus.redis_bus import RedisBus

    bus = RedisBus(redis_url, prefix=redis_prefix)
    await bus.start()
    try:
        await _restart_scenario(lambda: RedisPaperStore(real_redis, f"{redis_prefix}paper:", bus.transaction))
    finally:
        await bus.close()
    assert await real_redis.hlen(f"{redis_prefix}paper:orders") == 3


@pytest.mark.redis
async def test_real_redis_store_dedups_fills_on_load(real_redis: aioredis.Redis, redis_prefix: str) -> None:
    store = RedisPaperStore(real_redis, redis_prefix)
    fill = Fill("c", "v", "f1", SYM, Side.BUY, 1.0, 100.0, 0.1, "USDT", Liquidity.TAKER, 1)
    await store.commit(PaperCommit([], [fill, fill], {"USDT": 1.0}, {SYM: 2.0}))
    snapshot = await store.load()
    assert snapshot.fills == [fill] and snapshot.balances == {"USDT": 1.0} and snapshot.orders == []
    assert snapshot.positions == {SYM: 2.0}
    assert await real_redis.llen(f"{redis_prefix}fills") == 2  # stored twice, loaded once


class _FlakyStore(InMemoryPaperStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def commit(self, change: PaperCommit) -> None:
        if self.down:
            raise RedisConnectionError("down")
        await super().commit(change)


async def test_failed_commit_is_retried_on_next_call() -> None:
    store = _FlakyStore()
    venue = await new_venue(store)
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    store.down = True
    with pytest.raises(VenueUnavailable):
        await venue.submit(OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0))
    assert (await venue.fetch_order("m1", SYM)).status is OrderStatus.FILLED  # type: ignore[union-attr]
    store.down = False
    await venue.on_quote(SYM, 2_000, 99.0, 101.0, 1.0, 1.0)  # nothing new, but the backlog is flushed
    restarted = await new_venue(store)
    assert (await restarted.fetch_order("m1", SYM)) is not None
    assert len(await restarted.fetch_fills()) == 1


class _DeferredFlakyStore(InMemoryPaperStore):
    """A store whose pipelined commits can fail after they were sent (their outcome is awaited later)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_outcome = False

    async def begin_commit(self, change: PaperCommit) -> Any:
        if not self.fail_next_outcome:
            return await super().begin_commit(change)
        self.fail_next_outcome = False

        async def outcome() -> None:
            raise RedisConnectionError("lost before the reply")

        return outcome()


async def test_settle_later_reports_at_once_and_a_failed_commit_is_committed_again() -> None:
    store = _DeferredFlakyStore()
    venue = await new_venue(store)
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
    store.fail_next_outcome = True
    (order,) = await venue.submit_many([OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0)],
                                       settle_later=True)
    assert not isinstance(order, Exception) and order.status is OrderStatus.FILLED
    with pytest.raises(VenueUnavailable):
        await venue.settle()
    await venue.settle()  # nothing left in flight
    assert (await new_venue(store)).engine.get("m1") is None  # not stored yet
    await venue.on_quote(SYM, 2_000, 99.0, 101.0, 1.0, 1.0)  # the next commit carries it
    restarted = await new_venue(store)
    assert (await restarted.fetch_order("m1", SYM)).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert len(await restarted.fetch_fills()) == 1


@pytest.mark.redis
async def test_settle_later_on_the_bus_connection_lands_before_what_the_bus_writes_next(
        real_redis: aioredis.Redis, redis_url: str, redis_prefix: str) -> None:
    """The deployment path: the commit is in flight while the reports are written behind it, in order."""
    from wavesquant.bus.redis_bus import RedisBus
    from wavesquant.messages import ControlCommand

    bus = RedisBus(redis_url, prefix=redis_prefix)
    await bus.start()
    try:
        store = RedisPaperStore(real_redis, f"{redis_prefix}paper:", bus.transaction, bus.begin_transaction)
        venue = await new_venue(store)
        await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1.0, 1.0)
        await venue.submit_many([OrderRequest("m1", SYM, Side.BUY, OrderType.MARKET, 1.0)], settle_later=True)
        assert venue._unsettled
        cmd = ControlCommand.create(source="t", ts_ns=1, target="execution", command="pause", request_id="r1")
        await bus.publish_many([cmd])  # its event-log XADD is written after the commit, on the same connection
        assert await real_redis.hexists(f"{redis_prefix}paper:orders", "m1")
        await venue.settle()
        await venue.close()
        restarted = await new_venue(store)
        assert (await restarted.fetch_order("m1", SYM)).status is OrderStatus.FILLED  # type: ignore[union-attr]
    finally:
        await bus.close()


# --- bounded history: open orders always, the latest `history` closed orders and fills ----------------------


async def _trade_past_history(store: PaperStore, history: int = 3, trades: int = 10) -> PaperVenue:
    venue = PaperVenue(MatchingEngine(FEES), store, {"USDT": 10_000.0}, history=history)
    await venue.connect()
    await venue.on_quote(SYM, 1_000, 99.0, 101.0, 1e6, 1e6)
    await venue.submit(buy_limit("resting", 1.0, 90.0))  # open the whole time: never forgotten
    for i in range(trades):
        await venue.submit(OrderRequest(f"m{i}", SYM, Side.BUY, OrderType.MARKET, 0.5))
    return venue


async def _check_bounded(venue: PaperVenue) -> None:
    assert await venue.fetch_order("resting", SYM) is not None
    assert [o.client_order_id for o in venue.engine.orders() if o.status.is_terminal] == ["m7", "m8", "m9"]
    assert await venue.fetch_order("m0", SYM) is None
    assert [f.client_order_id for f in await venue.fetch_fills()] == ["m7", "m8", "m9"]
    assert await venue.fetch_positions() == {SYM: 5.0}  # every fill counts, remembered or not
    assert (await venue.fetch_balances())["BTC"] == 5.0


async def test_memory_and_store_keep_open_orders_and_the_latest_closed_ones() -> None:
    store = InMemoryPaperStore(keep_fills=3)
    await _check_bounded(await _trade_past_history(store))
    restarted = PaperVenue(MatchingEngine(FEES), store, {"USDT": 10_000.0}, history=3)
    await restarted.connect()
    await _check_bounded(restarted)  # the store forgot the same ones; positions were stored, not summed


@pytest.mark.redis
async def test_redis_store_forgets_what_the_venue_forgot(real_redis: aioredis.Redis, redis_prefix: str) -> None:
    store = RedisPaperStore(real_redis, redis_prefix, keep_fills=3)
    await _check_bounded(await _trade_past_history(store))
    assert sorted(k.decode() for k in await real_redis.hkeys(f"{redis_prefix}orders")) == ["m7", "m8", "m9", "resting"]
    assert await real_redis.llen(f"{redis_prefix}fills") == 3
    restarted = PaperVenue(MatchingEngine(FEES), store, {"USDT": 10_000.0}, history=3)
    await restarted.connect()
    await _check_bounded(restarted)


async def test_a_store_without_positions_sums_them_from_its_fills(fake_redis: Any) -> None:
    """A store written before positions were stored kept every fill."""
    fills = [Fill(f"c{i}", "v", f"f{i}", SYM, Side.BUY if i else Side.SELL, 1.0, 100.0, 0.0, "USDT",
                  Liquidity.TAKER, i) for i in range(3)]
    await fake_redis.rpush("t:paper:fills", *[json.dumps(fill_to_dict(f)) for f in fills])
    await fake_redis.set("t:paper:balances", json.dumps({"USDT": 1.0}))
    venue = await new_venue(RedisPaperStore(fake_redis, "t:paper:"))
    assert await venue.fetch_positions() == {SYM: 1.0}
