"""The agent base: lifecycle, timed loops, event-driven handlers, heartbeat and control.

Lifecycle: `initialize` (subclass set-up, may rebuild state) -> running; control `stop` drains and parks the
agent (heartbeat says stopped, nothing is processed; the process stays up so `start` can resume it); `pause`
parks it without the drain; process shutdown (SIGTERM, Ctrl-C, `shutdown()`) stops and runs `cleanup`.

While parked, pub/sub messages are discarded (counted) and streams are not read, so durable orders wait in
their stream until the agent runs again. An exception in a handler is logged and counted and the agent goes
on; an expired message is dropped before any handler sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import structlog

from wavesquant.bus.base import Bus, Delivery, Subscription
from wavesquant.config import LOOPS, Settings
from wavesquant.core.clock import Clock
from wavesquant.core.scheduler import TimedLoop
from wavesquant.messages import (
    Channel,
    ControlAck,
    ControlCommand,
    Envelope,
    Heartbeat,
    LoopStats,
    decode,
    encode,
)
from wavesquant.messages.system import AgentStatus

E = TypeVar("E", bound=Envelope)
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]
StreamHandler = Callable[[list[Delivery]], Awaitable[None]]

MAX_STREAM_DELIVERIES = 5  # a stream entry whose handler failed this often is dead-lettered and acked


@dataclass(slots=True)
class _Subscription:
    channels: tuple[str, ...]
    handler: BatchHandler
    off_path: bool


@dataclass(slots=True)
class _StreamConsumer:
    stream: str
    group: str
    handler: StreamHandler
    reclaim_idle_ms: int
    drop_expired: bool
    off_path: bool


def peak_rss_mb() -> int:
    """The process's peak resident memory in MB (Linux reports KB): a cheap leak signal, since every history an
    agent keeps is bounded. (The frozen heap's size would say more, but counting it walks every frozen object.)"""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class Agent:
    name: ClassVar[str]

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.clock = clock
        # Stable across restarts on the same host (or container), so a restarted agent finds the stream entries
        # its previous incarnation left unacked (pending_for) at once. Set WQ_CONSUMER_ID to run several
        # instances of one agent on one host.
        self.consumer = consumer_id or os.environ.get("WQ_CONSUMER_ID") or f"{self.name}-{socket.gethostname()}"
        self.log = structlog.get_logger(f"wavesquant.agents.{self.name}").bind(agent=self.name)
        self.status: AgentStatus = "starting"
        self.counters: Counter[str] = Counter()
        self.problems: list[str] = []
        self._loops: list[TimedLoop] = []
        self._subs: list[_Subscription] = []
        self._streams: list[_StreamConsumer] = []
        self._open_subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started_ns = 0
        self._shutdown = asyncio.Event()
        self._failure_streak: dict[str, int] = {}

    # declaration (called from subclass __init__) -----------------------------------------------------------
    def loop(self, loop_name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Register a timed loop; its tier and interval come from the config."""
        tier, _ = LOOPS[self.name][loop_name]
        self._loops.append(TimedLoop(loop_name, tier, self.settings.loop_interval(self.name, loop_name), body))

    def on(self, channels: Iterable[str], handler: BatchHandler, off_path: bool = False) -> None:
        """Handle batches of messages from pub/sub channels, event-driven. `off_path`: see `_batch_window_s`."""
        self._subs.append(_Subscription(tuple(str(c) for c in channels), handler, off_path))

    def consume(self, stream: str, handler: StreamHandler, group: str | None = None, reclaim_idle_ms: int = 5_000,
                drop_expired: bool = True, off_path: bool = False) -> None:
        """Consume a stream in a consumer group (default: one group per agent). Entries are acked after the
        handler returns; if it raises they stay pending and are retried, dead-lettered after
        MAX_STREAM_DELIVERIES attempts. With `drop_expired=False` the handler also gets expired entries
        (execution must find out whether an expired order was already sent before a crash).
        `off_path`: see `_batch_window_s`."""
        self._streams.append(_StreamConsumer(str(stream), group or self.name, handler, reclaim_idle_ms, drop_expired,
                                             off_path))

    def _batch_window_s(self, off_path: bool) -> float:
        """How long a consumer waits after a batch before it takes the next. A consumer its agent declared off
        the latency path (a record or a sampled view, nothing that trades on it at once) waits
        `bus.off_path_batch_ms`, so on Redis it wakes once per window with everything that arrived meanwhile
        instead of once per message: each wake-up of a process costs more CPU than the message it brings,
        CPU the latency path needs. On the embedded bus there is no wake-up to save."""
        if not off_path or self.settings.bus.backend != "redis":
            return 0.0
        return self.settings.bus.off_path_batch_ms / 1000

    # hooks for subclasses ----------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Set up state (and rebuild it from the event log / venue where the agent has any)."""

    async def on_start(self) -> None:
        """Called when the agent (re)starts processing."""

    async def on_stop(self) -> None:
        """Called when processing stops (control stop or shutdown): drain in-flight work here."""

    async def on_expired(self, msg: Envelope) -> None:
        """Called for each message dropped because it expired before it was handled."""

    async def on_control(self, cmd: ControlCommand) -> tuple[bool, str] | None:
        """Agent-specific control verbs (e.g. kill); return (ok, detail) if handled."""
        return None

    async def cleanup(self) -> None:
        """Release resources at process shutdown."""

    def extra_problems(self) -> list[str]:
        return []

    async def replay_event_log(self, page: int = 10_000) -> AsyncIterator[Envelope]:
        """Every decodable entry of the event log, oldest first, read in pages (state rebuild at start)."""
        start = "-"
        while True:
            entries = await self.bus.read_range(Channel.EVENTS, start=start, count=page)
            for _, raw in entries:
                try:
                    yield decode(raw)
                except ValueError:
                    self.counters["event_log_unreadable"] += 1
            if len(entries) < page:
                return
            last_ms, _, last_seq = entries[-1][0].partition("-")
            start = f"{last_ms}-{int(last_seq or 0) + 1}"

    # running -----------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.status in ("running", "degraded")

    async def run(self) -> None:
        """Run until `shutdown()`; the whole lifecycle."""
        self._started_ns = self.clock.now_ns()
        try:
            await self.initialize()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.cleanup()  # release what initialize opened (venue sessions, files)
            raise
        control = self.bus.subscribe([Channel.CONTROL])
        self._open_subs.append(control)
        self._spawn(self._control_loop(control), "control")
        for sub in self._subs:
            opened = self.bus.subscribe(sub.channels)
            self._open_subs.append(opened)
            self._spawn(self._dispatch(opened, sub.handler, self._batch_window_s(sub.off_path)),
                        f"sub:{','.join(sub.channels)}")
        for consumer in self._streams:
            self._spawn(self._consume(consumer), f"stream:{consumer.stream}")
        for timed in self._loops:
            self._spawn(timed.run(self.clock, lambda: self.active), f"loop:{timed.name}")
        self._spawn(self._heartbeat_loop(), "heartbeat")
        self.status = "running"
        await self.on_start()
        self.log.info("agent_started", loops=[t.name for t in self._loops], consumer=self.consumer)
        await self.publish_heartbeat()
        try:
            await self._shutdown.wait()
        finally:
            await self._teardown()

    def shutdown(self) -> None:
        self._shutdown.set()

    async def _teardown(self) -> None:
        if self.active:
            await self.on_stop()
        self.status = "stopped"
        with contextlib.suppress(Exception):  # best effort on the way out
            await self.publish_heartbeat()
        for sub in self._open_subs:  # ends every subscription's iteration
            await sub.close()
        pending = [t for t in self._tasks if not t.done()]
        for _ in range(5):  # re-cancel: a cancellation can be lost in a race inside a library
            for task in pending:
                task.cancel()
            _, still = await asyncio.wait(pending, timeout=1.0) if pending else (set(), set())
            pending = list(still)
            if not pending:
                break
        if pending:
            self.log.error("tasks_did_not_stop", tasks=[t.get_name() for t in pending])
        await self.cleanup()
        self.log.info("agent_stopped")

    def _spawn(self, coro: Awaitable[None], label: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}:{label}")
        self._tasks.append(task)

    async def _dispatch(self, sub: Subscription, handler: BatchHandler, window_s: float) -> None:
        async for batch in sub:
            if not self.active:
                self.counters["discarded_inactive"] += len(batch)
                continue
            live = self._drop_expired(batch)
            if len(live) != len(batch):
                kept = {id(m) for m in live}
                for msg in batch:
                    if id(msg) not in kept:
                        await self._safe(self.on_expired(msg), "on_expired")
            if live:
                await self._safe(handler(live), "handler")
            if window_s:
                await asyncio.sleep(window_s)  # wall time on purpose: it paces wake-ups, not trading time

    def _drop_expired(self, batch: Sequence[E]) -> list[E]:
        now = self.clock.now_ms()
        live = [m for m in batch if m.expires_at_ms is None or now < m.expires_at_ms]
        if len(live) != len(batch):
            self.counters["expired"] += len(batch) - len(live)
        return live

    async def _safe(self, coro: Awaitable[None], what: str) -> bool:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters[f"errors:{what}"] += 1
            streak = self._failure_streak[what] = self._failure_streak.get(what, 0) + 1
            self.log.error("handler_failed", what=what, error=f"{type(exc).__name__}: {exc}"[:500], streak=streak,
                           exc_info=streak == 1)  # the traceback once per streak, not per message
            return False
        self._failure_streak.pop(what, None)
        return True

    async def _consume(self, c: _StreamConsumer) -> None:
        """Own pending entries first (our previous incarnation crashed), then entries dead consumers left,
        then new ones. The reclaim sweep repeats every `reclaim_idle_ms`."""
        backoff = 0.05
        next_reclaim_ns = 0
        first = True
        window_s = self._batch_window_s(c.off_path)
        while True:
            if not self.active:
                await self.clock.sleep(0.05)
                continue
            try:
                if first:
                    deliveries = await self.bus.pending_for(c.stream, c.group, self.consumer)
                    first = bool(deliveries)
                elif self.clock.now_ns() >= next_reclaim_ns:
                    deliveries = await self.bus.claim_stale(c.stream, c.group, self.consumer, c.reclaim_idle_ms)
                    next_reclaim_ns = self.clock.now_ns() + c.reclaim_idle_ms * 1_000_000
                    if not deliveries:
                        continue
                else:
                    deliveries = await self.bus.read_group(c.stream, c.group, self.consumer, block_ms=200)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters[f"stream_errors:{c.stream}"] += 1
                self.log.warning("stream_read_failed", stream=c.stream, error=str(exc), retry_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.active:
                first = True  # parked while we waited: leave them pending, handled first on start
                continue
            if deliveries:
                await self._handle_deliveries(c, deliveries)
                if window_s:
                    await asyncio.sleep(window_s)

    async def _handle_deliveries(self, c: _StreamConsumer, deliveries: list[Delivery]) -> None:
        poison = [d for d in deliveries if d.deliveries > MAX_STREAM_DELIVERIES]
        for d in poison:
            self.counters[f"poison:{c.stream}"] += 1
            self.log.error("stream_entry_gave_up", stream=c.stream, entry=d.entry_id, deliveries=d.deliveries)
            self.bus.park(c.stream, encode(d.message), f"handler failed {d.deliveries} times")
        if poison:
            await self.bus.flush_dead_letters()
            await self.bus.ack(c.stream, c.group, [d.entry_id for d in poison])
        todo = [d for d in deliveries if d.deliveries <= MAX_STREAM_DELIVERIES]
        now = self.clock.now_ms()
        expired: list[Delivery] = []
        live: list[Delivery] = []
        for d in todo:
            (expired if c.drop_expired and d.message.is_expired(now) else live).append(d)
        for d in expired:
            self.counters["expired"] += 1
            await self._safe(self.on_expired(d.message), "on_expired")
        ok = True
        if live:
            ok = await self._safe(c.handler(live), f"stream:{c.stream}")
        acked = [d.entry_id for d in expired] + ([d.entry_id for d in live] if ok else [])
        if acked:
            await self.bus.ack(c.stream, c.group, acked)

    # control and heartbeat ---------------------------------------------------------------------------------
    async def _control_loop(self, sub: Subscription) -> None:
        async for batch in sub:
            for msg in batch:
                if isinstance(msg, ControlCommand) and msg.target in (self.name, "*"):
                    await self._safe(self._handle_control(msg), "control")

    async def _handle_control(self, cmd: ControlCommand) -> None:
        ok, detail = True, ""
        if cmd.command == "stop":
            if self.active or self.status == "paused":
                if self.active:
                    await self.on_stop()
                self.status = "stopped"
        elif cmd.command == "pause":
            if self.active:
                self.status = "paused"
            else:
                ok, detail = False, f"cannot pause while {self.status}"
        elif cmd.command in ("start", "resume"):
            if self.status in ("stopped", "paused"):
                was_stopped = self.status == "stopped"
                self.status = "running"
                if was_stopped:
                    await self.on_start()
        else:
            handled = await self.on_control(cmd)
            if handled is None:
                ok, detail = False, f"{self.name} does not handle {cmd.command}"
            else:
                ok, detail = handled
        self.log.info("control", command=cmd.command, ok=ok, status=self.status, detail=detail)
        await self.bus.publish(self.message(ControlAck, request_id=cmd.request_id, agent=self.name,
                                            command=cmd.command, ok=ok, status=self.status, detail=detail[:200]))
        await self.publish_heartbeat()

    def message(self, cls: type[E], **fields: object) -> E:
        """A new message from this agent, stamped with its clock."""
        return cls.create(source=self.name, ts_ns=self.clock.now_ns(), **fields)

    def current_problems(self) -> list[str]:
        problems = [f"loop {t.name}: {t.stats.consecutive_failures} consecutive failures ({t.stats.last_error})"
                    for t in self._loops if t.degraded]
        if not self.bus.stats.connected:
            problems.append("bus disconnected")
        return problems + self.extra_problems()

    def heartbeat(self) -> Heartbeat:
        problems = self.current_problems()
        status: AgentStatus = self.status
        if status == "running" and problems:
            status = "degraded"
        elif status == "degraded" and not problems:
            status = self.status = "running"
        loops = [
            LoopStats(name=t.name, tier=t.tier.value, interval_s=t.interval_s, runs=t.stats.runs,
                      failures=t.stats.failures, consecutive_failures=t.stats.consecutive_failures,
                      overruns=t.stats.overruns, last_ms=t.stats.last_s * 1e3, mean_ms=t.stats.mean_s * 1e3,
                      max_ms=t.stats.max_s * 1e3)
            for t in self._loops
        ]
        counters = {**self.bus.snapshot(), **self.counters, "rss_peak_mb": peak_rss_mb()}
        return self.message(
            Heartbeat, agent=self.name, status=status, pid=os.getpid(), host=socket.gethostname()[:200],
            uptime_s=max(0.0, (self.clock.now_ns() - self._started_ns) / 1e9), loops=loops,
            queue_depths={f"sub{i}": s.depth() for i, s in enumerate(self._open_subs)},
            counters=dict(list(counters.items())[:256]), bus_connected=self.bus.stats.connected,
            problems=[p[:200] for p in problems[:64]],
        )

    async def publish_heartbeat(self) -> None:
        hb = self.heartbeat()
        await self.bus.publish(hb)
        await self.bus.set_status(self.name, encode(hb), self.settings.heartbeat.ttl_s)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.heartbeat.interval_s)
            await self._safe(self.publish_heartbeat(), "heartbeat")
