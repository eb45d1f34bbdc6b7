"""Running agents: one process with any subset of the seven agents, on the embedded bus or Redis."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Sequence

import structlog

from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus
from wavesquant.config import AGENT_NAMES, Settings
from wavesquant.core.clock import Clock, LiveClock
from wavesquant.gc_policy import CollectionStats, defer_full_collections, freeze_startup_heap, run_collections

log = structlog.get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0

_AGENT_CLASSES = {
    "data_feeds": "wavesquant.agents.data_feeds:DataFeedsAgent",
    "market_conditions": "wavesquant.agents.market_conditions:MarketConditionsAgent",
    "intelligence": "wavesquant.agents.intelligence:IntelligenceAgent",
    "strategy_engine": "wavesquant.agents.strategy_engine:StrategyEngineAgent",
    "risk": "wavesquant.agents.risk:RiskAgent",
    "execution": "wavesquant.agents.execution:ExecutionAgent",
    "core": "wavesquant.agents.core:CoreAgent",
}
assert tuple(_AGENT_CLASSES) == AGENT_NAMES


def agent_class(name: str) -> type[Agent]:
    if name not in _AGENT_CLASSES:
        raise ValueError(f"unknown agent {name!r}; agents are: {', '.join(AGENT_NAMES)}")
    module, _, cls = _AGENT_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_bus(settings: Settings, clock: Clock) -> Bus:
    from wavesquant.bus.factory import make_bus as factory

    b = settings.bus
    return factory(b.backend, b.url, b.prefix, stream_maxlen=b.stream_maxlen, event_log_maxlen=b.event_log_maxlen,
                   clock=clock)


def install_event_loop_policy() -> None:
    """uvloop where available (it is the faster loop; plain asyncio otherwise)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class Runtime:
    """Builds the bus and agents, runs them until a signal, `stop()` or the duration ends, then shuts down
    gracefully (each agent drains, publishes a final `stopped` heartbeat and cleans up)."""

    def __init__(self, settings: Settings, names: Sequence[str] = AGENT_NAMES, clock: Clock | None = None,
                 bus: Bus | None = None) -> None:
        self.settings = settings
        self.clock = clock or LiveClock()
        self.bus = bus or make_bus(settings, self.clock)
        self.agents: list[Agent] = [agent_class(n)(settings, self.bus, self.clock) for n in names]
        self._stop = asyncio.Event()
        self.collections: CollectionStats | None = None

    def own_the_heap(self) -> None:
        """For a process that runs this Runtime for its life (`wq run`, `wq agent run`), not for tests: the
        garbage-collector policy of wavesquant.gc_policy (frozen start-up heap, survivors frozen on a schedule,
        rare scheduled full collections)."""
        freeze_startup_heap()
        if self.settings.gc.freeze_interval_s > 0:
            defer_full_collections()
            self.collections = CollectionStats()

    def agent(self, name: str) -> Agent:
        return next(a for a in self.agents if a.name == name)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration_s: float | None = None) -> int:
        """Returns 0 after a clean shutdown, 1 if an agent crashed (every other agent is then shut down too)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.bus.start()
        tasks = [asyncio.create_task(a.run(), name=f"agent:{a.name}") for a in self.agents]
        waiter = asyncio.create_task(self._stop.wait())
        gc_settings = self.settings.gc
        collector = None if self.collections is None else asyncio.create_task(run_collections(
            self.clock, gc_settings.freeze_interval_s, gc_settings.full_collection_interval_s, self.collections))
        crashed = False
        try:
            done, _ = await asyncio.wait([waiter, *tasks], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and t.exception() is not None:
                    crashed = True
                    log.error("agent_crashed", task=t.get_name(), error=f"{type(t.exception()).__name__}: {t.exception()}")
        finally:
            for a in self.agents:
                a.shutdown()
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_S)
            if stuck:
                crashed = True
                _log_stuck_tasks(stuck)
                for t in stuck:
                    t.cancel()
            waiter.cancel()
            if collector is not None:
                collector.cancel()
            try:
                await asyncio.wait_for(self.bus.close(), SHUTDOWN_TIMEOUT_S)
            except TimeoutError:
                crashed = True
                log.error("bus_close_timeout", seconds=SHUTDOWN_TIMEOUT_S)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return 1 if crashed else 0


def _log_stuck_tasks(stuck: set[asyncio.Task[None]]) -> None:
    """Name every task still running after the shutdown timeout, and where it waits."""
    pending = [t for t in asyncio.all_tasks() if not t.done()]
    for t in pending:
        log.error("shutdown_stuck_task", task=t.get_name(), waiting_in=" -> ".join(_await_chain(t.get_coro())))
    log.error("shutdown_timeout", agents=[t.get_name() for t in stuck], seconds=SHUTDOWN_TIMEOUT_S)


def _await_chain(coro: object) -> list[str]:
    """Where a suspended coroutine waits: its frame, then the frames of what it awaits, innermost last."""
    chain = []
    while coro is not None and len(chain) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain
