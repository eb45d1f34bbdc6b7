"""What every `wq` command shares: consoles, common options, user errors (one line, exit 2), settings
loading and running a coroutine on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from wavesquant.config import ConfigError, Settings, load_settings

T = TypeVar("T")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one error = one line, whatever the width

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (default: config/default.yaml if present).")
RedisOpt = typer.Option(None, "--redis", help="Redis URL; overrides bus.url and selects the Redis bus.")


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_from(config: Path | None, redis: str | None = None, need_redis: bool = False,
                  overrides: dict[str, Any] | None = None) -> Settings:
    o = dict(overrides or {})
    if redis:
        o.update({"bus.backend": "redis", "bus.url": redis})
    try:
        settings = load_settings(config, o)
    except ConfigError as exc:
        fail(str(exc).replace("\n", "\n       "))
    if need_redis and settings.bus.backend != "redis":
        settings = load_settings(config, {**o, "bus.backend": "redis"})
    return settings


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    from wavesquant.runtime import install_event_loop_policy

    install_event_loop_policy()
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except UserError as exc:
        fail(str(exc))
    except (ConnectionError, OSError) as exc:
        fail(f"cannot reach the bus: {exc} (is Redis running? check --redis / bus.url)")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")
