"""Request budgets per (exchange, api key): one token bucket shared by every agent and process.

`SharedRateLimiter` keeps the bucket in Redis and updates it atomically in a Lua script that reads the Redis
server's clock, so any number of processes on any number of machines draw from the same budget.
`LocalRateLimiter` is the same bucket in process memory (tests, embedded mode with one process).

The bucket holds at most `capacity` tokens and refills continuously at `capacity / per_seconds` tokens per
second. A call costing `cost` tokens proceeds when that many tokens are available; otherwise it sleeps for the
time the refill needs and asks again (waiting calls reserve nothing, so under heavy contention a caller may
wait more than once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

Sleep = Callable[[float], Awaitable[None]]

# KEYS[1] bucket hash; ARGV: capacity, refill tokens per ms, cost, ttl ms. Returns ms to wait (0 = granted).
_TOKEN_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / rate)
  if wait < 1 then wait = 1 end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
"""


@dataclass(frozen=True, slots=True)
class RateBudget:
    """`capacity` request units per `per_seconds`, with bursts up to `capacity`."""

    capacity: float
    per_seconds: float

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.per_seconds <= 0:
            raise ValueError("capacity and per_seconds must be positive")

    @property
    def tokens_per_ms(self) -> float:
        return self.capacity / (self.per_seconds * 1000.0)


class RateLimiter(Protocol):
    async def acquire(self, cost: float = 1) -> None: ...


def _check_cost(cost: float, budget: RateBudget) -> None:
    if cost <= 0:
        raise ValueError(f"cost must be positive, got {cost}")
    if cost > budget.capacity:
        raise ValueError(f"cost {cost} exceeds the bucket capacity {budget.capacity}: it could never run")


class SharedRateLimiter:
    """Token bucket in Redis under ``{prefix}ratelimit:{exchange}:{key_id}``.

    `key_id` is a hash of the api key (see `credentials.key_id`), never the key itself.
    """

    def __init__(
        self,
        redis: Redis,
        exchange: str,
        key_id: str,
        budget: RateBudget,
        *,
        prefix: str = "wq:",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.key = f"{prefix}ratelimit:{exchange}:{key_id}"
        self.budget = budget
        self._sleep = sleep
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)
        # Keep an idle bucket for twice its refill period; a missing bucket starts full, as it would be.
        self._ttl_ms = max(int(budget.per_seconds * 2000), 1000)

    async def try_acquire(self, cost: float = 1) -> float:
        """Take `cost` tokens if available: returns 0.0 when granted, else the seconds to wait first."""
        _check_cost(cost, self.budget)
        wait_ms = await self._script(
            keys=[self.key], args=[self.budget.capacity, repr(self.budget.tokens_per_ms), cost, self._ttl_ms]
        )
        return int(wait_ms) / 1000.0

    async def acquire(self, cost: float = 1) -> None:
        while (wait := await self.try_acquire(cost)) > 0:
            await self._sleep(wait)


class LocalRateLimiter:
    """The same token bucket in process memory; share one instance between the callers of one budget."""

    def __init__(
        self,
        budget: RateBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self._tokens = budget.capacity
        self._ts_ms = clock() * 1000.0

    def try_acquire(self, cost: float = 1) -> float:
        _check_cost(cost, self.budget)
        now_ms = self._clock() * 1000.0
        if now_ms > self._ts_ms:
            refill = (now_ms - self._ts_ms) * self.budget.tokens_per_ms
            self._tokens = min(self.budget.capacity, self._tokens + refill)
            self._ts_ms = now_ms
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.budget.tokens_per_ms / 1000.0

    async def acquire(self, cost: float = 1) -> None:
        while (wait := self.try_acquire(cost)) > 0:
            await self._sleep(wait)
