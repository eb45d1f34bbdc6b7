"""In-process bus: the same interface and semantics as Redis, no server. Used by `wq run` and backtests.

Messages are immutable, so pub/sub hands the same objects to every subscriber without copying; raw payloads
(tools, tests) are decoded at the subscriber exactly as on Redis. Streams keep consumer groups with pending
entries and acks, so the money path behaves the same on both backends.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from wavesquant.bus.base import Bus, Delivery, Subscription
from wavesquant.messages import Channel, Envelope, encode, route_of

Payload = Envelope | bytes


class EmbeddedSubscription(Subscription):
    def __init__(self, bus: EmbeddedBus, channels: list[str]) -> None:
        self._bus = bus
        self.channels = channels
        self._queue: deque[tuple[str, Payload]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, channel: str, item: Payload) -> None:
        self._queue.append((channel, item))
        self._ready.set()

    def depth(self) -> int:
        return len(self._queue)

    async def __aiter__(self) -> AsyncIterator[list[Envelope]]:  # type: ignore[override]
        while not self._closed:
            await self._ready.wait()
            self._ready.clear()
            batch: list[Envelope] = []
            while self._queue:
                channel, item = self._queue.popleft()
                if isinstance(item, bytes):
                    msg = self._bus.decode_or_none(channel, item)
                    if msg is not None:
                        batch.append(msg)
                else:
                    self._bus.stats.received[channel] += 1
                    batch.append(item)
            await self._bus.flush_dead_letters()
            if batch:
                yield batch

    async def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._bus._unsubscribe(self)


@dataclass
class _Group:
    next_index: int = 0  # absolute index of the next never-delivered entry
    pending: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # id -> (consumer, since_ns, count)


@dataclass
class _Stream:
    entries: deque[tuple[str, Payload]] = field(default_factory=deque)
    base: int = 0  # absolute index of entries[0]
    last_ms: int = 0
    seq: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)  # id -> absolute index
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class EmbeddedBus(Bus):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._subs: dict[str, set[EmbeddedSubscription]] = defaultdict(set)
        self._streams: dict[str, _Stream] = defaultdict(_Stream)
        self._status: dict[str, tuple[bytes, int]] = {}

    async def start(self) -> None:
        self.stats.connected = True

    async def close(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                await sub.close()
        self.stats.connected = False

    # pub/sub -------------------------------------------------------------------------------------------
    async def publish_many(self, msgs: Sequence[Envelope]) -> None:
        for msg in msgs:
            route = route_of(msg)
            channel = route.channel.value
            if route.channel.transport == "stream":
                self._append(channel, msg)
            else:
                for sub in self._subs.get(channel, ()):
                    sub.push(channel, msg)
            if route.event_log:
                self._append(Channel.EVENTS.value, msg)
            self.stats.published[channel] += 1

    async def publish_raw(self, channel: str, payload: bytes) -> None:
        for sub in self._subs.get(channel, ()):
            sub.push(channel, payload)

    def subscribe(self, channels: Iterable[str]) -> Subscription:
        sub = EmbeddedSubscription(self, [str(c) for c in channels])
        for channel in sub.channels:
            self._subs[channel].add(sub)
        return sub

    def _unsubscribe(self, sub: EmbeddedSubscription) -> None:
        for channel in sub.channels:
            self._subs[channel].discard(sub)

    # streams ---------------------------------------------------------------------------------------------
    def _append(self, stream: str, payload: Payload) -> str:
        s = self._streams[stream]
        now_ms = self.clock.now_ms()
        if now_ms > s.last_ms:
            s.last_ms, s.seq = now_ms, 0
        else:
            s.seq += 1
        entry_id = f"{s.last_ms}-{s.seq}"
        s.index[entry_id] = s.base + len(s.entries)
        s.entries.append((entry_id, payload))
        while len(s.entries) > self.maxlen_of(stream):
            old_id, _ = s.entries.popleft()
            del s.index[old_id]
            s.base += 1
        s.changed.set()
        return entry_id

    async def append_raw(self, stream: str, payload: bytes) -> str:
        return self._append(str(stream), payload)

    def _entry(self, s: _Stream, entry_id: str) -> tuple[str, Payload] | None:
        idx = s.index.get(entry_id)
        return None if idx is None else s.entries[idx - s.base]

    def _deliver(self, stream: str, group: _Group, entries: list[tuple[str, Payload]], consumer: str,
                 redelivery: bool) -> list[Delivery]:
        out: list[Delivery] = []
        now = self.clock.now_ns()
        for entry_id, payload in entries:
            prev = group.pending.get(entry_id)
            count = (prev[2] + 1) if prev else 1
            if isinstance(payload, bytes):
                msg = self.decode_or_none(stream, payload)
                if msg is None:  # dead-lettered; acked so it never blocks the group
                    group.pending.pop(entry_id, None)
                    continue
            else:
                msg = payload
                if not redelivery:
                    self.stats.received[stream] += 1
            group.pending[entry_id] = (consumer, now, count)
            out.append(Delivery(stream, entry_id, msg, count if redelivery else 1))
        return out

    async def read_group(self, stream: str, group: str, consumer: str, count: int = 100,
                         block_ms: int = 1000) -> list[Delivery]:
        s = self._streams[str(stream)]
        g = s.groups.setdefault(group, _Group(next_index=s.base))
        if g.next_index - s.base >= len(s.entries) and block_ms > 0:
            s.changed.clear()
            try:
                async with asyncio.timeout(block_ms / 1000):
                    await s.changed.wait()
            except TimeoutError:
                return []
        start = max(g.next_index, s.base) - s.base
        batch = [s.entries[i] for i in range(start, min(start + count, len(s.entries)))]
        g.next_index = s.base + start + len(batch)
        out = self._deliver(stream, g, batch, consumer, redelivery=False)
        await self.flush_dead_letters()
        return out

    async def pending_for(self, stream: str, group: str, consumer: str, count: int = 100) -> list[Delivery]:
        s = self._streams[str(stream)]
        g = s.groups.setdefault(group, _Group(next_index=s.base))
        self._forget_trimmed(s, g)
        ids = [i for i, (c, _, _) in g.pending.items() if c == consumer][:count]
        entries = [e for e in (self._entry(s, i) for i in ids) if e is not None]
        return self._deliver(stream, g, entries, consumer, redelivery=True)

    @staticmethod
    def _forget_trimmed(s: _Stream, g: _Group) -> None:
        """Pending ids whose entries were trimmed away are dropped, as Redis's XAUTOCLAIM does."""
        for entry_id in [i for i in g.pending if i not in s.index]:
            del g.pending[entry_id]

    async def claim_stale(self, stream: str, group: str, consumer: str, min_idle_ms: int,
                          count: int = 100) -> list[Delivery]:
        s = self._streams[str(stream)]
        g = s.groups.setdefault(group, _Group(next_index=s.base))
        self._forget_trimmed(s, g)
        cutoff = self.clock.now_ns() - min_idle_ms * 1_000_000
        ids = [i for i, (_, since, _) in g.pending.items() if since <= cutoff][:count]
        entries = [e for e in (self._entry(s, i) for i in ids) if e is not None]
        return self._deliver(stream, g, entries, consumer, redelivery=True)

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        g = self._streams[str(stream)].groups.get(group)
        if g is not None:
            for entry_id in entry_ids:
                g.pending.pop(entry_id, None)

    async def read_range(self, stream: str, start: str = "-", end: str = "+",
                         count: int | None = None) -> list[tuple[str, bytes]]:
        s = self._streams[str(stream)]
        if count is not None and count <= 0:
            return []
        lo = _parse_id(start, low=True)
        hi = _parse_id(end, low=False)
        out: list[tuple[str, bytes]] = []
        for entry_id, payload in s.entries:
            if lo <= _parse_id(entry_id, low=True) <= hi:
                out.append((entry_id, payload if isinstance(payload, bytes) else encode(payload)))
                if count is not None and len(out) >= count:
                    break
        return out

    async def stream_length(self, stream: str) -> int:
        return len(self._streams[str(stream)].entries)

    # status ----------------------------------------------------------------------------------------------
    async def set_status(self, agent: str, payload: bytes, ttl_s: int) -> None:
        self._status[agent] = (payload, self.clock.now_ns() + ttl_s * 1_000_000_000)

    async def get_statuses(self) -> dict[str, bytes]:
        now = self.clock.now_ns()
        return {agent: payload for agent, (payload, until) in self._status.items() if until > now}


def _parse_id(entry_id: str, low: bool) -> tuple[int, int]:
    if entry_id == "-":
        return (0, 0)
    if entry_id == "+":
        return (2**63, 2**63)
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq) if seq else (0 if low else 2**63))
