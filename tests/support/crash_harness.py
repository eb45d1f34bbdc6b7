"""Crash-test harness: agents as real OS processes (`wq agent run NAME`) over the real Redis, killed with
SIGKILL and restarted, plus the pieces a crash test needs around them: a background tick publisher for the
paper venue, raw stream writes of wire messages, and readers for streams and the paper venue's Redis state.

Everything is synchronous (redis-py, threads, subprocess) so a test can poll and kill without an event loop.
Every process runs in its own session (process group); `Supervisor` kills every group it started on exit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis
import yaml

from support.polling import wait_until
from wavesquant.messages import Channel, Envelope, Heartbeat, NewOrder, OrderSpec, TickBatch, decode, encode
from wavesquant.types import OrderType, Side

REPO_ROOT = Path(__file__).resolve().parents[2]
WQ = REPO_ROOT / ".venv" / "bin" / "wq"


def write_config(path: Path, sections: dict[str, Any] | None = None) -> Path:
    """A YAML config for agents under test: Redis bus, fast heartbeats, plus `sections` (merged one level)."""
    data: dict[str, Any] = {
        "bus": {"backend": "redis"},
        "heartbeat": {"interval_s": 0.2, "ttl_s": 30},
        "logging": {"level": "info", "json_output": False},
    }
    for key, value in (sections or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# processes --------------------------------------------------------------------------------------------------
@dataclass
class AgentProcess:
    """One `wq agent run NAME` process; its output goes to `log_path` (appended across restarts)."""

    name: str
    config: Path
    redis_url: str
    prefix: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> int:
        env = {
            **os.environ,
            "WQ_BUS__BACKEND": "redis",
            "WQ_BUS__URL": self.redis_url,
            "WQ_BUS__PREFIX": self.prefix,
        }
        env.pop("WQ_CONSUMER_ID", None)  # the stable per-host consumer id is what a restart relies on
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(WQ), "agent", "run", self.name, "--config", str(self.config)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it: no handler, no flush, no ack runs."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Graceful SIGTERM; SIGKILL if it does not exit within `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Supervisor:
    """Starts agent processes and guarantees they are all gone when the `with` block ends."""

    redis_url: str
    prefix: str
    workdir: Path
    agents: list[AgentProcess] = field(default_factory=list)

    def agent(self, name: str, config: Path) -> AgentProcess:
        a = AgentProcess(name, config, self.redis_url, self.prefix, self.workdir / f"{name}.log")
        self.agents.append(a)
        return a

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for a in self.agents:
            if a.alive():
                a.kill9()


def heartbeat_of(client: redis.Redis, prefix: str, agent: str) -> Heartbeat | None:
    raw = client.get(f"{prefix}status:{agent}")
    if raw is None:
        return None
    msg = decode(raw)
    return msg if isinstance(msg, Heartbeat) else None


def wait_running(client: redis.Redis, agent: AgentProcess, timeout: float = 30.0) -> Heartbeat:
    """Wait until the agent's current process published a `running` heartbeat (it has initialized)."""

    def ready() -> Heartbeat | None:
        if not agent.alive():
            raise AssertionError(
                f"{agent.name} exited with {agent.proc and agent.proc.returncode}:\n{agent.log_tail()}"
            )
        hb = heartbeat_of(client, agent.prefix, agent.name)
        return hb if hb is not None and hb.pid == agent.pid and hb.status == "running" else None

    return wait_until(ready, timeout, f"{agent.name} (pid {agent.pid}) to run", interval=0.01)


# market data ------------------------------------------------------------------------------------------------
class TickFeeder:
    """Publishes TickBatch messages (trade + top of book per symbol, random walk) on <prefix>market_ticks from
    a background thread every `interval_s`, so the paper venue always has fresh prices."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        prices: dict[str, float],
        interval_s: float = 0.02,
        seed: int = 1,
    ) -> None:
        self.client = client
        self.channel = f"{prefix}{Channel.MARKET_TICKS.value}"
        self.prices = dict(prices)
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tick-feeder", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def batch(self) -> TickBatch:
        now_ns = time.time_ns()
        symbols = list(self.prices)
        for s in symbols:
            self.prices[s] *= 1.0 + self.rng.gauss(0.0, 0.0002)
        prices = [round(self.prices[s], 2) for s in symbols]
        return TickBatch.create(
            source="test_feed",
            ts_ns=now_ns,
            exchange="paper",
            symbols=symbols,
            event_ts_ms=[now_ns // 1_000_000] * len(symbols),
            prices=prices,
            sizes=[1.0] * len(symbols),
            bids=[round(p * 0.9999, 2) for p in prices],
            asks=[round(p * 1.0001, 2) for p in prices],
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.client.publish(self.channel, encode(self.batch()))
            self.sent += 1


# wire messages on streams -----------------------------------------------------------------------------------
def xadd(client: redis.Redis, prefix: str, stream: Channel | str, msg: Envelope) -> str:
    """Append one wire message to a stream the way RedisBus does (field `d`)."""
    entry = client.xadd(f"{prefix}{stream}", {"d": encode(msg)})
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def read_entries(client: redis.Redis, prefix: str, stream: Channel | str) -> list[tuple[str, Envelope]]:
    """Every decodable message of a stream with its entry id, oldest first."""
    out: list[tuple[str, Envelope]] = []
    for entry_id, fields in client.xrange(f"{prefix}{stream}"):
        raw = fields.get(b"d")
        if raw is None:
            continue
        try:
            out.append((entry_id.decode(), decode(raw)))
        except ValueError:
            continue
    return out


def read_stream(client: redis.Redis, prefix: str, stream: Channel | str) -> list[Envelope]:
    """Every decodable message of a stream, oldest first."""
    return [msg for _, msg in read_entries(client, prefix, stream)]


def new_order(
    coid: str,
    symbol: str,
    side: Side,
    quantity: float,
    *,
    limit_price: float | None = None,
    ttl_s: float = 600.0,
    strategy_id: str = "crash",
) -> NewOrder:
    """An approved order command as risk would send it."""
    now_ns = time.time_ns()
    spec = OrderSpec(
        client_order_id=coid,
        signal_id=f"sig-{coid}",
        strategy_id=strategy_id,
        family="trend",
        exchange="paper",
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
        limit_price=limit_price,
    )
    return NewOrder.create(
        source="risk", ts_ns=now_ns, order=spec, expires_at_ms=now_ns // 1_000_000 + int(ttl_s * 1000)
    )


class OrderFeeder:
    """XADDs the given messages onto <prefix>orders from a background thread, `per_tick` every `interval_s`.
    The last `hold_back` messages wait for `release()`: a slow machine cannot run out of orders mid-test."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        msgs: Sequence[Envelope],
        interval_s: float,
        per_tick: int = 1,
        hold_back: int = 0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.msgs = list(msgs)
        self.interval_s = interval_s
        self.per_tick = per_tick
        self.hold_back = hold_back
        self.sent = 0
        self._stop = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="order-feeder", daemon=True)

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._released.set()
        self._thread.join(timeout=10)

    @property
    def done(self) -> bool:
        return self.sent >= len(self.msgs)

    def _run(self) -> None:
        while self.sent < len(self.msgs) and not self._stop.is_set():
            if self.sent >= len(self.msgs) - self.hold_back:
                self._released.wait()
            for msg in self.msgs[self.sent : self.sent + self.per_tick]:
                xadd(self.client, self.prefix, Channel.ORDERS, msg)
                self.sent += 1
            self._stop.wait(self.interval_s)


# the paper venue's state in Redis ---------------------------------------------------------------------------
def paper_orders(client: redis.Redis, prefix: str) -> dict[str, dict[str, Any]]:
    """The paper venue's orders (client order id -> stored PaperOrder dict)."""
    return {k.decode(): json.loads(v) for k, v in client.hgetall(f"{prefix}paper:orders").items()}


def paper_fill_rows(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """The paper venue's fill list as stored (a retried commit may have appended a fill twice)."""
    return [json.loads(v) for v in client.lrange(f"{prefix}paper:fills", 0, -1)]


def pending_count(client: redis.Redis, prefix: str, stream: Channel | str, group: str) -> int:
    """Entries delivered to `group` and not acknowledged yet (0 if the group does not exist)."""
    try:
        summary = client.xpending(f"{prefix}{stream}", group)
    except redis.ResponseError:
        return 0
    return int(summary["pending"])


@contextmanager
def sync_redis(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()
