"""The `wq` command line (typer + rich). User errors print one line and exit 2; never a traceback."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from wavesquant.cli_common import (
    ConfigOpt,
    RedisOpt,
    UserError,
    err,
    fail,
    is_file,
    out,
    run_async,
    settings_from,
)
from wavesquant.config import AGENT_NAMES, Settings
from wavesquant.ops.commands import quiet_logging
from wavesquant.ops.commands import register as register_ops

app = typer.Typer(help="WavesQuant: multi-agent crypto trading daemon.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
agent_app = typer.Typer(help="Run or control one agent.", no_args_is_help=True)
channels_app = typer.Typer(help="Inspect bus channels.", no_args_is_help=True)
config_app = typer.Typer(help="Show or validate configuration.", no_args_is_help=True)
app.add_typer(agent_app, name="agent")
app.add_typer(channels_app, name="channels")
app.add_typer(config_app, name="config")

LiveOpt = typer.Option(False, "--live", help="Trade real money through ccxt (needs execution.ccxt.live: true, "
                       "sandbox: false, and typing the exchange id, or WQ_CONFIRM_LIVE=<exchange id>).")


def _confirm_live(settings: Settings) -> None:
    from wavesquant.execution.live import LiveTradingRefused, require_live_confirmation

    try:
        require_live_confirmation(settings, True, input if sys.stdin.isatty() else None)
    except LiveTradingRefused as exc:
        fail(str(exc))


def _configure_logging(settings: Settings) -> None:
    from wavesquant.core.logging import configure_logging

    configure_logging(settings.logging.level, settings.logging.json_output)


# run -------------------------------------------------------------------------------------------------------
@app.command()
def run(
    config: Path | None = ConfigOpt,
    redis: str | None = RedisOpt,
    duration: float | None = typer.Option(None, "--duration", "-d", min=0.1, help="Stop after this many seconds."),
    replay: list[Path] = typer.Option([], "--replay", help="Replay these CSV files instead of the synthetic market."),
    speed: float | None = typer.Option(None, "--speed", min=0.001, help="Replay speed in bars per second."),
    summary: bool = typer.Option(True, help="Print the summary table at the end."),
    live: bool = LiveOpt,
) -> None:
    """Run all seven agents in one process (embedded bus and paper trading by default)."""
    overrides: dict[str, Any] = {}
    if replay:
        missing = [str(p)[:200] for p in replay if not is_file(p)]
        if missing:
            fail(f"replay file not found: {', '.join(missing)}")
        overrides["data_feeds.source"] = "replay"
        overrides["data_feeds.replay.files"] = [{"path": str(p)} for p in replay]
    if speed is not None:
        overrides["data_feeds.replay.bars_per_second"] = speed
    settings = settings_from(config, redis, overrides=overrides)
    if live:
        _confirm_live(settings)
    _configure_logging(settings)
    from wavesquant.runtime import Runtime
    from wavesquant.summary import print_summary

    async def main() -> int:
        try:
            rt = Runtime(settings)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        rt.own_the_heap()
        code = await rt.run(duration)
        if summary:
            print_summary(rt, out)
        return code

    raise typer.Exit(run_async(main))


# agent -----------------------------------------------------------------------------------------------------
def _check_agent(name: str) -> None:
    if name not in AGENT_NAMES:
        fail(f"unknown agent {name!r}; agents are: {', '.join(AGENT_NAMES)}")


@agent_app.command("run")
def agent_run(name: str, config: Path | None = ConfigOpt, redis: str | None = RedisOpt, live: bool = LiveOpt) -> None:
    """Run one agent as a foreground process over Redis (what a container runs)."""
    _check_agent(name)
    settings = settings_from(config, redis, need_redis=True)
    if live:
        if name != "execution":
            fail("--live only applies to the execution agent (the one that talks to the exchange)")
        _confirm_live(settings)
    _configure_logging(settings)
    from wavesquant.runtime import Runtime

    async def main() -> int:
        try:
            rt = Runtime(settings, [name])
        except ValueError as exc:
            raise UserError(str(exc)) from None
        rt.own_the_heap()
        return await rt.run()

    raise typer.Exit(run_async(main))


def _control(name: str, command: str, config: Path | None, redis: str | None, timeout: float) -> None:
    from wavesquant.ops.commands import send_control

    target = "*" if name in ("*", "all") else name
    if target != "*":
        _check_agent(target)
    settings = settings_from(config, redis, need_redis=True)
    expected = len(AGENT_NAMES) if target == "*" else 1
    acks = send_control(settings, target, command, {}, timeout, expected)
    if not acks:
        fail(f"no acknowledgement from {name} within {timeout:g}s: is the agent running on {settings.bus.url} "
             f"(prefix {settings.bus.prefix!r})? check `wq status`", 1)
    for ack in acks:
        colour = "green" if ack.ok else "red"
        out.print(f"[{colour}]{ack.agent}[/]: {command} -> {ack.status}" + (f" ({ack.detail})" if ack.detail else ""))
    if not all(a.ok for a in acks):
        raise typer.Exit(1)


def _control_command(verb: str) -> None:
    def command(name: str = typer.Argument(..., help="Agent name, or 'all'."), config: Path | None = ConfigOpt,
                redis: str | None = RedisOpt, timeout: float = typer.Option(3.0, help="Seconds to wait for the ack.")) -> None:
        _control(name, verb, config, redis, timeout)

    command.__doc__ = f"Send '{verb}' to a running agent and wait for its acknowledgement."
    agent_app.command(verb)(command)


for _verb in ("start", "stop", "pause", "resume"):
    _control_command(_verb)


@agent_app.command("health")
def agent_health(name: str, config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
                 max_age: float = typer.Option(5.0, help="Heartbeat older than this (s) is unhealthy.")) -> None:
    """Exit 0 if the agent's latest heartbeat is fresh (the container health check)."""
    _check_agent(name)
    statuses = _read_statuses(config, redis)
    hb = statuses.get(name)
    if hb is None:
        fail(f"{name}: no heartbeat", 1)
    age = time.time() - hb.ts_ms / 1000
    if age > max_age:
        fail(f"{name}: last heartbeat {age:.1f}s ago", 1)
    out.print(f"{name}: {hb.status}, heartbeat {age:.1f}s ago")


def _read_statuses(config: Path | None, redis: str | None) -> dict[str, Any]:
    settings = settings_from(config, redis, need_redis=True)
    quiet_logging(settings)

    async def main() -> dict[str, Any]:
        from wavesquant.core.clock import LiveClock
        from wavesquant.messages import Heartbeat, decode
        from wavesquant.runtime import make_bus

        bus = make_bus(settings, LiveClock())
        await bus.start()
        try:
            raw = await bus.get_statuses()
        finally:
            await bus.close()
        result = {}
        for agent, payload in raw.items():
            try:
                msg = decode(payload)
            except ValueError:
                continue
            if isinstance(msg, Heartbeat):
                result[agent] = msg
        return result

    return run_async(main)


@app.command()
def status(config: Path | None = ConfigOpt, redis: str | None = RedisOpt) -> None:
    """Table of every agent's latest heartbeat."""
    from wavesquant.summary import status_table

    statuses = _read_statuses(config, redis)
    out.print(status_table(statuses, time.time()))
    if not statuses:
        err.print("no heartbeats: no agent is running against this Redis/prefix")


# channels --------------------------------------------------------------------------------------------------
@channels_app.command("list")
def channels_list(config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
                  sample: float = typer.Option(2.0, min=0.1, help="Seconds to sample message rates.")) -> None:
    """Every channel and stream with subscribers / length and the current message rate."""
    from wavesquant.channel_views import sample_channels
    from wavesquant.summary import channels_table

    settings = settings_from(config, redis, need_redis=True)
    quiet_logging(settings)
    rows = run_async(lambda: sample_channels(settings, sample))
    out.print(channels_table(rows, sample))


@channels_app.command("tail")
def channels_tail(channel: str, config: Path | None = ConfigOpt, redis: str | None = RedisOpt,
                  count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N messages."),
                  raw: bool = typer.Option(False, help="Print JSON lines instead of pretty output.")) -> None:
    """Follow one channel or stream, printing validated messages."""
    from wavesquant.channel_views import tail_channel
    from wavesquant.messages import Channel

    names = [c.value for c in Channel]
    if channel not in names:
        fail(f"unknown channel {channel!r}; channels are: {', '.join(names)}")
    settings = settings_from(config, redis, need_redis=True)
    quiet_logging(settings)

    def show(msg: Any, bad: str | None) -> None:
        if bad is not None:
            err.print(f"[red]invalid:[/] {bad}", highlight=False)
        elif raw:
            print(msg.model_dump_json(), flush=True)
        else:
            out.print_json(msg.model_dump_json())

    run_async(lambda: tail_channel(settings, Channel(channel), show, count))


# schema / config -------------------------------------------------------------------------------------------
@app.command()
def schema(message_type: str | None = typer.Argument(None, help="One message type (default: all).")) -> None:
    """Print the JSON Schema of every message type."""
    from wavesquant.messages import json_schemas

    schemas = json_schemas()
    if message_type is not None:
        if message_type not in schemas:
            fail(f"unknown message type {message_type!r}; types are: {', '.join(sorted(schemas))}")
        schemas = {message_type: schemas[message_type]}
    print(json.dumps(schemas, indent=2))


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt) -> None:
    """Print the effective configuration (file + env overrides + defaults) as YAML."""
    import yaml

    settings = settings_from(config)
    print(yaml.safe_dump(json.loads(settings.model_dump_json()), sort_keys=False))


@config_app.command("validate")
def config_validate(config: Path | None = ConfigOpt) -> None:
    """Check a configuration file; one line per problem."""
    settings_from(config)
    out.print("[green]configuration is valid[/]")


# operator commands (signals, orders, positions, events, journal, kill, resume-trading) live in ops/
register_ops(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
