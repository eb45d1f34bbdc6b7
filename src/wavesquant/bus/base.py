"""The bus interface both backends (Redis, embedded) implement.

- `publish` routes a message by the registry: PUBLISH on its pub/sub channel, or XADD to its stream; messages
  flagged in the registry are also appended to the event log stream.
- `subscribe` yields *batches*: everything already queued is drained and handed over at once, decoded and
  validated. Anything that fails to decode is dead-lettered (raw payload + reason), counted per channel, and
  skipped: bad input never stops an agent.
- Streams are read through consumer groups with explicit acks; entries a dead consumer left pending are
  reclaimed with `claim_stale`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import structlog
from pydantic import ValidationError

from wavesquant.core.clock import Clock, LiveClock
from wavesquant.messages import Channel, Envelope, decode

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry delivered to a consumer group; ack it with `bus.ack(stream, group, [entry_id])`."""

    stream: str
    entry_id: str
    message: Envelope
    deliveries: int = 1  # >1 when redelivered (reclaimed from a dead consumer or read again from our PEL)


@dataclass(slots=True)
class BusStats:
    published: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    gaps: int = 0  # subscriber disconnected by the server (output buffer) and resubscribed: messages lost
    reconnects: int = 0
    connected: bool = False

    def snapshot(self) -> dict[str, int]:
        out: dict[str, int] = {"reconnects": self.reconnects, "gaps": self.gaps}
        for prefix, counter in (("pub", self.published), ("recv", self.received), ("invalid", self.invalid)):
            out.update({f"{prefix}:{k}": v for k, v in counter.items()})
        return out


class Subscription(ABC):
    """Async iterator of message batches from one or more pub/sub channels."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[list[Envelope]]: ...

    @abstractmethod
    def depth(self) -> int:
        """Messages received but not yet handed over."""

    @abstractmethod
    async def close(self) -> None: ...


class Bus(ABC):
    def __init__(
        self,
        prefix: str = "wq:",
        stream_maxlen: int = 100_000,
        event_log_maxlen: int = 1_000_000,
        clock: Clock | None = None,
    ) -> None:
        self.prefix = prefix
        self.clock = clock or LiveClock()
        self.stream_maxlen = stream_maxlen
        self.event_log_maxlen = event_log_maxlen
        self.stats = BusStats()
        self._dead: list[tuple[str, bytes, str]] = []  # (channel, raw, reason) awaiting the dead-letter stream

    def snapshot(self) -> dict[str, int]:
        """Counters for the heartbeat (backends add their own)."""
        return self.stats.snapshot()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def maxlen_of(self, stream: str) -> int:
        return self.event_log_maxlen if stream in (Channel.EVENTS, Channel.DEADLETTER) else self.stream_maxlen

    # lifecycle -------------------------------------------------------------------------------------------
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # publishing --------------------------------------------------------------------------------------------
    async def publish(self, msg: Envelope) -> None:
        await self.publish_many((msg,))

    @abstractmethod
    async def publish_many(self, msgs: Sequence[Envelope]) -> None:
        """Publish in order, batched (one pipeline / write). Pub/sub publishes are not awaited one by one."""

    @abstractmethod
    async def publish_raw(self, channel: str, payload: bytes) -> None:
        """Publish bytes as they are on a pub/sub channel (tools and tests; e.g. a malformed message)."""

    # pub/sub -------------------------------------------------------------------------------------------
    @abstractmethod
    def subscribe(self, channels: Iterable[str]) -> Subscription: ...

    # streams ---------------------------------------------------------------------------------------------
    @abstractmethod
    async def append_raw(self, stream: str, payload: bytes) -> str:
        """XADD bytes as they are (tools and tests). Returns the entry id."""

    @abstractmethod
    async def read_group(
        self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        """New entries for this consumer (creating the group at the stream's start if needed). Entries that fail
        to decode are dead-lettered and acked so they never block the group."""

    @abstractmethod
    async def pending_for(self, stream: str, group: str, consumer: str, count: int = 100) -> list[Delivery]:
        """Entries delivered to this consumer earlier and never acked (our own crash): handle them first."""

    @abstractmethod
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """Take over entries other (dead) consumers left unacked for longer than `min_idle_ms`."""

    @abstractmethod
    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None: ...

    @abstractmethod
    async def read_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Raw entries of a stream in order (event log replay, dead-letter inspection)."""

    @abstractmethod
    async def stream_length(self, stream: str) -> int: ...

    # agent status (latest heartbeat per agent, readable without subscribing) ----------------------------
    @abstractmethod
    async def set_status(self, agent: str, payload: bytes, ttl_s: int) -> None: ...

    @abstractmethod
    async def get_statuses(self) -> dict[str, bytes]: ...

    # shared helpers ------------------------------------------------------------------------------------
    def decode_or_none(self, channel: str, raw: bytes) -> Envelope | None:
        """Decode one payload; on failure count it and return None (the caller dead-letters it)."""
        try:
            msg = decode(raw)
        except (ValidationError, ValueError) as exc:
            self.stats.invalid[channel] += 1
            reason = _short_reason(exc)
            log.warning("invalid_message", channel=channel, reason=reason, count=self.stats.invalid[channel])
            self.park(channel, raw, reason)
            return None
        self.stats.received[channel] += 1
        return msg

    def park(self, channel: str, raw: bytes, reason: str) -> None:
        """Queue a payload for the dead-letter stream (written by the next `flush_dead_letters`)."""
        self._dead.append((channel, raw, reason))

    async def flush_dead_letters(self) -> None:
        """Park every payload that failed to decode in the dead-letter stream, with channel, reason and time."""
        dead, self._dead = self._dead, []
        for channel, raw, reason in dead:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.hex()
            entry = {"channel": channel, "reason": reason, "ts_ms": self.clock.now_ms(), "raw": text[:65536]}
            await self.append_raw(Channel.DEADLETTER, json.dumps(entry).encode())


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:3]]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return "; ".join(parts) + more
    return str(exc)[:300]
