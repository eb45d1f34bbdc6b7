"""Looking at a running system over Redis: channel rates and tails."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from wavesquant.config import Settings
from wavesquant.core.clock import LiveClock
from wavesquant.messages import PUBSUB_CHANNELS, STREAMS, Channel, Envelope, decode, route_of


def _redis_bus(settings: Settings) -> Any:
    from wavesquant.runtime import make_bus

    return make_bus(settings, LiveClock())


async def sample_channels(settings: Settings, seconds: float) -> list[dict[str, Any]]:
    """Subscribers and message rate of every pub/sub channel, length and growth rate of every stream."""
    bus = _redis_bus(settings)
    await bus.start()
    client = bus.client
    counts: Counter[str] = Counter()
    sub = bus.subscribe(list(PUBSUB_CHANNELS))

    async def count() -> None:
        async for batch in sub:
            for msg in batch:
                counts[route_of(msg).channel.value] += 1

    try:
        before = {s.value: await bus.stream_length(s) for s in STREAMS}
        task = asyncio.create_task(count())
        await asyncio.sleep(seconds)
        task.cancel()
        after = {s.value: await bus.stream_length(s) for s in STREAMS}
        numsub = dict(await client.pubsub_numsub(*[bus.key(c) for c in PUBSUB_CHANNELS]))
    finally:
        await sub.close()
        await bus.close()
    rows = []
    for c in PUBSUB_CHANNELS:
        subs = numsub.get(bus.key(c).encode(), numsub.get(bus.key(c), 0))
        rows.append({"channel": c.value, "kind": "pub/sub", "size": max(int(subs) - 1, 0),
                     "rate": counts[c.value] / seconds})
    for s in STREAMS:
        rows.append({"channel": s.value, "kind": "stream", "size": after[s.value],
                     "rate": max(after[s.value] - before[s.value], 0) / seconds})
    return rows


async def tail_channel(settings: Settings, channel: Channel, show: Callable[[Envelope | None, str | None], None],
                       count: int | None) -> None:
    bus = _redis_bus(settings)
    await bus.start()
    seen = 0
    try:
        if channel.transport == "stream":
            from wavesquant.ops.queries import last_entry_id

            last = await last_entry_id(bus.client, bus.key(channel))  # fixed once: no entry between reads is skipped
            while count is None or seen < count:
                entries = await bus.client.xread({bus.key(channel): last}, block=1000, count=100)
                for _, items in entries or []:
                    for entry_id, fields in items:
                        last = entry_id
                        raw = fields.get(b"d") or fields.get("d") or b""
                        try:
                            show(decode(raw), None)
                        except ValueError as exc:
                            show(None, f"{str(exc).splitlines()[0]}: {raw[:200]!r}")
                        seen += 1
        else:
            sub = bus.subscribe([channel])
            try:
                async for batch in sub:
                    for msg in batch:
                        show(msg, None)
                        seen += 1
                    if count is not None and seen >= count:
                        break
            finally:
                await sub.close()
    finally:
        await bus.close()
