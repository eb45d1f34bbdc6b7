"""A Redis pub/sub subscription on its own raw connection.

Replies are parsed by hiredis as bytes arrive and queued raw; the iterator drains everything queued as one
batch and decodes it. When the connection drops (Redis restarted, or killed us for exceeding the pub/sub
output buffer limit) the subscription reconnects with jittered exponential backoff, resubscribes and counts a
gap: messages published meanwhile are lost, which is the pub/sub contract. Iteration only ends on `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from itertools import count
from typing import TYPE_CHECKING, Any

import hiredis
import structlog

from wavesquant.bus.base import Subscription
from wavesquant.bus.rawconn import HandshakeError, RespConnection, open_connection
from wavesquant.bus.resp import pack_command
from wavesquant.messages import Envelope

if TYPE_CHECKING:
    from wavesquant.bus.redis_bus import RedisBus

log = structlog.get_logger(__name__)

BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 5.0
_ids = count(1)


def backoff_delays(start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S) -> Iterator[float]:
    """Jittered exponential backoff: start, doubling up to cap, each scaled by a random factor in [0.5, 1]."""
    delay = start
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, cap)


class RedisSubscription(Subscription):
    def __init__(self, bus: RedisBus, channels: list[str], max_queue: int = 100_000) -> None:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        self._bus = bus
        self.channels = channels
        self.name = f"{bus.client_name}-sub{next(_ids)}"
        self._names: dict[bytes, str] = {bus.key(c).encode(): c for c in channels}
        self._max_queue = max_queue
        self._queue: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._confirmed = 0
        self._reading_paused = False
        self._conn: RespConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # connection ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting (idempotent); needs a running event loop."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def ready(self, timeout: float | None = 10.0) -> None:
        """Wait until Redis confirmed every SUBSCRIBE (messages published from then on are received)."""
        self.start()
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def _run(self) -> None:
        bus = self._bus
        first = True
        delays = backoff_delays()
        while not self._closed:
            try:
                conn = await open_connection(
                    bus.connector, bus.address, self.name, self._on_replies, self._on_lost,
                    bus.connect_timeout_s,
                )
            except (OSError, ConnectionError, TimeoutError, HandshakeError) as exc:
                bus.mark_down(self.name)
                delay = next(delays)
                log.warning("subscriber_connect_failed", conn=self.name, error=str(exc) or type(exc).__name__,
                            retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            self._conn = conn
            self._confirmed = 0
            try:
                conn.write(pack_command("SUBSCRIBE", *self._names))
            except ConnectionError:
                continue
            if self._reading_paused:
                conn.pause_reading()
            delays = backoff_delays()
            if not first:
                bus.stats.reconnects += 1
                bus.stats.gaps += 1
                log.warning(
                    "subscriber_reconnected", conn=self.name, channels=self.channels, gaps=bus.stats.gaps
                )
            first = False
            bus.mark_up(self.name)
            await asyncio.shield(conn.closed)
            self._subscribed.clear()
            self._conn = None
            if self._closed:
                break
            bus.mark_down(self.name)
            log.warning(
                "subscriber_disconnected", conn=self.name, channels=self.channels, queued=len(self._queue)
            )

    def _on_lost(self, conn: RespConnection, exc: Exception | None) -> None:
        self._subscribed.clear()

    def _on_replies(self, replies: list[Any]) -> None:
        queue = self._queue
        names = self._names
        before = len(queue)
        for reply in replies:
            if type(reply) is list:
                kind = reply[0]
                if kind == b"message":
                    channel = names.get(reply[1])
                    if channel is None:
                        channel = reply[1].decode("utf-8", "replace")
                    queue.append((channel, reply[2]))
                elif kind == b"subscribe":
                    self._confirmed += 1
                    if self._confirmed >= len(names):
                        self._subscribed.set()
            elif isinstance(reply, hiredis.ReplyError):
                log.error("subscriber_error_reply", conn=self.name, error=str(reply))
        if len(queue) != before:
            self._wake.set()
            if len(queue) >= self._max_queue and not self._reading_paused:
                # Stop reading: Redis buffers for us and, past its output-buffer limit, drops us (counted gap)
                # instead of this process growing without bound.
                self._reading_paused = True
                if self._conn is not None:
                    self._conn.pause_reading()
                log.warning("subscriber_backpressure", conn=self.name, queued=len(queue))

    # Subscription ----------------------------------------------------------------------------------------
    def depth(self) -> int:
        return len(self._queue)

    async def __aiter__(self) -> AsyncIterator[list[Envelope]]:  # type: ignore[override]
        self.start()
        bus = self._bus
        decode = bus.decode_or_none
        while not self._closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            raw, self._queue = self._queue, []
            if self._reading_paused:
                self._reading_paused = False
                if self._conn is not None:
                    self._conn.resume_reading()
            batch: list[Envelope] = []
            for channel, payload in raw:
                msg = decode(channel, payload)
                if msg is not None:
                    batch.append(msg)
            if bus.has_dead_letters:
                try:
                    await bus.flush_dead_letters()
                except Exception as exc:  # the invalid messages were counted and logged already
                    log.error("dead_letter_flush_failed", conn=self.name, error=str(exc))
            if batch:
                yield batch

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()
        self._bus.mark_gone(self.name)
        self._bus.forget(self)
