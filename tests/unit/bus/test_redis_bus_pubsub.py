"""RedisBus pub/sub over an in-memory RESP server (injected connector) and streams on fakeredis: pipelined
publishing, batched draining, dead letters, reconnects with gap counting, backpressure."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import fakeredis
import hiredis
import pytest

from wavesquant.bus import redis_bus
from wavesquant.bus.rawconn import HandshakeError, RespConnection
from wavesquant.bus.redis_bus import RedisBus
from wavesquant.bus.redis_sub import RedisSubscription
from wavesquant.messages import (
    Channel,
    Heartbeat,
    NewOrder,
    OrderSpec,
    RiskAlert,
    decode,
)

TS = 1_700_000_000_000_000_000


def heartbeat(i: int) -> Heartbeat:
    return Heartbeat.create(source="test", ts_ns=TS + i, msg_id=f"hb{i}", agent=f"a{i}", status="running",
                            pid=i, host="h", uptime_s=float(i))


def new_order(i: int) -> NewOrder:
    spec = OrderSpec(client_order_id=f"c{i}", signal_id=f"s{i}", strategy_id="st", family="trend",
                     exchange="paper", symbol="BTC/USDT", side="buy", quantity=1.0)
    return NewOrder.create(source="risk", ts_ns=TS + i, msg_id=f"no{i}", order=spec)


def risk_alert() -> RiskAlert:
    return RiskAlert.create(source="risk", ts_ns=TS, msg_id="ra", level="warning", code="dd",
                            message="drawdown", trading_state="active")


class FakeTransport(asyncio.Transport):
    """Server side of one fake connection: parses what the client writes and lets the server answer."""

    def __init__(self, server: FakeRedisServer, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.server = server
        self.protocol = protocol
        self.reader = hiredis.Reader()
        self.writes: list[bytes] = []
        self.commands: list[list[bytes]] = []
        self.name = b""
        self.authed = server.password is None
        self.skip_next_reply = False
        self.replies = 0  # replies to this connection's own commands
        self.closing = False
        self.reading_paused = False
        self._out: list[bytes] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        assert not self.closing, "write on a closed transport"
        self.writes.append(bytes(data))
        self.reader.feed(data)
        while (cmd := self.reader.gets()) is not False:
            self.commands.append(cmd)
            self.server.handle(self, cmd)

    def send(self, data: bytes) -> None:
        """Server -> client, delivered on a later loop iteration, coalesced like a socket read."""
        if self.closing:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        data, self._out = b"".join(self._out), []
        if data and not self.closing:
            self.protocol.data_received(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.server.drop(self)
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


class FakeRedisServer:
    """Just enough Redis for the raw connections: AUTH, CLIENT SETNAME, PING, SUBSCRIBE, PUBLISH, XADD, and CLIENT
    REPLY when `client_reply` (else refused, as some proxies and managed services do)."""

    def __init__(self, password: str | None = None, client_reply: bool = False) -> None:
        self.password = password
        self.client_reply = client_reply
        self.up = True
        self.publish_error: bytes | None = None
        self.conns: list[FakeTransport] = []
        self.subs: dict[bytes, set[FakeTransport]] = defaultdict(set)
        self.streams: dict[bytes, list[dict[bytes, bytes]]] = defaultdict(list)

    async def connect(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        await asyncio.sleep(0)
        if not self.up:
            raise ConnectionRefusedError("fake redis is down")
        protocol = factory()
        transport = FakeTransport(self, protocol)
        self.conns.append(transport)
        protocol.connection_made(transport)
        return transport, protocol

    def publisher(self) -> FakeTransport:
        [conn] = [c for c in self.conns if c.name.endswith(b"-pub")]
        return conn

    def subscriber(self) -> FakeTransport:
        [conn] = [c for c in self.conns if b"-sub" in c.name]
        return conn

    def drop(self, t: FakeTransport) -> None:
        if t in self.conns:
            self.conns.remove(t)
        for subs in self.subs.values():
            subs.discard(t)

    def kill(self, t: FakeTransport) -> None:
        t.close()

    def handle(self, t: FakeTransport, cmd: list[bytes]) -> None:
        name = cmd[0].upper()
        if name == b"CLIENT" and cmd[1].upper() == b"REPLY" and self.client_reply:
            if cmd[2].upper() == b"SKIP":
                t.skip_next_reply = True
            else:
                t.send(b"+OK\r\n")
            return
        skip, t.skip_next_reply = t.skip_next_reply, False

        def reply(data: bytes) -> None:
            if not skip:
                t.replies += 1
                t.send(data)

        if name == b"AUTH":
            t.authed = cmd[-1].decode() == self.password
            reply(b"+OK\r\n" if t.authed else b"-WRONGPASS invalid username-password pair\r\n")
        elif not t.authed:
            reply(b"-NOAUTH Authentication required.\r\n")
        elif name == b"CLIENT" and cmd[1].upper() == b"SETNAME":
            t.name = cmd[2]
            reply(b"+OK\r\n")
        elif name == b"PING":
            reply(b"+PONG\r\n")
        elif name == b"SUBSCRIBE":
            for i, channel in enumerate(cmd[1:], 1):
                self.subs[channel].add(t)
                reply(b"*3\r\n" + bulk(b"subscribe") + bulk(channel) + b":%d\r\n" % i)
        elif name == b"PUBLISH":
            if self.publish_error is not None:
                reply(b"-" + self.publish_error + b"\r\n")
                return
            receivers = list(self.subs.get(cmd[1], ()))
            for r in receivers:
                r.send(b"*3\r\n" + bulk(b"message") + bulk(cmd[1]) + bulk(cmd[2]))
            reply(b":%d\r\n" % len(receivers))
        elif name == b"XADD":  # XADD key MAXLEN ~ n * field value ...
            fields = cmd[cmd.index(b"*") + 1:]
            entries = self.streams[cmd[1]]
            entries.append(dict(zip(fields[::2], fields[1::2])))
            reply(bulk(b"1-%d" % len(entries)))
        else:
            reply(b"-ERR unknown command\r\n")


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.001)


@pytest.fixture
def server() -> FakeRedisServer:
    return FakeRedisServer()


@pytest.fixture
async def bus(server: FakeRedisServer, fake_redis: fakeredis.FakeAsyncRedis):
    b = RedisBus("redis://127.0.0.1:6379/0", prefix="t:", client=fake_redis, connector=server.connect,
                 client_name="unit", retry_timeout_s=0.5)
    await b.start()
    yield b
    await b.close()


async def next_batch(sub: Any) -> list[Any]:
    it = sub.__aiter__()
    return await asyncio.wait_for(it.__anext__(), 5)


# publishing ----------------------------------------------------------------------------------------------
async def test_publish_many_is_one_pipelined_write_and_subscriber_gets_one_batch(
    bus: RedisBus, server: FakeRedisServer
) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS])
    await sub.ready()
    pub = server.publisher()
    writes_before = len(pub.writes)
    msgs = [heartbeat(i) for i in range(50)]
    await bus.publish_many(msgs)
    assert len(pub.writes) == writes_before + 1  # one write for 50 PUBLISH commands
    assert [c[0] for c in pub.commands[-50:]] == [b"PUBLISH"] * 50
    assert {c[1] for c in pub.commands[-50:]} == {b"t:heartbeats"}
    assert [decode(c[2]) for c in pub.commands[-50:]] == msgs

    await until(lambda: sub.depth() == 50)
    batch = await next_batch(sub)
    assert batch == msgs  # everything queued drained at once, in order
    assert sub.depth() == 0
    assert bus.stats.published["heartbeats"] == 50
    assert bus.stats.received["heartbeats"] == 50


async def test_publishes_ask_for_a_reply_once_per_channel_per_interval_where_redis_takes_client_reply(
    fake_redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeRedisServer(client_reply=True)
    bus = RedisBus("redis://127.0.0.1:6379/0", prefix="t:", client=fake_redis, connector=server.connect,
                   client_name="unit", retry_timeout_s=0.5)
    await bus.start()
    try:
        sub = bus.subscribe([Channel.HEARTBEATS, Channel.RISK_ALERTS])
        await sub.ready()
        pub = server.publisher()
        answered = pub.replies
        await bus.publish_many([heartbeat(i) for i in range(20)] + [risk_alert()])
        await bus.publish_many([heartbeat(i) for i in range(20, 40)])
        await until(lambda: sub.depth() == 41)  # every message delivered
        assert pub.replies - answered == 2  # one PUBLISH per channel asked for its reply
        publishes = [c for c in pub.commands if c[0] == b"PUBLISH"]
        skips = [c for c in pub.commands if c[:3] == [b"CLIENT", b"REPLY", b"SKIP"]]
        assert len(publishes) == 41 and len(skips) == 39

        server.publish_error = b"NOPERM this user has no permissions to access the channel"
        await bus.publish_many([heartbeat(50)])
        await asyncio.sleep(0.01)
        assert bus.publish_errors == 0  # inside the interval: this one did not ask
        later = time.monotonic() + redis_bus.PUBLISH_CHECK_INTERVAL_S
        monkeypatch.setattr(redis_bus, "time", SimpleNamespace(monotonic=lambda: later))
        await bus.publish_many([heartbeat(51), heartbeat(52)])  # the next interval: one asks, and sees the refusal
        await until(lambda: bus.publish_errors == 1)
    finally:
        await bus.close()


async def test_handshake_names_connections_and_authenticates(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    server = FakeRedisServer(password="s3cret")
    b = RedisBus("redis://:s3cret@127.0.0.1:6379/0", prefix="t:", client=fake_redis, connector=server.connect,
                 client_name="agent1")
    await b.start()
    sub = b.subscribe(["control"])
    await sub.ready()
    pub, subconn = server.publisher(), server.subscriber()
    for conn in (pub, subconn):
        assert conn.commands[0] == [b"AUTH", b"s3cret"]
        assert conn.commands[1][:2] == [b"CLIENT", b"SETNAME"]
    assert pub.name == b"agent1-pub"
    assert subconn.name.startswith(b"agent1-sub")
    assert subconn.commands[2] == [b"SUBSCRIBE", b"t:control"]
    await b.close()


async def test_wrong_password_fails_start_with_handshake_error(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    server = FakeRedisServer(password="right")
    b = RedisBus("redis://:wrong@127.0.0.1:6379/0", client=fake_redis, connector=server.connect)
    with pytest.raises(HandshakeError, match="WRONGPASS"):
        await b.start()
    await b.close()


async def test_publish_before_start_raises(
    fake_redis: fakeredis.FakeAsyncRedis, server: FakeRedisServer
) -> None:
    b = RedisBus("redis://127.0.0.1/0", client=fake_redis, connector=server.connect)
    with pytest.raises(RuntimeError, match="not started"):
        await b.publish(heartbeat(1))


async def test_stream_messages_are_xadded_with_event_log_copies(
    bus: RedisBus, server: FakeRedisServer, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    orders = [new_order(1), new_order(2)]
    alert = risk_alert()
    await bus.publish_many([orders[0], alert, orders[1], heartbeat(3)])
    assert [decode(f[b"d"]) for f in server.streams[b"t:orders"]] == orders
    events = server.streams[b"t:events"]
    assert [decode(f[b"d"]) for f in events] == [orders[0], alert, orders[1]]  # in publish order
    published = [c[1] for c in server.publisher().commands if c[0] == b"PUBLISH"]
    assert published == [b"t:risk_alerts", b"t:heartbeats"]  # the alert also goes out on pub/sub
    assert bus.stats.published == {"orders": 2, "risk_alerts": 1, "heartbeats": 1}


async def test_publish_error_replies_are_counted(bus: RedisBus, server: FakeRedisServer) -> None:
    server.publish_error = b"ERR something"
    await bus.publish_many([heartbeat(1), heartbeat(2)])
    await until(lambda: bus.publish_errors == 2)
    assert bus.snapshot()["publish_errors"] == 2


# publisher connection loss ------------------------------------------------------------------------------
async def test_pubsub_dropped_while_publisher_down_then_reconnects(
    bus: RedisBus, server: FakeRedisServer
) -> None:
    server.up = False
    server.kill(server.publisher())
    await until(lambda: not bus.stats.connected)
    await bus.publish_many([heartbeat(1), heartbeat(2)])
    snap = bus.snapshot()
    assert snap["dropped:heartbeats"] == 2
    assert "pub:heartbeats" not in snap
    server.up = True
    await until(lambda: bus.stats.connected)
    assert bus.stats.reconnects == 1
    sub = bus.subscribe(["heartbeats"])
    await sub.ready()
    await bus.publish(heartbeat(3))
    assert await next_batch(sub) == [heartbeat(3)]
    assert bus.stats.gaps == 0  # the publisher side loses messages but that is not a subscriber gap


async def test_publish_waits_while_transport_is_paused(bus: RedisBus, server: FakeRedisServer) -> None:
    pub = server.publisher()
    proto = pub.protocol
    assert isinstance(proto, RespConnection)
    proto.pause_writing()
    before = len(pub.writes)
    task = asyncio.create_task(bus.publish(heartbeat(1)))
    await asyncio.sleep(0.01)
    assert not task.done() and len(pub.writes) == before
    proto.resume_writing()
    await asyncio.wait_for(task, 1)
    assert len(pub.writes) == before + 1


# subscriber ---------------------------------------------------------------------------------------------
async def test_malformed_payload_is_dead_lettered_and_subscriber_keeps_going(
    bus: RedisBus, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    sub = bus.subscribe([Channel.HEARTBEATS])
    await sub.ready()
    await bus.publish_raw("heartbeats", b'{"type": "heartbeat", "source": "x"}')
    await bus.publish(heartbeat(7))
    await until(lambda: sub.depth() == 2)
    assert await next_batch(sub) == [heartbeat(7)]
    assert bus.stats.invalid["heartbeats"] == 1
    [(_, raw)] = await bus.read_range(Channel.DEADLETTER)
    entry = json.loads(raw)
    assert entry["channel"] == "heartbeats"
    assert entry["raw"] == '{"type": "heartbeat", "source": "x"}'
    assert "Field required" in entry["reason"]


async def test_subscriber_reconnects_resubscribes_and_counts_a_gap(
    bus: RedisBus, server: FakeRedisServer
) -> None:
    sub = bus.subscribe(["heartbeats", "control"])
    assert isinstance(sub, RedisSubscription)
    await sub.ready()
    await bus.publish(heartbeat(1))
    await until(lambda: sub.depth() == 1)
    first = server.subscriber()
    server.up = False
    server.kill(first)  # like Redis dropping a slow subscriber
    await until(lambda: not bus.stats.connected)
    server.up = True
    await until(lambda: sub.subscribed and bus.stats.connected)
    assert bus.stats.gaps == 1 and bus.stats.reconnects == 1
    second = server.subscriber()
    assert second is not first and second.commands[-1] == [b"SUBSCRIBE", b"t:heartbeats", b"t:control"]
    await bus.publish(heartbeat(2))
    await until(lambda: sub.depth() == 2)
    assert await next_batch(sub) == [heartbeat(1), heartbeat(2)]  # queued before the loss is kept


async def test_close_ends_iteration(bus: RedisBus) -> None:
    sub = bus.subscribe(["heartbeats"])
    await sub.ready()
    got: list[Any] = []

    async def consume() -> None:
        async for batch in sub:
            got.extend(batch)

    task = asyncio.create_task(consume())
    await bus.publish(heartbeat(1))
    await until(lambda: len(got) == 1)
    await sub.close()
    await asyncio.wait_for(task, 1)
    assert got == [heartbeat(1)]
    assert bus.stats.connected


async def test_bus_close_closes_subscriptions_cleanly(server: FakeRedisServer,
                                                      fake_redis: fakeredis.FakeAsyncRedis) -> None:
    b = RedisBus("redis://127.0.0.1/0", client=fake_redis, connector=server.connect)
    await b.start()
    sub = b.subscribe(["heartbeats"])
    await sub.ready()
    task = asyncio.create_task(next_batch(sub))
    await asyncio.sleep(0)
    await b.close()
    with pytest.raises(StopAsyncIteration):
        await task
    assert server.conns == [] and not b.stats.connected


async def test_subscriber_pauses_reading_past_max_queue(bus: RedisBus, server: FakeRedisServer) -> None:
    sub = RedisSubscription(bus, ["heartbeats"], max_queue=3)
    await sub.ready()
    conn = server.subscriber()
    await bus.publish_many([heartbeat(i) for i in range(5)])
    await until(lambda: sub.depth() == 5)
    assert conn.reading_paused
    assert len(await next_batch(sub)) == 5
    assert not conn.reading_paused
    await sub.close()


async def test_resp_connection_parses_replies_split_anywhere() -> None:
    wire = (b"*3\r\n$7\r\nmessage\r\n$4\r\nt:ch\r\n$5\r\nhello\r\n"
            b"-ERR bad\r\n:7\r\n*3\r\n$7\r\nmessage\r\n$4\r\nt:ch\r\n$0\r\n\r\n")
    for cut in range(1, len(wire)):
        conn = RespConnection("x")
        got: list[Any] = []
        conn.on_replies = got.extend
        conn.data_received(wire[:cut])
        conn.data_received(wire[cut:])
        assert got[0] == [b"message", b"t:ch", b"hello"]
        assert isinstance(got[1], hiredis.ReplyError) and got[2] == 7
        assert got[3] == [b"message", b"t:ch", b""]


async def test_first_connect_retries_with_backoff_and_is_not_a_gap(
    bus: RedisBus, server: FakeRedisServer
) -> None:
    server.up = False
    sub = bus.subscribe(["heartbeats"])
    await until(lambda: not bus.stats.connected)  # the failing subscriber counts against health
    server.up = True
    await asyncio.wait_for(sub.ready(), 5)  # type: ignore[attr-defined]
    assert bus.stats.connected
    assert (bus.stats.gaps, bus.stats.reconnects) == (0, 0)
