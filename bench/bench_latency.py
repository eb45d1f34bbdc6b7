"""Latency benchmark (not a test): tick published by data_feeds -> fill reported by execution.

All seven agents run as separate OS processes (`wq agent run NAME`) over the real Redis, as in production.
The benchmark-only `tick_probe` strategy turns every tick into a small market order, so every tick travels
the whole path: data_feeds -> strategy_engine -> risk -> execution -> execution report (the probe signal is
HFT tier: risk takes it directly, core records its lifecycle beside it; every other agent runs as usual).
Latency is measured from the tick batch's creation timestamp (ts_ns, the data_feeds process's clock) to the fill report's
creation in execution ("fill made") and to the moment this script, reading the reports stream as the agents do
(the bus's consumer-group reader on uvloop), has it decoded ("fill read"); all processes share the machine's clock. The stage columns split "fill
made" at the order's creation by risk (the NewOrder's ts_ns): tick -> order covers data_feeds, strategy_engine
and risk; order -> fill covers the orders stream and execution.

    .venv/bin/python bench/bench_latency.py --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis
import uvloop
import yaml
from rich.console import Console
from rich.table import Table

from wavesquant.bus.redis_bus import RedisBus
from wavesquant.config import AGENT_NAMES
from wavesquant.messages import Channel, ExecutionReport, NewOrder, decode

ROOT = Path(__file__).resolve().parents[1]
WQ = str(Path(sys.executable).with_name("wq"))


def bench_config(rate: float) -> dict:
    return {
        "bus": {"backend": "redis"},
        "logging": {"level": "warning"},
        "data_feeds": {
            "source": "synthetic",
            "loops": {"hft_data_feeds": float(os.environ.get("WQ_BENCH_TICK_LOOP_S", "0.001"))},
            "synthetic": {"symbols": ["BTC/USDT"], "start_prices": [60000.0], "ticks_per_second": rate,
                          "vol_per_tick": 0.0001},
        },
        "strategy_engine": {
            "signal_ttl_s": 5.0,
            "strategies": [{"id": "probe", "kind": "tick_probe", "params": {"symbols": ["BTC/USDT"], "quantity": 0.001}}],
        },
        # the probe pays the taker fee on every order (~30 USDT/s at 1,000/s): the default daily-loss breaker
        # (5,000) would halt trading after 2-3 minutes and the run would measure fewer fills than ticks
        "risk": {"limits": {"max_orders_per_second": 100_000, "duplicate_window_ms": 0,
                            "max_order_notional": 1_000_000, "max_position_per_strategy": 1_000_000},
                 "breakers": {"max_daily_loss": 1e12, "max_drawdown_pct": 100}},
        "execution": {"paper": {"persist": True}},
    }


async def collect(url: str, prefix: str, seconds: float, warmup: float) -> list[tuple[str, int, int, int]]:
    """Fill reports after the warm-up: (client order id, tick ts_ns, fill made ts_ns, fill read ts_ns), read the
    way the agents read them (the bus's consumer group reader, uvloop) so "read" is what a consumer sees."""
    bus = RedisBus(url, prefix=prefix, client_name="bench-reader")
    await bus.start()
    fills: list[tuple[str, int, int, int]] = []
    t_start = time.monotonic()
    try:
        while time.monotonic() - t_start < seconds + warmup:
            deliveries = await bus.read_group(Channel.EXECUTION_REPORTS, "bench", "bench", count=1000, block_ms=500)
            now = time.time_ns()
            warm = time.monotonic() - t_start >= warmup
            for d in deliveries:
                msg = d.message
                if warm and isinstance(msg, ExecutionReport) and msg.kind == "fill" and msg.origin_ts_ns:
                    fills.append((msg.client_order_id, msg.origin_ts_ns, msg.ts_ns, now))
            await bus.ack(Channel.EXECUTION_REPORTS, "bench", [d.entry_id for d in deliveries])
    finally:
        await bus.close()
    return fills


async def orders_created(url: str, prefix: str) -> dict[str, int]:
    """When risk created each order (NewOrder ts_ns), from the orders stream."""
    client = aioredis.Redis.from_url(url)
    try:
        out: dict[str, int] = {}
        for _, fields in await client.xrange(f"{prefix}orders"):
            msg = decode(fields[b"d"])
            if isinstance(msg, NewOrder):
                out[msg.order.client_order_id] = msg.ts_ns
        return out
    finally:
        await client.aclose()


async def agent_counters(url: str, prefix: str) -> dict[str, dict[str, int]]:
    """Each agent's counters from its latest heartbeat."""
    client = aioredis.Redis.from_url(url)
    try:
        out: dict[str, dict[str, int]] = {}
        for agent in AGENT_NAMES:
            raw = await client.get(f"{prefix}status:{agent}")
            if raw:
                out[agent] = decode(raw).counters  # type: ignore[attr-defined]
        return out
    finally:
        await client.aclose()


def messages_published(counters: dict[str, dict[str, int]]) -> int:
    return sum(v for c in counters.values() for k, v in c.items() if k.startswith("pub:"))


async def wait_for_heartbeats(url: str, prefix: str, timeout: float = 30.0) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([await client.exists(f"{prefix}status:{a}") for a in AGENT_NAMES]):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("agents did not all report a heartbeat in time")
    finally:
        await client.aclose()


def cleanup(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def run(rate: float, seconds: float, warmup: float, url: str) -> dict[str, float]:
    prefix = f"wqbench{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as logs:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(yaml.safe_dump(bench_config(rate)))
        env = {**os.environ, "WQ_BUS__URL": url, "WQ_BUS__PREFIX": prefix}
        procs = []
        try:
            # downstream first so nothing published at start-up is missed
            for agent in reversed(AGENT_NAMES):
                log = logs.enter_context(open(Path(tmp) / f"{agent}.log", "w"))
                procs.append(subprocess.Popen([WQ, "agent", "run", agent, "--config", str(cfg)], env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            asyncio.run(wait_for_heartbeats(url, prefix))
            published_before = messages_published(asyncio.run(agent_counters(url, prefix)))
            t0 = time.monotonic()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                fills = runner.run(collect(url, prefix, seconds, warmup))
            elapsed = time.monotonic() - t0
            counters = asyncio.run(agent_counters(url, prefix))
            published = messages_published(counters) - published_before
            risk = counters.get("risk", {})
            if risk.get("trading_halted") or risk.get("trading_reducing"):  # fewer fills than ticks: say why
                print(f"warning: risk stopped trading during the run at {rate:g}/s (see its log); fills are missing",
                      file=sys.stderr)
            created = asyncio.run(orders_created(url, prefix))
        finally:
            for p in procs:
                with_suppress_kill(p, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with_suppress_kill(p, signal.SIGKILL)
            cleanup(url, prefix)
    if not fills:
        raise RuntimeError(f"no fills observed; agent logs were in {tmp}")
    ms = np.array([(tick, made, read, created.get(coid, 0)) for coid, tick, made, read in fills], dtype=np.int64)
    arr, mk = (ms[:, 2] - ms[:, 0]) / 1e6, (ms[:, 1] - ms[:, 0]) / 1e6
    staged = ms[ms[:, 3] > 0]
    return {"rate": rate, "fills": len(fills), "fills_per_s": len(fills) / seconds,
            "to_order_p50": float(np.percentile((staged[:, 3] - staged[:, 0]) / 1e6, 50)),
            "order_to_fill_p50": float(np.percentile((staged[:, 1] - staged[:, 3]) / 1e6, 50)),
            "made_p50": float(np.percentile(mk, 50)), "made_p99": float(np.percentile(mk, 99)),
            "p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max()), "msgs_per_s": published / elapsed}


def with_suppress_kill(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, nargs="+", default=[1000.0], help="ticks per second (one order each)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
    table = Table(title="tick -> fill latency, 7 agent processes over Redis (ms)")
    for col in ("ticks/s", "fills", "fills/s", "tick->order p50", "order->fill p50", "fill made p50",
                "fill made p99", "fill read p50", "p90", "p99", "max", "bus msgs/s"):
        table.add_column(col, justify="right")
    for rate in args.rate:
        with console.status(f"running at {rate:g} ticks/s for {args.seconds:g}s (+{args.warmup:g}s warm-up)..."):
            r = run(rate, args.seconds, args.warmup, args.url)
        table.add_row(f"{r['rate']:g}", str(r["fills"]), f"{r['fills_per_s']:.0f}", f"{r['to_order_p50']:.2f}",
                      f"{r['order_to_fill_p50']:.2f}", f"{r['made_p50']:.2f}",
                      f"{r['made_p99']:.2f}", f"{r['p50']:.2f}",
                      f"{r['p90']:.2f}", f"{r['p99']:.2f}", f"{r['max']:.2f}", f"{r['msgs_per_s']:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
