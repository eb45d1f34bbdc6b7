"""The Redis bus backend.

- Pub/sub (signals, market data) goes over raw asyncio connections: `publish_many` writes every PUBLISH of the
  call in one pipelined write and does not wait for replies (a reply handler counts errors); each subscription
  has its own connection (see `redis_sub`). A PUBLISH while the publisher connection is down is dropped and
  counted (`dropped:<channel>` in `snapshot()`), while the connection is re-established in the background.
- Streams (the money path) go through redis-py: every XADD of a call (plus event-log copies) in one pipeline,
  awaited, so a message is durable in Redis before `publish_many` returns. Stream writes are retried through
  connection failures and raise `BusUnavailableError` only after `retry_timeout_s`; a retried write may land
  twice (delivery is at-least-once, consumers are idempotent by client order id).
- Stream entries carry the payload in field `d`.

Within one `publish_many` call, stream entries are written (and awaited) before the pub/sub messages go out,
so nothing is announced before it is durable; order is kept within each transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import hiredis
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wavesquant.bus.base import Bus, Delivery, Subscription
from wavesquant.bus.rawconn import Connector, HandshakeError, RespConnection, open_connection, tcp_connector
from wavesquant.bus.redis_sub import RedisSubscription, backoff_delays
from wavesquant.bus.resp import (
    CLIENT_REPLY_SKIP,
    encode_publishes,
    encode_xack,
    pack_command,
    parse_redis_url,
    publish_header,
    xack_header,
    xadd_header,
)
from wavesquant.core.clock import Clock
from wavesquant.messages import ROUTES, Channel, Envelope, Transport, encode

log = structlog.get_logger(__name__)

T = TypeVar("T")

_RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
_SOCKET_TIMEOUT_S = 30.0
MAX_BLOCK_MS = 25_000  # blocking reads stay well inside the socket timeout
_CLAIM_ROUNDS = 10
PUBLISH_CHECK_INTERVAL_S = 1.0  # per channel, one PUBLISH this often asks for its reply (errors are seen)


class BusUnavailableError(ConnectionError):
    """Redis stayed unreachable for the whole retry window; the operation did not happen (or may have)."""


@dataclass(frozen=True, slots=True)
class _RouteInfo:
    channel: str
    header: bytes | None  # PUBLISH header for pub/sub routes, None for streams
    unanswered_header: bytes  # the same PUBLISH asking Redis for no reply (b"" for streams)
    event_log: bool


class RedisBus(Bus):
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "wq:",
        stream_maxlen: int = 100_000,
        event_log_maxlen: int = 1_000_000,
        clock: Clock | None = None,
        client_name: str = "wq",
        *,
        client: Redis | None = None,
        connector: Connector | None = None,
        retry_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """`client` and `connector` are injectable for tests (a fakeredis client; an in-memory transport)."""
        super().__init__(
            prefix=prefix, stream_maxlen=stream_maxlen, event_log_maxlen=event_log_maxlen, clock=clock
        )
        if not client_name or any(c.isspace() for c in client_name):
            raise ValueError(f"client_name must be non-empty without spaces: {client_name!r}")
        self.address = parse_redis_url(url)
        self.client_name = client_name
        self.retry_timeout_s = retry_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.connector: Connector = connector or tcp_connector(self.address, connect_timeout_s)
        self._owns_client = client is None
        self._client: Redis = client or Redis.from_url(
            url,
            client_name=client_name,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=_SOCKET_TIMEOUT_S,
            socket_keepalive=True,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.01), 2),
        )
        self._routes: dict[type[Envelope], _RouteInfo] = {}
        for cls, route in ROUTES.items():
            header = None if route.transport is Transport.STREAM else publish_header(self.key(route.channel).encode())
            self._routes[cls] = _RouteInfo(route.channel.value, header,
                                           CLIENT_REPLY_SKIP + header if header else b"", route.event_log)
        self._reply_due: dict[str, float] = {}  # channel -> when its next PUBLISH asks for a reply
        self.dropped: Counter[str] = Counter()  # pub/sub messages not sent: publisher connection down
        self.publish_errors = 0  # error replies to PUBLISH (counted by the reply reader)
        self._dropped_in_outage = 0
        self._pub: RespConnection | None = None
        self._xconn: RespConnection | None = None  # awaited stream writes (XADD), separate from fire-and-forget
        self._xconn_lock = asyncio.Lock()
        self._readers: dict[tuple[str, str, str], RespConnection] = {}  # (stream, group, consumer) -> conn
        self._xadd_headers: dict[str, bytes] = {}  # stream -> "XADD key MAXLEN ~ n * d" before the payload
        self._xack_headers: dict[tuple[str, str], bytes] = {}  # (stream, group) -> "XACK key group"
        self._xreadgroup_commands: dict[tuple[str, str, str, int, int], list[bytes]] = {}  # packed once
        self._pub_task: asyncio.Task[None] | None = None
        self._subs: set[RedisSubscription] = set()
        self._groups: set[tuple[str, str]] = set()
        self._down: set[str] = set()
        self._started = False
        self._closing = False

    @property
    def client(self) -> Redis:
        """The redis-py asyncio client (hiredis parser), for modules that keep their own keys in Redis."""
        return self._client

    # health ----------------------------------------------------------------------------------------------
    def mark_down(self, component: str) -> None:
        self._down.add(component)
        self.stats.connected = False

    def mark_up(self, component: str) -> None:
        self._down.discard(component)
        self.stats.connected = self._started and not self._down

    def mark_gone(self, component: str) -> None:
        """A component (closed subscription) no longer counts towards health."""
        self.mark_up(component)

    def forget(self, sub: RedisSubscription) -> None:
        self._subs.discard(sub)

    @property
    def has_dead_letters(self) -> bool:
        return bool(self._dead)

    def snapshot(self) -> dict[str, int]:
        """BusStats.snapshot plus pub/sub messages dropped while disconnected and PUBLISH error replies."""
        out = self.stats.snapshot()
        out.update({f"dropped:{k}": v for k, v in self.dropped.items()})
        out["publish_errors"] = self.publish_errors
        return out

    async def retrying(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a redis-py call, retrying connection errors and timeouts with jittered backoff for up to
        `retry_timeout_s`; then raise BusUnavailableError. Other errors (wrong type, ...) propagate at
        once."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set on the first failure: the common path costs one call
        delays = None
        while True:
            try:
                result = await fn()
            except _RETRYABLE as exc:
                self.mark_down("redis")
                if deadline is None or delays is None:
                    deadline, delays = loop.time() + self.retry_timeout_s, backoff_delays(cap=1.0)
                delay = next(delays)
                if loop.time() + delay > deadline:
                    raise BusUnavailableError(
                        f"Redis at {self.address.describe()} unreachable for {self.retry_timeout_s:g} s "
                        f"during {op}: {exc}"
                    ) from exc
                log.warning(
                    "redis_retry", op=op, error=str(exc) or type(exc).__name__, retry_in_s=round(delay, 3)
                )
                await asyncio.sleep(delay)
                continue
            if "redis" in self._down:
                log.info("redis_reachable_again", op=op)
                self.mark_up("redis")
            return result

    # lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the client (PING) and the raw publisher connection. Raises BusUnavailableError when Redis
        does not answer within `retry_timeout_s`, HandshakeError when it refuses our credentials."""
        if self._started:
            return
        self._closing = False
        await self.retrying("ping", self._client.ping)
        self._pub = await self.retrying("connect publisher", self._open_publisher)
        self._started = True
        self.mark_up("pub")
        log.info(
            "redis_bus_started", redis=self.address.describe(), prefix=self.prefix, client=self.client_name
        )

    async def close(self) -> None:
        self._closing = True
        self._started = False
        for sub in list(self._subs):
            await sub.close()
        task, self._pub_task = self._pub_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for attr in ("_pub", "_xconn"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                await conn.aclose()
        readers, self._readers = self._readers, {}
        for conn in readers.values():
            conn.abort()
        if self._owns_client:
            await self._client.aclose()
        self.stats.connected = False

    def _check_started(self) -> None:
        if not self._started:
            raise RuntimeError("RedisBus is not started (await bus.start() first)")

    # raw publisher connection ----------------------------------------------------------------------------
    async def _open_publisher(self) -> RespConnection:
        """The publisher connection. Where Redis takes CLIENT REPLY SKIP, a PUBLISH asks for its reply only once
        per channel every PUBLISH_CHECK_INTERVAL_S (enough to see an error such as an ACL refusal), the others
        for none: no reply for Redis to write, none for this process to wake up and read."""
        conn = await open_connection(
            self.connector, self.address, f"{self.client_name}-pub", self._on_pub_replies, self._on_pub_lost,
            self.connect_timeout_s,
        )
        await conn.allow_skipping_replies(self.connect_timeout_s)
        return conn

    def _on_pub_replies(self, replies: list[Any]) -> None:
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                self.publish_errors += 1
                if self.publish_errors == 1:
                    log.error("publish_error_reply", error=str(reply))

    def _on_pub_lost(self, conn: RespConnection, exc: Exception | None) -> None:
        if conn is not self._pub:
            return
        self._pub = None
        if self._closing:
            return
        self.mark_down("pub")
        log.warning("publisher_disconnected", error=str(exc) if exc else None)
        if self._pub_task is None or self._pub_task.done():
            self._pub_task = asyncio.get_running_loop().create_task(self._reconnect_publisher())

    async def _reconnect_publisher(self) -> None:
        delays = backoff_delays()
        while not self._closing:
            try:
                conn = await self._open_publisher()
            except (OSError, ConnectionError, TimeoutError, HandshakeError) as exc:
                delay = next(delays)
                log.warning("publisher_connect_failed", error=str(exc) or type(exc).__name__,
                            retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            self._pub = conn
            self.stats.reconnects += 1
            self.mark_up("pub")
            log.info("publisher_reconnected", dropped_while_down=self._dropped_in_outage)
            self._dropped_in_outage = 0
            return

    async def _write_publishes(self, items: list[tuple[bytes, bytes]], channels: list[str]) -> None:
        conn = self._pub
        if conn is not None and conn.write_paused:
            await conn.wait_writable()  # backpressure: Redis reads slower than we write
            conn = self._pub
        if conn is None or not conn.is_open:
            if not self._dropped_in_outage:
                log.warning("publish_dropped_disconnected", channels=sorted(set(channels)))
            self._dropped_in_outage += len(channels)
            self.dropped.update(channels)
            return
        conn.write(encode_publishes(items))
        self.stats.published.update(channels)

    # publishing ------------------------------------------------------------------------------------------
    async def publish_many(self, msgs: Sequence[Envelope]) -> None:
        if not msgs:
            return
        self._check_started()
        routes = self._routes
        pub_items: list[tuple[bytes, bytes]] = []
        pub_channels: list[str] = []
        stream_ops: list[tuple[str, bytes]] = []  # (stream, payload) in order, event-log copies included
        stream_channels: list[str] = []
        pub = self._pub
        skipping = pub is not None and pub.skips_replies
        now = time.monotonic() if skipping else 0.0
        reply_due = self._reply_due
        for msg in msgs:
            info = routes[type(msg)]
            payload = encode(msg)
            if info.header is not None:
                if skipping and now < reply_due.get(info.channel, 0.0):
                    pub_items.append((info.unanswered_header, payload))
                else:
                    reply_due[info.channel] = now + PUBLISH_CHECK_INTERVAL_S
                    pub_items.append((info.header, payload))
                pub_channels.append(info.channel)
            else:
                stream_ops.append((info.channel, payload))
                stream_channels.append(info.channel)
            if info.event_log:
                stream_ops.append((Channel.EVENTS.value, payload))
        if stream_ops:
            await self._xadd_many(stream_ops)
            self.stats.published.update(stream_channels)
        if pub_items:
            conn = self._pub  # the same connection as above unless the stream write awaited a reconnect
            if conn is not None and conn.is_open and not conn.write_paused:  # the hot path: no await at all
                conn.write(encode_publishes(pub_items))
                self.stats.published.update(pub_channels)
            else:
                await self._write_publishes(pub_items, pub_channels)

    async def _xadd_many(self, ops: list[tuple[str, bytes]]) -> list[str]:
        """XADD every (stream, payload) in one write on a raw connection and await the entry ids. Money waits for
        this: nothing is announced before it is durable. Retried on connection loss within `retry_timeout_s`
        (at-least-once: a retried write may land twice; consumers are idempotent by client order id)."""
        headers = self._xadd_headers
        commands = []
        for stream, payload in ops:
            header = headers.get(stream)
            if header is None:
                header = headers[stream] = xadd_header(self.key(stream).encode(), self.maxlen_of(stream))
            commands.append(b"%s$%d\r\n%s\r\n" % (header, len(payload), payload))

        replies = await self._raw_call("xadd", commands)
        errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
        if errors:
            raise RedisError(f"XADD refused: {errors[0]}")
        return [_text(r) for r in replies]

    async def transaction(self, commands: Sequence[Sequence[bytes | str | int]]) -> list[Any]:
        """Run commands atomically (MULTI ... EXEC) on the stream-writer connection and return EXEC's
        replies. Sharing that connection keeps these writes in order with event-log writes."""
        replies = await self._raw_call("transaction", _multi_exec(commands))
        return _exec_result(replies)

    async def begin_transaction(self, commands: Sequence[Sequence[bytes | str | int]]) -> Awaitable[list[Any]]:
        """Send MULTI ... EXEC now on the stream-writer connection and return an awaitable of EXEC's replies,
        so the caller can go on while it is in flight: whatever this bus writes to a stream afterwards lands
        after it. Not retried (the caller keeps what it could not commit and commits it again); while the
        connection is being (re)opened this is a plain awaited `transaction`."""
        conn = self._xconn
        if conn is None or not conn.is_open:
            return _completed(await self.transaction(commands))
        replies = conn.request(_multi_exec(commands))

        async def outcome() -> list[Any]:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return _exec_result(await replies)
            except (ConnectionError, OSError, TimeoutError) as exc:
                conn.abort()
                if self._xconn is conn:
                    self._xconn = None
                raise BusUnavailableError(f"transaction outcome unknown: {exc}") from exc

        return outcome()

    async def _raw_call(self, op: str, packed: list[bytes]) -> list[Any]:
        async def run() -> list[Any]:
            conn = self._xconn
            if conn is None or not conn.is_open:
                async with self._xconn_lock:  # one writer connection: writes reach Redis in call order
                    conn = self._xconn
                    if conn is None or not conn.is_open:
                        conn = await self._open_stream_writer()
                        await conn.allow_skipping_replies(self.connect_timeout_s)  # for fire-and-forget XACKs
                        self._xconn = conn
            try:
                return await conn.call(packed, self.connect_timeout_s)
            except (ConnectionError, OSError, TimeoutError):
                conn.abort()
                self._xconn = None
                raise

        return await self.retrying(op, run)

    async def _open_stream_writer(self, name: str | None = None) -> RespConnection:
        conn = await open_connection(
            self.connector, self.address, name or f"{self.client_name}-xadd", _ignore, _ignore,
            self.connect_timeout_s,
        )
        if self.address.db:
            await conn.call([pack_command(b"SELECT", self.address.db)], self.connect_timeout_s)
        return conn

    async def publish_raw(self, channel: str, payload: bytes) -> None:
        self._check_started()
        conn = self._pub
        if conn is None or not conn.is_open:
            self.dropped[str(channel)] += 1
            return
        conn.write(encode_publishes([(publish_header(self.key(channel).encode()), payload)]))

    # pub/sub ---------------------------------------------------------------------------------------------
    def subscribe(self, channels: Iterable[str]) -> Subscription:
        """A subscription on its own connection. It starts connecting at once when called inside a running
        loop (else on first iteration); `await sub.ready()` waits until Redis confirmed the subscription."""
        sub = RedisSubscription(self, [str(c) for c in channels])
        self._subs.add(sub)
        with contextlib.suppress(RuntimeError):  # no running loop: connect on first iteration
            sub.start()
        return sub

    # streams ---------------------------------------------------------------------------------------------
    async def append_raw(self, stream: str, payload: bytes) -> str:
        key = self.key(stream)
        maxlen = self.maxlen_of(stream)
        entry_id = await self.retrying(
            "xadd", lambda: self._client.xadd(key, {"d": payload}, maxlen=maxlen, approximate=True)
        )
        return _text(entry_id)

    async def _ensure_group(self, key: str, group: str) -> None:
        if (key, group) in self._groups:
            return
        try:
            await self.retrying(
                "xgroup create", lambda: self._client.xgroup_create(key, group, id="0", mkstream=True)
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((key, group))

    async def _group_call(self, key: str, group: str, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a consumer-group command, (re)creating the group when Redis says it does not exist."""
        await self._ensure_group(key, group)
        try:
            return await self.retrying(op, fn)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer_group_recreated", stream=key, group=group)
            self._groups.discard((key, group))
            await self._ensure_group(key, group)
            return await self.retrying(op, fn)

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000,
        retry_nogroup: bool = True,
    ) -> list[Delivery]:
        """New entries (XREADGROUP '>'), blocking up to `block_ms` (0: do not block; capped at 25 s), on a raw
        connection of this consumer's own (a blocking read holds its connection). When Redis stays
        unreachable for the retry window this logs and returns [] (nothing is lost: the entries stay in the
        stream) so a consumer loop keeps going."""
        stream = str(stream)
        key = self.key(stream)
        block = min(block_ms, MAX_BLOCK_MS) if block_ms > 0 else 0
        packed = self._xreadgroup_commands.get((key, group, consumer, count, block))
        if packed is None:
            args: list[bytes | str | int] = [b"XREADGROUP", b"GROUP", group, consumer, b"COUNT", count]
            if block:
                args += [b"BLOCK", block]
            packed = self._xreadgroup_commands[(key, group, consumer, count, block)] = [
                pack_command(*args, b"STREAMS", key, b">")
            ]
        try:
            if (key, group) not in self._groups:
                await self._ensure_group(key, group)
            (reply,) = await self._reader_call((key, group, consumer), packed, block / 1000)
        except BusUnavailableError as exc:
            log.error("read_group_unavailable", stream=stream, group=group, error=str(exc))
            return []
        if isinstance(reply, hiredis.ReplyError):
            if "NOGROUP" not in str(reply) or not retry_nogroup:
                raise ResponseError(str(reply))
            log.warning("consumer_group_recreated", stream=key, group=group)
            self._groups.discard((key, group))  # the stream was deleted: recreate the group and read again
            return await self.read_group(stream, group, consumer, count, block_ms, retry_nogroup=False)
        entries = [(entry_id, _field_map(fields)) for _, items in reply or () for entry_id, fields in items]
        return await self._deliver(stream, group, entries, {}, 1)

    async def _reader_call(self, who: tuple[str, str, str], packed: list[bytes], block_s: float) -> list[Any]:
        """One call on the consumer's own reader connection. A call that does not complete (timeout,
        cancellation, lost connection) drops the connection, so no late reply can be matched to a later call."""
        async def run() -> list[Any]:
            conn = self._readers.get(who)
            if conn is None or not conn.is_open:
                conn = self._readers[who] = await self._open_stream_writer(f"{self.client_name}-read")
            try:
                return await conn.call(packed, block_s + self.connect_timeout_s)
            except BaseException:
                conn.abort()
                self._readers.pop(who, None)
                raise

        return await self.retrying("xreadgroup", run)

    async def pending_for(self, stream: str, group: str, consumer: str, count: int = 100) -> list[Delivery]:
        stream = str(stream)
        key = self.key(stream)

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.xreadgroup(group, consumer, {key: "0"}, count=count)
            pipe.xpending_range(key, group, min="-", max="+", count=count, consumername=consumer)
            return await pipe.execute()

        resp, pending = await self._group_call(key, group, "xreadgroup pending", run)
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return await self._deliver(stream, group, _entries(resp), counts, 2)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        stream = str(stream)
        key = self.key(stream)
        claimed: list[tuple[Any, Any]] = []
        cursor: Any = "0-0"
        for _ in range(_CLAIM_ROUNDS):  # XAUTOCLAIM scans a bounded slice of the PEL per call
            start, want = cursor, count - len(claimed)
            reply = await self._group_call(
                key, group, "xautoclaim",
                lambda start=start, want=want: self._client.xautoclaim(
                    key, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=want
                ),
            )
            cursor, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:
                trimmed = [_text(i) for i in reply[2]]
                log.error("claimed_entries_trimmed", stream=stream, group=group, ids=trimmed)
            claimed.extend(entries)
            if _text(cursor) == "0-0" or len(claimed) >= count:
                break
        if not claimed:
            return []
        ids = [_text(entry_id) for entry_id, _ in claimed]

        async def counts_of() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for entry_id in ids:
                pipe.xpending_range(key, group, min=entry_id, max=entry_id, count=1)
            return await pipe.execute()

        rows = await self.retrying("xpending", counts_of)
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for per_id in rows for p in per_id}
        log.warning("claimed_stale_entries", stream=stream, group=group, consumer=consumer, count=len(ids))
        return await self._deliver(stream, group, claimed, counts, 2)

    async def _deliver(
        self, stream: str, group: str, entries: list[tuple[Any, Any]], counts: dict[str, int], default: int
    ) -> list[Delivery]:
        """Decode entries into deliveries. Undecodable ones are dead-lettered and acked; entries trimmed from
        the stream while pending (fields None) are logged and acked, as there is nothing left to handle."""
        out: list[Delivery] = []
        bad: list[str] = []
        gone: list[str] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if fields is None:
                gone.append(entry_id)
                continue
            raw = fields.get(b"d")
            if raw is None:
                self.stats.invalid[stream] += 1
                self._dead.append((stream, repr(fields).encode(), "stream entry has no 'd' field"))
                bad.append(entry_id)
                continue
            msg = self.decode_or_none(stream, raw)
            if msg is None:
                bad.append(entry_id)
                continue
            out.append(Delivery(stream, entry_id, msg, counts.get(entry_id, default)))
        if gone:
            log.error("pending_entries_trimmed", stream=stream, group=group, ids=gone)
            await self.ack(stream, group, gone)
        if bad:
            await self.flush_dead_letters()
            await self.ack(stream, group, bad)  # only once parked: else they stay pending and come back
        return out

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        """XACK without waiting for the reply, on the stream-writer connection. An ack lost with the
        connection only means a redelivery, which every consumer handles idempotently."""
        if not entry_ids:
            return
        header = self._xack_headers.get((stream, group))
        if header is None:
            header = self._xack_headers[(stream, group)] = xack_header(self.key(stream).encode(), group.encode())
        packed = [encode_xack(header, list(entry_ids))]
        conn = self._xconn
        if conn is None or not conn.is_open:
            await self._raw_call("xack", packed)  # (re)connects, then waits for this one reply
            return
        try:
            conn.send(packed)
        except ConnectionError:
            log.warning("ack_lost_with_connection", stream=stream, group=group, entries=len(entry_ids))

    async def read_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[tuple[str, bytes]]:
        key = self.key(stream)
        rows = await self.retrying(
            "xrange", lambda: self._client.xrange(key, min=start, max=end, count=count)
        )
        return [(_text(entry_id), fields.get(b"d", b"")) for entry_id, fields in rows]

    async def stream_length(self, stream: str) -> int:
        key = self.key(stream)
        return int(await self.retrying("xlen", lambda: self._client.xlen(key)))

    # agent status ----------------------------------------------------------------------------------------
    async def set_status(self, agent: str, payload: bytes, ttl_s: int) -> None:
        key = self.key(f"status:{agent}")
        await self.retrying("set status", lambda: self._client.set(key, payload, ex=ttl_s))

    async def get_statuses(self) -> dict[str, bytes]:
        base = self.key("status:")
        pattern = _glob_escape(base) + "*"

        async def run() -> tuple[list[bytes], list[bytes | None]]:
            keys = [k async for k in self._client.scan_iter(match=pattern, count=1000)]
            values = await self._client.mget(keys) if keys else []
            return keys, values

        keys, values = await self.retrying("get statuses", run)
        cut = len(base.encode())
        return {k[cut:].decode(): v for k, v in zip(keys, values, strict=True) if v is not None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field_map(fields: Any) -> dict[bytes, bytes] | None:
    """A raw RESP entry's flat [field, value, ...] list as a dict (None for an entry trimmed while pending)."""
    return None if fields is None else dict(zip(fields[::2], fields[1::2]))


def _entries(resp: Any) -> list[tuple[Any, Any]]:
    """Entries of an XREADGROUP reply: [[stream, [(id, fields), ...]], ...] (None or [] when nothing came)."""
    return [e for _, entries in resp or () for e in entries]


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ignore(*_: Any) -> None:
    """Reply/loss handler of the stream writer: its replies are awaited through `call`."""


def _multi_exec(commands: Sequence[Sequence[bytes | str | int]]) -> list[bytes]:
    return [pack_command(b"MULTI"), *(pack_command(*c) for c in commands), pack_command(b"EXEC")]


def _exec_result(replies: list[Any]) -> list[Any]:
    errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
    result = replies[-1]
    if errors or not isinstance(result, list):
        raise RedisError(f"transaction refused: {errors[0] if errors else result}")
    return result


async def _completed(value: T) -> T:
    return value
