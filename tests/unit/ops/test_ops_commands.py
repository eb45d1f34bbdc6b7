"""The operator commands through typer's CliRunner, on an EmbeddedBus standing in for Redis (the integration
tests run them against the real Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from test_ops_queries import system
from typer.testing import CliRunner, Result

import wavesquant.runtime
from support.cli_app import app_fixture, keep_process_state  # noqa: F401 (fixtures)
from support.event_log_flow import EventLogFlow
from wavesquant.bus.embedded import EmbeddedBus
from wavesquant.execution.orders import Accepted, CancelRequested, Submitted
from wavesquant.journal.store import TradeJournal
from wavesquant.journal.sync import sync_journal
from wavesquant.messages import Channel, Envelope
from wavesquant.types import Side
from wavesquant.types import SignalState as S

ENV = {"COLUMNS": "250", "WQ_BUS__PREFIX": "unit:"}


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> EmbeddedBus:
    """The bus every command gets from runtime.make_bus."""
    bus = EmbeddedBus()
    monkeypatch.setattr(wavesquant.runtime, "make_bus", lambda settings, clock: bus)
    return bus


def fill(bus: EmbeddedBus, msgs: list[Envelope]) -> None:
    asyncio.run(bus.publish_many(msgs))


def invoke(app: typer.Typer, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV, input=input)


def one_line_error(result: Result, *fragments: str) -> None:
    text = " ".join(result.stderr.split())  # rich may wrap the one line
    assert text.startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in text, text
    assert "Traceback" not in result.output


def rows_of(output: str) -> list[list[str]]:
    """Cells of each body row of a rich table (box characters stripped)."""
    rows = []
    for line in output.splitlines():
        if line.startswith("│"):
            rows.append([c.strip() for c in line.strip("│").split("│")])
    return rows


def test_signals_table_and_state_filter(app: typer.Typer, bus: EmbeddedBus) -> None:
    fill(bus, system().msgs)
    result = invoke(app, "signals")
    assert result.exit_code == 0, result.output
    states = {r[0]: r[4] for r in rows_of(result.stdout)}
    assert states == {"sig-1": "executed", "sig-2": "blocked", "sig-3": "evaluating", "sig-4": "approved"}
    assert "4 of 4 signal(s)" in result.stdout
    result = invoke(app, "signals", "--state", "pending", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert [r[0] for r in rows_of(result.stdout)] == ["sig-4"]
    assert "1 of 2 signal(s)" in result.stdout


def test_invalid_signal_state_lists_the_valid_ones(app: typer.Typer) -> None:
    result = invoke(app, "signals", "--state", "done")
    assert result.exit_code == 2
    one_line_error(result, "unknown signal state 'done'", "generated, evaluating, approved", "learned, pending")


def test_orders_table_and_open_filter(app: typer.Typer, bus: EmbeddedBus) -> None:
    fill(bus, system().msgs)
    result = invoke(app, "orders")
    assert result.exit_code == 0, result.output
    rows = {r[0]: r for r in rows_of(result.stdout)}
    assert set(rows) == {"o1", "o2", "o3", "o4"}
    assert rows["o1"][1:4] == ["trend_a", "BTC/USDT", "buy"] and rows["o1"][9] == "filled"
    assert rows["o1"][7] == "103"  # average price of 0.4 @ 100 and 0.6 @ 105
    assert rows["o2"][9] == "canceled" and rows["o2"][8] == "120"
    result = invoke(app, "orders", "--open")
    assert [(r[0], r[9]) for r in rows_of(result.stdout)] == [("o3", "partially_filled")]


def test_positions_table(app: typer.Typer, bus: EmbeddedBus) -> None:
    fill(bus, system().msgs)
    result = invoke(app, "positions")
    assert result.exit_code == 0, result.output
    rows = {(r[0], r[1]): r for r in rows_of(result.stdout) if r[1]}
    assert rows[("trend_a", "BTC/USDT")][2] == "2" and rows[("trend_a", "BTC/USDT")][4] == "110"
    assert rows[("mr_b", "BTC/USDT")][2] == "-0.5"
    assert "4 fill(s)" in result.stdout
    net = invoke(app, "positions", "--net")
    assert [(r[0], r[1], r[2]) for r in rows_of(net.stdout) if r[1]] == [("(all)", "BTC/USDT", "1.5")]


def test_events_replay_in_order_with_filters(app: typer.Typer, bus: EmbeddedBus) -> None:
    flow = system()
    fill(bus, flow.msgs)
    entries = asyncio.run(bus.read_range(Channel.EVENTS))
    result = invoke(app, "events", "replay")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [e[0] for e in entries]
    assert "signal_event" in lines[0] and "sig-1 - -> generated" in lines[0]
    result = invoke(app, "events", "replay", "--type", "execution_report", "--type", "risk_alert", "-n", "2")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("execution_report" in line for line in lines)
    assert "ack o1 buy BTC/USDT 0/1 open" in lines[0]
    window = invoke(app, "events", "replay", "--from", entries[3][0], "--to", entries[4][0])
    assert [line.split()[0] for line in window.stdout.splitlines()] == [entries[3][0], entries[4][0]]
    raw = invoke(app, "events", "replay", "--json", "-n", "1")
    assert raw.stdout.strip() == entries[0][1].decode()


def test_events_replay_rejects_bad_type_and_ids(app: typer.Typer) -> None:
    bad = invoke(app, "events", "replay", "--type", "tick_batch")
    assert bad.exit_code == 2
    one_line_error(bad, "unknown event type 'tick_batch'", "execution_report", "signal_event")
    bad = invoke(app, "events", "replay", "--from", "yesterday")
    assert bad.exit_code == 2
    one_line_error(bad, "--from 'yesterday' is not a stream entry id")
    bad = invoke(app, "events", "tail", "--type", "nope")
    assert bad.exit_code == 2
    one_line_error(bad, "unknown event type 'nope'")


def test_events_tail_needs_redis(app: typer.Typer, bus: EmbeddedBus) -> None:
    result = invoke(app, "events", "tail", "-n", "1")
    assert result.exit_code == 2
    one_line_error(result, "events tail needs the Redis bus")


def test_journal_sync_then_report(app: typer.Typer, bus: EmbeddedBus, tmp_path: Path) -> None:
    fill(bus, system().msgs)
    db = tmp_path / "var" / "journal.sqlite"
    result = invoke(app, "journal", "sync", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert db.is_file()
    assert "4 new fills" in result.stdout and "4 orders and 4 fills in total" in result.stdout
    again = invoke(app, "journal", "sync", "--db", str(db))
    assert "0 new event-log entries" in again.stdout and "4 orders and 4 fills in total" in again.stdout
    report = invoke(app, "journal", "report", "--db", str(db))
    assert report.exit_code == 0, report.output
    rows = {(r[0], r[1]): r for r in rows_of(report.stdout) if r[1]}
    assert set(rows) == {("mr_b", "BTC/USDT"), ("trend_a", "BTC/USDT")}
    trend = rows[("trend_a", "BTC/USDT")]
    assert trend[2] == "2" and trend[5] == "0.10" and trend[6] == "3"
    assert rows[("mr_b", "BTC/USDT")][2] == "-0.5"
    total = next(r for r in rows_of(report.stdout) if r[0] == "total")
    assert total[6] == "4"


def test_journal_report_without_a_journal_is_one_line(app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(app, "journal", "report", "--db", str(tmp_path / "missing.sqlite"))
    assert result.exit_code == 2
    one_line_error(result, "no journal at", "wq journal sync")
    assert not (tmp_path / "missing.sqlite").exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"x" * 4096)
    result = invoke(app, "journal", "report", "--db", str(garbage))
    assert result.exit_code == 2
    one_line_error(result, "not a usable trade journal")


def test_journal_report_pnl_of_a_closed_round_trip(app: typer.Typer, tmp_path: Path) -> None:
    f = EventLogFlow()
    buy = f.new("b1", qty=2.0)
    f.apply(buy, Accepted("v1"), "ack")
    f.fill(buy, "x1", 2.0, 100.0, fee=0.2)
    sell = f.new("s1", side=Side.SELL, qty=2.0, signal="sig-9")
    f.apply(sell, Submitted())
    f.fill(sell, "x2", 2.0, 103.0, fee=0.2)
    db = tmp_path / "j.sqlite"

    async def build() -> None:
        bus = EmbeddedBus()
        await bus.publish_many(f.msgs)
        with TradeJournal(db) as journal:
            await sync_journal(journal, bus)

    asyncio.run(build())
    result = invoke(app, "journal", "report", "--db", str(db))
    [row] = [r for r in rows_of(result.stdout) if r[1]]
    assert row == ["trend_a", "BTC/USDT", "0", "-", "5.60", "0.40", "2"]  # 2 x 3 - 0.4 fees


def test_kill_asks_and_sends_nothing_when_refused(app: typer.Typer, bus: EmbeddedBus) -> None:
    sent: list[Envelope] = []
    bus.publish = lambda msg: sent.append(msg)  # type: ignore[assignment,method-assign,return-value]
    for answer in ("n\n", ""):
        result = invoke(app, "kill", "--flatten", input=answer)
        assert result.exit_code == 1
        assert "close every position" in result.stdout  # the question says what will happen
        one_line_error(result, "aborted: nothing was sent")
    assert sent == []


def test_kill_without_ack_fails(app: typer.Typer, bus: EmbeddedBus) -> None:
    result = invoke(app, "kill", "--yes", "--timeout", "0.2")
    assert result.exit_code == 1
    one_line_error(result, "no acknowledgement from the risk agent", "NOT confirmed")
    commands = [m for _, m in bus._streams[Channel.EVENTS.value].entries]  # control commands are event-logged
    assert len(commands) == 1 and getattr(commands[0], "command", None) == "kill"
    assert commands[0].args == {"flatten": "false"}  # type: ignore[union-attr]


def test_signals_with_real_lifecycle_reasons(app: typer.Typer, bus: EmbeddedBus) -> None:
    f = EventLogFlow()
    f.signal("sig-x", S.GENERATED, S.EVALUATING, S.EXPIRED)
    o = f.new("ox", limit=10.0, signal="sig-x")
    f.apply(o, Accepted("vx"), "ack")
    f.apply(o, CancelRequested())
    fill(bus, f.msgs)
    result = invoke(app, "signals", "--state", "expired")
    [row] = rows_of(result.stdout)
    assert row[0] == "sig-x" and row[-1] == "to expired"
    orders = invoke(app, "orders", "--open")
    assert [(r[0], r[9]) for r in rows_of(orders.stdout)] == [("ox", "pending_cancel")]


def test_empty_log_says_so(app: typer.Typer, bus: EmbeddedBus) -> None:
    assert invoke(app, "signals", "--state", "blocked").stdout.strip() == "no signals in state blocked in the event log"
    assert invoke(app, "orders", "--open").stdout.strip() == "no open orders in the event log"
    assert invoke(app, "positions").stdout.strip() == "no fills in the event log: no positions"
    result = invoke(app, "events", "replay")
    assert result.exit_code == 0 and result.stdout == "" and "no matching event-log entries" in result.stderr


def test_state_choices_agree_with_the_queries() -> None:
    from wavesquant.ops import commands, queries

    assert commands.SIGNAL_STATE_CHOICES == queries.SIGNAL_STATE_CHOICES
