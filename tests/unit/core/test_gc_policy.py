"""The garbage-collector policy of agent processes: no automatic full collections, survivors frozen on a
schedule, a rare full collection that reaches frozen objects too, and a Runtime that owns its heap runs it (the
process-wide GC state is restored after each test)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from wavesquant.config import Settings
from wavesquant.core.clock import SimulatedClock
from wavesquant.gc_policy import NEVER, CollectionStats, defer_full_collections, run_collections
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


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def test_deferring_keeps_young_collections_and_stops_automatic_full_ones(gc_state: None) -> None:
    young, middle, _ = gc.get_threshold()
    defer_full_collections()
    assert gc.get_threshold() == (young, middle, NEVER)


async def test_survivors_are_frozen_and_the_full_collection_reaches_them(gc_state: None) -> None:
    gc.disable()  # nothing but the schedule may collect
    clock = SimulatedClock()
    stats = CollectionStats()
    task = asyncio.create_task(run_collections(clock, 10.0, 60.0, stats))
    try:
        await asyncio.sleep(0)
        young_garbage = _cycle()[1]
        live, _ = _cycle()
        await clock.advance(10.0)
        assert stats.freezes == 1 and stats.full_runs == 0
        assert young_garbage() is None  # the young collection before the freeze freed it
        assert not any(o is live for o in gc.get_objects())  # frozen: out of every collection's reach

        frozen_garbage = _cycle()[1]  # garbage that survived into the frozen heap: only a full run frees it
        holder = [frozen_garbage()]
        await clock.advance(10.0)
        holder.clear()
        assert frozen_garbage() is not None
        await clock.advance(40.0)  # 60 s: the full collection, frozen objects included
        assert stats.full_runs == 1 and stats.full_collected >= 2
        assert frozen_garbage() is None
        assert 0 < stats.full_last_s == stats.full_max_s
        assert gc.get_freeze_count() > 0  # the survivors are frozen again
    finally:
        task.cancel()


async def test_full_interval_zero_means_never(gc_state: None) -> None:
    clock = SimulatedClock()
    stats = CollectionStats()
    task = asyncio.create_task(run_collections(clock, 10.0, 0.0, stats))
    try:
        await asyncio.sleep(0)
        await clock.advance(100_000.0)
        assert stats.full_runs == 0 and stats.freezes >= 1
    finally:
        task.cancel()


async def test_a_runtime_that_owns_its_heap_runs_the_schedule(gc_state: None) -> None:
    rt = Runtime(Settings(gc={"freeze_interval_s": 0.05, "full_collection_interval_s": 0.2}), names=("intelligence",))
    rt.own_the_heap()
    assert gc.get_threshold()[2] == NEVER
    assert gc.get_freeze_count() > 0
    assert await rt.run(duration_s=0.6) == 0
    assert rt.collections is not None
    assert rt.collections.freezes >= 2 and rt.collections.full_runs >= 1


async def test_by_default_no_full_collection_runs_and_heartbeats_show_peak_memory(gc_state: None) -> None:
    rt = Runtime(Settings(gc={"freeze_interval_s": 0.05}), names=("intelligence",))
    rt.own_the_heap()
    assert await rt.run(duration_s=0.4) == 0
    assert rt.collections is not None
    assert rt.collections.freezes >= 2 and rt.collections.full_runs == 0
    counters = rt.agent("intelligence").heartbeat().counters
    assert 10 < counters["rss_peak_mb"] < 100_000


def test_freeze_interval_zero_leaves_pythons_own_policy(gc_state: None) -> None:
    before = gc.get_threshold()
    rt = Runtime(Settings(gc={"freeze_interval_s": 0}), names=())
    rt.own_the_heap()
    assert gc.get_threshold() == before
    assert rt.collections is None
