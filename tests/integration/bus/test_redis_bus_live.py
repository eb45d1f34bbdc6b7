"""RedisBus against the real Redis: pub/sub batching, dead letters, consumer groups with crash recovery, the
event log, subscriber and publisher reconnects after CLIENT KILL, stream trimming, AUTH."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aredis

from wavesquant.bus.redis_bus import RedisBus
from wavesquant.bus.redis_sub import RedisSubscription
from wavesquant.messages import (
    Channel,
    ExecutionReport,
    Heartbeat,
    NewOrder,
    OrderSpec,
    RiskAlert,
    decode,
    encode,
)

pytestmark = pytest.mark.redis

TS = 1_700_000_000_000_000_000


def heartbeat(i: int) -> Heartbeat:
    return Heartbeat.create(source="test", ts_ns=TS + i, msg_id=f"hb{i}", agent="a", status="running", pid=i,
                            host="h", uptime_s=float(i))


def spec(i: int) -> OrderSpec:
    return OrderSpec(client_order_id=f"c{i}", signal_id=f"s{i}", strategy_id="st", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)


def new_order(i: int) -> NewOrder:
    return NewOrder.create(source="risk", ts_ns=TS + i, msg_id=f"no{i}", order=spec(i))


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def next_batch(sub: Any) -> list[Any]:
    return await asyncio.wait_for(sub.__aiter__().__anext__(), 10)


@pytest.fixture
def client_name() -> str:
    return f"wqt{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def bus(redis_url: str, redis_prefix: str, client_name: str) -> AsyncIterator[RedisBus]:
    b = RedisBus(redis_url, prefix=redis_prefix, client_name=client_name, stream_maxlen=1000)
    await b.start()
    yield b
    await b.close()


async def kill_client(redis_url: str, name: str) -> int:
    """CLIENT KILL every connection with this exact name (only this test's connections)."""
    admin = aredis.Redis.from_url(redis_url)
    try:
        killed = 0
        for info in await admin.client_list():
            if info.get("name") == name:
                killed += await admin.execute_command("CLIENT", "KILL", "ID", info["id"])
        return killed
    finally:
        await admin.aclose()


async def test_pubsub_round_trip_in_one_batch(bus: RedisBus) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS, Channel.CONTROL])
    await sub.ready()
    msgs = [heartbeat(i) for i in range(300)]
    await bus.publish_many(msgs[:150])
    await bus.publish_many(msgs[150:])
    await until(lambda: sub.depth() == 300)
    assert await next_batch(sub) == msgs
    assert bus.stats.published["heartbeats"] == 300 == bus.stats.received["heartbeats"]
    await bus.publish(heartbeat(300))
    assert await next_batch(sub) == [heartbeat(300)]


async def test_malformed_payload_is_dead_lettered_and_subscriber_keeps_going(bus: RedisBus) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS])
    await sub.ready()
    await bus.publish_raw(Channel.HEARTBEATS, b'{"type": "heartbeat", "pid": -1}')
    await bus.publish(heartbeat(1))
    await until(lambda: sub.depth() == 2)
    assert await next_batch(sub) == [heartbeat(1)]
    [(_, raw)] = await bus.read_range(Channel.DEADLETTER)
    entry = json.loads(raw)
    assert entry["channel"] == "heartbeats" and entry["raw"] == '{"type": "heartbeat", "pid": -1}'
    assert "heartbeat.source: Field required" in entry["reason"]
    assert bus.stats.invalid["heartbeats"] == 1
    await bus.publish(heartbeat(2))
    assert await next_batch(sub) == [heartbeat(2)]


async def test_consumer_group_crash_recovery(bus: RedisBus, redis_url: str, redis_prefix: str) -> None:
    await bus.publish_many([new_order(i) for i in range(5)])
    got = await bus.read_group(Channel.ORDERS, "exec", "worker-1", count=10, block_ms=100)
    assert [d.message for d in got] == [new_order(i) for i in range(5)]
    assert all(d.deliveries == 1 for d in got)
    await bus.ack(Channel.ORDERS, "exec", [got[0].entry_id])
    # worker-1 "crashes" without acking the rest; when it comes back it sees its own pending entries first
    again = await bus.pending_for(Channel.ORDERS, "exec", "worker-1")
    assert [d.entry_id for d in again] == [d.entry_id for d in got[1:]]
    assert all(d.deliveries >= 2 for d in again)
    # ... or, if it never comes back, another process reclaims them
    other = RedisBus(redis_url, prefix=redis_prefix, client_name="wqt-other")
    await other.start()
    try:
        assert await other.claim_stale(Channel.ORDERS, "exec", "worker-2", min_idle_ms=60_000) == []
        claimed = await other.claim_stale(Channel.ORDERS, "exec", "worker-2", min_idle_ms=0)
        assert [d.message for d in claimed] == [new_order(i) for i in range(1, 5)]
        assert all(d.deliveries >= 3 for d in claimed)
        await other.ack(Channel.ORDERS, "exec", [d.entry_id for d in claimed])
        assert await other.pending_for(Channel.ORDERS, "exec", "worker-2") == []
        assert await bus.pending_for(Channel.ORDERS, "exec", "worker-1") == []
        assert await other.read_group(Channel.ORDERS, "exec", "worker-2", block_ms=50) == []
    finally:
        await other.close()


async def test_read_group_blocks_until_an_entry_arrives(bus: RedisBus) -> None:
    reader = asyncio.create_task(bus.read_group(Channel.EXECUTION_REPORTS, "pm", "c", block_ms=5000))
    await asyncio.sleep(0.05)
    report = ExecutionReport.create(source="execution", ts_ns=TS, msg_id="er1", kind="ack",
                                    client_order_id="c1", venue="paper", symbol="BTC/USDT", side="buy",
                                    status="open", quantity=1.0)
    await bus.publish(report)
    got = await asyncio.wait_for(reader, 6)
    assert [d.message for d in got] == [report]


async def test_event_log_gets_money_and_lifecycle_messages(bus: RedisBus) -> None:
    alert = RiskAlert.create(source="risk", ts_ns=TS, msg_id="ra1", level="critical", code="kill",
                             message="kill switch", trading_state="halted")
    await bus.publish_many([new_order(1), heartbeat(1), alert, new_order(2)])
    events = [decode(raw) for _, raw in await bus.read_range(Channel.EVENTS)]
    assert events == [new_order(1), alert, new_order(2)]
    assert await bus.stream_length(Channel.ORDERS) == 2


async def test_subscriber_reconnects_after_client_kill(bus: RedisBus, redis_url: str) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS])
    assert isinstance(sub, RedisSubscription)
    await sub.ready()
    await bus.publish(heartbeat(1))
    assert await next_batch(sub) == [heartbeat(1)]
    assert await kill_client(redis_url, sub.name) == 1
    await until(lambda: bus.stats.gaps == 1 and sub.subscribed)
    assert bus.stats.reconnects == 1 and bus.stats.connected
    await bus.publish(heartbeat(2))
    assert await next_batch(sub) == [heartbeat(2)]


async def test_publisher_reconnects_after_client_kill(
    bus: RedisBus, redis_url: str, client_name: str
) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS])
    await sub.ready()
    assert await kill_client(redis_url, f"{client_name}-pub") == 1
    await until(lambda: bus.stats.reconnects == 1 and bus.stats.connected)
    await bus.publish(heartbeat(5))
    assert await next_batch(sub) == [heartbeat(5)]
    assert bus.stats.gaps == 0


async def test_streams_are_trimmed_to_about_maxlen(redis_url: str, redis_prefix: str) -> None:
    b = RedisBus(redis_url, prefix=redis_prefix, stream_maxlen=50, event_log_maxlen=100_000)
    await b.start()
    try:
        for start in range(0, 2000, 200):
            await b.publish_many([new_order(i) for i in range(start, start + 200)])
        length = await b.stream_length(Channel.ORDERS)
        assert 50 <= length < 2000  # approximate (~) trimming keeps whole radix-tree nodes
        assert await b.stream_length(Channel.EVENTS) == 2000  # the event log has its own, larger cap
        last = decode((await b.read_range(Channel.ORDERS))[-1][1])
        assert last == new_order(1999)
    finally:
        await b.close()


async def test_password_auth_on_every_connection(redis_url: str, redis_prefix: str) -> None:
    admin = aredis.Redis.from_url(redis_url)
    user, password = f"wqt{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    try:
        await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{redis_prefix}*",
                                    f"&{redis_prefix}*", "+@all")
    except Exception as exc:  # ACLs unavailable: nothing to test here
        await admin.aclose()
        pytest.skip(f"cannot create an ACL user: {exc}")
    host_part = redis_url.split("://", 1)[1]
    url = f"redis://{user}:{password}@{host_part}"
    b = RedisBus(url, prefix=redis_prefix, client_name=f"{user}-bus")
    try:
        await b.start()
        sub = b.subscribe([Channel.HEARTBEATS])
        await sub.ready()
        await b.publish(heartbeat(1))
        assert await next_batch(sub) == [heartbeat(1)]
        await b.publish(new_order(1))
        assert await b.stream_length(Channel.ORDERS) == 1
        names = {c.get("name"): c.get("user") for c in await admin.client_list()}
        assert names[f"{user}-bus-pub"] == user
    finally:
        await b.close()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()



async def test_stream_write_survives_a_killed_client_connection(
    bus: RedisBus, redis_url: str, client_name: str
) -> None:
    await bus.publish(new_order(1))
    # kills the redis-py connection only: the raw pub/sub connections carry -pub / -subN suffixes
    assert await kill_client(redis_url, client_name) >= 1
    await bus.publish(new_order(2))
    assert [decode(raw) for _, raw in await bus.read_range(Channel.ORDERS)] == [new_order(1), new_order(2)]
    assert bus.stats.connected


async def test_acks_ask_for_no_reply_and_awaited_replies_still_match(bus: RedisBus) -> None:
    """XACK goes with CLIENT REPLY SKIP: Redis writes nothing back for it (a stray reply would be taken as the
    next awaited one: the XADD below would get the XACK's count instead of its entry id)."""
    await bus.publish_many([new_order(i) for i in range(3)])
    got = await bus.read_group(Channel.ORDERS, "exec", "w", count=10, block_ms=100)
    conn = bus._xconn
    assert conn is not None and conn.skips_replies
    for d in got:
        await bus.ack(Channel.ORDERS, "exec", [d.entry_id])
    assert not conn._waiters  # no reply expected for the acks
    report = ExecutionReport.create(source="execution", ts_ns=TS, kind="ack", client_order_id="c0", venue="paper",
                                    symbol="BTC/USDT", side="buy", status="open", quantity=1.0)
    (entry_id,) = await bus._xadd_many([(Channel.EXECUTION_REPORTS.value, encode(report))])
    assert [e for e, _ in await bus.read_range(Channel.EXECUTION_REPORTS)] == [entry_id]
    assert await bus.pending_for(Channel.ORDERS, "exec", "w") == []
