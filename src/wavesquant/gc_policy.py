"""The cyclic garbage collector's policy for a process that runs agents for its life (`wq run`, `wq agent run`).

Python's own policy runs a full collection whenever the objects that survived two young collections have grown
by a quarter. At trading rates that is every few seconds, and a full collection scans every long-lived object
(each order an agent still remembers): measured at 1,000 orders/s, execution's full collections took 150 ms,
then 340, then 500 within one minute, and found nothing to free (`collected=0` in every agent). Those stops
were the p99 of the tick -> fill path. So, in these processes:
- everything allocated at start-up is frozen: no collection scans it again;
- young collections stay automatic; they only scan what was allocated since the previous one;
- every `gc.freeze_interval_s` a young collection runs and what survives it is frozen too: the long-lived
  state (orders, positions, signal histories) leaves the collector's reach, so no collection ever scans a
  heap that grows with the hours. Frozen objects are still freed by reference counting when they go; only a
  reference cycle that became garbage after it was frozen would stay;
- none was ever measured: every full collection run at 1,000 orders/s freed 0-10 objects, while it stopped its
  process for what it scanned (execution 0.5-1.1 s with its bounded order and paper histories full, core
  0.2-0.5 s, an idle agent 80-130 ms for its imports). So by default none runs; `gc.full_collection_interval_s`
  schedules them (timed and logged), and every heartbeat carries the process's `rss_peak_mb`: every history is
  bounded, so a peak that keeps growing is a leak to look into. (Not the frozen heap's size: counting it walks
  every frozen object, 100 ms at a million of them.)"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import structlog

from wavesquant.core.clock import Clock

log = structlog.get_logger(__name__)

NEVER = 1 << 30  # gen-2 threshold: count of young (gen-1) collections before an automatic full one


def freeze_startup_heap() -> None:
    """Take everything allocated at start-up (imported modules, pydantic schemas, ccxt, config: ~240k objects)
    out of the collector's reach; those objects are still freed by reference counting if they ever go."""
    gc.collect()
    gc.freeze()


def defer_full_collections() -> None:
    """Turn off automatic full collections (young ones stay); `run_collections` schedules the rest."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)


@dataclass(slots=True)
class CollectionStats:
    freezes: int = 0
    full_runs: int = 0
    full_collected: int = 0
    full_last_s: float = 0.0
    full_max_s: float = 0.0


def freeze_survivors() -> None:
    """A young collection, then freeze what survived it."""
    gc.collect(1)
    gc.freeze()


def full_collection() -> tuple[int, float]:
    """Everything, frozen objects included, then freeze the survivors again. Returns (freed, seconds)."""
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected, time.perf_counter() - started


async def run_collections(clock: Clock, freeze_interval_s: float, full_interval_s: float,
                          stats: CollectionStats) -> None:
    """The schedule of the module docstring; the only full collections of the process."""
    next_full_ns = clock.now_ns() + int(full_interval_s * 1e9) if full_interval_s > 0 else None
    while True:
        await clock.sleep(freeze_interval_s)
        if next_full_ns is not None and clock.now_ns() >= next_full_ns:
            next_full_ns = clock.now_ns() + int(full_interval_s * 1e9)
            collected, took = full_collection()
            stats.full_runs += 1
            stats.full_collected += collected
            stats.full_last_s = took
            stats.full_max_s = max(stats.full_max_s, took)
            log.info("gc_full_collection", took_ms=round(took * 1e3, 2), collected=collected)
        else:
            freeze_survivors()
            stats.freezes += 1
