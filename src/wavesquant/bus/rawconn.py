"""Raw asyncio RESP connections for the pub/sub hot path: an `asyncio.Protocol` whose replies are parsed by
hiredis as bytes arrive, with no per-command future. The publisher writes pipelined PUBLISH commands without
awaiting replies; the subscriber receives pushed messages. Both authenticate and name themselves first."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
import structlog

from wavesquant.bus.resp import CLIENT_REPLY_ON, CLIENT_REPLY_SKIP, RedisAddress

log = structlog.get_logger(__name__)

RepliesHandler = Callable[[list[Any]], None]
LostHandler = Callable[["RespConnection", Exception | None], None]
ProtocolFactory = Callable[[], asyncio.Protocol]
Connector = Callable[[ProtocolFactory], Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]]

# TCP keepalive: a peer that vanished without closing (host down, network cut) is noticed in ~25 s
_KEEPALIVE = (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))


class HandshakeError(Exception):
    """Redis refused AUTH or CLIENT SETNAME (wrong password, ACL): retrying at once will not help."""


def _ignore_replies(replies: list[Any]) -> None:
    return None


def _ignore_lost(conn: RespConnection, exc: Exception | None) -> None:
    return None


class _Request:
    """The replies one `request` is waiting for: its future resolves once all have arrived."""

    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], n: int) -> None:
        self.future = future
        self.replies: list[Any] = []
        self.remaining = n


class RespConnection(asyncio.Protocol):
    """One RESP2 connection. Replies to commands sent with `call` resolve their futures in order; every other
    complete reply is handed to `on_replies` in one list per chunk of bytes received."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_replies: RepliesHandler = _ignore_replies
        self.on_lost: LostHandler = _ignore_lost
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[_Request | None] = deque()  # None: the reply to a `send`, not awaited
        self.skips_replies = False  # Redis takes CLIENT REPLY SKIP here: `send` commands get no reply at all
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        replies: list[Any] = []
        try:
            waiters = self._waiters
            reply = reader.gets()
            while reply is not False:
                if waiters:
                    request = waiters[0]
                    if request is None:
                        waiters.popleft()
                    else:
                        request.replies.append(reply)
                        request.remaining -= 1
                        if not request.remaining:
                            waiters.popleft()
                            if not request.future.done():
                                request.future.set_result(request.replies)
                else:
                    replies.append(reply)
                reply = reader.gets()
        except hiredis.ProtocolError as exc:
            log.error("resp_protocol_error", conn=self.name, error=str(exc))
            self.abort()
            return
        if replies:
            self.on_replies(replies)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._writable.set()
        while self._waiters:
            request = self._waiters.popleft()
            if request is not None and not request.future.done():
                request.future.set_exception(ConnectionError(f"{self.name}: connection lost"))
        if not self.closed.done():
            self.closed.set_result(exc)
        self.on_lost(self, exc)

    # use ---------------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def write_paused(self) -> bool:
        return not self._writable.is_set()

    def write(self, data: bytes) -> None:
        """Queue bytes on the socket (never blocks). Raises ConnectionError when the connection is gone."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError(f"{self.name}: not connected")
        transport.write(data)

    async def wait_writable(self) -> None:
        """Return once the write buffer is below its high-water mark (or the connection is gone)."""
        await self._writable.wait()

    async def call(self, commands: Sequence[bytes], timeout: float) -> list[Any]:
        """Send commands (already RESP-encoded) in one write and await their replies, in order. Only for a
        connection with no unanswered fire-and-forget commands in flight (the handshake)."""
        replies = self.request(commands)
        # a timer that fails the future: cheaper than asyncio.timeout on every call, and a cancellation of
        # the caller stays a cancellation (wait_for on 3.11 can swallow one that races the result)
        timer = asyncio.get_running_loop().call_later(timeout, _time_out, replies, self.name)
        try:
            return await replies
        finally:
            timer.cancel()

    def request(self, commands: Sequence[bytes]) -> asyncio.Future[list[Any]]:
        """Send commands in one write now and return a future of their replies, in order: the caller may go
        on writing (later writes on this connection reach Redis after these) before it awaits them."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not commands:
            future.set_result([])
            return future
        self.write(b"".join(commands))
        self._waiters.append(_Request(future, len(commands)))
        return future

    def send(self, commands: Sequence[bytes]) -> None:
        """Send commands whose replies nobody awaits (e.g. XACK), on a connection also used with `call`. Where
        Redis takes CLIENT REPLY SKIP (see `allow_skipping_replies`) each goes with it: Redis writes no reply and
        this process is not woken to read one. Else their replies are skipped in order, so the awaited ones
        still match."""
        if self.skips_replies:
            self.write(b"".join(CLIENT_REPLY_SKIP + c for c in commands))
            return
        self.write(b"".join(commands))
        self._waiters.extend([None] * len(commands))

    async def allow_skipping_replies(self, timeout: float) -> bool:
        """Ask Redis whether it takes CLIENT REPLY (some proxies and managed services refuse it); `send` skips
        replies only where it does. Call before anything else is in flight; a connection that does not answer
        is aborted."""
        try:
            (reply,) = await self.call([CLIENT_REPLY_ON], timeout)
        except BaseException:
            self.abort()
            raise
        self.skips_replies = not isinstance(reply, hiredis.ReplyError)
        return self.skips_replies

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        """Close and wait until the transport reports the connection lost."""
        if self._transport is not None:
            self._transport.close()
        await asyncio.shield(self.closed)


def _time_out(replies: asyncio.Future[list[Any]], name: str) -> None:
    if not replies.done():
        replies.set_exception(TimeoutError(f"{name}: no reply in time"))


def tcp_connector(address: RedisAddress, timeout: float) -> Connector:
    """The default connector: TCP (keepalive tuned to notice a dead peer) or a unix socket; TLS for rediss."""

    async def connect(factory: ProtocolFactory) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        if address.path:
            coro = loop.create_unix_connection(factory, address.path)
        else:
            ctx = ssl.create_default_context() if address.tls else None
            coro = loop.create_connection(factory, address.host, address.port, ssl=ctx)
        transport, protocol = await asyncio.wait_for(coro, timeout)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for opt, value in _KEEPALIVE:
                    if hasattr(socket, opt):
                        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            except OSError:  # some transports (e.g. TLS) wrap the socket; keepalive is a nicety
                pass
        return transport, protocol

    return connect


async def open_connection(
    connector: Connector,
    address: RedisAddress,
    name: str,
    on_replies: RepliesHandler,
    on_lost: LostHandler,
    timeout: float,
) -> RespConnection:
    """Connect, authenticate and name the connection; only then install the handlers. Raises OSError /
    ConnectionError / TimeoutError when Redis is unreachable, HandshakeError when it refuses us."""
    _, protocol = await connector(lambda: RespConnection(name))
    assert isinstance(protocol, RespConnection)
    try:
        commands = address.handshake(name)
        if commands:
            for reply in await protocol.call(commands, timeout):
                if isinstance(reply, hiredis.ReplyError):
                    raise HandshakeError(f"{address.describe()} refused connection {name!r}: {reply}")
    except BaseException:
        protocol.abort()
        raise
    protocol.on_replies = on_replies
    protocol.on_lost = on_lost
    return protocol
