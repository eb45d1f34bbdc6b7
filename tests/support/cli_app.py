"""Fixtures for tests that drive the operator commands through typer's CliRunner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import structlog
import typer

from wavesquant.ops.commands import register


@pytest.fixture(autouse=True)
def keep_process_state() -> Iterator[None]:
    """run_async installs uvloop's policy and the commands configure structlog for the process; give the rest
    of the test session its own back."""
    policy = asyncio.get_event_loop_policy()
    logging_config = structlog.get_config()
    yield
    asyncio.set_event_loop_policy(policy)
    structlog.configure(**logging_config)


@pytest.fixture(name="app")
def app_fixture() -> typer.Typer:
    """A fresh app with only the operator commands registered (`app` in a test's arguments)."""
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app
