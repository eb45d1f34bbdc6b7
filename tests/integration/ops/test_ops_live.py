"""The operator commands against the real Redis: events written by a RedisBus under a random prefix, read back
by `wq signals / orders / positions / events / journal`; the kill switch against a real risk agent process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import typer
from typer.testing import CliRunner, Result

from support.cli_app import app_fixture, keep_process_state  # noqa: F401 (fixtures)
from support.event_log_flow import EventLogFlow
from support.polling import wait_until
from wavesquant.bus.redis_bus import RedisBus
from wavesquant.execution.orders import Accepted
from wavesquant.messages import (
    CancelOrder,
    Envelope,
    ExecutionReport,
    RiskAlert,
    SignalEvent,
    decode,
    encode,
)
from wavesquant.ops.queries import describe
from wavesquant.types import Side
from wavesquant.types import SignalState as S

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]
WQ = Path(sys.executable).parent / "wq"
T0 = int(time.time() * 1000)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def wq(app: typer.Typer, redis_url: str, prefix: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--redis", redis_url], env={"COLUMNS": "250", "WQ_BUS__PREFIX": prefix})


def rows_of(output: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("│").split("│")] for line in output.splitlines() if line.startswith("│")]


def trading_day() -> EventLogFlow:
    """trend_a buys 1 @ 100 and sells 1 @ 104 (fees 0.05 each); mr_b has a resting limit buy, half filled."""
    f = EventLogFlow(T0)
    f.signal("sig-b1", S.GENERATED, S.EVALUATING, S.APPROVED, S.EXECUTING, S.EXECUTED)
    f.signal("sig-late", S.GENERATED, S.EVALUATING)
    buy = f.new("b1", Side.BUY, 1.0, "trend_a", signal="sig-b1")
    f.apply(buy, Accepted("v1"), "ack")
    f.fill(buy, "x1", 1.0, 100.0, 0.05)
    sell = f.new("s1", Side.SELL, 1.0, "trend_a", signal="sig-s1")
    f.apply(sell, Accepted("v2"), "ack")
    f.fill(sell, "x2", 1.0, 104.0, 0.05)
    rest = f.new("r1", Side.BUY, 2.0, "mr_b", limit=95.0, signal="sig-r1")
    f.apply(rest, Accepted("v3"), "ack")
    f.fill(rest, "x3", 1.0, 95.0, 0.0)
    return f


def publish(redis_url: str, prefix: str, msgs: list[Envelope]) -> None:
    async def run() -> None:
        bus = RedisBus(redis_url, prefix=prefix)
        await bus.start()
        try:
            await bus.publish_many(msgs)
        finally:
            await bus.close()

    asyncio.run(run())


def test_views_read_the_live_event_log(app: typer.Typer, redis_url: str, redis_prefix: str) -> None:
    flow = trading_day()
    publish(redis_url, redis_prefix, flow.msgs)

    result = wq(app, redis_url, redis_prefix, "signals")
    assert result.exit_code == 0, result.output
    assert {r[0]: r[4] for r in rows_of(result.stdout)} == {"sig-b1": "executed", "sig-late": "evaluating"}
    pending = wq(app, redis_url, redis_prefix, "signals", "--state", "pending")
    assert [r[0] for r in rows_of(pending.stdout)] == ["sig-late"]

    result = wq(app, redis_url, redis_prefix, "orders")
    assert result.exit_code == 0, result.output
    assert {r[0]: r[9] for r in rows_of(result.stdout)} == {"b1": "filled", "s1": "filled", "r1": "partially_filled"}
    result = wq(app, redis_url, redis_prefix, "orders", "--open")
    [open_row] = rows_of(result.stdout)
    assert open_row[:9] == ["r1", "mr_b", "BTC/USDT", "buy", "limit", "2", "1", "95", "95"]

    result = wq(app, redis_url, redis_prefix, "positions")
    assert result.exit_code == 0, result.output
    rows = {(r[0], r[1]): r for r in rows_of(result.stdout) if r[1]}
    # strategy, symbol, quantity, avg entry, mark, realised, unrealised, fees
    assert rows[("trend_a", "BTC/USDT")][2:] == ["0", "-", "95", "3.90", "0.00", "0.10"]
    assert rows[("mr_b", "BTC/USDT")][2:] == ["1", "95", "95", "0.00", "0.00", "0.00"]

    result = wq(app, redis_url, redis_prefix, "events", "replay", "--type", "execution_report")
    lines = result.stdout.splitlines()
    assert len(lines) == sum(isinstance(m, ExecutionReport) for m in flow.msgs)
    assert "fill b1 buy BTC/USDT 1/1 filled fill 1@100 fee 0.05 USDT" in lines[1]
    everything = wq(app, redis_url, redis_prefix, "events", "replay").stdout.splitlines()
    ids = [line.split()[0] for line in everything]
    assert len(ids) == len(flow.msgs) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    window = wq(app, redis_url, redis_prefix, "events", "replay", "--from", ids[2], "--to", ids[3])
    assert [line.split()[0] for line in window.stdout.splitlines()] == ids[2:4]


def test_journal_sync_and_report_over_redis(app: typer.Typer, redis_url: str, redis_prefix: str,
                                            tmp_path: Path) -> None:
    flow = trading_day()
    publish(redis_url, redis_prefix, flow.msgs)
    db = tmp_path / "var" / "journal.sqlite"
    result = wq(app, redis_url, redis_prefix, "journal", "sync", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "3 new fills" in result.stdout and "3 orders and 3 fills in total" in result.stdout

    more = EventLogFlow(T0)
    more.now = flow.now + 10
    late = more.new("s2", Side.SELL, 1.0, "mr_b", signal="sig-s2")
    more.apply(late, Accepted("v9"), "ack")
    more.fill(late, "x4", 1.0, 97.0, 0.0)
    publish(redis_url, redis_prefix, more.msgs)
    result = wq(app, redis_url, redis_prefix, "journal", "sync", "--db", str(db))
    assert f"{len(more.msgs)} new event-log entries" in result.stdout and "1 new fills" in result.stdout

    report = CliRunner().invoke(app, ["journal", "report", "--db", str(db)], env={"COLUMNS": "250"})
    assert report.exit_code == 0, report.output
    rows = {(r[0], r[1]): r[2:] for r in rows_of(report.stdout) if r[1]}
    # net qty, avg entry, realised PnL, fees, fills
    assert rows == {("mr_b", "BTC/USDT"): ["0", "-", "2.00", "0.00", "2"],
                    ("trend_a", "BTC/USDT"): ["0", "-", "3.90", "0.10", "2"]}


def test_events_tail_follows_new_entries(app: typer.Typer, redis_url: str, redis_prefix: str,
                                         client: redis.Redis) -> None:
    flow = trading_day()
    reports = [m for m in flow.msgs if isinstance(m, ExecutionReport)]
    signals = [m for m in flow.msgs if isinstance(m, SignalEvent)]
    publish(redis_url, redis_prefix, flow.msgs[:3])  # history: not shown by tail
    last_id = client.xrevrange(f"{redis_prefix}events", count=1)[0][0].decode()
    history_end = tuple(map(int, last_id.split("-")))
    box: dict[str, Result] = {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "r", wq(app, redis_url, redis_prefix, "events", "tail", "--type", "execution_report", "-n", "2")))
    thread.start()
    key = f"{redis_prefix}events"
    try:
        deadline = time.monotonic() + 30
        i = 0
        while thread.is_alive() and time.monotonic() < deadline:  # keep writing until the tail has seen two
            client.xadd(key, {"d": encode(signals[i % len(signals)])})
            client.xadd(key, {"d": encode(reports[i % len(reports)])})
            i += 1
            time.sleep(0.1)
    finally:
        thread.join(10)
    result = box["r"]
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("execution_report" in line for line in lines)
    ids = [tuple(map(int, line.split()[0].split("-"))) for line in lines]
    assert ids[0] > history_end and ids[1] > ids[0]  # only entries appended after the tail started
    k = next(i for i, r in enumerate(reports) if lines[0].endswith(describe(r)))
    assert lines[1].endswith(describe(reports[(k + 1) % len(reports)]))  # the next one: nothing skipped


def test_unreachable_redis_is_one_line(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["orders", "--redis", "redis://127.0.0.1:1/0"], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot reach the bus") and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def _stream(client: redis.Redis, key: str) -> list[Envelope]:
    out = []
    for _, fields in client.xrange(key):
        try:
            out.append(decode(fields[b"d"]))
        except ValueError:
            continue
    return out


def test_kill_switch_against_a_real_risk_agent(app: typer.Typer, redis_url: str, redis_prefix: str,
                                               client: redis.Redis, tmp_path: Path) -> None:
    env = {**os.environ, "WQ_BUS__URL": redis_url, "WQ_BUS__PREFIX": redis_prefix, "WQ_BUS__BACKEND": "redis"}
    log = (tmp_path / "risk.log").open("wb")
    proc = subprocess.Popen([str(WQ), "agent", "run", "risk"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        control = f"{redis_prefix}control".encode()

        def subscribed() -> bool:
            assert proc.poll() is None, (tmp_path / "risk.log").read_text()[-2000:]
            return dict(client.pubsub_numsub(control)).get(control, 0) >= 1

        wait_until(subscribed, 30, "the risk agent to subscribe to control")

        result = wq(app, redis_url, redis_prefix, "kill", "--yes")
        assert result.exit_code == 0, result.output
        assert "risk: kill -> running (trading halted; open orders canceled)" in result.stdout

        def cancels() -> list[CancelOrder]:
            return [m for m in _stream(client, f"{redis_prefix}orders") if isinstance(m, CancelOrder)]

        [cancel] = wait_until(cancels, 20, "the cancel-all order")
        assert cancel.all and not cancel.flatten
        events = _stream(client, f"{redis_prefix}events")
        alerts = [m for m in events if isinstance(m, RiskAlert)]
        assert [(a.code, a.level, a.trading_state) for a in alerts] == [("kill_switch", "critical", "halted")]
        assert any(getattr(m, "command", None) == "kill" for m in events)  # the command itself is in the log

        replay = wq(app, redis_url, redis_prefix, "events", "replay", "--type", "risk_alert")
        assert "critical kill_switch trading=halted" in replay.stdout

        result = wq(app, redis_url, redis_prefix, "kill", "--yes", "--flatten")
        assert result.exit_code == 0 and "and flattening" in result.stdout
        assert wait_until(lambda: len(cancels()) == 2 and cancels()[-1].flatten, 20, "the flatten cancel")

        result = wq(app, redis_url, redis_prefix, "resume-trading")
        assert result.exit_code == 0, result.output
        assert "risk: resume_trading -> running (trading active)" in result.stdout
        codes = [m.code for m in _stream(client, f"{redis_prefix}events") if isinstance(m, RiskAlert)]
        assert codes[-1] == "resume_trading"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def test_kill_without_a_risk_agent_fails(app: typer.Typer, redis_url: str, redis_prefix: str,
                                         client: redis.Redis) -> None:
    result = wq(app, redis_url, redis_prefix, "kill", "--yes", "--timeout", "0.5")
    assert result.exit_code == 1
    assert "no acknowledgement from the risk agent" in result.stderr and "NOT confirmed" in result.stderr
    assert "Traceback" not in result.output
    commands = [m for m in _stream(client, f"{redis_prefix}events") if getattr(m, "command", None) == "kill"]
    assert len(commands) == 1 and commands[0].source.startswith("cli")  # type: ignore[attr-defined]
