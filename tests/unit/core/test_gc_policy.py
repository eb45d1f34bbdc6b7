"""The garbage-collector policy of agent processes: full collections only on their schedule, young ones
automatic, and a Runtime that owns its heap runs the schedule (the process-wide GC state is restored after
each test)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from wavesquant.config import Settings
from wavesquant.core.clock import SimulatedClock
from wavesquant.gc_policy import NEVER, FullCollectionStats, defer_full_collections, run_full_collections
from wavesquant.runtime import Runtime


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
        (gc.enable if enabled else gc.disable)()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _garbage_cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_deferring_keeps_young_collections_and_stops_automatic_full_ones(gc_state: None) -> None:
    young, middle, _ = gc.get_threshold()
    defer_full_collections()
    assert gc.get_threshold() == (young, middle, NEVER)


async def test_full_collections_run_on_their_schedule_and_free_cycles(gc_state: None) -> None:
    gc.disable()  # nothing but the scheduled collection may free the cycle
    clock = SimulatedClock()
    stats = FullCollectionStats()
    task = asyncio.create_task(run_full_collections(clock, 60.0, stats))
    try:
        cycle = _garbage_cycle()
        await asyncio.sleep(0)
        await clock.advance(59.0)
        assert stats.runs == 0 and cycle() is not None
        await clock.advance(1.0)
        assert stats.runs == 1
        assert cycle() is None and stats.collected >= 2
        assert 0 < stats.last_s == stats.max_s
        await clock.advance(120.0)
        assert stats.runs == 3
    finally:
        task.cancel()


async def test_a_runtime_that_owns_its_heap_runs_the_full_collections(gc_state: None) -> None:
    rt = Runtime(Settings(gc={"full_collection_interval_s": 0.05}), names=("intelligence",))
    rt.own_the_heap()
    assert gc.get_threshold()[2] == NEVER
    assert gc.get_freeze_count() > 0
    assert await rt.run(duration_s=0.4) == 0
    assert rt.full_collections is not None and rt.full_collections.runs >= 2


def test_interval_zero_leaves_pythons_own_policy(gc_state: None) -> None:
    before = gc.get_threshold()
    rt = Runtime(Settings(gc={"full_collection_interval_s": 0}), names=())
    rt.own_the_heap()
    assert gc.get_threshold() == before
    assert rt.full_collections is None
