"""The whole system as separate OS processes over the real Redis, as in production, for system tests.

`AgentSystem` starts each agent as `wq agent run NAME --config FILE` in its own process group (output to
files, bus prefix and URL from the environment), waits for every agent's heartbeat key, runs `wq` control
commands against it, and stops every process with SIGTERM (SIGKILL after a timeout). `RedisState` reads what
the agents left in Redis with redis-py: the event log, streams, dead letters, heartbeats, the paper venue.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis
import yaml

from support.polling import wait_until
from wavesquant.config import AGENT_NAMES
from wavesquant.messages import Envelope, Heartbeat, SignalEvent, SignalStep, decode

REPO_ROOT = Path(__file__).resolve().parents[2]
WQ = Path(sys.executable).parent / "wq"
if not WQ.is_file():
    WQ = REPO_ROOT / ".venv" / "bin" / "wq"


REPLAY_FILE = "ohlcv/binance_BTCUSDT_1m.csv"  # its name gives exchange "binance", symbol BTC/USDT, 1m bars
SYMBOL = "BTC/USDT"
STRATEGY = "trend_btc"
SIGNAL_TTL_S = 2.0
BARS_PER_SECOND = 100
TAKER_FEE = 0.0005
STARTING_USDT = 100_000.0


def system_settings(replay_csv: Path) -> dict[str, Any]:
    """A replay of real candles at 100 bars/s into one fast MA-crossover strategy, with risk limits loose
    enough that risk approves every order it is asked for (the flow, not the limits, is under test)."""
    return {
        "logging": {"level": "info"},
        "heartbeat": {"interval_s": 0.5, "ttl_s": 10},
        "data_feeds": {
            "source": "replay",
            "replay": {
                "files": [{"path": str(replay_csv)}],
                "bars_per_second": BARS_PER_SECOND,
                "loop": False,
            },
        },
        "intelligence": {"trend_fast": 3, "trend_slow": 8, "loops": {"trend_intelligence": 1.0}},
        "strategy_engine": {
            "signal_ttl_s": SIGNAL_TTL_S,
            "loops": {"performance_monitoring": 1.0},
            "strategies": [
                {
                    "id": STRATEGY,
                    "kind": "ma_crossover",
                    "exchange": "binance",
                    "params": {"symbols": [SYMBOL], "fast": 3, "slow": 8, "quantity": 0.01},
                }
            ],
        },
        "risk": {
            "limits": {
                "max_order_notional": 1e6,
                "max_position_per_strategy": 1e7,
                "max_gross_exposure": 1e7,
                "max_net_exposure": 1e7,
                "price_band_pct": 50.0,
                "max_orders_per_second": 10_000,
                "duplicate_window_ms": 1,
                "max_market_data_age_ms": 60_000,
                "max_signal_age_ms": 60_000,
                "max_leverage": 1000.0,
            },
            "breakers": {"max_daily_loss": 1e9, "max_drawdown_pct": 100.0, "reject_min_samples": 1000},
        },
        "execution": {
            "venue": "paper",
            "paper": {
                "maker_fee": 0.0002,
                "taker_fee": TAKER_FEE,
                "latency_ms": 0,
                "balances": {"USDT": STARTING_USDT},
            },
        },
        "core": {"silence_timeout_s": 10.0},
    }


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write a YAML config file for the agents (bus prefix and URL come from the environment)."""
    path.write_text(yaml.safe_dump(dict(settings), sort_keys=False))
    return path


@dataclass
class AgentProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class AgentSystem:
    """The seven agents (or `agents`) as processes. Use as a context manager, or call start() and stop()."""

    config: Path
    redis_url: str
    prefix: str
    workdir: Path
    agents: Sequence[str] = AGENT_NAMES
    procs: dict[str, AgentProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WQ_")}
        env.update(
            WQ_BUS__PREFIX=self.prefix,
            WQ_BUS__URL=self.redis_url,
            WQ_BUS__BACKEND="redis",
            PYTHONUNBUFFERED="1",
        )
        return env

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Spawn every agent, then wait until each one's heartbeat key exists (fails early if one exits)."""
        for name in self.agents:
            log_path = self.workdir / f"{name}.log"
            with log_path.open("wb") as log:
                popen = subprocess.Popen(
                    [str(WQ), "agent", "run", name, "--config", str(self.config)],
                    cwd=self.workdir,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call, no threads yet)
                )
            self.procs[name] = AgentProcess(name, popen, log_path)
        client = redis.Redis.from_url(self.redis_url)
        try:

            def all_up() -> bool:
                dead = [p.name for p in self.procs.values() if not p.alive]
                if dead:
                    raise AssertionError(f"agents exited during start-up: {dead}\n{self.log_tails()}")
                return all(client.exists(f"{self.prefix}status:{n}") for n in self.agents)

            wait_until(all_up, timeout, "every agent's heartbeat key", interval=0.1)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every process group, SIGKILL what still runs after `timeout` s; returns the exit codes."""
        for p in self.procs.values():
            if p.alive:
                _signal_group(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for p in self.procs.values():
            try:
                codes[p.name] = p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.popen.pid, signal.SIGKILL)
                p.popen.wait(10)
                codes[p.name] = None  # had to be killed
        return codes

    def dead(self) -> list[str]:
        return [p.name for p in self.procs.values() if not p.alive]

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.popen.pid}, exit {p.popen.poll()}) -----\n{p.tail(lines)}"
            for p in self.procs.values()
        )

    def wq(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the `wq` CLI against this system (same Redis and prefix)."""
        return subprocess.run(  # noqa: PLW1510 (the caller reads the return code)
            [str(WQ), *args, "--redis", self.redis_url],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def control(self, verb: str, agent: str, timeout: float = 10.0) -> str:
        """`wq agent VERB AGENT`; asserts it exits 0 (the agent acknowledged) and returns its output."""
        done = self.wq("agent", verb, agent, "--timeout", str(timeout), timeout=timeout + 30)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"wq agent {verb} {agent} exited {done.returncode}: {output}"
        return output


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies without stopping us (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the agent leads its own process group (start_new_session)


class RedisState:
    """Read-only views of what the agents keep in Redis under `prefix` (redis-py, synchronous)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self._r: Any = client  # redis-py's reply types are unions of everything: we know what we read
        self.prefix = prefix
        self._events: list[tuple[str, Envelope]] = []
        self._events_last = "-"

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # streams ---------------------------------------------------------------------------------------------
    def last_id(self, stream: str) -> str:
        """Id of the newest entry of a stream ("0-0" if empty): a marker to read what comes after it."""
        rows = self._r.xrevrange(self.key(stream), count=1)
        return rows[0][0].decode() if rows else "0-0"

    def entries(self, stream: str, after: str = "0-0") -> list[tuple[str, dict[bytes, bytes]]]:
        rows = self._r.xrange(self.key(stream), min=f"({after}")
        return [(i.decode(), f) for i, f in rows]

    def events(self, after: str = "0-0") -> list[tuple[str, Envelope]]:
        """The event log after `after`, decoded; read incrementally (each entry is fetched once)."""
        start = "-" if self._events_last == "-" else f"({self._events_last}"
        rows = self._r.xrange(self.key("events"), min=start, count=None)
        for entry_id, fields in rows:
            self._events.append((entry_id.decode(), decode(fields[b"d"])))
        if rows:
            self._events_last = rows[-1][0].decode()
        return [(i, m) for i, m in self._events if _id_after(i, after)]

    def deadletters(self, after: str = "0-0") -> list[dict[str, Any]]:
        """Dead-letter entries (JSON with channel, reason, ts_ms, raw) after the marker."""
        return [json.loads(f[b"d"]) for _, f in self.entries("deadletter", after)]

    # heartbeats and the paper venue ------------------------------------------------------------------------
    def heartbeat(self, agent: str) -> Heartbeat | None:
        raw = self._r.get(self.key(f"status:{agent}"))
        if raw is None:
            return None
        msg = decode(raw)
        assert isinstance(msg, Heartbeat)
        return msg

    def live_heartbeat(self, agent: str) -> Heartbeat:
        """The agent's latest heartbeat; fails if its key has expired (no heartbeat for `ttl_s`)."""
        hb = self.heartbeat(agent)
        assert hb is not None, f"no heartbeat from {agent} (its status key expired)"
        return hb

    def paper_fills(self) -> list[dict[str, Any]]:
        """Every fill the paper venue persisted, oldest first (may contain a retried duplicate)."""
        return [json.loads(x) for x in self._r.lrange(self.key("paper:fills"), 0, -1)]

    def paper_orders(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self._r.hgetall(self.key("paper:orders")).items()}

    def paper_balances(self) -> dict[str, float]:
        raw = self._r.get(self.key("paper:balances"))
        return {} if raw is None else {str(k): float(v) for k, v in json.loads(raw).items()}


def signal_steps(events: list[tuple[str, Envelope]]) -> list[tuple[str, SignalStep]]:
    """Every signal lifecycle step in the event log with the id of the entry it came in, in log order."""
    return [(entry_id, step) for entry_id, m in events if isinstance(m, SignalEvent) for step in m.steps]


def _id_after(entry_id: str, marker: str) -> bool:
    a, _, b = entry_id.partition("-")
    c, _, d = marker.partition("-")
    return (int(a), int(b or 0)) > (int(c), int(d or 0))
