"""Clocks: SimulatedClock moves only when told and wakes sleepers in deadline order; LiveClock reads the wall
clock and its sleeps end at or after their deadline (loose upper bounds: never timing-tight)."""

from __future__ import annotations

import asyncio
import time

import pytest

from wavesquant.core.clock import LiveClock, SimulatedClock


async def test_simulated_time_moves_only_on_advance() -> None:
    clock = SimulatedClock(5_000_000_000)
    assert clock.now_ns() == 5_000_000_000
    assert clock.now_ms() == 5_000
    assert clock.now_s() == 5.0
    await asyncio.sleep(0.01)
    assert clock.now_ns() == 5_000_000_000
    await clock.advance(1.5)
    assert clock.now_ns() == 6_500_000_000
    await clock.advance_to(7_000_000_000)
    assert clock.now_ms() == 7_000


async def test_simulated_time_cannot_go_back() -> None:
    clock = SimulatedClock(100)
    with pytest.raises(ValueError, match="cannot go back"):
        await clock.advance_to(99)
    await clock.advance_to(100)  # standing still is fine
    assert clock.now_ns() == 100


async def test_sleepers_wake_in_deadline_order_at_their_deadline() -> None:
    clock = SimulatedClock(0)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, deadline: int) -> None:
        await clock.sleep_until_ns(deadline)
        woke.append((name, clock.now_ns()))

    tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("c", 300), ("a", 100), ("b", 200), ("a2", 100))]
    await asyncio.sleep(0)
    await clock.advance_to(150)
    assert woke == [("a", 100), ("a2", 100)]  # same deadline: in the order they went to sleep
    await clock.advance_to(1_000)
    assert woke == [("a", 100), ("a2", 100), ("b", 200), ("c", 300)]
    assert clock.now_ns() == 1_000
    await asyncio.gather(*tasks)


async def test_a_woken_task_can_sleep_again_within_the_same_advance() -> None:
    clock = SimulatedClock(0)
    seen: list[int] = []

    async def ticker() -> None:
        for _ in range(5):
            await clock.sleep(0.1)
            seen.append(clock.now_ns())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.advance_to(10**9)  # one jump covers all five sleeps, each woken at its own deadline
    assert seen == [100_000_000 * k for k in range(1, 6)]
    await task


async def test_sleep_until_a_past_deadline_returns_at_once() -> None:
    clock = SimulatedClock(1_000)
    await asyncio.wait_for(clock.sleep_until_ns(999), timeout=5)
    await asyncio.wait_for(clock.sleep_until_ns(1_000), timeout=5)
    await asyncio.wait_for(clock.sleep(0), timeout=5)
    assert clock.now_ns() == 1_000


async def test_live_clock_reads_the_wall_clock() -> None:
    clock = LiveClock()
    before = time.time_ns()
    now = clock.now_ns()
    after = time.time_ns()
    assert before <= now <= after
    assert abs(clock.now_ms() - time.time_ns() // 1_000_000) < 5_000
    assert abs(clock.now_s() - time.time()) < 5


async def _early_wakes(clock: LiveClock, rounds: int) -> int:
    early = 0
    for i in range(rounds):
        deadline = time.time_ns() + 1_200_000 + i * 37_000
        await clock.sleep_until_ns(deadline)
        if time.time_ns() < deadline:
            early += 1
    return early


async def test_live_sleep_until_returns_after_the_deadline() -> None:
    clock = LiveClock()
    deadline = time.time_ns() + 30_000_000
    t0 = time.monotonic()
    await clock.sleep_until_ns(deadline)
    assert time.time_ns() >= deadline
    assert time.monotonic() - t0 < 10  # loose: a loaded machine may be slow, never tight
    await asyncio.wait_for(clock.sleep_until_ns(time.time_ns() - 10**9), timeout=10)  # past: returns at once
    assert await _early_wakes(clock, 50) == 0


def test_live_sleep_until_never_returns_early_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    early = uvloop.run(_early_wakes(LiveClock(), 200))
    assert early == 0
