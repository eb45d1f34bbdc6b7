"""Operator commands: inspect a running system (signals, orders, positions, the event log), keep the trade
journal, and pull the kill switch. `register(app)` adds them to the `wq` application.

Every command reads the event log of the system at `--redis` / bus.url under bus.prefix (WQ_BUS__PREFIX).
Errors are one line on stderr (exit 2 for a usage problem, 1 when the system did not do what was asked).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import re
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import typer
from rich.console import Console
from rich.table import Table

from wavesquant.cli_common import ConfigOpt, RedisOpt, UserError, err, fail, out, run_async, settings_from
from wavesquant.config import Settings
from wavesquant.types import SignalState

if TYPE_CHECKING:  # the heavy modules load when a command runs, not with every `wq` invocation
    from wavesquant.bus.base import Bus
    from wavesquant.messages import ControlAck
    from wavesquant.ops.queries import EventEntry

T = TypeVar("T")

DEFAULT_JOURNAL = Path("var/journal.sqlite")
READ_RETRY_S = 3.0  # how long read-only commands retry an unreachable Redis
SIGNAL_STATE_CHOICES: tuple[str, ...] = (*(s.value for s in SignalState), "pending")  # = queries' choices

events_app = typer.Typer(help="The event log: follow it live or replay its history.", no_args_is_help=True)
journal_app = typer.Typer(help="The trade journal (SQLite): sync it from the event log, report PnL.",
                          no_args_is_help=True)

DbOpt = typer.Option(DEFAULT_JOURNAL, "--db", help="Journal file (created with its directory by sync).")
TypeOpt = typer.Option([], "--type", "-t", help="Only this message type (repeatable).")


def register(app: typer.Typer) -> None:
    """Add the operator commands to `app` (the main `wq` application)."""
    app.command("signals")(signals)
    app.command("orders")(orders)
    app.command("positions")(positions)
    app.add_typer(events_app, name="events")
    app.add_typer(journal_app, name="journal")
    app.command("kill")(kill)
    app.command("resume-trading")(resume_trading)


# plumbing ------------------------------------------------------------------------------------------------
class _Stderr:
    """Whatever sys.stderr is at the time of writing."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def quiet_logging(settings: Settings) -> None:
    """Operator commands print their answer on stdout (pipeable, e.g. `--json | jq`) and problems as one line on
    stderr; the bus's own log lines go to stderr, errors only (its retry warnings would bury the answer)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.logging.json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


async def _with_bus(settings: Settings, fn: Callable[[Bus], Awaitable[T]], retry_s: float | None) -> T:
    """Open the system's bus, run `fn`, close the bus; every failure the operator can act on becomes a
    UserError (one line). `retry_s` shortens how long an unreachable Redis is retried."""
    from redis.exceptions import RedisError

    from wavesquant.bus.rawconn import HandshakeError
    from wavesquant.core.clock import LiveClock
    from wavesquant.journal.store import JournalError
    from wavesquant.runtime import make_bus

    try:
        bus = make_bus(settings, LiveClock())
    except ValueError as exc:  # e.g. an unsupported Redis URL
        raise UserError(f"bus: {exc}") from None
    if retry_s is not None and hasattr(bus, "retry_timeout_s"):
        bus.retry_timeout_s = retry_s
    try:
        await bus.start()
        return await fn(bus)
    except HandshakeError as exc:
        raise UserError(f"Redis refused the connection: {exc} (check the password / ACL in --redis / bus.url)"
                        ) from None
    except RedisError as exc:
        raise UserError(f"Redis error: {exc}") from None
    except (JournalError, sqlite3.Error) as exc:
        raise UserError(f"journal: {exc}") from None
    finally:
        await bus.close()


def _read(settings: Settings, fn: Callable[[Bus], Awaitable[T]]) -> T:
    """Run `fn` against the system's bus; an operator waiting for a table wants an unreachable Redis reported
    after a few seconds, not after the agents' retry window."""
    quiet_logging(settings)
    return run_async(lambda: _with_bus(settings, fn, READ_RETRY_S))


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.8g}"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _table(title: str, columns: list[str], right: set[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left", overflow="fold")
    return table


def _emit(table: Table) -> None:
    """In a terminal, fit the table to its width; into a pipe or file, print it at its natural width so
    no id or number is folded over lines (grep finds whole rows)."""
    if out.is_terminal:
        out.print(table)
    else:
        natural = out.measure(table, options=out.options.update_width(100_000)).maximum
        Console(file=out.file, width=max(out.width, natural), no_color=out.no_color).print(table)


def _print_table(table: Table, rows: list[Any], empty: str) -> None:
    if rows:
        _emit(table)
    else:
        out.print(empty, highlight=False)


def _check_types(types: list[str]) -> None:
    from wavesquant.ops.queries import EVENT_LOG_TYPES

    unknown = [t for t in types if t not in EVENT_LOG_TYPES]
    if unknown:
        fail(f"unknown event type {unknown[0]!r}; event-log types are: {', '.join(EVENT_LOG_TYPES)}")


def _check_entry_id(option: str, entry_id: str) -> None:
    from wavesquant.ops.queries import valid_entry_id

    if not valid_entry_id(entry_id):
        fail(f"{option} {entry_id!r} is not a stream entry id (e.g. 1700000000000-0, 1700000000000, - or +)")


# signals / orders / positions ------------------------------------------------------------------------------
def signals(
    state: str | None = typer.Option(None, "--state", "-s",
                                     help=f"Only this state: {', '.join(SIGNAL_STATE_CHOICES)}."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most N (newest first)."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Signals and their lifecycle state, rebuilt from the event log."""
    if state is not None and state not in SIGNAL_STATE_CHOICES:
        fail(f"unknown signal state {state!r}; states are: {', '.join(SIGNAL_STATE_CHOICES)}")
    settings = settings_from(config, redis, need_redis=True)
    from wavesquant.ops.queries import list_signals

    rows, total = _read(settings, lambda bus: list_signals(bus, state, limit))
    table = _table("Signals" + (f" ({state})" if state else ""),
                   ["signal", "type", "strategy", "symbol", "state", "created", "updated", "expires", "reason"],
                   set())
    for s in rows:
        reason = s.history[-1].reason if s.history else ""
        table.add_row(s.signal_id, s.signal_type, s.strategy_id or "-", s.symbol or "-", s.state.value,
                      _ts(s.created_ms), _ts(s.updated_ms), _ts(s.expires_at_ms), reason)
    table.caption = f"{len(rows)} of {total} signal(s)"
    _print_table(table, rows, "no signals" + (f" in state {state}" if state else "") + " in the event log")


def orders(
    open_only: bool = typer.Option(False, "--open", help="Only orders that are not filled, canceled or failed."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most N (newest first)."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Orders and their state, replayed through the order state machine from the event log."""
    settings = settings_from(config, redis, need_redis=True)
    from wavesquant.ops.queries import list_orders

    rows, total = _read(settings, lambda bus: list_orders(bus, open_only, limit))
    columns = ["client order id", "strategy", "symbol", "side", "type", "quantity", "filled", "avg price",
               "limit", "status", "fees", "created", "updated"]
    problems = any(o.problem for o in rows)
    table = _table("Open orders" if open_only else "Orders", columns + (["problem"] if problems else []),
                   {"quantity", "filled", "avg price", "limit", "fees"})
    for o in rows:
        row = [o.client_order_id, o.strategy_id or "-", o.symbol, o.side.value, o.type.value, _num(o.quantity),
               _num(o.filled_quantity), _num(o.average_price), _num(o.limit_price), o.status.value, _num(o.fees),
               _ts(o.created_ms), _ts(o.updated_ms)]
        table.add_row(*row, *([o.problem] if problems else []))
    table.caption = f"{len(rows)} of {total} order(s)"
    _print_table(table, rows, "no open orders in the event log" if open_only else "no orders in the event log")
    if problems:
        err.print("[yellow]warning:[/] some order histories do not replay; their status is the last one recorded",
                  highlight=False)


def positions(
    net: bool = typer.Option(False, "--net", help="One row per symbol (all strategies together)."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Positions and PnL from every fill in the event log, marked at each symbol's latest fill price."""
    settings = settings_from(config, redis, need_redis=True)
    from wavesquant.ops.queries import positions as positions_of

    view = _read(settings, positions_of)
    pf = view.portfolio
    table = _table("Net positions" if net else "Positions",
                   ["strategy", "symbol", "quantity", "avg entry", "mark", "realised", "unrealised", "fees"],
                   {"quantity", "avg entry", "mark", "realised", "unrealised", "fees"})
    rows = pf.net_positions() if net else sorted(pf.positions(), key=lambda p: (p.strategy_id or "", p.symbol))
    for p in rows:
        strategy = "(all)" if net else (p.strategy_id or "-")
        table.add_row(strategy, p.symbol, _num(p.quantity), _num(p.avg_entry_price) if p.quantity else "-",
                      _num(view.marks.get(p.symbol)), _money(p.realized_pnl),
                      _money(pf.unrealized_pnl(p.symbol, None if net else p.strategy_id)), _money(p.fees))
    totals = pf.totals()
    table.add_row("[bold]total[/]", "", "", "", "", _money(totals["realized_pnl"]), _money(totals["unrealized_pnl"]),
                  _money(totals["fees"]))
    table.caption = f"{view.fills} fill(s), last at {_ts(view.last_fill_ms)}"
    _print_table(table, rows, "no fills in the event log: no positions")
    if pf.other_fees:
        err.print("fees not in the quote currency (not in PnL): "
                  + ", ".join(f"{v:.8g} {k or '?'}" for k, v in sorted(pf.other_fees.items())), highlight=False)


# events ----------------------------------------------------------------------------------------------------
def _event_line(entry: EventEntry) -> str:
    from wavesquant.ops.queries import describe

    if entry.message is None:
        return f"{entry.entry_id}  {'-':23}  {'invalid':18} {'-':17} {entry.error}"
    m = entry.message
    return f"{entry.entry_id}  {_ts(m.ts_ms)}  {m.type:18} {m.source:17} {describe(m)}"


def _show_entry(entry: EventEntry, as_json: bool) -> None:
    if as_json:
        print(entry.raw.decode("utf-8", "replace"), flush=True)
    else:
        out.print(_event_line(entry), markup=False, highlight=False, soft_wrap=True)


@events_app.command("tail")
def events_tail(
    types: list[str] = TypeOpt,
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N entries."),
    as_json: bool = typer.Option(False, "--json", help="Print each entry's JSON instead of a summary line."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Follow new event-log entries as they are appended (Ctrl-C to stop)."""
    _check_types(types)
    settings = settings_from(config, redis, need_redis=True)

    async def follow(bus: Bus) -> int:
        from wavesquant.messages import Channel
        from wavesquant.ops.queries import tail_events

        client = getattr(bus, "client", None)
        if client is None:
            raise UserError("events tail needs the Redis bus")
        return await tail_events(client, bus.key(Channel.EVENTS), lambda e: _show_entry(e, as_json),
                                 types or None, count)

    _read(settings, follow)


@events_app.command("replay")
def events_replay(
    types: list[str] = TypeOpt,
    start: str = typer.Option("-", "--from", help="First entry id (inclusive; default: the oldest)."),
    end: str = typer.Option("+", "--to", help="Last entry id (inclusive; default: the newest)."),
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Print at most N entries."),
    as_json: bool = typer.Option(False, "--json", help="Print each entry's JSON instead of a summary line."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Print the event log's history in order: entry id, time, type, source and what happened."""
    _check_types(types)
    _check_entry_id("--from", start)
    _check_entry_id("--to", end)
    settings = settings_from(config, redis, need_redis=True)

    async def replay(bus: Bus) -> int:
        from wavesquant.ops.queries import iter_event_log

        shown = 0
        wanted = set(types)
        async for entry in iter_event_log(bus, start, end):
            if wanted and entry.type not in wanted:
                continue
            _show_entry(entry, as_json)
            shown += 1
            if count is not None and shown >= count:
                break
        return shown

    shown = _read(settings, replay)
    if shown == 0:
        err.print("no matching event-log entries", highlight=False)


# journal ---------------------------------------------------------------------------------------------------
@journal_app.command("sync")
def journal_sync(db: Path = DbOpt, config: Path | None = ConfigOpt, redis: str | None = RedisOpt) -> None:
    """Copy new orders and fills from the event log into the journal (idempotent, incremental)."""
    from wavesquant.journal.store import TradeJournal
    from wavesquant.journal.sync import SyncStats, sync_journal

    settings = settings_from(config, redis, need_redis=True)
    stats = SyncStats()

    async def sync(bus: Bus) -> dict[str, int]:
        with TradeJournal(db) as journal:
            await sync_journal(journal, bus, stats)
            return journal.counts()

    counts = _read(settings, sync)
    if stats.gap:
        err.print("[yellow]warning:[/] the event log was trimmed past the journal's last entry: orders and fills "
                  "in between may be missing", highlight=False)
    if stats.undecodable or stats.malformed:
        err.print(f"[yellow]warning:[/] skipped {stats.undecodable} undecodable and {stats.malformed} malformed "
                  "event-log entries", highlight=False)
    out.print(f"journal {db}: {stats.entries} new event-log entries, {stats.applied} applied, {stats.new_fills} new "
              f"fills; {counts['orders']} orders and {counts['fills']} fills in total; last entry "
              f"{stats.last_event_id or '-'}", highlight=False, soft_wrap=True)


@journal_app.command("report")
def journal_report(db: Path = DbOpt) -> None:
    """Realised PnL, fees and position per strategy and symbol, from every fill in the journal."""
    if not db.is_file():
        fail(f"no journal at {db}: run `wq journal sync` first (or pass --db)")
    from wavesquant.journal.store import JournalError, TradeJournal

    try:
        with TradeJournal(db) as journal:
            rows = journal.pnl_by_strategy()
            counts = journal.counts()
            last = journal.last_event_id
    except (JournalError, sqlite3.Error) as exc:
        fail(f"journal: {exc}")
    table = _table("PnL by strategy", ["strategy", "symbol", "net qty", "avg entry", "realised PnL", "fees", "fills"],
                   {"net qty", "avg entry", "realised PnL", "fees", "fills"})
    for r in rows:
        entry = _num(r.avg_entry_price) if r.net_quantity else "-"
        table.add_row(r.strategy_id or "-", r.symbol, _num(r.net_quantity), entry,
                      _money(r.realized_pnl), _money(r.fees), str(r.fills))
    table.add_row("[bold]total[/]", "", "", "", _money(sum(r.realized_pnl for r in rows)),
                  _money(sum(r.fees for r in rows)), str(sum(r.fills for r in rows)))
    table.caption = f"{counts['orders']} orders, {counts['fills']} fills; synced up to entry {last or '-'}"
    _emit(table)


# kill switch -----------------------------------------------------------------------------------------------
def _operator() -> str:
    """Message source naming who pulled the switch (shown in the risk alert): cli-<user>."""
    try:
        user = re.sub(r"[^a-z0-9_\-]", "", getpass.getuser().lower())[:40]
    except (OSError, KeyError):
        user = ""
    return f"cli-{user}" if user else "cli"


def send_control(settings: Settings, target: str, command: str, args: dict[str, str],
                 timeout: float, expected: int = 1) -> list[ControlAck]:
    """Publish a control command and collect acknowledgements until `expected` arrived or `timeout`.
    Waits until our subscription is confirmed before publishing, so a fast ack cannot be missed."""
    quiet_logging(settings)

    async def exchange(bus: Bus) -> list[ControlAck]:
        from wavesquant.messages import Channel, ControlAck, ControlCommand

        sub = bus.subscribe([Channel.CONTROL])
        acks: list[ControlAck] = []
        try:
            ready = getattr(sub, "ready", None)
            if ready is not None:
                try:
                    await ready(timeout)
                except TimeoutError:
                    raise UserError(f"could not subscribe to the control channel within {timeout:g}s; "
                                    f"'{command}' was NOT sent") from None
            request_id = uuid.uuid4().hex
            await bus.publish(ControlCommand.create(source=_operator(), ts_ns=bus.clock.now_ns(), target=target,
                                                    command=command, request_id=request_id, args=args))

            async def collect() -> None:
                async for batch in sub:
                    acks.extend(m for m in batch if isinstance(m, ControlAck) and m.request_id == request_id)
                    if len(acks) >= expected:
                        return

            try:
                await asyncio.wait_for(collect(), timeout)
            except TimeoutError:
                pass
        finally:
            await sub.close()
        return acks

    return run_async(lambda: _with_bus(settings, exchange, timeout))


def _risk_command(settings: Settings, command: str, args: dict[str, str], timeout: float) -> None:
    acks = send_control(settings, "risk", command, args, timeout)
    if not acks:
        fail(f"no acknowledgement from the risk agent within {timeout:g}s: '{command}' was sent but NOT confirmed; "
             f"is risk running on {settings.bus.url} (prefix {settings.bus.prefix!r})? check `wq status`", 1)
    for ack in acks:
        colour = "green" if ack.ok else "red"
        out.print(f"[{colour}]{ack.agent}[/]: {command} -> {ack.status}" + (f" ({ack.detail})" if ack.detail else ""),
                  highlight=False, soft_wrap=True)
    if not all(a.ok for a in acks):
        raise typer.Exit(1)


def kill(
    flatten: bool = typer.Option(False, "--flatten", help="Also close every position with market orders."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    timeout: float = typer.Option(5.0, min=0.1, help="Seconds to wait for the risk agent's acknowledgement."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Kill switch: halt trading and cancel every open order (--flatten: also close positions)."""
    settings = settings_from(config, redis, need_redis=True)
    if not yes:
        what = "halt trading and cancel every open order" + (", then close every position" if flatten else "")
        try:
            confirmed = typer.confirm(f"{what} on {settings.bus.url} (prefix {settings.bus.prefix!r})?",
                                      default=False)
        except (typer.Abort, EOFError):  # no answer (stdin closed)
            err.print()
            confirmed = False
        if not confirmed:
            fail("aborted: nothing was sent", 1)
    _risk_command(settings, "kill", {"flatten": "true" if flatten else "false"}, timeout)


def resume_trading(
    timeout: float = typer.Option(5.0, min=0.1, help="Seconds to wait for the risk agent's acknowledgement."),
    config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
) -> None:
    """Lift a halt (kill switch or circuit breaker): the risk agent approves orders again."""
    settings = settings_from(config, redis, need_redis=True)
    _risk_command(settings, "resume_trading", {}, timeout)


__all__ = ["DEFAULT_JOURNAL", "register", "send_control"]
