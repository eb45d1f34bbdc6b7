"""Benchmark of the Redis bus hot path (a script, not a test).

    python bench/bench_bus.py --url redis://127.0.0.1:6379/0 [--rates 500 2000] [--seconds 5]

1. Relay chain: source -> relay -> relay -> relay -> sink, five OS processes (multiprocessing spawn), four
   pub/sub hops over the real Redis. Every receiver decodes with pydantic validation (the bus does it), every
   relay re-encodes and publishes. The sink measures latency from the source's creation timestamp (ts_ns); the
   relays report their CPU time per relayed message.
2. Raw publish throughput: pipelined `publish_many` (batches, replies not awaited) against plain redis-py with
   one awaited PUBLISH per message.

Uses uvloop when installed. Keys and channels live under a random prefix; nothing is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wavesquant.bus.redis_bus import RedisBus
from wavesquant.messages import ArbitrageOpportunity, Channel, encode

HOPS = 4
END_ID = "end"
CHANNEL = Channel.HFT_SIGNALS  # ArbitrageOpportunity's channel; each hop uses its own prefix


def run_loop(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def opportunity(seq: int, ts_ns: int, msg_id: str | None = None) -> ArbitrageOpportunity:
    ts_ms = ts_ns // 1_000_000
    return ArbitrageOpportunity.create(
        source="bench", ts_ns=ts_ns, msg_id=msg_id or f"m{seq}", symbol="BTC/USDT",
        exchanges=["binance", "kraken"], price_diff=1.25, max_latency=50, execution_priority=5,
        expiry=ts_ms + 60_000,
    )


def hop_prefix(base: str, hop: int) -> str:
    return f"{base}h{hop}:"


# processes -----------------------------------------------------------------------------------------------
def relay_main(url: str, base: str, hop: int, ready: Any, results: Any) -> None:
    """Receive on hop `hop`, forward on hop `hop + 1` until the end marker passes."""
    quiet_logs()

    async def main() -> None:
        inbound = RedisBus(url, prefix=hop_prefix(base, hop), client_name=f"bench-relay{hop}-in")
        outbound = RedisBus(url, prefix=hop_prefix(base, hop + 1), client_name=f"bench-relay{hop}-out")
        await inbound.start()
        await outbound.start()
        sub = inbound.subscribe([CHANNEL])
        await sub.ready()  # type: ignore[attr-defined]
        ready.set()
        relayed, cpu0 = 0, None
        async for batch in sub:
            if cpu0 is None:
                cpu0 = time.process_time()
            await outbound.publish_many(batch)
            relayed += len(batch)
            if batch[-1].msg_id == END_ID:
                break
        cpu = time.process_time() - (cpu0 or time.process_time())
        results.put(("relay", hop, relayed, cpu))
        await sub.close()
        await inbound.close()
        await outbound.close()

    run_loop(main())


def sink_main(url: str, base: str, ready: Any, results: Any, warmup: int, timeout_s: float) -> None:
    quiet_logs()

    async def main() -> None:
        bus = RedisBus(url, prefix=hop_prefix(base, HOPS), client_name="bench-sink")
        await bus.start()
        sub = bus.subscribe([CHANNEL])
        await sub.ready()  # type: ignore[attr-defined]
        ready.set()
        latencies: list[int] = []
        first = last = 0
        seen = 0
        cpu0 = time.process_time()

        async def consume() -> None:
            nonlocal first, last, seen
            async for batch in sub:
                now = time.time_ns()
                for msg in batch:
                    if msg.msg_id == END_ID:
                        return
                    seen += 1
                    if seen > warmup:
                        latencies.append(now - msg.ts_ns)
                        first = first or now
                        last = now

        try:
            await asyncio.wait_for(consume(), timeout_s)
        except TimeoutError:
            pass
        results.put(("sink", seen, latencies, (last - first) / 1e9, time.process_time() - cpu0))
        await sub.close()
        await bus.close()

    run_loop(main())


def source_main(url: str, base: str, rate: int, seconds: float, results: Any) -> None:
    """Publish `rate` msg/s for `seconds`: every message due by now goes out in one publish_many."""
    quiet_logs()

    async def main() -> None:
        bus = RedisBus(url, prefix=hop_prefix(base, 1), client_name="bench-source")
        await bus.start()
        total = int(rate * seconds)
        interval = 1.0 / rate
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        while sent < total:
            due = min(total, int((loop.time() - t0) / interval) + 1)
            if due > sent:
                now = time.time_ns()
                await bus.publish_many([opportunity(i, now) for i in range(sent, due)])
                sent = due
            await asyncio.sleep(max(0.0, t0 + sent * interval - loop.time()))
        await asyncio.sleep(0.2)
        await bus.publish(opportunity(total, time.time_ns(), msg_id=END_ID))
        results.put(("source", sent, loop.time() - t0))
        await bus.close()

    run_loop(main())


def relay_chain(url: str, rate: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    base = f"wqbench{uuid.uuid4().hex[:8]}:"
    results: Any = ctx.Queue()
    warmup = max(50, rate // 4)  # the first quarter second: connections and code paths warm up
    procs: list[Any] = []
    readies: list[Any] = []
    for hop in range(1, HOPS):
        ready = ctx.Event()
        procs.append(ctx.Process(target=relay_main, args=(url, base, hop, ready, results), daemon=True))
        readies.append(ready)
    ready = ctx.Event()
    sink_args = (url, base, ready, results, warmup, seconds + 30)
    procs.append(ctx.Process(target=sink_main, args=sink_args, daemon=True))
    readies.append(ready)
    for p in procs:
        p.start()
    for r in readies:
        if not r.wait(30):
            raise RuntimeError("a relay process did not start")
    source = ctx.Process(target=source_main, args=(url, base, rate, seconds, results), daemon=True)
    source.start()
    procs.append(source)
    got: dict[str, Any] = {"relay": []}
    for _ in range(HOPS + 1):
        item = results.get(timeout=seconds + 60)
        if item[0] == "relay":
            got["relay"].append(item)
        else:
            got[item[0]] = item
    for p in procs:
        p.join(10)
    _, sent, _ = got["source"]
    _, seen, latencies, span_s, _ = got["sink"]
    lat_ms = sorted(x / 1e6 for x in latencies)
    relay_us = [cpu / max(1, n) * 1e6 for _, _, n, cpu in got["relay"]]
    return {
        "rate": rate,
        "sent": sent,
        "received": seen,
        "lost": sent - seen,
        "p50_ms": _pct(lat_ms, 50),
        "p90_ms": _pct(lat_ms, 90),
        "p99_ms": _pct(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else float("nan"),
        "throughput": len(lat_ms) / span_s if span_s > 0 else float("nan"),
        "relay_cpu_us": statistics.mean(relay_us) if relay_us else float("nan"),
    }


def _pct(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# raw publishing ------------------------------------------------------------------------------------------
async def raw_publish(url: str, n: int, batch: int) -> dict[str, float]:
    """Pipelined publish_many (encode included) until Redis has processed every PUBLISH (a marker published last
    on the same connection has reached a subscriber); then redis-py with one awaited PUBLISH per message, for
    comparison."""
    base = f"wqbench{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(url, prefix=base, client_name="bench-raw")
    await bus.start()
    marker = bus.client.pubsub()
    await marker.subscribe(f"{base}done")
    await marker.get_message(timeout=1.0)  # the subscribe confirmation
    msgs = [opportunity(i, time.time_ns()) for i in range(n)]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for i in range(0, n, batch):
        await bus.publish_many(msgs[i:i + batch])
    await bus.publish_raw("done", b"1")
    while await marker.get_message(timeout=10.0) is None:
        pass
    await marker.aclose()
    pipelined = n / (time.perf_counter() - t0)
    pipelined_cpu_us = (time.process_time() - cpu0) / n * 1e6

    payloads = [encode(m) for m in msgs[: n // 5]]
    key = f"{base}{CHANNEL.value}"
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for payload in payloads:
        await bus.client.publish(key, payload)
    awaited = len(payloads) / (time.perf_counter() - t0)
    awaited_cpu_us = (time.process_time() - cpu0) / len(payloads) * 1e6
    await bus.close()
    return {"pipelined": pipelined, "pipelined_cpu_us": pipelined_cpu_us, "awaited": awaited,
            "awaited_cpu_us": awaited_cpu_us}


def print_table(rows: list[dict[str, float]], columns: list[tuple[str, str, Callable[[float], str]]]) -> None:
    header = " | ".join(f"{title:>12}" for title, _, _ in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" | ".join(f"{fmt(row[key]):>12}" for _, key, fmt in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("WQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 2000], help="msg/s at the source")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration per rate")
    parser.add_argument("--raw-messages", type=int, default=100_000)
    parser.add_argument("--raw-batch", type=int, default=100)
    args = parser.parse_args()
    quiet_logs()
    try:
        import uvloop  # noqa: F401

        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    print(f"Redis bus benchmark: {args.url.split('@')[-1]}, {loop_name}, {os.cpu_count()} CPUs, "
          f"{HOPS}-hop relay chain (5 processes), {args.seconds:g} s per rate\n")
    rows = [relay_chain(args.url, rate, args.seconds) for rate in args.rates]
    f2: Callable[[float], str] = lambda v: f"{v:.3f}"
    f0: Callable[[float], str] = lambda v: f"{v:.0f}"
    print_table(rows, [("rate msg/s", "rate", f0), ("received", "received", f0), ("lost", "lost", f0),
                       ("p50 ms", "p50_ms", f2), ("p90 ms", "p90_ms", f2), ("p99 ms", "p99_ms", f2),
                       ("max ms", "max_ms", f2), ("thru msg/s", "throughput", f0),
                       ("relay us/msg", "relay_cpu_us", lambda v: f"{v:.1f}")])
    raw = run_loop(raw_publish(args.url, args.raw_messages, args.raw_batch))
    print(f"\nraw publish, {args.raw_messages} messages in batches of {args.raw_batch}:")
    print(f"  pipelined publish_many (no await per message): {raw['pipelined']:>9.0f} msg/s, "
          f"{raw['pipelined_cpu_us']:.1f} us CPU/msg")
    print(f"  redis-py, one awaited PUBLISH per message:      {raw['awaited']:>9.0f} msg/s, "
          f"{raw['awaited_cpu_us']:.1f} us CPU/msg")


if __name__ == "__main__":
    main()
