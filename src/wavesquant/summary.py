"""Rich tables: the end-of-run summary, agent status and channel listings."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from wavesquant.messages import Heartbeat

if TYPE_CHECKING:
    from wavesquant.runtime import Runtime


def _money(x: float) -> str:
    return f"{x:,.2f}"


def print_summary(rt: Runtime, console: Console) -> None:
    agents = Table(title="Agents", title_justify="left")
    for col in ("agent", "status", "loops", "loop runs", "overruns", "loop failures", "handler errors", "expired"):
        agents.add_column(col, justify="left" if col in ("agent", "status") else "right")
    for a in rt.agents:
        hb = a.heartbeat()
        errors = sum(v for k, v in a.counters.items() if k.startswith("errors:"))
        agents.add_row(a.name, hb.status, str(len(hb.loops)), str(sum(x.runs for x in hb.loops)),
                       str(sum(x.overruns for x in hb.loops)), str(sum(x.failures for x in hb.loops)),
                       str(errors), str(a.counters.get("expired", 0)))
    console.print(agents)

    stats = rt.bus.stats
    channels = Table(title="Messages per channel", title_justify="left")
    for col in ("channel", "published", "received", "invalid"):
        channels.add_column(col, justify="left" if col == "channel" else "right")
    for name in sorted(set(stats.published) | set(stats.received) | set(stats.invalid)):
        channels.add_row(name, str(stats.published[name]), str(stats.received[name]), str(stats.invalid[name]))
    console.print(channels)

    names = {a.name: a for a in rt.agents}
    core = names.get("core")
    if core is not None:
        counts: Counter[str] = core.book.counts()  # type: ignore[attr-defined]
        sig = Table(title="Signals by state (current)", title_justify="left")
        sig.add_column("state")
        sig.add_column("signals", justify="right")
        for state, n in sorted(counts.items()):
            sig.add_row(state, str(n))
        sig.add_row("[bold]total[/]", str(sum(counts.values())))
        console.print(sig)
    execution = names.get("execution")
    if execution is not None:
        orders = Counter(o.status.value for o in execution.tracker)  # type: ignore[attr-defined]
        portfolio = execution.portfolio  # type: ignore[attr-defined]
        fills = execution.counters.get("reports:fill", 0)
        ot = Table(title="Orders and fills", title_justify="left")
        ot.add_column("what")
        ot.add_column("count", justify="right")
        for status, n in sorted(orders.items()):
            ot.add_row(f"orders {status}", str(n))
        ot.add_row("fills", str(fills))
        console.print(ot)
        pnl = Table(title="Positions and PnL (paper)", title_justify="left")
        for col in ("strategy", "symbol", "quantity", "avg entry", "realised", "unrealised", "fees"):
            pnl.add_column(col, justify="left" if col in ("strategy", "symbol") else "right")
        for p in portfolio.positions():
            pnl.add_row(p.strategy_id or "-", p.symbol, f"{p.quantity:.6g}", _money(p.avg_entry_price),
                        _money(p.realized_pnl), _money(portfolio.unrealized_pnl(p.symbol, p.strategy_id)),
                        _money(p.fees))
        t = portfolio.totals()
        pnl.add_row("[bold]total[/]", "", "", "", _money(t["realized_pnl"]), _money(t["unrealized_pnl"]),
                    _money(t["fees"]))
        console.print(pnl)


def status_table(statuses: dict[str, Heartbeat], now_s: float) -> Table:
    table = Table(title="Agents", title_justify="left")
    for col in ("agent", "status", "age", "host", "pid", "uptime", "loops", "overruns", "problems"):
        table.add_column(col)
    colours = {"running": "green", "paused": "yellow", "stopped": "red", "degraded": "magenta", "starting": "cyan"}
    for name in sorted(statuses):
        hb = statuses[name]
        colour = colours.get(hb.status, "white")
        table.add_row(name, f"[{colour}]{hb.status}[/]", f"{now_s - hb.ts_ms / 1000:.1f}s", hb.host, str(hb.pid),
                      f"{hb.uptime_s:.0f}s", str(len(hb.loops)), str(sum(x.overruns for x in hb.loops)),
                      "; ".join(hb.problems) or "-")
    return table


def channels_table(rows: list[dict[str, Any]], sample_s: float) -> Table:
    table = Table(title=f"Channels (rates sampled over {sample_s:g}s)", title_justify="left")
    for col in ("channel", "kind", "subscribers / length", "msg/s"):
        table.add_column(col, justify="left" if col in ("channel", "kind") else "right")
    for r in rows:
        table.add_row(r["channel"], r["kind"], str(r["size"]), f"{r['rate']:.1f}")
    return table
