"""Injected clocks. Agents never read the wall clock directly: live trading gets `LiveClock`, a backtest a
`SimulatedClock` driven by event time, so the same agent code runs deterministically in both."""

from __future__ import annotations

import asyncio
import heapq
import time
from abc import ABC, abstractmethod


class Clock(ABC):
    @abstractmethod
    def now_ns(self) -> int:
        """Nanoseconds since the epoch."""

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def now_s(self) -> float:
        return self.now_ns() / 1e9

    @abstractmethod
    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """Return once the clock reads at least `deadline_ns`."""

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until_ns(self.now_ns() + int(seconds * 1e9))


class LiveClock(Clock):
    """Wall-clock time (epoch ns), sleeping on the event loop's monotonic timer so wall-clock jumps do not
    stretch or shrink sleeps."""

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        # never early: event-loop timers (uvloop's are 1 ms grained) can fire a little before the deadline;
        # a re-sleep is at least 1 ms, since shorter sleeps return at once under uvloop and would spin
        while (remaining := deadline_ns - time.time_ns()) > 0:
            await asyncio.sleep(max(remaining / 1e9, 0.001))


_MAX_YIELDS = 200  # a woken task that never sleeps on the clock again gets this many event-loop turns


class SimulatedClock(Clock):
    """Event-time clock for backtests and tests: time moves only when `advance_to`/`advance` is called, and
    sleepers wake in deadline order as it passes their deadlines."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    def now_ns(self) -> int:
        return self._now_ns

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (deadline_ns, self._seq, fut))
        await fut

    async def advance_to(self, t_ns: int) -> None:
        """Move time forward to `t_ns`, waking every sleeper whose deadline passes, in order; each woken task
        runs before time moves further."""
        if t_ns < self._now_ns:
            raise ValueError(f"simulated time cannot go back ({t_ns} < {self._now_ns})")
        while self._sleepers and self._sleepers[0][0] <= t_ns:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now_ns = max(self._now_ns, deadline)
            if not fut.done():
                fut.set_result(None)
            parked = self._seq
            for _ in range(_MAX_YIELDS):  # let the woken task run until it sleeps on this clock again
                await asyncio.sleep(0)
                if self._seq != parked:
                    break
        self._now_ns = t_ns

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now_ns + int(seconds * 1e9))
