"""The cyclic garbage collector's policy for a process that runs agents for its life (`wq run`, `wq agent run`).

Python's own policy runs a full collection whenever the objects that survived two young collections have grown
by a quarter. At trading rates that is every few seconds, and a full collection scans every long-lived object
(each order an agent still remembers): a 50-150 ms stop of the whole process at 1,000 orders/s, which was the
p99 of the tick -> fill path. So, in these processes:
- everything allocated at start-up is frozen: no collection scans it again;
- young collections stay automatic; they only scan what was allocated since the previous one;
- full collections run on a schedule instead (`gc.full_collection_interval_s`, default every 5 minutes),
  timed and logged. Objects nobody references are freed by reference counting at once anyway; a full
  collection only reclaims reference cycles that outlived two young collections, so deferring it costs a
  little memory, not correctness."""

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
    """Turn off automatic full collections (young ones stay); `run_full_collections` schedules them."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)


@dataclass(slots=True)
class FullCollectionStats:
    runs: int = 0
    collected: int = 0
    last_s: float = 0.0
    max_s: float = 0.0


async def run_full_collections(clock: Clock, interval_s: float, stats: FullCollectionStats) -> None:
    """Every `interval_s`: one full collection, timed and logged (the only full collections of the process)."""
    while True:
        await clock.sleep(interval_s)
        started = time.perf_counter()
        collected = gc.collect()
        took = time.perf_counter() - started
        stats.runs += 1
        stats.collected += collected
        stats.last_s = took
        stats.max_s = max(stats.max_s, took)
        log.info("gc_full_collection", took_ms=round(took * 1e3, 2), collected=collected)
