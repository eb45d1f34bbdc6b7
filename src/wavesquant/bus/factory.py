"""Choose the bus backend from configuration."""

from __future__ import annotations

from typing import Any

from wavesquant.bus.base import Bus


def make_bus(backend: str, url: str | None, prefix: str, **kw: Any) -> Bus:
    """"redis" -> RedisBus(url, prefix, **kw) (url required); "embedded" -> EmbeddedBus(prefix=prefix, **kw).
    Keyword arguments are passed through (stream_maxlen, event_log_maxlen, clock; client_name only matters
    for Redis and is ignored by the embedded bus)."""
    if backend == "redis":
        if not url:
            raise ValueError("the redis bus backend needs a Redis URL")
        from wavesquant.bus.redis_bus import RedisBus

        return RedisBus(url, prefix=prefix, **kw)
    if backend == "embedded":
        from wavesquant.bus.embedded import EmbeddedBus

        kw.pop("client_name", None)  # names Redis connections; nothing to name in process
        return EmbeddedBus(prefix=prefix, **kw)
    raise ValueError(f"unknown bus backend {backend!r} (expected 'redis' or 'embedded')")
