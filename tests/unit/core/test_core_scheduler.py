"""TimedLoop on a SimulatedClock (deterministic): drift-free grid, overruns skipped and counted, exceptions
survived, degraded after too many consecutive failures, paused loops keep time.

A body "takes time" by awaiting `clock.sleep`, since simulated time only moves when the test advances it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from wavesquant.core.clock import SimulatedClock
from wavesquant.core.scheduler import MIN_SLEEP_S, TimedLoop
from wavesquant.core.tiers import Tier

START = 1_000_000_000_000  # ns
MS = 1_000_000


class Recorder:
    """A loop body that records when it starts, optionally takes simulated time, and fails on demand."""

    def __init__(self, clock: SimulatedClock, takes_s: Callable[[int], float] = lambda k: 0.0,
                 fails: Callable[[int], bool] = lambda k: False) -> None:
        self.clock = clock
        self.takes_s = takes_s
        self.fails = fails
        self.starts: list[int] = []  # ns offsets from START
        self.finished = 0

    async def __call__(self) -> None:
        k = len(self.starts)
        self.starts.append(self.clock.now_ns() - START)
        duration = self.takes_s(k)
        if duration:
            await self.clock.sleep(duration)
        if self.fails(k):
            raise RuntimeError(f"boom {k}")
        self.finished += 1


@pytest.fixture
async def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[None]]]:
    started: list[asyncio.Task[None]] = []
    yield started
    for t in started:
        t.cancel()
    await asyncio.gather(*started, return_exceptions=True)


async def start(loop: TimedLoop, clock: SimulatedClock, tasks: list[asyncio.Task[None]],
                is_active: Callable[[], bool] = lambda: True) -> None:
    tasks.append(asyncio.create_task(loop.run(clock, is_active)))
    await asyncio.sleep(0)  # the loop reads its start time and parks on the clock


async def advance_in_steps(clock: SimulatedClock, to_ns: int, step_ns: int) -> None:
    while clock.now_ns() < to_ns:
        await clock.advance_to(min(clock.now_ns() + step_ns, to_ns))


@pytest.mark.parametrize("step_ns", [MS, 7 * MS, 10_000 * MS])
async def test_drift_free_even_when_the_body_takes_time(clock: SimulatedClock, tasks: list, step_ns: int) -> None:
    body = Recorder(clock, takes_s=lambda k: 0.03)  # 30% of the interval, every run
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 1000 * MS, step_ns)
    # run k starts at exactly start + k * interval, whatever the step size (a sleep(interval) loop would drift)
    assert body.starts == [k * 100 * MS for k in range(1, 11)]
    assert body.finished == 9  # the 10th run (started at 1.0 s) is still inside its 30 ms
    assert loop.stats.overruns == 0
    assert loop.stats.runs == 9


async def test_overrun_skips_missed_slots_without_a_burst(clock: SimulatedClock, tasks: list) -> None:
    body = Recorder(clock, takes_s=lambda k: 0.25 if k == 1 else 0.0)  # the 2nd run takes 2.5 intervals
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 800 * MS, MS)
    # run 2 starts at 0.2 s and ends at 0.45 s: the 0.3 and 0.4 slots are skipped, the loop resumes at 0.5 s
    assert body.starts == [100 * MS, 200 * MS, 500 * MS, 600 * MS, 700 * MS, 800 * MS]
    assert loop.stats.overruns == 2
    assert loop.stats.runs == 6


async def test_long_overrun_counts_every_missed_slot(clock: SimulatedClock, tasks: list) -> None:
    body = Recorder(clock, takes_s=lambda k: 1.05 if k == 0 else 0.0)
    loop = TimedLoop("ultra_fast_protection", Tier.HFT, 0.01, body)
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 1100 * MS, 10 * MS)
    # first run 10 ms -> 1060 ms: slots 20..1060 ms (105 of them) missed; next run at 1070 ms
    assert body.starts[:2] == [10 * MS, 1070 * MS]
    assert loop.stats.overruns == 105
    assert body.starts[1:] == [t * MS for t in range(1070, 1101, 10)]


async def test_exception_is_counted_and_the_schedule_kept(clock: SimulatedClock, tasks: list) -> None:
    body = Recorder(clock, takes_s=lambda k: 0.02, fails=lambda k: k in (1, 2))
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 550 * MS, 5 * MS)
    assert body.starts == [k * 100 * MS for k in range(1, 6)]
    assert loop.stats.runs == 5
    assert loop.stats.failures == 2
    assert loop.stats.consecutive_failures == 0  # the 4th run succeeded
    assert loop.stats.last_error == "RuntimeError: boom 2"
    assert not loop.degraded
    assert not tasks[0].done()


async def test_consecutive_failures_degrade_and_a_success_clears_it(clock: SimulatedClock, tasks: list) -> None:
    failing = {"on": True}
    body = Recorder(clock, fails=lambda k: failing["on"])
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body, max_consecutive_failures=3)
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 200 * MS, MS)
    assert (loop.stats.consecutive_failures, loop.degraded) == (2, False)
    await advance_in_steps(clock, START + 300 * MS, MS)
    assert (loop.stats.consecutive_failures, loop.degraded) == (3, True)
    await advance_in_steps(clock, START + 600 * MS, MS)
    assert (loop.stats.consecutive_failures, loop.stats.failures, loop.degraded) == (6, 6, True)
    failing["on"] = False
    await advance_in_steps(clock, START + 700 * MS, MS)
    assert (loop.stats.consecutive_failures, loop.stats.failures, loop.degraded) == (0, 6, False)
    assert loop.stats.runs == 7


async def test_paused_loop_skips_the_body_but_keeps_time(clock: SimulatedClock, tasks: list) -> None:
    active = {"on": True}
    body = Recorder(clock)
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    await start(loop, clock, tasks, lambda: active["on"])
    await advance_in_steps(clock, START + 250 * MS, 10 * MS)
    active["on"] = False
    await advance_in_steps(clock, START + 650 * MS, 10 * MS)
    assert body.starts == [100 * MS, 200 * MS]
    active["on"] = True
    await advance_in_steps(clock, START + 900 * MS, 10 * MS)
    assert body.starts == [100 * MS, 200 * MS, 700 * MS, 800 * MS, 900 * MS]  # back on the same grid
    assert loop.stats.runs == 5
    assert loop.stats.overruns == 0  # paused slots are not overruns


async def test_run_time_stats(clock: SimulatedClock, tasks: list) -> None:
    body = Recorder(clock)
    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    assert loop.stats.mean_s == 0.0
    await start(loop, clock, tasks)
    await advance_in_steps(clock, START + 300 * MS, 100 * MS)
    s = loop.stats
    assert s.runs == 3
    assert 0 <= s.last_s <= s.max_s
    assert s.mean_s == pytest.approx(s.total_s / 3)


async def test_cancel_is_not_a_failure(clock: SimulatedClock, tasks: list) -> None:
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, blocked)
    await start(loop, clock, tasks)
    await clock.advance_to(START + 100 * MS)
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert loop.stats.failures == 0
    assert loop.stats.runs == 1  # counted as a run, not a failure


@pytest.mark.parametrize("interval", [0.0, 0.0005, MIN_SLEEP_S * 0.999, -1.0])
def test_interval_below_one_millisecond_is_refused(interval: float) -> None:
    async def body() -> None:
        return None

    with pytest.raises(ValueError, match="below"):
        TimedLoop("x", Tier.HFT, interval, body)
    assert TimedLoop("x", Tier.HFT, 0.001, body).interval_s == 0.001


async def test_drift_free_when_the_body_awaits_without_taking_time(clock: SimulatedClock, tasks: list) -> None:
    starts: list[int] = []

    async def body() -> None:
        starts.append(clock.now_ns() - START)
        for _ in range(3):
            await asyncio.sleep(0)  # e.g. awaiting a lock or a write that completes at once

    loop = TimedLoop("signal_routing", Tier.FAST, 0.1, body)
    await start(loop, clock, tasks)
    await clock.advance_to(START + 1000 * MS)  # one jump, as a backtest driven by event time does
    assert starts == [k * 100 * MS for k in range(1, 11)]
    assert loop.stats.overruns == 0
