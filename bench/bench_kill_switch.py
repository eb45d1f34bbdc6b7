"""Kill-switch benchmark over the real Redis (a script, not a test).

    python bench/bench_kill_switch.py [--url redis://127.0.0.1:6379/0] [--orders 100] [--repeats 5]
                                      [--warmup 1]

Starts risk and execution as separate processes (`wq agent run`, paper venue, its state in Redis) under a
random key prefix, feeds ticks, and per repeat:
1. places N resting limit orders far from the market (NewOrder straight onto the orders stream, as risk would)
   and waits until every one is acknowledged open;
2. publishes the kill command to risk, exactly as `wq kill` does (ControlCommand on the control channel), and
   measures from that publish to
   (a) the last of the N cancel reports seen on the execution_reports stream (every order canceled), and
   (b) a new order intent blocked: intents are published on order_intents one after another from the moment
       of the kill until a RiskDecision denies one with code kill_switch (each intent is also far too large,
       so none can be approved and trade while the switch is still travelling);
3. resumes trading (`resume_trading`) for the next repeat.
The report creation times (execution's clock, same host) split (a) into "kill reached execution" (first cancel
report made) and the cancel loop itself (last report made).
Prints a table with every repeat and p50 / max; the target is under 100 ms with 100 open orders. Every process
is stopped and every key under the prefix deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import redis.asyncio as aredis
import yaml
from bench_bus import quiet_logs
from rich.console import Console
from rich.table import Table

from wavesquant.bus.redis_bus import RedisBus
from wavesquant.messages import (
    Channel,
    ControlAck,
    ControlCommand,
    Envelope,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderSpec,
    RiskDecision,
    TickBatch,
    decode,
)
from wavesquant.types import OrderType, Side

REPO = Path(__file__).resolve().parents[1]
WQ = REPO / ".venv" / "bin" / "wq"
SYMBOL, PRICE = "BTC/USDT", 60_000.0
TARGET_MS = 100.0


# processes --------------------------------------------------------------------------------------------------
def start_agent(name: str, config: Path, url: str, prefix: str, log_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WQ_BUS__BACKEND": "redis", "WQ_BUS__URL": url, "WQ_BUS__PREFIX": prefix}
    with (log_dir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [str(WQ), "agent", "run", name, "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


# the bench --------------------------------------------------------------------------------------------------
class KillSwitchBench:
    def __init__(self, url: str, prefix: str, n_orders: int) -> None:
        self.url = url
        self.prefix = prefix
        self.n = n_orders
        self.bus = RedisBus(url, prefix=prefix, client_name="bench-kill")
        self.redis = aredis.Redis.from_url(url)
        self.acks: dict[str, ControlAck] = {}
        self.cursor = {Channel.EXECUTION_REPORTS: "0-0", Channel.RISK_DECISIONS: "0-0"}
        self._tasks: list[asyncio.Task[None]] = []

    def msg(self, cls: type[Envelope], **fields: object) -> Envelope:
        return cls.create(source="bench", ts_ns=time.time_ns(), **fields)

    async def start(self, pids: dict[str, int]) -> None:
        await self.bus.start()
        control = self.bus.subscribe([Channel.CONTROL])
        await control.ready(10)  # type: ignore[attr-defined]
        self._tasks += [asyncio.create_task(self._collect_acks(control)), asyncio.create_task(self._ticks())]
        deadline = time.monotonic() + 30
        while not all([await self._running(a, pid) for a, pid in pids.items()]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents {sorted(pids)} did not report running within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few ticks in: risk and the paper venue know the market

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.close()
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()

    async def _running(self, agent: str, pid: int) -> bool:
        raw = await self.redis.get(f"{self.prefix}status:{agent}")
        if raw is None:
            return False
        hb = decode(raw)
        return getattr(hb, "pid", None) == pid and getattr(hb, "status", None) == "running"

    async def _collect_acks(self, sub: object) -> None:
        async for batch in sub:  # type: ignore[attr-defined]
            for m in batch:
                if isinstance(m, ControlAck):
                    self.acks[m.request_id] = m

    async def _ticks(self) -> None:
        while True:
            now = time.time_ns()
            await self.bus.publish(
                self.msg(
                    TickBatch,
                    exchange="paper",
                    symbols=[SYMBOL],
                    event_ts_ms=[now // 10**6],
                    prices=[PRICE],
                    sizes=[1.0],
                    bids=[PRICE - 0.5],
                    asks=[PRICE + 0.5],
                )
            )
            await asyncio.sleep(0.05)

    async def control(self, command: str, args: dict[str, str] | None = None) -> tuple[float, ControlAck]:
        """Publish a control command to risk like `wq kill` / `wq resume-trading`; wait for its ack."""
        request_id = uuid.uuid4().hex
        cmd = self.msg(ControlCommand, target="risk", command=command, request_id=request_id, args=args or {})
        t0 = time.perf_counter()
        await self.bus.publish(cmd)
        async with asyncio.timeout(10):
            while request_id not in self.acks:
                await asyncio.sleep(0.001)
        return t0, self.acks[request_id]

    async def read(self, stream: Channel, block_ms: int = 5) -> list[Envelope]:
        """New entries of `stream` since the last read."""
        key = f"{self.prefix}{stream.value}"
        reply = await self.redis.xread({key: self.cursor[stream]}, count=10_000, block=block_ms)
        out: list[Envelope] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.cursor[stream] = entry_id.decode()
                out.append(decode(fields[b"d"]))
        return out

    async def wait_reports(self, ids: set[str], kind: str, timeout: float = 30.0) -> tuple[float, list[int]]:
        """Wait until every id has a report of `kind`; returns the perf_counter time when the last one was
        seen and the reports' creation times (ns since the epoch, execution's clock)."""
        missing = set(ids)
        created: list[int] = []
        async with asyncio.timeout(timeout):
            while missing:
                for m in await self.read(Channel.EXECUTION_REPORTS):
                    if isinstance(m, ExecutionReport) and m.kind == kind and m.client_order_id in missing:
                        missing.discard(m.client_order_id)
                        created.append(m.ts_ns)
        return time.perf_counter(), created

    def spec(self, coid: str, side: Side, quantity: float, limit: float) -> OrderSpec:
        return OrderSpec(
            client_order_id=coid,
            signal_id=f"s-{coid}",
            strategy_id="bench_kill",
            family="trend",
            exchange="paper",
            symbol=SYMBOL,
            side=side,
            quantity=quantity,
            order_type=OrderType.LIMIT,
            limit_price=limit,
        )

    async def place_resting(self, rep: int) -> set[str]:
        ids = {f"kb{rep}-{i:04d}" for i in range(self.n)}
        expires = time.time_ns() // 10**6 + 600_000
        orders = [
            self.msg(
                NewOrder,
                order=self.spec(c, Side.BUY if i % 2 else Side.SELL, 0.001, PRICE * (0.5 if i % 2 else 1.5)),
                expires_at_ms=expires,
            )
            for i, c in enumerate(sorted(ids))
        ]
        await self.bus.publish_many(orders)
        await self.wait_reports(ids, "ack")
        return ids

    async def blocked_intent(self, rep: int, t0: float, timeout: float = 10.0) -> tuple[float, int]:
        """Publish intents back to back until one is denied with kill_switch; (time seen, intents sent)."""
        sent = 0
        async with asyncio.timeout(timeout):
            while True:
                sent += 1
                coid = f"kbi{rep}-{sent}"
                intent = self.msg(
                    OrderIntent,
                    order=self.spec(coid, Side.BUY, 1_000.0, PRICE * 0.5),
                    signal_type="trend_signal",
                    signal_ts_ms=time.time_ns() // 10**6,
                )
                await self.bus.publish(intent)
                while True:
                    decisions = [
                        m
                        for m in await self.read(Channel.RISK_DECISIONS, block_ms=1)
                        if isinstance(m, RiskDecision) and m.order.client_order_id == coid
                    ]
                    if decisions:
                        break
                if any(d.code == "kill_switch" for d in decisions[0].denials):
                    return time.perf_counter(), sent

    async def run_once(self, rep: int) -> dict[str, float]:
        if rep:
            _, ack = await self.control("resume_trading")
            assert ack.ok, ack.detail
        ids = await self.place_resting(rep)
        await self.read(Channel.RISK_DECISIONS, block_ms=1)  # skip to the end
        t0_ns = time.time_ns()
        t0, _ = await self.control_nowait("kill", {"flatten": "false"})
        (canceled, created), (blocked, sent) = await asyncio.gather(
            self.wait_reports(ids, "cancel"), self.blocked_intent(rep, t0)
        )
        return {
            "cancel_ms": (canceled - t0) * 1e3,
            "block_ms": (blocked - t0) * 1e3,
            "intents": float(sent),
            "first_report_ms": (min(created) - t0_ns) / 1e6,
            "last_report_ms": (max(created) - t0_ns) / 1e6,
        }

    async def control_nowait(self, command: str, args: dict[str, str]) -> tuple[float, str]:
        request_id = uuid.uuid4().hex
        cmd = self.msg(ControlCommand, target="risk", command=command, request_id=request_id, args=args)
        t0 = time.perf_counter()
        await self.bus.publish(cmd)
        return t0, request_id


def summary(rows: list[dict[str, float]], key: str, fn: Callable[[list[float]], float]) -> str:
    return f"{fn([r[key] for r in rows]):.1f}"


async def run(url: str, n: int, repeats: int, warmup: int, console: Console) -> list[dict[str, float]]:
    prefix = f"wqbench{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory(prefix="wq-kill-bench-") as tmp:
        work = Path(tmp)
        config = work / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "bus": {"backend": "redis"},
                    "heartbeat": {"interval_s": 0.5, "ttl_s": 30},
                    "logging": {"level": "warning"},
                }
            )
        )
        procs = {name: start_agent(name, config, url, prefix, work) for name in ("risk", "execution")}
        bench = KillSwitchBench(url, prefix, n)
        try:
            await bench.start({name: p.pid for name, p in procs.items()})
            rows = []
            for rep in range(warmup + repeats):
                row = await bench.run_once(rep)
                label = f"warm-up {rep + 1}" if rep < warmup else f"run {rep - warmup + 1}/{repeats}"
                console.print(
                    f"{label}: all {n} canceled after {row['cancel_ms']:.1f} ms, "
                    f"intent blocked after {row['block_ms']:.1f} ms",
                    highlight=False,
                )
                if rep >= warmup:
                    rows.append(row)
            return rows
        except BaseException:
            for name in procs:
                console.print(
                    f"--- {name} log ---\n{(work / f'{name}.log').read_text(errors='replace')[-3000:]}"
                )
            raise
        finally:
            for p in procs.values():
                stop_agent(p)
            await bench.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--orders", type=int, default=100, help="resting orders to cancel per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="runs before the measured ones (not in the table)")
    args = ap.parse_args()
    quiet_logs()
    console = Console()
    rows = asyncio.run(run(args.url, args.orders, args.repeats, args.warmup, console))

    table = Table(
        title=f"Kill switch: `wq kill` -> risk -> execution -> paper venue ({args.orders} open orders, "
        f"real Redis, separate processes)"
    )
    table.add_column("run", justify="right")
    table.add_column(f"all {args.orders} canceled (ms)", justify="right")
    table.add_column("1st cancel report made (ms)", justify="right")
    table.add_column("last cancel report made (ms)", justify="right")
    table.add_column("new intent blocked (ms)", justify="right")
    table.add_column("intents sent until blocked", justify="right")
    for i, r in enumerate(rows, 1):
        table.add_row(
            str(i),
            f"{r['cancel_ms']:.1f}",
            f"{r['first_report_ms']:.1f}",
            f"{r['last_report_ms']:.1f}",
            f"{r['block_ms']:.1f}",
            f"{r['intents']:.0f}",
        )
    table.add_section()
    for label, fn in (("p50", statistics.median), ("max", max)):
        table.add_row(
            label,
            *(summary(rows, k, fn) for k in ("cancel_ms", "first_report_ms", "last_report_ms", "block_ms")),
            "",
        )
    console.print(table)
    worst = max(max(r["cancel_ms"], r["block_ms"]) for r in rows)
    verdict = "[green]met[/]" if worst < TARGET_MS else "[red]MISSED[/]"
    console.print(
        f"target < {TARGET_MS:.0f} ms with {args.orders} open orders: {verdict} (worst {worst:.1f} ms); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
