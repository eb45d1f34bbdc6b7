"""Soak test (not a test in the suite): all seven agents as processes over the real Redis, replaying two real
candle files, while execution, core, risk and strategy_engine are killed with SIGKILL at random and restarted.
Prints what the event log and the paper exchange hold afterwards: every order sent once, every fill once.

    .venv/bin/python scripts/soak_kill_restart.py --seconds 90 --seed 3
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import yaml

from wavesquant.config import AGENT_NAMES
from wavesquant.messages import decode

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WQ_SHARED_DIR", ROOT.parent / "shared")) / "data" / "ohlcv"
WQ = str(Path(sys.executable).with_name("wq"))
VICTIMS = ["execution", "core", "risk", "strategy_engine"]


def config() -> dict:
    return {
        "bus": {"backend": "redis"},
        "logging": {"level": "warning"},
        "data_feeds": {"source": "replay", "replay": {"bars_per_second": 100, "files": [
            {"path": str(DATA / "binance_BTCUSDT_1m.csv")}, {"path": str(DATA / "binance_ETHUSDT_1m.csv")}]}},
        "strategy_engine": {"strategies": [
            {"id": "t1", "kind": "ma_crossover", "params": {"symbols": ["BTC/USDT"], "fast": 3, "slow": 8,
                                                            "quantity": 0.01}},
            {"id": "t2", "kind": "ma_crossover", "params": {"symbols": ["ETH/USDT"], "fast": 3, "slow": 8,
                                                            "quantity": 0.1}}]},
        "intelligence": {"loops": {"trend_intelligence": 1.0}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"wqsoak{uuid.uuid4().hex[:6]}:"
    tmp = Path(tempfile.mkdtemp())
    cfg = tmp / "soak.yaml"
    cfg.write_text(yaml.safe_dump(config()))
    env = {**os.environ, "WQ_BUS__URL": args.url, "WQ_BUS__PREFIX": prefix}

    def start(agent: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([WQ, "agent", "run", agent, "--config", str(cfg)], env=env,
                                stdout=open(tmp / f"{agent}.log", "a"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    procs = {a: start(a) for a in AGENT_NAMES}
    rng = random.Random(args.seed)
    kills: collections.Counter[str] = collections.Counter()
    try:
        t0 = time.time()
        while time.time() - t0 < args.seconds:
            time.sleep(rng.uniform(5, 10))
            victim = rng.choice(VICTIMS)
            os.killpg(procs[victim].pid, signal.SIGKILL)
            procs[victim].wait()
            time.sleep(rng.uniform(0.5, 2))
            procs[victim] = start(victim)
            kills[victim] += 1
            print(f"{time.time() - t0:5.1f}s  kill -9 {victim}, restarted", flush=True)
        time.sleep(8)
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        codes = {a: p.wait(timeout=30) for a, p in procs.items()}
    client = redis.Redis.from_url(args.url)
    try:
        events = [decode(f[b"d"]) for _, f in client.xrange(f"{prefix}events")]
        fills = [m for m in events if m.type == "execution_report" and m.kind == "fill"]  # type: ignore[attr-defined]
        sent = {m.order.client_order_id for m in events if m.type == "new_order"}  # type: ignore[attr-defined]
        paper = client.hgetall(f"{prefix}paper:orders")
        print(f"kills: {dict(kills)}; exit codes after SIGTERM: {codes}")
        print(f"approved orders: {len(sent)}; orders at the paper exchange: {len(paper)}")
        print(f"fill reports: {len(fills)}; distinct fill ids: {len({f.fill_id for f in fills})}")  # type: ignore[attr-defined]
        denials = collections.Counter(d.code for m in events if m.type == "risk_decision" for d in m.denials)  # type: ignore[attr-defined]
        print(f"risk denials: {dict(denials)}; dead letters: {client.xlen(f'{prefix}deadletter')}")
        print(f"agent logs: {tmp}")
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
