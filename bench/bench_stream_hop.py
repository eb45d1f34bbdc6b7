"""Benchmark of one stream hop on the Redis bus (a script, not a test).

    python bench/bench_stream_hop.py [--rates 100 500 2000] [--entries 2000] [--url redis://127.0.0.1:6379/0]

A producer process XADDs execution reports one at a time at the given rate (`publish_many`, as execution does);
a consumer process reads them in a consumer group (`read_group`, blocking) and acks them, as every agent's
stream consumer does. Printed per rate: the consumer's CPU per entry, entries per read (batching), and the
latency from the report's creation to its decode in the consumer.

Money travels this path (risk -> execution -> core, risk, strategy_engine), so its per-entry cost multiplies
into every order. At low rates each entry wakes a sleeping process with cold CPU caches, which is most of
the cost on a 2-core machine shared by eight processes. Keys live under a random prefix and are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_bus import quiet_logs, run_loop
from bench_latency import cleanup

from wavesquant.bus.redis_bus import RedisBus
from wavesquant.messages import Channel, ExecutionReport
from wavesquant.types import OrderStatus

STREAM = Channel.EXECUTION_REPORTS
GROUP, CONSUMER = "bench", "bench-1"


def report(seq: int) -> ExecutionReport:
    return ExecutionReport.create(
        source="bench", ts_ns=time.time_ns(), kind="fill", client_order_id=f"wq{seq:030d}", venue="paper",
        symbol="BTC/USDT", side="buy", status=OrderStatus.FILLED, quantity=0.001, filled_quantity=0.001,
        average_price=60_000.0, fill_id=f"f{seq}", last_quantity=0.001, last_price=60_000.0, fee=0.06,
        fee_currency="USDT", strategy_id="bench",
    )


def producer_main(url: str, prefix: str, rate: float, entries: int, go: Any) -> None:
    quiet_logs()

    async def main() -> None:
        bus = RedisBus(url, prefix=prefix, client_name="bench-producer")
        await bus.start()
        go.wait()
        interval = 1.0 / rate
        start = time.perf_counter()
        for seq in range(entries):
            await bus.publish_many([report(seq)])
            delay = start + (seq + 1) * interval - time.perf_counter()
            await asyncio.sleep(max(delay, 0.0))
        await bus.close()

    run_loop(main())


def consumer_main(url: str, prefix: str, entries: int, ready: Any, results: Any) -> None:
    quiet_logs()

    async def main() -> None:
        bus = RedisBus(url, prefix=prefix, client_name="bench-consumer")
        await bus.start()
        await bus.read_group(STREAM, GROUP, CONSUMER, block_ms=0)  # creates the group
        ready.set()
        latencies: list[float] = []
        reads, cpu0 = 0, None
        while len(latencies) < entries:
            deliveries = await bus.read_group(STREAM, GROUP, CONSUMER, block_ms=2_000)
            if not deliveries:
                break
            now = time.time_ns()
            if cpu0 is None:
                cpu0 = time.process_time()
            reads += 1
            latencies += [(now - d.message.ts_ns) / 1e3 for d in deliveries]
            await bus.ack(STREAM, GROUP, [d.entry_id for d in deliveries])
        cpu = time.process_time() - (cpu0 or time.process_time())
        results.put((latencies, reads, cpu))
        await bus.close()

    run_loop(main())


def run(url: str, rate: float, entries: int) -> dict[str, float]:
    prefix = f"wqbenchsh{uuid.uuid4().hex[:8]}:"
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=consumer_main, args=(url, prefix, entries, ready, results))
    producer = ctx.Process(target=producer_main, args=(url, prefix, rate, entries, go))
    consumer.start()
    producer.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("consumer did not start")
        go.set()
        latencies, reads, cpu = results.get(timeout=entries / rate + 60)
    finally:
        for p in (producer, consumer):
            p.join(10)
            if p.is_alive():
                p.kill()
        cleanup(url, prefix)
    latencies.sort()
    n = len(latencies)
    return {"rate": rate, "entries": n, "cpu_us": cpu / max(n - 1, 1) * 1e6, "per_read": n / max(reads, 1),
            "p50": latencies[n // 2], "p99": latencies[min(n - 1, int(n * 0.99))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0, 2000.0], help="entries/s")
    parser.add_argument("--entries", type=int, default=2000, help="entries per rate")
    args = parser.parse_args()
    print(f"stream hop over {args.url}: producer XADD -> consumer XREADGROUP + XACK, {args.entries} entries per rate\n")
    header = f"{'rate/s':>8} | {'entries':>8} | {'consumer us CPU/entry':>22} | {'entries/read':>12} | " \
             f"{'p50 us':>8} | {'p99 us':>8}"
    print(header)
    print("-" * len(header))
    for rate in args.rates:
        r = run(args.url, rate, args.entries)
        print(f"{r['rate']:>8g} | {r['entries']:>8} | {r['cpu_us']:>22.0f} | {r['per_read']:>12.2f} | "
              f"{r['p50']:>8.0f} | {r['p99']:>8.0f}")


if __name__ == "__main__":
    main()
